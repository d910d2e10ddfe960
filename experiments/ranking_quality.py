"""Ranking quality on real data, with error bars: does CLOSE rank better than vanilla here?

  python experiments/ranking_quality.py --workdir=/tmp/rq --pilot   # choose --gt-epochs first
  python experiments/ranking_quality.py --workdir=/tmp/rq --pilot --report-only   # while it runs
  python experiments/ranking_quality.py --workdir=/tmp/rq --gt-epochs=E --gt-only   # its tau
  python experiments/ranking_quality.py --workdir=/tmp/rq --gt-epochs=E   # Fashion-MNIST 16x16
  python experiments/ranking_quality.py --workdir=/tmp/rq --gt-epochs=E --epochs=100 --report-only

Needs the Fashion-MNIST idx files (`apt-get install dataset-fashion-mnist`; any MNIST-format
directory with --data-dir) and matplotlib for the PNG. Three steps, each resumable:
1. Ground truth: --num-archs NB201 cells, a seeded uniform sample of the 6466 isomorphism classes
   (uniform, not stratified: the supernet ranks all 6466 classes, and a uniform sample's tau
   estimates that population's tau; strata would reweight it), each trained standalone
   (`close_jax.benchmarks.nb201_gt_trainer`, --gt-batch cells at once, or one at a time in each of
   --workers CPU processes: `close_jax.benchmarks.gt_workers`) with --gt-seeds seeds on the
   supernet's training split and tested on the test images; the supernets rank against the mean
   over seeds, and the tau between seeds 0 and 1 over all cells is the noise ceiling. Every
   finished run is appended to WORKDIR/gt_runs.csv (a killed run resumes there), progress to
   WORKDIR/gt_metrics.jsonl. --pilot trains --pilot-cells of the cells x 2 seeds at each of
   --pilot-budgets and reports the seed-to-seed tau with its interval per budget (pilot.md):
   choose the cheapest budget where it is >= 0.7; its runs are reused by the study.
2. Supernets: vanilla, CLOSE, CLOSE-S, CLOSE with the learning GATE (`close_learning`,
   `close_jax.gate_presets`) and the extra arms (default: CLOSE with `gate=random`) x --seeds,
   same network size, at each of the --epochs budgets (`budget_epochs` scales the paper's
   schedule), in WORKDIR/e<E>/runs/<arm>_s<seed>, ranking the same cells at every 200
   paper-epochs and just before and after each switch.
3. Report, per budget in WORKDIR/e<E>: per arm Kendall's tau, Spearman's rho, P@top-5%/10%/25%
   with bootstrap 95% intervals over the cells and the spread over seeds; paired differences
   with their power (the seeds' t interval, the seeds needed for +-0.05, the difference found
   with 80% probability, the cells' jackknife interval: `close_jax.analysis.power`); the noise
   ceiling; rank-by-parameters and rank-by-FLOPs; each learned GATE's spread and pair KLs at the
   end; summary.json, ranking_quality.png (tau per arm, and tau against epochs with the
   switches), table.md.

A study outlives its machine by its small files: study.json, gt_runs.csv and, per finished
supernet run, metrics.jsonl, rankings.jsonl, ranking.json, ranking.csv and gate_end.json (its
GATE at the end, written when the run finishes) are all that the report and a resumed study
read. Copy the workdir without checkpoints to move it (`rsync -a --exclude=checkpoints`); a run
that had not finished restarts there unless its checkpoints come along too.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

import numpy as np  # noqa: E402

from close_jax import budget, cpu_workers, gate_presets, optim, train, xla_flags  # noqa: E402
from close_jax.analysis import gate_similarity, power, ranking_study  # noqa: E402
from close_jax.benchmarks import gt_workers  # noqa: E402
from close_jax.benchmarks.gt_runs import RunsFile  # noqa: E402
from close_jax.data import idx  # noqa: E402
from close_jax.metric_writer import write_atomic  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402

EVAL_SEED = nb201_config.get_config().eval.seed  # the arms' evaluation seed (GATE draws)
BASE_ARMS = {
  'vanilla': {'method': 'vanilla'},
  'close': {},
  'close_s': {'method': 'close_s'},
  'close_learning': gate_presets.LEARNING_GATE,  # beyond aw_nas: a GATE that learns
}
RERANKS = {'close_m4', 'close_mode'}  # CLOSE's checkpoint ranked again, not trained again
PAIRS = (
  ('close', 'vanilla'),
  ('close_s', 'vanilla'),
  ('close', 'close_random'),
  ('close_m4', 'close'),
  ('close_mode', 'close'),
  ('close_learning', 'close'),
  ('close_learning', 'close_random'),
)


def _log(message: str) -> None:
  print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--data-dir', default=idx.DEFAULT_DIR)
  p.add_argument('--image-size', type=int, default=16)
  p.add_argument('--train-size', type=int, default=10000, help='training images (both kinds)')
  p.add_argument(
    '--rank-size',
    type=int,
    default=2500,
    help='held-out images the supernet ranks on (2500: two disjoint halves of 5000 rank 200 '
    'cells alike at tau 0.88, docs/ranking_quality.md)',
  )
  p.add_argument('--channels', type=int, default=8)
  p.add_argument('--cells-per-stage', type=int, default=1)
  p.add_argument('--batch-size', type=int, default=256)
  p.add_argument('--num-archs', type=int, default=200)
  p.add_argument('--gt-seeds', type=int, default=2, help='standalone seeds per cell')
  p.add_argument('--gt-epochs', type=int, default=4, help='standalone budget (see --pilot)')
  p.add_argument(
    '--gt-batch',
    type=int,
    default=1,
    help='runs trained at once, vmapped (1: one by one; batching measured slower on XLA:CPU)',
  )
  p.add_argument(
    '--workers',
    type=int,
    default=1,
    help='CPU processes training side by side, each on its own cores: ground-truth runs '
    '(with --gt-batch=1) and supernets',
  )
  p.add_argument('--pilot', action='store_true', help='only the ground-truth budget pilot')
  p.add_argument(
    '--gt-only', action='store_true', help='only the ground truth and its seed-to-seed tau'
  )
  p.add_argument('--pilot-cells', type=int, default=40)
  p.add_argument('--pilot-budgets', default='4,8,16', help='standalone epochs to compare')
  p.add_argument(
    '--epochs',
    default='100,400',
    help='supernet budgets in epochs, each in WORKDIR/e<E> (the schedule scales to each)',
  )
  p.add_argument('--seeds', type=int, default=5, help='supernet seeds per arm (see the power)')
  p.add_argument(
    '--curve-cells',
    type=int,
    default=100,
    help='rankings along the learning curve score a seeded subset of this many cells (0: all); '
    'the final ranking scores them all',
  )
  p.add_argument('--gate-samples', type=int, default=4, help='M of the close_m4 arm')
  p.add_argument(
    '--eval-seeds',
    type=int,
    default=3,
    help='CLOSE checkpoints are ranked with this many evaluation seeds (GATE draws)',
  )
  p.add_argument(
    '--extra-arm',
    action='append',
    default=['close_random:close.gate=random'],
    help='NAME:KEY=VALUE[,KEY=VALUE] (repeatable), e.g. close_copy:close.wit=copy',
  )
  p.add_argument('--bootstrap', type=int, default=1000)
  p.add_argument(
    '--report-only',
    action='store_true',
    help='train nothing: the report from WORKDIR over the supernet seeds every arm has finished '
    '(with --pilot, over the cells done so far)',
  )
  return p.parse_args(argv)


def _parse_value(text: str):
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def arms_of(args) -> dict[str, dict]:
  arms = dict(BASE_ARMS)
  for spec in args.extra_arm:
    name, _, body = spec.partition(':')
    if not name or not body or '=' not in body:
      raise SystemExit(f'error: --extra-arm {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE]')
    arms[name] = dict(
      (k.strip(), _parse_value(v.strip())) for k, v in (kv.split('=', 1) for kv in body.split(','))
    )
  return arms


def data_spec(args) -> dict:
  return {
    'data_dir': args.data_dir,
    'train_size': args.train_size,
    'image_size': args.image_size,
    'rank_size': args.rank_size,
  }


def study_spec(args) -> dict:
  """What every run of one study shares, written to WORKDIR/study.json by its first run: the
  cells, the data, the network and batch (ground truth and supernets alike) and how supernets
  rank. The runs file and the run folders are keyed by cell, seed and epochs only, so a rerun
  with another value would silently mix two studies."""
  spec = {k: v for k, v in data_spec(args).items() if k != 'data_dir'}  # the same files anywhere
  keys = ('num_archs', 'channels', 'cells_per_stage', 'batch_size', 'curve_cells', 'gate_samples')
  if not args.pilot:  # the ground truth the supernets rank against (a pilot sets its own budgets)
    keys += ('gt_seeds', 'gt_epochs')
  return {**spec, **{k: getattr(args, k) for k in keys}}


def study_file(args) -> str:
  return os.path.join(args.workdir, 'study.json')


def check_study(args) -> None:
  """Refuses, before any work, a rerun whose study_spec differs from the one the workdir was
  started with (a workdir from before study.json, or a key, is adopted by its next run). A
  --report-only without the study's --gt-seeds would otherwise rank against another mean."""
  saved = _saved_study(args)
  spec = study_spec(args)
  changed = [k for k in spec if k in saved and saved[k] != spec[k]]
  if changed:
    given = ', '.join(f'--{k.replace("_", "-")}={spec[k]}' for k in changed)
    started = ', '.join(f'{saved[k]}' for k in changed)
    raise SystemExit(
      f'error: {given}: expected {started}, the value(s) {args.workdir} was started with '
      f'({study_file(args)}); use another --workdir for another study'
    )


