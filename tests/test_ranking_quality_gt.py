"""The ranking-quality study's ground-truth campaign: resumable batches, mean over seeds, pilot,
power columns; a fake trainer stands in for standalone training (tested in test_ranking_study)."""

import csv
import functools
import json
import os
import shutil

import helpers
import numpy as np
import pytest

from close_jax import cpu_workers
from close_jax.analysis import ranking_study
from close_jax.benchmarks import nb201_gt_trainer
from close_jax.spaces import nb201


@pytest.fixture(scope='module')
def rq():
  return helpers.load_experiment('ranking_quality')


def _accuracy(arch, seed, epochs):
  """A made-up accuracy: the cell's conv count plus noise that shrinks with the budget."""
  rng = np.random.default_rng(nb201_gt_trainer.cell_code(arch) * 100 + seed * 10 + epochs)
  return 50 + 5 * float(np.sum(np.asarray(arch) >= 2)) + rng.normal(scale=8 / epochs)


class FakeTrainer:
  calls: list = []

  def __init__(self, protocol, *_):
    self.epochs = protocol.epochs

  def accuracy(self, arch, seed):
    FakeTrainer.calls.append('alone')
    return _accuracy(arch, seed, self.epochs)

  def train_batch(self, archs, seeds):
    FakeTrainer.calls.append(len(archs))
    return np.array([_accuracy(a, s, self.epochs) for a, s in zip(archs, seeds, strict=True)])


@pytest.fixture
def fake(rq, monkeypatch):
  FakeTrainer.calls = []
  monkeypatch.setattr(nb201_gt_trainer, 'StandaloneTrainer', FakeTrainer)
  monkeypatch.setattr(rq, 'load_data', lambda args: (None, None, None))
  return FakeTrainer


def _args(rq, workdir, *extra):
  return rq.parse_args([f'--workdir={workdir}', '--num-archs=10', '--gt-batch=4', *extra])