def _saved_study(args) -> dict:
  if not os.path.exists(study_file(args)):
    return {}
  with open(study_file(args)) as f:
    return json.load(f)


def load_data(args):
  return gt_workers.idx_split(**data_spec(args))


# --- 1. ground truth ------------------------------------------------------------------------------


def _protocol(args, epochs: int):
  from close_jax.benchmarks.nb201_gt_trainer import Protocol

  return Protocol(
    channels=args.channels,
    cells_per_stage=args.cells_per_stage,
    epochs=epochs,
    batch_size=args.batch_size,
    crop_padding=2,
  )


def worker_trainer(args, epochs: int):
  """What each --workers process builds its trainer with (picklable)."""
  return functools.partial(gt_workers.idx_standalone, data_spec(args), _protocol(args, epochs))


def train_runs(args, jobs: list[tuple[str, int]], epochs: int) -> dict[tuple[str, int], float]:
  """Accuracies of (cell, seed) `jobs` trained standalone for `epochs`: --gt-batch at a time in
  one compiled program, or one at a time in each of --workers CPU processes
  (`close_jax.benchmarks.gt_workers`). Every finished run is appended to WORKDIR/gt_runs.csv (so
  a killed run resumes there) and logged to WORKDIR/gt_metrics.jsonl."""
  runs_file = RunsFile(os.path.join(args.workdir, 'gt_runs.csv'))
  runs_file.start()
  runs = runs_file.read()
  todo = [(a, s) for a, s in jobs if (a, s, epochs) not in runs]
  if todo:
    start, done = time.perf_counter(), 0

    def progress(finished: list[tuple[str, int, float]]) -> None:
      nonlocal done
      for a, s, acc in finished:
        runs[(a, s, epochs)] = round(float(acc), 4)  # as the file holds it: resumes agree
      done += len(finished)
      elapsed = time.perf_counter() - start
      record = {
        'epochs': epochs,
        'runs_done': len(jobs) - len(todo) + done,
        'runs_total': len(jobs),
        'elapsed_s': round(elapsed, 1),
        'runs_per_hour': round(3600 * done / elapsed, 1),
        'eta_min': round(elapsed / done * (len(todo) - done) / 60, 1),
        'batch_mean_accuracy': round(float(np.mean([acc for *_, acc in finished])), 3),
      }
      with open(os.path.join(args.workdir, 'gt_metrics.jsonl'), 'a') as f:
        f.write(json.dumps(record) + '\n')
      _log(
        f'ground truth {record["runs_done"]}/{len(jobs)} runs ({epochs} epochs): '
        f'{record["runs_per_hour"]:.0f} runs/h, ETA {record["eta_min"]:.1f} min'
      )

    if args.workers > 1:
      _log(
        f'ground truth: {len(todo)} of {len(jobs)} runs to train at {epochs} epochs, '
        f'{args.workers} CPU worker processes'
      )
      gt_workers.train_parallel(
        worker_trainer(args, epochs),
        todo,
        epochs,
        runs_file.path,
        args.workers,
        on_run=lambda a, s, acc: progress([(a, s, acc)]),
      )
    else:
      _train_in_process(args, todo, epochs, runs_file, progress)
  return {(a, s): runs[(a, s, epochs)] for a, s in jobs}


def _train_in_process(args, todo, epochs: int, runs_file: RunsFile, progress) -> None:
  """--gt-batch runs at a time in this process (padded to a fixed A: one compile)."""
  from close_jax.benchmarks.nb201_gt_trainer import StandaloneTrainer

  trainer = StandaloneTrainer(_protocol(args, epochs), *load_data(args))
  size = args.gt_batch
  _log(f'ground truth: {len(todo)} runs to train at {epochs} epochs, {size} at once')
  for first in range(0, len(todo), size):
    batch = todo[first : first + size]
    padded = batch + [batch[-1]] * (size - len(batch))
    if size == 1:  # alone: `lax.switch` edges run only the chosen op (same keys and result)
      accs = np.array([trainer.accuracy(nb201.parse(batch[0][0]), batch[0][1])])
    else:
      accs = trainer.train_batch(
        np.stack([nb201.parse(a) for a, _ in padded]), np.array([s for _, s in padded])
      )
    finished = [(a, s, float(acc)) for (a, s), acc in zip(batch, accs[: len(batch)], strict=True)]
    runs_file.append([(a, s, epochs, acc) for a, s, acc in finished])
    progress(finished)


def ground_truth(args, archs: np.ndarray) -> dict[int, dict[str, float]]:
  """{seed: {cell: accuracy}} of `archs` x --gt-seeds at --gt-epochs; WORKDIR/ground_truth.csv
  (atomic, once all are done) holds the mean over seeds, which the supernets rank against."""
  names = [nb201.to_str(a) for a in archs]
  runs = train_runs(args, [(a, s) for a in names for s in range(args.gt_seeds)], args.gt_epochs)
  per_seed = {s: {a: runs[(a, s)] for a in names} for s in range(args.gt_seeds)}
  mean = {a: float(np.mean([per_seed[s][a] for s in per_seed])) for a in names}
  write_atomic(
    os.path.join(args.workdir, 'ground_truth.csv'),
    lambda f: f.writelines(['arch,accuracy\n'] + [f'{a},{v:.4f}\n' for a, v in mean.items()]),
  )
  return per_seed


def read_ground_truth(args, archs: np.ndarray) -> dict[int, dict[str, float]]:
  """What `ground_truth` returns, from WORKDIR/gt_runs.csv only (--report-only)."""
  runs = RunsFile(os.path.join(args.workdir, 'gt_runs.csv')).read()
  names = [nb201.to_str(a) for a in archs]
  missing = [
    (a, s) for a in names for s in range(args.gt_seeds) if (a, s, args.gt_epochs) not in runs
  ]
  if missing:
    raise SystemExit(
      f'error: {args.workdir}/gt_runs.csv lacks {len(missing)} runs at --gt-epochs='
      f'{args.gt_epochs}, e.g. {missing[0]}'
    )
  return {s: {a: runs[(a, s, args.gt_epochs)] for a in names} for s in range(args.gt_seeds)}


def seed_agreement(per_seed: dict[int, dict[str, float]], num: int) -> dict:
  """Kendall's tau between standalone seeds 0 and 1 over all cells, with its bootstrap interval
  (the noise ceiling of one seed; the mean of all seeds agrees better with the truth: the
  variance split's perfect-ranker tau is the ceiling of a supernet against that mean)."""
  names = list(per_seed[0])
  runs = [[per_seed[s][a] for a in names] for s in sorted(per_seed)]
  agreement = ranking_study.noise_ceiling(runs[0], runs[1], num)
  agreement['variance'] = ranking_study.seed_variance(*runs)  # split from every seed
  return agreement


def pilot_cells(args, archs: np.ndarray) -> np.ndarray:
  """A seeded uniform subset of the study's cells (so the budget chosen reuses its runs)."""
  if not 2 < args.pilot_cells <= len(archs):
    raise SystemExit(f'error: --pilot-cells={args.pilot_cells}: expected 3..{len(archs)}')
  pick = np.random.default_rng(1).choice(len(archs), args.pilot_cells, replace=False)
  return archs[np.sort(pick)]