def test_ground_truth_resumes_from_a_killed_run(rq, fake, tmp_path):
  args = _args(rq, tmp_path)
  archs = ranking_study.sample_cells(10, seed=0)
  # a run killed after 5 of 20 runs, in the middle of the sixth line
  names = [nb201.to_str(a) for a in archs]
  jobs = [(a, s) for a in names for s in (0, 1)]
  with open(tmp_path / 'gt_runs.csv', 'w') as f:
    f.write('arch,seed,epochs,accuracy\n')
    for a, s in jobs[:5]:
      f.write(f'{a},{s},4,{_accuracy(nb201.parse(a), s, 4):.4f}\n')
    f.write(f'{jobs[5][0]},1,4,7')
  per_seed = rq.ground_truth(args, archs)
  assert fake.calls == [4, 4, 4, 4]  # 15 runs left, the last batch padded to a fixed A=4
  with open(tmp_path / 'gt_runs.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert sorted((r['arch'], int(r['seed'])) for r in rows) == sorted(jobs)  # each run once
  for s in (0, 1):
    for a in names:
      assert per_seed[s][a] == pytest.approx(_accuracy(nb201.parse(a), s, 4), abs=1e-4)
  with open(tmp_path / 'ground_truth.csv', newline='') as f:
    mean = {r['arch']: float(r['accuracy']) for r in csv.DictReader(f)}
  assert mean[names[3]] == pytest.approx((per_seed[0][names[3]] + per_seed[1][names[3]]) / 2, 1e-5)
  records = [json.loads(x) for x in (tmp_path / 'gt_metrics.jsonl').read_text().splitlines()]
  assert [r['runs_done'] for r in records] == [9, 13, 17, 20]
  fake.calls = []
  assert rq.read_ground_truth(args, archs) == per_seed == rq.ground_truth(args, archs)
  assert fake.calls == []  # all cached: nothing trains
  fake.calls = []
  (tmp_path / 'alone').mkdir()
  assert rq.ground_truth(_args(rq, tmp_path / 'alone', '--gt-batch=1'), archs) == per_seed
  assert fake.calls == ['alone'] * 20
  with pytest.raises(SystemExit, match='lacks 20 runs at --gt-epochs=8'):
    rq.read_ground_truth(_args(rq, tmp_path, '--gt-epochs=8'), archs)


def test_pilot_reports_seed_agreement_per_budget_and_feeds_the_study(rq, fake, tmp_path):
  args = _args(rq, tmp_path, '--pilot', '--pilot-cells=6', '--pilot-budgets=1,8')
  archs = ranking_study.sample_cells(10, seed=0)
  out = rq.pilot(args, archs)
  cells = rq.pilot_cells(args, archs)
  assert out['num_cells'] == 6 and set(out['budgets']) == {1, 8}
  for epochs, entry in out['budgets'].items():
    a = [_accuracy(c, 0, epochs) for c in cells]
    b = [_accuracy(c, 1, epochs) for c in cells]
    assert entry['kendall_tau'] == pytest.approx(ranking_study.noise_ceiling(a, b)['kendall_tau'])
  assert '| 8 |' in (tmp_path / 'pilot.md').read_text()
  fake.calls = []
  rq.ground_truth(_args(rq, tmp_path, '--gt-epochs=8'), archs)
  assert fake.calls == [4, 4]  # 4 cells x 2 seeds left: the pilot's 12 runs are reused
  with pytest.raises(SystemExit, match=r"--pilot-budgets='0,2': expected distinct epochs"):
    rq.pilot(_args(rq, tmp_path, '--pilot-cells=6', '--pilot-budgets=0,2'), archs)
  with pytest.raises(SystemExit, match='--pilot-cells=40: expected 3..10'):
    rq.pilot(_args(rq, tmp_path), archs)


def test_pilot_report_only_judges_the_cells_done_and_trains_nothing(rq, fake, tmp_path):
  archs = ranking_study.sample_cells(10, seed=0)
  rq.pilot(_args(rq, tmp_path, '--pilot', '--pilot-cells=6', '--pilot-budgets=8'), archs)
  cells = [nb201.to_str(c) for c in rq.pilot_cells(_args(rq, tmp_path, '--pilot-cells=6'), archs)]
  lines = (tmp_path / 'gt_runs.csv').read_text().splitlines()
  # a pilot still running: the last cell has one seed, and the 1-epoch budget has not begun
  (tmp_path / 'gt_runs.csv').write_text(
    '\n'.join(x for x in lines if not x.startswith(f'{cells[-1]},1,')) + '\n'
  )
  fake.calls = []
  args = _args(rq, tmp_path, '--pilot', '--pilot-cells=6', '--pilot-budgets=8,1', '--report-only')
  out = rq.pilot(args, archs)
  assert fake.calls == [] and list(out['budgets']) == [8]
  entry = out['budgets'][8]
  a, b = ([_accuracy(nb201.parse(c), s, 8) for c in cells[:-1]] for s in (0, 1))
  assert entry['num_cells'] == 5
  assert entry['variance']['seed_sd'] == pytest.approx(
    ranking_study.seed_variance(a, b)['seed_sd'], rel=1e-4
  )
  assert '| 8 | 5 of 6 |' in (tmp_path / 'pilot.md').read_text()


def test_gt_only_stops_after_the_ground_truth_with_its_agreement(rq, fake, tmp_path):
  out = rq.main([f'--workdir={tmp_path}', '--num-archs=8', '--gt-batch=3', '--gt-only'])
  archs = ranking_study.sample_cells(8, seed=0)
  a, b = ([_accuracy(c, s, 4) for c in archs] for s in (0, 1))
  tau = ranking_study.noise_ceiling(a, b)['kendall_tau']
  assert out['noise_ceiling']['kendall_tau'] == pytest.approx(tau)
  assert json.loads((tmp_path / 'ground_truth_agreement.json').read_text())['num_cells'] == 8
  split = out['noise_ceiling']['variance']
  assert split == pytest.approx(ranking_study.seed_variance(a, b))
  assert f'between-cell sd of {split["between_sd"]:.2f}' in rq.variance_statement(split)
  assert not (tmp_path / 'runs').exists()  # no supernet trained


def test_a_third_seed_enters_the_mean_and_the_ceiling_of_its_perfect_ranker(rq, fake, tmp_path):
  """--gt-seeds=3 (the study's setting): ground_truth.csv is the three-seed mean; the printed
  seed-to-seed tau stays seeds 0 against 1; the variance split comes from all three seeds and
  its perfect ranker is that of the three-seed mean."""
  argv = [f'--workdir={tmp_path}', '--num-archs=8', '--gt-batch=3', '--gt-seeds=3', '--gt-only']
  out = rq.main(argv)
  archs = ranking_study.sample_cells(8, seed=0)
  a, b, c = ([_accuracy(cell, s, 4) for cell in archs] for s in (0, 1, 2))
  with open(tmp_path / 'ground_truth.csv') as f:
    written = {row['arch']: float(row['accuracy']) for row in csv.DictReader(f)}
  for i, cell in enumerate(archs):
    assert written[nb201.to_str(cell)] == pytest.approx((a[i] + b[i] + c[i]) / 3, abs=1e-4)
  assert out['noise_ceiling']['kendall_tau'] == pytest.approx(
    ranking_study.noise_ceiling(a, b)['kendall_tau']
  )
  split = out['noise_ceiling']['variance']
  # the split from all three (the runs file keeps 4 decimals)
  assert split == pytest.approx(ranking_study.seed_variance(a, b, c), rel=1e-4)
  assert split['perfect_ranker_tau'] > ranking_study.seed_variance(a, b)['perfect_ranker_tau']


def test_pair_power_columns(rq):
  rng = np.random.default_rng(0)
  truth = rng.normal(size=40)
  a = [truth + rng.normal(scale=0.5, size=40) for _ in range(3)]
  b = [truth + rng.normal(scale=1.0, size=40) for _ in range(3)]
  out = rq.pair_power(a, b, truth)
  taus = [[ranking_study.metrics(s, truth)['kendall_tau'] for s in arm] for arm in (a, b)]
  d = np.subtract(*taus)
  assert out['seeds']['mean'] == pytest.approx(d.mean()) and out['seeds']['n'] == 3
  assert out['cells']['cells_for_target'] >= 40 * (out['cells']['half_width'] / 0.05) ** 2
  assert 'seeds' not in rq.pair_power(a[:1], b[:1], truth)  # one seed: no interval over seeds


def test_every_table_carries_the_power_statement(rq):
  rng = np.random.default_rng(1)
  truth = rng.normal(size=40)
  arms = {
    'close': [truth + rng.normal(scale=0.5, size=40) for _ in range(3)],
    'vanilla': [truth + rng.normal(scale=1.0, size=40) for _ in range(3)],
  }
  stats = ranking_study.bootstrap(arms, truth, num=50, pairs=(('close', 'vanilla'),))
  stats['differences']['close - vanilla']['power'] = rq.pair_power(*arms.values(), truth)
  stats['noise_ceiling'] = ranking_study.noise_ceiling(truth, truth + 0.1, num=50)
  stats['ground_truth'] = {'num_cells': 40}
  draws = [arms['close'], [s + rng.normal(scale=0.2, size=40) for s in arms['close']]]
  stats['noise_sources'] = ranking_study.noise_sources(np.asarray(draws), truth)
  table = rq.markdown_table(stats)
  assert rq.noise_statement(stats['noise_sources']) in table
  assert '2 evaluation seeds x 3 training seeds' in table
  assert 'p_at_top_0.05 [95% CI]' in table and 'p_at_top_0.1 [95% CI]' in table
  statement = rq.power_statement(stats)
  assert table.count(statement) == 2 and 'over 3 supernet seeds' in statement
  seeds = stats['differences']['close - vanilla']['power']['seeds']
  assert f'+-{seeds["half_width"]:.3f} over 3 supernet seeds' in statement  # one pair: its own
  # a re-ranking of CLOSE's checkpoint (nearly CLOSE's scores: a tiny seed sd) stays out of it
  arms['close_m4'] = [s + rng.normal(scale=0.01, size=40) for s in arms['close']]
  more = ranking_study.bootstrap(arms, truth, num=50, pairs=(('close_m4', 'close'),))
  stats['differences']['close_m4 - close'] = more['differences']['close_m4 - close']
  stats['differences']['close_m4 - close']['power'] = rq.pair_power(
    arms['close_m4'], arms['close'], truth
  )
  assert rq.power_statement(stats) == statement
  # resolved: both intervals (over cells, over seeds) exclude zero
  entry = stats['differences']['close - vanilla']
  both = entry['kendall_tau']['ci95'][0] > 0 and entry['power']['seeds']['ci'][0] > 0
  assert rq.resolved(entry) == ('yes' if both else 'no') and both  # CLOSE's noise is half here
  entry['power']['seeds']['ci'] = [-0.01, 0.2]
  assert rq.resolved(entry) == 'no'
  assert rq.resolved({**entry, 'power': {'cells': {}}}) == '-'
  assert ' | tau resolved |' in table and table.count(' | yes |') == 1


@pytest.mark.skipif(len(cpu_workers.usable_cores()) < 2, reason='needs two usable cores')
def test_ground_truth_in_worker_processes_resumes_like_one_process(rq, monkeypatch, tmp_path):
  (tmp_path / 'log').mkdir()
  make = functools.partial(helpers.fake_gt_train, str(tmp_path / 'log'), workers=2)
  monkeypatch.setattr(rq, 'worker_trainer', lambda args, epochs: make)
  archs = ranking_study.sample_cells(5, seed=0)
  names = [nb201.to_str(a) for a in archs]
  with open(tmp_path / 'gt_runs.csv', 'w') as f:  # killed after 3 runs, mid-line
    f.write('arch,seed,epochs,accuracy\n')
    f.writelines(f'{a},{s},4,{helpers.fake_gt_accuracy(a, s)}\n' for a in names[:1] for s in (0, 1))
    f.write(f'{names[1]},0,4,{helpers.fake_gt_accuracy(names[1], 0)}\n{names[1]},1,4,6')
  args = rq.parse_args([f'--workdir={tmp_path}', '--num-archs=5', '--workers=2'])
  per_seed = rq.ground_truth(args, archs)
  assert per_seed == {s: {a: helpers.fake_gt_accuracy(a, s) for a in names} for s in (0, 1)}
  trained = [
    (r['cell'], r['seed']) for rs in helpers.fake_gt_log(tmp_path / 'log').values() for r in rs
  ]
  assert sorted(trained) == sorted(
    (a, s) for a in names[1:] for s in (0, 1) if (a, s) != (names[1], 0)
  )
  records = [json.loads(x) for x in (tmp_path / 'gt_metrics.jsonl').read_text().splitlines()]
  assert [r['runs_done'] for r in records] == list(range(4, 11))
  assert len((tmp_path / 'gt_runs.csv').read_text().splitlines()) == 11  # header + each run once


def test_bad_worker_counts_fail_before_any_work(rq, tmp_path):
  cores = len(cpu_workers.usable_cores())
  for flags, shown in (
    ([f'--workers={cores + 1}'], f'--workers={cores + 1} with --gt-batch=1'),
    (['--workers=0'], '--workers=0 with --gt-batch=1'),
    (['--workers=2', '--gt-batch=4'], '--workers=2 with --gt-batch=4'),
  ):
    with pytest.raises(SystemExit, match=f'error: {shown}: expected 1..{cores} workers'):
      rq.main([f'--workdir={tmp_path / "w"}', *flags])
    assert not (tmp_path / 'w').exists()


class FakeSupernetRuns:
  """Stands in for `train.train_and_evaluate`: writes what a finished run leaves (its last
  epoch's metrics, ranking.csv, then ranking.json with the epoch it ranked) and records (run
  directory, mode); a run named `kill` dies before it writes anything, as a killed process
  would; one named `kill_before_ranking` dies after its last epoch and before its final ranking,
  with an earlier epoch's ranking left in its workdir."""

  def __init__(self, kill=None, kill_before_ranking=None):
    self.calls, self.kill, self.kill_before_ranking = [], kill, kill_before_ranking

  def __call__(self, config, workdir):
    self.calls.append((os.path.basename(workdir), config.mode))
    if os.path.basename(workdir) == self.kill:
      raise KeyboardInterrupt
    os.makedirs(workdir, exist_ok=True)
    epochs = config.budget_epochs or config.num_epochs  # what the run scales itself to
    if config.mode == 'train':
      with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
        f.write(json.dumps({'epoch': epochs - 1}) + '\n')
    killed = os.path.basename(workdir) == self.kill_before_ranking
    with open(os.path.join(workdir, 'ranking.csv'), 'w') as f:
      f.write('arch,supernet_score\n' + ''.join(f'{a},{s}\n' for a, s in self.scores(config)))
    with open(os.path.join(workdir, 'ranking.json'), 'w') as f:
      json.dump({'epoch': epochs // 2 if killed else epochs}, f)
    if killed:
      raise KeyboardInterrupt
    with open(os.path.join(workdir, 'rankings.jsonl'), 'a') as f:
      record = {'epoch': epochs, 'when': 'epoch', 'kendall_tau': 0.5, 'num_archs': 10}
      f.write(json.dumps(record) + '\n')

  @staticmethod
  def scores(config):
    """Random scores of the ground truth's cells, when the run was given one."""
    if not os.path.exists(config.eval.ground_truth or ''):
      return []
    with open(config.eval.ground_truth) as f:
      cells = [row['arch'] for row in csv.DictReader(f)]
    rng = np.random.default_rng(len(cells) + config.seed)
    return zip(cells, rng.normal(size=len(cells)), strict=True)


def test_supernet_arms_train_once_with_closes_reranks_and_resume(rq, monkeypatch, tmp_path):
  args = rq.parse_args([f'--workdir={tmp_path}', '--seeds=2', '--eval-seeds=2'])
  args = rq.budget_args(args, 8)
  arms = rq.arms_of(args)
  gt_csv = str(tmp_path / 'ground_truth.csv')
  monkeypatch.setattr(rq.train, 'train_and_evaluate', FakeSupernetRuns(kill='close_e1_s1'))
  with pytest.raises(KeyboardInterrupt):  # killed while re-ranking seed 1's CLOSE
    rq.train_arms(args, arms, gt_csv)
  fake = FakeSupernetRuns()
  monkeypatch.setattr(rq.train, 'train_and_evaluate', fake)
  rq.train_arms(args, arms, gt_csv)
  # seed 0 and seed 1's vanilla, CLOSE and CLOSE-M4 finished before the kill
  assert fake.calls == [
    ('close_e1_s1', 'evaluate'),
    ('close_mode_s1', 'evaluate'),
    ('close_s_s1', 'train'),
    ('close_learning_s1', 'train'),
    ('close_random_s1', 'train'),
  ]
  runs = sorted(os.listdir(tmp_path / 'e8' / 'runs'))
  names = [*arms, 'close_m4', 'close_e1', 'close_mode']
  assert runs == sorted(f'{a}_s{s}' for a in names for s in (0, 1))
  fake.calls = []
  rq.train_arms(args, arms, gt_csv)
  assert fake.calls == []  # all done


@pytest.mark.skipif(len(cpu_workers.usable_cores()) < 2, reason='needs two usable cores')
def test_supernet_arms_in_worker_processes_skip_the_finished(rq, monkeypatch, tmp_path):
  (tmp_path / 'e8' / 'log').mkdir(parents=True)
  monkeypatch.setattr(rq, 'arm_runner', helpers.fake_arm_runner)
  monkeypatch.setattr(rq.train, 'train_and_evaluate', FakeSupernetRuns())
  args = rq.parse_args([f'--workdir={tmp_path}', '--seeds=3', '--eval-seeds=1'])
  args = rq.budget_args(args, 8)
  arms = rq.arms_of(args)
  rq.train_arm(args, arms, '', ('close', 1))  # one finished in this process, reranks included
  args.workers = 2
  rq.train_arms(args, arms, '')
  log = helpers.fake_gt_log(tmp_path / 'e8' / 'log')
  assert len(log) == 2 and str(os.getpid()) not in log
  jobs = sorted((r['arm'], r['seed']) for records in log.values() for r in records)
  assert jobs == sorted((a, s) for a in arms for s in range(3) if (a, s) != ('close', 1))


def test_each_budget_trains_its_own_supernets(rq, monkeypatch, tmp_path):
  """A run finished at one budget is not taken for a run of another: each budget has its own
  runs (WORKDIR/e<E>), configured for its own epochs."""
  fake = FakeSupernetRuns()
  args = rq.parse_args([f'--workdir={tmp_path}', '--seeds=1', '--eval-seeds=1'])
  arms = rq.arms_of(args)
  configs = []
  monkeypatch.setattr(rq.train, 'train_and_evaluate', lambda c, w: configs.append(c) or fake(c, w))
  rq.train_arms(rq.budget_args(args, 8), arms, '')
  rq.train_arms(rq.budget_args(args, 16), arms, '')
  trained = [c.budget_epochs for c in configs if c.mode == 'train']
  assert trained == [8] * len(arms) + [16] * len(arms)
  for epochs in (8, 16):
    runs = os.listdir(tmp_path / f'e{epochs}' / 'runs')
    assert sorted(runs) == sorted([f'{a}_s0' for a in arms] + ['close_m4_s0', 'close_mode_s0'])
  assert {'close_learning - close', 'close_learning - close_random'} <= {
    f'{a} - {b}' for a, b in rq.PAIRS
  }
  assert arms['close_learning']['close.gate_center_logits'] is True


@pytest.mark.parametrize('epochs', ['0', '100,100', 'x'])
def test_bad_epochs_fail_before_any_work(rq, tmp_path, epochs):
  with pytest.raises(SystemExit, match=f"error: --epochs='{epochs}': expected distinct epochs"):
    rq.main([f'--workdir={tmp_path / "w"}', f'--epochs={epochs}'])
  assert not (tmp_path / 'w').exists()


def test_report_only_counts_the_seeds_every_arm_finished(rq, monkeypatch, tmp_path):
  monkeypatch.setattr(rq.train, 'train_and_evaluate', FakeSupernetRuns())
  args = rq.budget_args(rq.parse_args([f'--workdir={tmp_path}', '--seeds=2', '--eval-seeds=2']), 8)
  arms = rq.arms_of(args)
  assert rq.seeds_done(args, arms) == 0
  rq.train_arms(args, arms, '')
  args.seeds = 4
  assert rq.seeds_done(args, arms) == 2
  rq.train_arm(args, arms, '', ('vanilla', 2))  # seed 2 of one arm only: not counted
  shutil.rmtree(tmp_path / 'e8' / 'runs' / 'close_e1_s1')  # a re-ranking of seed 1 missing
  assert rq.seeds_done(args, arms) == 1


def test_report_only_skips_a_budget_without_a_finished_seed(rq, fake, tmp_path, capsys):
  archs = ranking_study.sample_cells(10, seed=0)
  rq.ground_truth(_args(rq, tmp_path), archs)
  out = rq.main([f'--workdir={tmp_path}', '--num-archs=10', '--epochs=8,16', '--report-only'])
  assert out == {}
  assert '16 epochs: 0 of 5 supernet seeds done in every arm' in capsys.readouterr().out


def test_a_run_killed_before_its_final_ranking_is_trained_again(rq, monkeypatch, tmp_path):
  """Its last epoch is in metrics.jsonl and an earlier ranking in ranking.csv/json: not done."""
  args = rq.budget_args(rq.parse_args([f'--workdir={tmp_path}', '--seeds=1', '--eval-seeds=1']), 8)
  arms = {'vanilla': rq.BASE_ARMS['vanilla']}
  monkeypatch.setattr(
    rq.train, 'train_and_evaluate', FakeSupernetRuns(kill_before_ranking='vanilla_s0')
  )
  with pytest.raises(KeyboardInterrupt):
    rq.train_arms(args, arms, '')
  assert not rq._arm_done(args, 'vanilla', 0)
  fake = FakeSupernetRuns()
  monkeypatch.setattr(rq.train, 'train_and_evaluate', fake)
  rq.train_arms(args, arms, '')
  assert fake.calls == [('vanilla_s0', 'train')] and rq._arm_done(args, 'vanilla', 0)
  # killed after the final ranking.json and before its rankings.jsonl record: not done either
  os.remove(tmp_path / 'e8' / 'runs' / 'vanilla_s0' / 'rankings.jsonl')
  assert not rq._arm_done(args, 'vanilla', 0)


def test_curve_rankings_use_a_subset_of_the_cells(rq, tmp_path):
  args = rq.budget_args(rq.parse_args([f'--workdir={tmp_path}']), 100)
  config = rq.supernet_config(args, {}, 0, '')
  assert config.eval.curve_num_archs == 100 and config.eval.num_archs == 0
  with pytest.raises(SystemExit, match='--curve-cells=-1: expected'):
    rq.main([f'--workdir={tmp_path / "w"}', '--curve-cells=-1'])
  assert not (tmp_path / 'w').exists()


def test_report_only_reports_one_finished_seed(rq, fake, monkeypatch, tmp_path):
  """One seed of every arm done: the report has no spread over seeds (nor the evaluation draws'
  share of it) and says so, instead of failing."""
  archs = ranking_study.sample_cells(10, seed=0)
  args = _args(rq, tmp_path, '--seeds=2', '--eval-seeds=2')
  rq.ground_truth(args, archs)
  monkeypatch.setattr(rq.train, 'train_and_evaluate', FakeSupernetRuns())
  study = rq.budget_args(args, 8)
  arms = rq.arms_of(study)
  for name in arms:
    rq.train_arm(study, arms, str(tmp_path / 'ground_truth.csv'), (name, 0))
  shutil.rmtree(tmp_path / 'e8' / 'runs' / 'close_mode_s0')  # as in a study begun without it
  out = rq.main(
    [
      f'--workdir={tmp_path}',
      '--num-archs=10',
      '--seeds=2',
      '--eval-seeds=2',
      '--epochs=8',
      '--report-only',
    ]
  )
  assert list(out) == [8] and 'noise_sources' not in out[8]
  assert set(out[8]['arms']) >= {*arms, 'close_m4'} and 'close_mode' not in out[8]['arms']
  assert 'close_mode - close' not in out[8]['differences'] and out[8]['gate'] == {}
  table = (tmp_path / 'e8' / 'table.md').read_text()
  assert 'fewer than 2 supernet seeds' in table and 'evaluation seeds' not in table
  assert 'compare their tau, not their P@top' in table  # rank-by-parameters has many ties
  assert (tmp_path / 'e8' / 'ranking_quality.png').stat().st_size > 1000


@pytest.mark.parametrize(
  'flag, message',
  [('--arm=gates', "--arm='gates': expected one of"), ('--half=0', '--half=0: expected >= 1')],
)
def test_rank_images_refuses_bad_flags_before_any_work(flag, message, tmp_path):
  script = helpers.load_experiment('rank_images')
  with pytest.raises(SystemExit, match=message):
    script.main([f'--workdir={tmp_path / "w"}', flag])
  assert not (tmp_path / 'w').exists()


def test_a_study_refuses_a_rerun_with_other_settings(rq, fake, tmp_path):
  """The runs file is keyed by cell, seed and epochs: another network or ranking set in the same
  workdir would mix two studies, so it is refused before any work (report-only writes nothing)."""
  flags = [f'--workdir={tmp_path}', '--num-archs=10', '--gt-batch=4', '--gt-only']
  rq.main([*flags, '--cells-per-stage=3'])
  saved = json.loads((tmp_path / 'study.json').read_text())
  assert saved['cells_per_stage'] == 3 and (saved['gt_seeds'], saved['gt_epochs']) == (2, 4)
  # a report against another ground-truth mean would rank every arm against other numbers
  with pytest.raises(SystemExit, match='--gt-seeds=3: expected 2, the value'):
    rq.main([*flags, '--cells-per-stage=3', '--gt-seeds=3', '--report-only'])
  fake.calls = []
  with pytest.raises(
    SystemExit, match=r'--rank-size=100, --cells-per-stage=5: expected 2500, 3, the value'
  ):
    rq.main([*flags, '--cells-per-stage=5', '--rank-size=100'])
  assert fake.calls == []
  rq.main([*flags, '--cells-per-stage=3', '--data-dir=/elsewhere'])  # the same files elsewhere
  other = tmp_path / 'other'
  with pytest.raises(SystemExit):  # report-only: nothing to report, and no study.json written
    rq.main([f'--workdir={other}', '--report-only'])
  assert not (other / 'study.json').exists()