def pilot(args, archs: np.ndarray) -> dict:
  """Seed-to-seed tau of --pilot-cells cells x 2 seeds at each --pilot-budgets epochs: pick the
  cheapest budget whose tau is >= 0.7 (the interval says how sure), then run the study at it.
  Each budget's variance split (`ranking_study.seed_variance`) says why a budget falls short: too
  much seed noise, or too little difference between cells. With --report-only nothing is trained
  and each budget is reported over the cells whose two seeds are in WORKDIR/gt_runs.csv, so a
  pilot can be judged while it runs."""
  cells = [nb201.to_str(a) for a in pilot_cells(args, archs)]
  out = {'num_cells': len(cells), 'budgets': {}}
  done = RunsFile(os.path.join(args.workdir, 'gt_runs.csv')).read() if args.report_only else {}
  for epochs in _budgets(args.pilot_budgets):
    start = time.perf_counter()
    if args.report_only:
      have = [a for a in cells if (a, 0, epochs) in done and (a, 1, epochs) in done]
      if len(have) < 3:
        _log(f'pilot {epochs} epochs: {len(have)} of {len(cells)} cells have both seeds; skipped')
        continue
      runs = {(a, s): done[(a, s, epochs)] for a in have for s in (0, 1)}
    else:
      have = cells
      runs = train_runs(args, [(a, s) for a in cells for s in (0, 1)], epochs)
    agreement = seed_agreement({s: {a: runs[(a, s)] for a in have} for s in (0, 1)}, args.bootstrap)
    accs = np.array(list(runs.values()))
    agreement.update(mean_accuracy=float(accs.mean()), std_accuracy=float(accs.std()))
    agreement['wall_s_this_run'] = round(time.perf_counter() - start, 1)
    out['budgets'][epochs] = agreement
    low, high = agreement['ci95']
    _log(
      f'pilot {epochs} epochs: seed-to-seed tau {agreement["kendall_tau"]:+.3f} '
      f'[{low:+.3f}, {high:+.3f}] over {len(have)} cells'
    )
  table = pilot_table(out)
  print(table)
  write_atomic(os.path.join(args.workdir, 'pilot.json'), lambda f: json.dump(out, f, indent=1))
  write_atomic(os.path.join(args.workdir, 'pilot.md'), lambda f: f.write(table))
  return out


def pilot_table(out: dict) -> str:
  """The pilot's markdown table and the sentence that reads its variance columns."""
  lines = [
    '| standalone epochs | cells | seed-to-seed tau [95% CI] | mean accuracy | seed sd | '
    'between-cell sd | ratio | predicted tau, normal / simulated | perfect ranker vs two / '
    'three-seed mean |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  needed = None
  for epochs, entry in out['budgets'].items():
    low, high = entry['ci95']
    v = entry['variance']
    three = ranking_study.perfect_ranker_tau(v['reliability'], 3)
    needed = v['needed_ratio'], v['target_tau']
    lines.append(
      f'| {epochs} | {entry["num_cells"]} of {out["num_cells"]} | {entry["kendall_tau"]:+.3f} '
      f'[{low:+.3f}, {high:+.3f}] | {entry["mean_accuracy"]:.2f}% | {v["seed_sd"]:.2f} | '
      f'{v["between_sd"]:.2f} | {v["ratio"]:.2f} | {v["predicted_tau"]:+.3f} / '
      f'{v["simulated_tau"]:+.3f} | '
      f'{v["perfect_ranker_tau"]:+.3f} / {three:+.3f} |'
    )
  if needed:
    lines.append(
      f"\nseed sd: one run's noise around its cell's mean (accuracy points); between-cell sd: "
      f"the spread of the cells' true means; ratio = between / seed, and tau {needed[1]} between "
      f'two seeds needs a ratio of {needed[0]:.2f}; predicted tau: (2/pi) arcsin(reliability) for '
      "normal effects, and simulated on the cells' own spread and the runs' own deviations "
      '(nearer when a few cells or runs lie far from the rest: `ranking_study.simulated_ceiling`); '
      'perfect ranker: the tau of a ranker '
      'that knew every true mean (normal theory), against the '
      'mean of two seeds, and of three (`--gt-seeds=3`; '
      '`close_jax.analysis.ranking_study.seed_variance`).'
    )
  return '\n'.join(lines) + '\n'


def _budgets(text: str, flag: str = '--pilot-budgets') -> list[int]:
  try:
    budgets = [int(b) for b in text.split(',')]
  except ValueError:
    budgets = []
  if not budgets or min(budgets) < 1 or len(set(budgets)) < len(budgets):
    raise SystemExit(f'error: {flag}={text!r}: expected distinct epochs like 2,4,8')
  return budgets


# --- 2. supernets ---------------------------------------------------------------------------------


def budget_args(args, epochs: int) -> argparse.Namespace:
  """`args` for the supernets of one budget: `epochs` supernet epochs, their runs and report in
  WORKDIR/e<epochs> (the ground truth, shared by every budget, stays in WORKDIR)."""
  return argparse.Namespace(
    **{**vars(args), 'epochs': epochs, 'workdir': os.path.join(args.workdir, f'e{epochs}')}
  )


def supernet_config(args, arm: dict, seed: int, gt_csv: str):
  config = nb201_config.get_config()  # the paper's setting, then scaled to --epochs
  config.seed = seed
  config.data.name = 'idx'
  config.data.idx_dir = args.data_dir
  config.data.idx_train_size = args.train_size
  config.data.idx_rank_size = args.rank_size
  config.data.image_size = args.image_size
  config.data.crop_padding = 2
  config.model.channels = args.channels
  config.model.cells_per_stage = args.cells_per_stage
  config.batch_size = args.batch_size
  config.eval.eval_epochs = tuple(range(200, config.num_epochs + 1, 200))
  config.eval.at_switches = True
  config.eval.ground_truth = gt_csv
  config.eval.num_archs = 0
  config.eval.curve_num_archs = args.curve_cells  # the curve's points cost a fraction
  config.eval.batch_size = min(500, args.rank_size)  # one batch when the ranking set is smaller
  config.budget_epochs = args.epochs
  for key, value in arm.items():
    group, _, name = key.rpartition('.')
    node = config
    for part in group.split('.') if group else ():
      node = node[part]
    node[name] = value
  return config


def train_arms(args, arms: dict, gt_csv: str) -> None:
  """Every arm x --seeds supernet not yet finished (with CLOSE's re-rankings), one after another
  or in --workers CPU processes (`close_jax.cpu_workers`); each resumes from its checkpoint."""
  jobs = [(n, s) for s in range(args.seeds) for n in arms if not _arm_done(args, n, s)]
  if args.workers > 1 and jobs:
    _log(f'supernets: {len(jobs)} runs in {args.workers} CPU worker processes')
    cpu_workers.map_unordered(
      functools.partial(arm_runner, args, arms, gt_csv),
      jobs,
      args.workers,
      on_result=lambda job, _: _log(f'supernet {job[0]} seed {job[1]} done'),
      what='supernet worker',
    )
  else:
    for job in jobs:
      train_arm(args, arms, gt_csv, job)


def arm_runner(args, arms: dict, gt_csv: str):
  """What each --workers process runs the supernet jobs with (picklable)."""
  return functools.partial(train_arm, args, arms, gt_csv)


def train_arm(args, arms: dict, gt_csv: str, job: tuple[str, int]) -> str:
  """Trains arm `name` with `seed` in WORKDIR/runs/<name>_s<seed> unless it finished; CLOSE's
  checkpoint is then re-ranked with more GATE samples and other evaluation seeds."""
  name, seed = job
  workdir = _run_dir(args, name, seed)
  if not _trained(args, workdir):
    _log(f'supernet {name} seed {seed} -> {workdir}')
    train.train_and_evaluate(supernet_config(args, arms[name], seed, gt_csv), workdir)
  gate_record(workdir)  # while the checkpoint is at hand
  if name == 'close':
    rerank(args, 'close_m4', {'eval.gate_samples': args.gate_samples}, seed, gt_csv)
    for k in range(1, args.eval_seeds):  # other GATE draws of the same checkpoint
      rerank(args, f'close_e{k}', {'eval.seed': EVAL_SEED + k}, seed, gt_csv)
    rerank(args, 'close_mode', {'eval.gate_assignment': 'mode'}, seed, gt_csv)  # no draw at all
  return workdir


def _rerank_names(args) -> list[str]:
  return ['close_m4'] + [f'close_e{k}' for k in range(1, args.eval_seeds)] + ['close_mode']


def _run_dir(args, name: str, seed: int) -> str:
  return os.path.join(args.workdir, 'runs', f'{name}_s{seed}')


def _trained(args, workdir: str) -> bool:
  """Trained to the budget and ranked there, the ranking recorded. ranking.json (written after
  ranking.csv) names the epoch it ranked: a run killed after its last epoch and before its final
  ranking still holds an earlier ranking, which must not be taken for the final one; one killed
  before rankings.jsonl got the final record would miss its curve's last point (a rerun ranks
  again and records it)."""
  path = os.path.join(workdir, 'ranking.json')
  if not os.path.exists(path) or not _finished(workdir, args):
    return False
  with open(path) as f:
    ranked = json.load(f).get('epoch')
  recorded = _jsonl(os.path.join(workdir, 'rankings.jsonl'))
  final = {'epoch': args.epochs, 'when': 'epoch'}
  return ranked == args.epochs and any(final.items() <= r.items() for r in recorded)


def _arm_done(args, name: str, seed: int) -> bool:
  if not _trained(args, _run_dir(args, name, seed)):
    return False
  reranks = _rerank_names(args) if name == 'close' else []
  return all(os.path.exists(os.path.join(_run_dir(args, r, seed), 'ranking.csv')) for r in reranks)


def seeds_done(args, arms: dict) -> int:
  """How many supernet seeds, counted from 0, every arm has finished, with CLOSE's re-rankings
  by other evaluation seeds (the noise sources need them): what `--report-only` reports on while
  the study runs. The other re-rankings are rows of the report where every such seed has them."""

  def done(seed: int) -> bool:
    draws = [f'close_e{k}' for k in range(1, args.eval_seeds)]
    return all(_trained(args, _run_dir(args, name, seed)) for name in arms) and all(
      os.path.exists(os.path.join(_run_dir(args, name, seed), 'ranking.csv')) for name in draws
    )

  count = 0
  while count < args.seeds and done(count):
    count += 1
  return count


def rerank(args, name: str, overrides: dict, seed: int, gt_csv: str) -> None:
  """Ranks CLOSE's checkpoint of `seed` again with `overrides` (evaluate mode, in a copy of its
  workdir: runs/<name>_s<seed>), unless that ranking exists."""
  target = os.path.join(args.workdir, 'runs', f'{name}_s{seed}')
  if os.path.exists(os.path.join(target, 'ranking.csv')):
    return
  _log(f'close seed {seed} re-ranked with {overrides} -> {target}')
  evaluate_copy(
    os.path.join(args.workdir, 'runs', f'close_s{seed}'),
    target,
    supernet_config(args, overrides, seed, gt_csv),
  )


def evaluate_copy(source: str, target: str, config) -> None:
  """Ranks the checkpoint of run `source` with `config` (evaluate mode) in a fresh copy of its
  workdir at `target`. The copy leaves out `source`'s ranking.csv: the copy's own is written when
  its evaluation ends, so a kill before then leaves none and the ranking is not taken for done."""
  shutil.rmtree(target, ignore_errors=True)
  shutil.copytree(source, target, ignore=shutil.ignore_patterns('ranking.csv'))
  config.mode = 'evaluate'
  train.train_and_evaluate(config, target)


def _finished(workdir: str, args) -> bool:
  records = _jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return bool(records) and records[-1]['epoch'] + 1 == args.epochs


def _jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


# --- 3. report ------------------------------------------------------------------------------------


def _scores(workdir: str, archs: list[str]) -> np.ndarray:
  with open(os.path.join(workdir, 'ranking.csv'), newline='') as f:
    table = {row['arch']: float(row['supernet_score']) for row in csv.DictReader(f)}
  missing = [a for a in archs if a not in table]
  if missing:
    raise SystemExit(f'error: {workdir}/ranking.csv lacks {len(missing)} cells, e.g. {missing[0]}')
  return np.asarray([table[a] for a in archs])


def pair_power(scores_a: list, scores_b: list, truth: np.ndarray, target: float = 0.05) -> dict:
  """The power of one paired tau comparison: over supernet seeds (t interval, seeds for
  +-`target`, difference found with 80% probability) when both arms have >= 2 seeds, and over
  the ground-truth cells (jackknife of the seed-mean difference, and the cells for +-`target`)."""
  out = {}
  if len(scores_a) >= 2 and len(scores_a) == len(scores_b):
    tau = [
      [ranking_study.metrics(s, truth)['kendall_tau'] for s in arm] for arm in (scores_a, scores_b)
    ]
    out['seeds'] = power.seed_statement(tau[0], tau[1], target)
  _, se = power.jackknife_tau_difference(np.stack(scores_a), np.stack(scores_b), truth)
  half = power.cell_half_width(se, len(truth), len(truth))
  out['cells'] = {
    'se': se,
    'half_width': half,
    'cells_for_target': int(np.ceil(len(truth) * (half / target) ** 2)),
  }
  return out


def report(args, arms: dict, per_seed: dict[int, dict[str, float]]) -> dict:
  names = list(per_seed[0])
  gt = np.mean([[runs[a] for a in names] for runs in per_seed.values()], axis=0)
  runs = os.path.join(args.workdir, 'runs')
  reranks = [  # in every seed reported (a study begun before one was added may lack it)
    name
    for name in sorted(RERANKS)
    if all(
      os.path.exists(os.path.join(runs, f'{name}_s{s}', 'ranking.csv')) for s in range(args.seeds)
    )
  ]
  for name in sorted(RERANKS - set(reranks)):
    _log(f'{name}: not in the report, some of the {args.seeds} seeds lack its ranking')
  scores = {
    arm: [_scores(os.path.join(runs, f'{arm}_s{s}'), names) for s in range(args.seeds)]
    for arm in [*arms, *reranks]
  }
  draws = [scores['close']] + [
    [_scores(os.path.join(runs, f'close_e{k}_s{s}'), names) for s in range(args.seeds)]
    for k in range(1, args.eval_seeds)
  ]
  archs = np.stack([nb201.parse(a) for a in names])
  params, flops = ranking_study.cell_costs(
    archs, args.channels, args.cells_per_stage, args.image_size
  )
  scores['params'], scores['flops'] = [params.astype(float)], [flops.astype(float)]
  pairs = tuple(p for p in PAIRS if p[0] in scores and p[1] in scores)
  stats = ranking_study.bootstrap(scores, gt, args.bootstrap, seed=0, pairs=pairs)
  stats['noise_ceiling'] = seed_agreement(per_seed, args.bootstrap)
  if args.seeds >= 2 and args.eval_seeds >= 2:  # a spread over each needs two of each
    stats['noise_sources'] = ranking_study.noise_sources(np.asarray(draws), gt)
  for pair, entry in stats['differences'].items():
    a, b = pair.split(' - ')
    entry['power'] = pair_power(scores[a], scores[b], gt)
  stats['history'] = {
    arm: [_jsonl(os.path.join(runs, f'{arm}_s{s}', 'rankings.jsonl')) for s in range(args.seeds)]
    for arm in arms
  }
  gates = {arm: gate_at_end(runs, arm, args.seeds) for arm in arms}
  stats['gate'] = {arm: entry for arm, entry in gates.items() if entry}
  config = supernet_config(args, {}, 0, '')
  budget.scale_to_budget(config)
  stats['schedule'] = {
    'epochs': config.num_epochs,
    'cl_schedule': list(config.close.cl_schedule),
    'lr_restart_epochs': list(config.close.lr_restart_epochs),
    'close_s_switch_epoch': config.close.close_s_switch_epoch,
    'plateau_patience_steps': config.optim.get('plateau_patience_steps', 0),
    'plateau_patience_epochs': optim.patience_epochs(
      config.optim, args.train_size // args.batch_size
    ),
  }
  stats['setup'] = {k: v for k, v in vars(args).items() if k != 'report_only'}
  stats['ground_truth'] = {
    'seeds': len(per_seed),
    'epochs': args.gt_epochs,
    'mean': float(gt.mean()),
    'min': float(gt.min()),
    'max': float(gt.max()),
    'num_cells': len(gt),
  }
  write_atomic(os.path.join(args.workdir, 'summary.json'), lambda f: json.dump(stats, f, indent=1))
  table = markdown_table(stats)
  write_atomic(os.path.join(args.workdir, 'table.md'), lambda f: f.write(table))
  print(table)
  plot(stats, os.path.join(args.workdir, 'ranking_quality.png'))
  return stats


def gate_at_end(runs: str, arm: str, seeds: int) -> dict | None:
  """Each seed's GATE at the end of training: its spread over architectures and edges (0: one
  distribution everywhere; the official GATE ends near 1e-6 in close_jax's runs) and the summed
  KL over 3x3 convolutions of a structurally different and a similar NB201 pair
  (`gate_similarity.NB201_PAIRS`; the CLOSE paper reports ~5 and ~0.5 on NB-301). None for an
  arm without a learned GATE (its runs log no spread)."""
  out = {'spread': [], 'kl_different': [], 'kl_similar': []}
  for seed in range(seeds):
    record = gate_record(os.path.join(runs, f'{arm}_s{seed}'))
    if record is None:
      return None
    for key in out:
      out[key].append(record[key])
  return out


def gate_record(workdir: str) -> dict | None:
  """The run's GATE at its last epoch (`gate_at_end`'s figures for one seed), kept in
  WORKDIR/gate_end.json: the report then needs no checkpoint, so a finished study can be carried
  to another machine without them (see the module docstring). A record of an earlier epoch than
  the run's last is computed again. None for a run without a learned GATE."""
  last = _jsonl(os.path.join(workdir, 'metrics.jsonl'))[-1]
  if last.get('gate_spread') is None:
    return None
  path = os.path.join(workdir, 'gate_end.json')
  if os.path.exists(path):
    with open(path) as f:
      record = json.load(f)
    if record['epoch'] == last['epoch']:
      return record
  supernet, params, _ = gate_similarity.restore_gate(workdir)
  kls = gate_similarity.nb201_pair_kls(supernet, params)
  record = {
    'epoch': last['epoch'],
    'spread': last['gate_spread'],
    'kl_different': kls['different'],
    'kl_similar': kls['similar'],
  }
  write_atomic(path, lambda f: json.dump(record, f, indent=1))
  return record


def gate_table(gates: dict) -> str:
  """The GATE at the end, per arm with a learned GATE: spread and pair KLs (mean over seeds)."""
  lines = [
    '| arm with a GATE | end spread per seed | summed KL over 3x3 convs, different / similar pair '
    '(mean over seeds) |',
    '|---|---|---|',
  ]
  for arm, entry in gates.items():
    spreads = ' / '.join(f'{v:.2g}' for v in entry['spread'])
    lines.append(
      f'| {arm} | {spreads} | {np.mean(entry["kl_different"]):.3g} / '
      f'{np.mean(entry["kl_similar"]):.3g} |'
    )
  return '\n'.join(lines)


def _ci(entry: dict) -> str:
  low, high = entry['ci95']
  return f'{entry["mean"]:+.3f} [{low:+.3f}, {high:+.3f}]'


def markdown_table(stats: dict) -> str:
  keys = [k for k in next(iter(stats['arms'].values())) if k != 'spearman_rho']
  lines = [
    '| arm | ' + ' | '.join(f'{k} [95% CI]' for k in keys) + ' | tau seed std |',
    '|---|' + '---|' * (len(keys) + 1),
  ]
  for arm, entry in stats['arms'].items():
    cells = ' | '.join(_ci(entry[k]) for k in keys)
    lines.append(f'| {arm} | {cells} | {entry["kendall_tau"]["seed_std"]:.3f} |')
  if 'params' in stats['arms']:
    lines += [
      '',
      "params / flops: rank by the cell's parameter count or FLOPs. Many cells share one, so "
      "their P@top breaks those ties by the cells' order in the sample (tau-b counts ties as "
      'ties): compare their tau, not their P@top.',
    ]
  lines += ['', power_statement(stats)]
  lines += [
    '',
    '| paired difference | ' + ' | '.join(keys) + ' | tau: seeds +- (n) | found w.p. 0.8 | '
    'seeds for +-0.05 | tau: cells +- | cells for +-0.05 | tau resolved |',
    '|---|' + '---|' * (len(keys) + 6),
  ]
  for pair, entry in stats['differences'].items():
    seeds, cells = entry['power'].get('seeds'), entry['power']['cells']
    seed_cols = (
      f'{seeds["half_width"]:.3f} ({seeds["n"]}) | {seeds["detectable_80"]:.3f} | '
      f'{seeds["seeds_for_target"]}'
      if seeds
      else '- | - | -'
    )
    lines.append(
      f'| {pair} | '
      + ' | '.join(_ci(entry[k]) for k in keys)
      + f' | {seed_cols} | {cells["half_width"]:.3f} | {cells["cells_for_target"]} | '
      + f'{resolved(entry)} |'
    )
  lines += ['', power_statement(stats)]
  if 'noise_sources' in stats:
    lines += ['', noise_statement(stats['noise_sources'])]
  if stats.get('gate'):
    lines += ['', gate_table(stats['gate'])]
  ceiling = stats['noise_ceiling']
  low, high = ceiling['ci95']
  lines += [
    '',
    f'Noise ceiling (tau between standalone seeds 0 and 1, {ceiling["num_cells"]} cells): '
    f'{ceiling["kendall_tau"]:+.3f} [{low:+.3f}, {high:+.3f}]'
    + (variance_statement(ceiling['variance']) if 'variance' in ceiling else ''),
  ]
  return '\n'.join(lines) + '\n'


def resolved(entry: dict) -> str:
  """Whether a paired tau difference is resolved: 'yes' when both its interval over cells (the
  bootstrap) and its interval over training seeds (t) exclude zero, '-' without a seed interval.
  Each answers another question (other cells; other training runs), so both must agree."""
  seeds = entry['power'].get('seeds')
  if not seeds:
    return '-'
  over_cells, over_seeds = entry['kendall_tau']['ci95'], seeds['ci']
  return 'yes' if all(low > 0 or high < 0 for low, high in (over_cells, over_seeds)) else 'no'


def variance_statement(v: dict) -> str:
  """The noise ceiling's variance split, in words (see `ranking_study.seed_variance`)."""
  return (
    f"; one run's seed sd {v['seed_sd']:.2f} points against a between-cell sd of "
    f'{v["between_sd"]:.2f} (from {v.get("seeds", 2)} seeds), so a ranker that knew every '
    f"cell's true mean would reach tau {v['simulated_perfect_ranker_tau']:+.3f} against the "
    f"{v.get('mean_of', 2)}-seed mean (simulated on the cells' own spread and the runs' own "
    f'deviations; {v["perfect_ranker_tau"]:+.3f} for normal cell effects and noise).'
  )


def noise_statement(noise: dict) -> str:
  """One line: how much of CLOSE's tau spread the evaluation's GATE draws make."""
  return (
    f"CLOSE's tau, {noise['eval_seeds']} evaluation seeds x {noise['train_seeds']} training "
    f'seeds: sd over evaluation seeds (same checkpoint) {noise["sd_over_eval_seeds"]:.3f}, over '
    f'training seeds (same evaluation seed) {noise["sd_over_train_seeds"]:.3f}; rankings agree '
    f'at tau {noise["agreement_eval_seeds"]:+.3f} between evaluation seeds and '
    f'{noise["agreement_train_seeds"]:+.3f} between training seeds.'
  )


def power_statement(stats: dict) -> str:
  """One line: the smallest tau difference this study can see, pooled over its pairs of
  independently trained arms. A re-ranking of CLOSE's own checkpoint (`close_m4`, `close_mode`)
  differs from CLOSE by the GATE's draws only; its small seed sd would flatter the pool."""
  trained = {
    pair: e for pair, e in stats['differences'].items() if not set(pair.split(' - ')) & RERANKS
  }
  seeds = [e['power']['seeds'] for e in trained.values() if 'seeds' in e['power']]
  cells = [e['power']['cells']['half_width'] for e in trained.values()]
  if not seeds:
    return 'Power: fewer than 2 supernet seeds, no interval over seeds.'
  sd = float(np.sqrt(np.mean([s['sd'] ** 2 for s in seeds])))
  n = seeds[0]['n']
  return (
    f'Power: a paired tau difference has a 95% interval of +-{power.half_width(sd, n):.3f} over '
    f'{n} supernet seeds (pooled seed sd {sd:.3f}; +-0.05 needs {power.seeds_needed(sd)} seeds) '
    f'and +-{max(cells):.3f} over the {stats["ground_truth"]["num_cells"]} cells (jackknife, '
    f'widest pair); a true difference of {power.detectable_difference(sd, n):.3f} is found with '
    'probability 0.8 (pairs of separately trained arms; a re-ranking has its own row).'
  )


def plot(stats: dict, path: str) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  arms = stats['arms']
  names = list(arms)
  means = [arms[n]['kendall_tau']['mean'] for n in names]
  errors = np.array(
    [
      [m - arms[n]['kendall_tau']['ci95'][0], arms[n]['kendall_tau']['ci95'][1] - m]
      for n, m in zip(names, means, strict=True)
    ]
  ).T
  axes[0].bar(names, means, yerr=errors, capsize=4, color='tab:blue', alpha=0.7)
  ceiling = stats['noise_ceiling']
  axes[0].axhline(ceiling['kendall_tau'], color='k', ls='--', label='standalone seeds 0 vs 1')
  if 'variance' in ceiling:
    v = ceiling['variance']
    axes[0].axhline(
      v['simulated_perfect_ranker_tau'],
      color='k',
      ls=':',
      label=f'perfect ranker vs the {v.get("mean_of", 2)}-seed mean',
    )
  axes[0].set(ylabel="Kendall's tau (95% CI over cells)", title='Ranking quality per arm')
  axes[0].tick_params(axis='x', rotation=30)
  axes[0].legend()
  subsets = False
  for arm, runs in stats['history'].items():
    records = [r for run in runs for r in run]
    # With --curve-cells the curve's rankings score a subset and the final one all cells: their
    # taus are of different cell sets, so the final one is a separate marker, not the line's end.
    full = max((r.get('num_archs', 0) for r in records), default=0)
    mixed = any(r.get('num_archs', full) != full for r in records)
    subsets |= mixed
    curve: dict[float, list[float]] = {}
    final: dict[float, list[float]] = {}
    for r in records:
      offset = {'before_switch': -0.15, 'after_switch': 0.15}.get(r.get('when'), 0.0)
      points = final if mixed and r.get('num_archs') == full else curve
      points.setdefault(r['epoch'] + offset, []).append(r['kendall_tau'])
    xs = sorted(curve)
    (line,) = axes[1].plot(xs, [np.mean(curve[x]) for x in xs], marker='.', label=arm)
    xs = sorted(final)
    axes[1].plot(
      xs, [np.mean(final[x]) for x in xs], marker='*', ms=10, ls='none', color=line.get_color()
    )
  for epoch in stats['schedule']['cl_schedule'][1:]:
    axes[1].axvline(epoch, color='gray', ls=':', lw=1)
  axes[1].set(
    xlabel='epoch (dotted: CLOSE switches'
    + ('; lines: a subset of cells, stars: all)' if subsets else ')'),
    ylabel="Kendall's tau (mean over seeds)",
    title='Ranking quality during training',
  )
  axes[1].legend(fontsize=8)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.gt_batch < 1 or args.gt_seeds < 2 or args.curve_cells < 0:
    raise SystemExit(
      f'error: --gt-batch={args.gt_batch}, --gt-seeds={args.gt_seeds}, --curve-cells='
      f'{args.curve_cells}: expected >= 1, >= 2 and >= 0'
    )
  cores = len(cpu_workers.usable_cores())
  if not 1 <= args.workers <= cores or (args.workers > 1 and args.gt_batch > 1):
    raise SystemExit(
      f'error: --workers={args.workers} with --gt-batch={args.gt_batch}: expected 1..{cores} '
      'workers (the cores this process may use), and --gt-batch=1 when there are several'
    )
  budgets = _budgets(args.epochs, '--epochs')
  if args.pilot:
    _budgets(args.pilot_budgets)
  arms = arms_of(args)
  check_study(args)
  os.makedirs(args.workdir, exist_ok=True)
  if not args.report_only:  # keeps what a pilot's spec lacks (the ground truth's seeds, budget)
    spec = {**_saved_study(args), **study_spec(args)}
    write_atomic(study_file(args), lambda f: json.dump(spec, f, indent=1))
  archs = ranking_study.sample_cells(args.num_archs, seed=0)
  if args.pilot:
    return pilot(args, archs)
  start = time.perf_counter()
  if args.report_only:
    per_seed = read_ground_truth(args, archs)
  else:
    per_seed = ground_truth(args, archs)
    _log(f'ground truth done after {(time.perf_counter() - start) / 60:.1f} min')
    if args.gt_only:
      agreement = seed_agreement(per_seed, args.bootstrap)
      low, high = agreement['ci95']
      _log(
        f'seed-to-seed tau over all {len(archs)} cells: {agreement["kendall_tau"]:+.3f} '
        f'[{low:+.3f}, {high:+.3f}] (95% bootstrap interval)'
      )
      write_atomic(
        os.path.join(args.workdir, 'ground_truth_agreement.json'),
        lambda f: json.dump(agreement, f, indent=1),
      )
      return {'noise_ceiling': agreement}
    for epochs in budgets:
      train_arms(budget_args(args, epochs), arms, os.path.join(args.workdir, 'ground_truth.csv'))
      _log(f'supernets of {epochs} epochs done after {(time.perf_counter() - start) / 60:.1f} min')
  out = {}
  for epochs in budgets:
    study = budget_args(args, epochs)
    if args.report_only:  # judge a study while it runs: the seeds that every arm has finished
      study.seeds = seeds_done(study, arms)
      _log(f'{epochs} epochs: {study.seeds} of {args.seeds} supernet seeds done in every arm')
      if not study.seeds:
        continue
    out[epochs] = report(study, arms, per_seed)
  return out


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
