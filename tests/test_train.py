"""End-to-end training behaviour on tiny synthetic configs: compiles, resume, outputs, errors."""

import collections
import functools
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import counted_train_step
from test_optim import torch_reduce_on_plateau

from close_jax import config_check, optim, train
from close_jax import curriculum as curriculum_lib
from close_jax import spaces as spaces_registry
from close_jax.checkpoint import Checkpointer, CheckpointError
from close_jax.data import load_dataset
from close_jax.spaces import nb201
from close_jax.supernet import build_supernet
from configs import nb201 as nb201_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  config = nb201_config.get_config('smoke')
  config.method = 'vanilla'
  config.eval.eval_epochs = ()
  config.compilation_cache_dir = ''  # conftest already set the test cache
  config.data.synthetic_num_train = 256
  config.data.synthetic_num_rank = 64
  config.batch_size = 32
  config.num_epochs = 6
  config.eval.num_archs = 12
  config.eval.batch_size = 32
  config.eval.arch_chunk = 4
  for key, value in overrides.items():
    group, _, name = key.rpartition('.')
    (config[group] if group else config)[name] = value
  return config


def _final_state(workdir, config):
  run = train.Run(config, workdir)
  ckpt = Checkpointer(workdir)
  epoch = ckpt.latest_epoch()
  num_blocks = ckpt.restore_meta(epoch)['num_blocks']
  state = ckpt.restore_state(
    epoch, jax.eval_shape(functools.partial(run.initial_state, num_blocks))
  )
  ckpt.close()
  return state


def _assert_same_state(a, b, rtol=1e-6, atol=1e-7):
  assert int(a.step) == int(b.step)
  leaves_a = jax.tree.leaves((a.params, a.opt_state))
  leaves_b = jax.tree.leaves((b.params, b.opt_state))
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _metrics(workdir, name='metrics.jsonl'):
  with open(os.path.join(workdir, name)) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('full'))
  config = tiny_config()
  result = train.train_and_evaluate(config, workdir)
  return workdir, config, result


def test_one_compile_serves_every_architecture():
  config = tiny_config()
  dataset = load_dataset(config.data)
  supernet = build_supernet(config, dataset.num_classes)
  tx = optim.make_optimizer(config.optim)
  params = supernet.init(jax.random.key(0, impl='rbg'), dataset.image_shape)
  state, step, counter, images, labels = counted_train_step(supernet, tx, params, dataset)
  archs = nb201.sample(jax.random.key(3), 12)
  assert len({tuple(a) for a in np.asarray(archs)}) > 8
  key = jax.random.key(1, impl='rbg')
  before = jax.tree.map(np.asarray, state.params)
  for i in range(len(archs)):
    state, metrics = step(state, images, labels, (jnp.arange(32) + i)[None], archs[i], key)
  assert counter.count == 1
  assert int(state.step) == len(archs)
  assert np.isfinite(float(metrics['loss']))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(changed))


def test_training_writes_metrics_and_lowers_the_loss(full_run):
  workdir, config, _ = full_run
  records = _metrics(workdir)
  assert [r['epoch'] for r in records] == list(range(config.num_epochs))
  for r in records:
    assert {'epoch', 'loss', 'accuracy', 'lr', 'images_per_s', 'train_step_traces'} <= set(r)
    assert r['train_step_traces'] == 1 and r['train_step_executables'] == 1
    assert r['lr'] == pytest.approx(config.optim.learning_rate)
  assert np.mean([r['loss'] for r in records[-2:]]) < records[0]['loss'] - 0.1
  assert records[-1]['step'] == config.num_epochs * 8
  # keep_checkpoints=3 with a checkpoint every epoch: only the last three epochs are kept.
  assert config.keep_checkpoints == 3 and config.checkpoint_every_epochs == 1
  kept = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert kept == [config.num_epochs - 2, config.num_epochs - 1, config.num_epochs]


def test_ranking_outputs(full_run):
  workdir, config, result = full_run
  with open(os.path.join(workdir, 'ranking.json')) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(result))
  assert saved['num_archs'] == config.eval.num_archs
  assert saved['epoch'] == config.num_epochs
  assert saved['ground_truth'] == 'cifar10_test_200ep'
  assert set(saved['precision_at_top']) == {'0.1', '0.5'}  # smaller ratios select no arch of 12
  with open(os.path.join(workdir, 'ranking.csv')) as f:
    rows = f.read().strip().splitlines()
  assert rows[0] == 'arch,supernet_score,ground_truth,flops,params'
  assert len(rows) == 1 + config.eval.num_archs
  arch, score, truth, flops, params = rows[1].split(',')
  nb201.parse(arch)
  assert 0.0 <= float(score) <= 1.0 and 40.0 < float(truth) < 100.0
  assert int(flops) > 0 and int(params) > 0  # exact values: tests/test_analysis_complexity.py


def test_resume_equals_uninterrupted(full_run, tmp_path):
  workdir_full, config, _ = full_run
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_config(num_epochs=3, **{'eval.at_end': False}), workdir)
  train.train_and_evaluate(tiny_config(**{'eval.at_end': False}), workdir)  # resumes at 3
  a, b = _final_state(workdir_full, config), _final_state(workdir, config)
  assert int(a.step) == 48
  _assert_same_state(a, b)
  assert [r['epoch'] for r in _metrics(workdir)] == list(range(6))


def test_evaluate_mode_restores_latest_checkpoint(full_run, tmp_path):
  workdir, config, result = full_run
  recorded = _metrics(workdir, 'rankings.jsonl')
  evaluated = train.train_and_evaluate(tiny_config(mode='evaluate'), workdir)
  assert evaluated['epoch'] == config.num_epochs
  assert evaluated['kendall_tau'] == pytest.approx(result['kendall_tau'])
  # The training recorded this epoch's ranking already: evaluate mode adds no second record.
  assert (
    _metrics(workdir, 'rankings.jsonl')
    == recorded
    == [{'epoch': config.num_epochs, 'when': 'epoch', 'num_blocks': 6, **_summary(result)}]
  )


def _summary(result):
  return {k: result[k] for k in ('kendall_tau', 'spearman_rho', 'precision_at_top', 'num_archs')}


def test_a_checkpoint_with_the_earlier_optimizer_state_is_a_one_line_error(full_run, tmp_path):
  """Checkpoints written before the plateau controller left the step (their meta lacks
  `optimizer_state`) are refused with one line, not moved aside as corrupt."""
  import shutil

  workdir, config, _ = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  for root, _, files in os.walk(os.path.join(copy, 'checkpoints')):
    for name in files:
      path = os.path.join(root, name)
      try:
        with open(path) as f:
          meta = json.load(f)
      except (UnicodeDecodeError, json.JSONDecodeError):
        continue
      if isinstance(meta, dict) and meta.pop('optimizer_state', None):
        with open(path, 'w') as f:
          json.dump(meta, f)
  with pytest.raises(ValueError, match='per-step plateau controller of an earlier') as info:
    train.train_and_evaluate(tiny_config(num_epochs=7), copy)
  assert '\n' not in str(info.value) and 'new --workdir' in str(info.value)
  assert not os.path.exists(os.path.join(copy, 'corrupt_checkpoints'))


def test_a_ranking_lost_after_the_last_checkpoint_is_redone(full_run, tmp_path):
  """Killed between the final checkpoint and the final ranking: the rerun ranks, trains nothing."""
  import shutil

  workdir, config, result = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  os.remove(os.path.join(copy, 'ranking.json'))
  os.remove(os.path.join(copy, 'rankings.jsonl'))
  again = train.train_and_evaluate(tiny_config(), copy)
  assert again['kendall_tau'] == pytest.approx(result['kendall_tau'])
  assert [r['epoch'] for r in _metrics(copy, 'rankings.jsonl')] == [config.num_epochs]
  assert _metrics(copy) == _metrics(workdir)  # no epoch was retrained


def test_evaluate_without_checkpoint_fails(tmp_path):
  with pytest.raises(FileNotFoundError, match='needs a checkpoint'):
    train.train_and_evaluate(tiny_config(mode='evaluate'), str(tmp_path))


def _garble(workdir, epoch):
  for root, _, files in os.walk(os.path.join(workdir, 'checkpoints', str(epoch), 'state')):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')


def test_a_corrupt_checkpoint_falls_back_to_the_newest_that_restores(full_run, tmp_path, capsys):
  import shutil

  workdir, config, _ = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  _garble(copy, config.num_epochs)
  train.train_and_evaluate(tiny_config(), copy)  # resumes from epoch 5 and redoes epoch 6
  out = capsys.readouterr().out
  aside = os.path.join(copy, 'corrupt_checkpoints', str(config.num_epochs))
  assert f'checkpoint of epoch {config.num_epochs} does not restore: moved to {aside}' in out
  assert f'restored checkpoint of epoch {config.num_epochs - 1}' in out
  assert os.path.isdir(aside)  # kept for inspection
  _assert_same_state(_final_state(workdir, config), _final_state(copy, config))
  assert [r['epoch'] for r in _metrics(copy)] == list(range(config.num_epochs))


def test_a_non_finite_loss_stops_before_checkpointing_the_poisoned_state(tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_config(num_epochs=2, **{'eval.at_end': False}), workdir)
  blow_up = {'optim.learning_rate': 1e30, 'optim.grad_clip_norm': 0.0, 'eval.at_end': False}
  with pytest.raises(FloatingPointError) as info:
    train.train_and_evaluate(tiny_config(num_epochs=4, **blow_up), workdir)
  message = str(info.value)
  match = re.fullmatch(
    r'non-finite training loss (nan|inf) at step (\d+) \(epoch 2, step (\d) of 8\), '
    r'architecture (\S+): training stopped, no checkpoint of this epoch written',
    message,
  )
  assert match, message
  assert int(match.group(2)) == 16 + int(match.group(3))
  nb201.parse(match.group(4))  # a real architecture string
  ckpt = Checkpointer(workdir)
  assert ckpt.latest_epoch() == 2  # the last good state stays the latest
  ckpt.close()
  assert [r['epoch'] for r in _metrics(workdir)] == [0, 1]


def test_no_restorable_checkpoint_is_a_one_line_error(full_run, tmp_path):
  import shutil

  workdir, config, _ = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  for epoch in os.listdir(os.path.join(copy, 'checkpoints')):
    _garble(copy, epoch)
  with pytest.raises(CheckpointError, match='no checkpoint in .* restores') as info:
    train.train_and_evaluate(tiny_config(mode='evaluate'), copy)
  assert '\n' not in str(info.value)


@pytest.mark.parametrize(
  'override, message',
  [
    ({'method': 'gates'}, "config.method='gates'"),
    ({'method': 'close', 'close.cl_schedule': (0, 5, 3)}, 'config.close.cl_schedule'),
    ({'close.wit': 'avg'}, "config.close.wit='avg'"),
    ({'eval.eval_epochs': (99,)}, 'config.eval.eval_epochs'),
    ({'model.channels': 0}, 'config.model.channels=0'),
    ({'optim.plateau_metric': 'val'}, "config.optim.plateau_metric='val'"),
    ({'batch_size': 1000}, 'exceeds the 256 training images'),
    ({'eval.ground_truth': 'cifar11'}, "config.eval.ground_truth='cifar11'"),
    ({'train_sampler': 'some'}, "config.train_sampler='some'"),
    ({'close.gate_embed_norm': 'batch'}, "config.close.gate_embed_norm='batch'"),
    ({'close.gate_temperature': 0.0}, 'config.close.gate_temperature=0.0'),
    ({'eval.gate_samples': 0}, 'config.eval.gate_samples=0'),
    ({'eval.batch_size': 65}, 'config.eval.batch_size=65 exceeds the 64 ranking images'),
    ({'method': 'close', 'budget_epochs': 1}, 'budget_epochs=1 is too short for config.close'),
  ],
)
def test_bad_configs_fail_before_training(override, message, tmp_path):
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=message.replace('(', r'\(')):
    train.train_and_evaluate(tiny_config(**override), workdir)
  assert not os.path.exists(workdir)  # nothing written, not even the directory


def test_a_bad_ground_truth_csv_fails_before_training(tmp_path):
  bad = tmp_path / 'gt.csv'
  bad.write_text('arch,accuracy\n|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|foo~2|,90\n')
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=r"row 1 \(line 2\): unknown op 'foo'"):
    train.train_and_evaluate(tiny_config(**{'eval.ground_truth': str(bad)}), workdir)
  assert not os.path.exists(workdir)


def _run_cli(*flags: str) -> subprocess.CompletedProcess:
  cmd = [sys.executable, '-m', 'close_jax.main', *flags]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_cli_rejects_unknown_override(tmp_path):
  out = _run_cli(
    f'--workdir={tmp_path}', '--config=configs/nb201.py:smoke', '--config.eval.batchsize=1'
  )
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
    "error: unknown config key 'config.eval.batchsize': 'config.eval' has no 'batchsize'; "
    "did you mean 'config.eval.batch_size'?"
  ]


@pytest.mark.parametrize(
  'flag, message',
  [
    ('--config=configs/nb999.py', "error: config file 'configs/nb999.py' does not exist"),
    (
      '--config=configs/nb201.py:huge',
      'error: unknown variant \'huge\' of configs/nb201.py: expected nothing or "smoke"',
    ),
  ],
)
def test_cli_bad_config_file_is_one_line(flag, message, tmp_path):
  out = _run_cli(f'--workdir={tmp_path / "w"}', flag)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [message]
  assert not os.path.exists(tmp_path / 'w')


@pytest.mark.parametrize(
  'mode, message',
  [
    (
      'serch',
      "error: config.mode='serch' is not supported: expected one of "
      "('train', 'evaluate', 'search')",
    ),
    (
      'search',
      "error: config.mode='search' needs the search settings (config.search): use a search "
      'config such as configs/darts_search.py or configs/nb201_search.py',
    ),
  ],
)
def test_cli_reports_bad_value_in_one_line(tmp_path, mode, message):
  out = _run_cli(
    f'--workdir={tmp_path}', '--config=configs/nb201.py:smoke', f'--config.mode={mode}'
  )
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [message]
  assert not os.listdir(tmp_path)  # nothing written


def close_config(**overrides):
  defaults = {
    'method': 'close',
    'num_epochs': 5,
    'close.cl_schedule': (0, 2, 4),
    'close.lr_restart_epochs': (4,),
    'eval.at_end': False,
  }
  return tiny_config(**{**defaults, **overrides})


class _KeepRun:
  """A trainer hook that changes nothing and keeps the run (its compiled scorers, writers)."""

  def start(self, run, start_epoch):
    self.run = run

  def pool(self, epoch):
    return None

  def end_of_epoch(self, done, supernet, params):
    return {}


@pytest.fixture(scope='module')
def close_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('close'))
  config = close_config(**{'eval.eval_epochs': (2, 3), 'eval.at_switches': True})
  kept, calls = _KeepRun(), collections.Counter()
  with pytest.MonkeyPatch.context() as patch:  # how often the run resolves its config
    for module, name in _RESOLVERS:
      patch.setattr(module, name, _counting(getattr(module, name), calls, name))
    result = train.run_training(config, workdir, kept)
  return workdir, config, kept.run, result, calls


_RESOLVERS = (
  (config_check, 'fill_later_keys'),
  (config_check, 'validate'),
  (spaces_registry, 'get'),
  (curriculum_lib, 'from_config'),
)


def _counting(function, calls, name):
  def counted(*args, **kwargs):
    calls[name] += 1
    return function(*args, **kwargs)

  return counted


def test_the_config_is_resolved_once_per_run(close_run):
  """Three levels, switches, SRT and six rankings: the config is filled and validated once and
  its space and curriculum are resolved once, then passed down as objects."""
  assert close_run[4] == {name: 1 for _, name in _RESOLVERS}


def test_close_curriculum_compiles_once_per_level(close_run):
  workdir = close_run[0]
  records = _metrics(workdir)
  assert [r['num_blocks'] for r in records] == [1, 1, 2, 2, 3]
  assert [r['train_step_traces'] for r in records] == [1, 1, 2, 2, 3]
  # Counted in the jit caches too: the switches' surgery and SRT's fresh optimizer state come
  # back with the shardings and types the compiled step expects, so nothing else compiles.
  assert [r['train_step_executables'] for r in records] == [1, 1, 2, 2, 3]
  # SRT at epoch 4: the plateau controller restarts, so the lr is back at its initial value.
  assert records[-1]['lr'] == pytest.approx(0.05)
  # GATE diagnostics: logged wherever a learned gate has >= 2 blocks, and right after a switch.
  assert ['gate_spread' in r for r in records] == [False, False, True, True, True]
  assert ['switch_gate_spread' in r for r in records] == [False, False, True, False, True]
  for r in records[2:]:
    assert len(r['gate_marginal']) == r['num_blocks']
    assert sum(r['gate_marginal']) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 <= r['gate_entropy'] <= np.log(r['num_blocks']) + 1e-6
    assert r['gate_spread'] >= 0.0
  rankings = _metrics(workdir, 'rankings.jsonl')
  assert [(r['epoch'], r['when'], r['num_blocks']) for r in rankings] == [
    (2, 'epoch', 1),
    (2, 'before_switch', 1),
    (2, 'after_switch', 2),
    (3, 'epoch', 2),
    (4, 'before_switch', 2),
    (4, 'after_switch', 3),
  ]
  # Before a switch the state is the end-of-epoch state: the same ranking, not rescored.
  assert rankings[1]['kendall_tau'] == rankings[0]['kendall_tau']
  # After it, WIT=sum changes the network (new blocks = fresh init + parent): a new ranking.
  assert rankings[5]['kendall_tau'] != rankings[4]['kendall_tau']
  state = _final_state(workdir, close_run[1])
  assert state.params['net']['cell_0']['conv3x3'].shape[0] == 3
  assert state.params['gate']['mlp']['logits']['kernel'].shape == (200, 3)


def test_every_ranking_and_the_search_share_one_compiled_scorer_per_level(close_run, tmp_path):
  """Six rankings over three levels (end of epoch, before and after each switch) trace one
  scorer per level; the architecture search's fitness of the last level reuses its scorer and
  the ranking split; the run's writers are closed when training returns."""
  from close_jax.search import config as search_config
  from close_jax.search import hook as search_hook

  workdir, config, run, result, _ = close_run
  assert len(_metrics(workdir, 'rankings.jsonl')) == 6
  assert run.scorers.counter.count == 3 and run.scorers.counter.executables == 3
  assert run.metrics._events is None and run.rankings.writer._events is None  # closed
  search = search_hook.SearchHook(
    search_config.add_search_group(config.copy_and_resolve_references()),
    str(tmp_path),
    log=lambda m: None,
  )
  search.start(run, config.num_epochs)
  archs = np.asarray(run.space.sample(jax.random.key(5), 5))
  scores = search.make_fitness(run.supernet(3), result.state.params)(archs)
  assert scores.shape == (5,) and np.all((scores >= 0) & (scores <= 1))
  assert search.x is run.scorers.batches()[0]
  assert run.scorers.counter.count == 3 and run.scorers.counter.executables == 3


def test_close_resume_across_a_switch_equals_uninterrupted(close_run, tmp_path):
  workdir_full, config = close_run[:2]
  workdir = str(tmp_path)
  # Stops at the SRT epoch, so the restarted plateau controller's best value (the previous
  # epoch's mean) must come from the checkpoint: opt_state is compared leaf by leaf.
  overrides = {'eval.eval_epochs': (2, 3), 'eval.at_switches': True}
  train.train_and_evaluate(close_config(num_epochs=4, **overrides), workdir)
  with open(os.path.join(workdir, 'rankings.jsonl'), 'a') as f:  # as if killed after ranking at 4
    f.write(json.dumps({'epoch': 4, 'when': 'before_switch', 'kendall_tau': 0.0}) + '\n')
  train.train_and_evaluate(close_config(**overrides), workdir)  # resumes, switches, SRT
  _assert_same_state(_final_state(workdir_full, config), _final_state(workdir, config))
  assert [r['num_blocks'] for r in _metrics(workdir)] == [1, 1, 2, 2, 3]
  # No duplicated or stale ranking: the resumed run redid the switch's two rankings.
  assert _metrics(workdir, 'rankings.jsonl') == _metrics(workdir_full, 'rankings.jsonl')


def test_close_s_switches_once(tmp_path):
  config = tiny_config(
    method='close_s',
    num_epochs=4,
    **{'close.close_s_switch_epoch': 2, 'close.lr_restart_epochs': (2,), 'eval.at_end': False},
  )
  train.train_and_evaluate(config, str(tmp_path))
  records = _metrics(str(tmp_path))
  assert [r['num_blocks'] for r in records] == [1, 1, 6, 6]
  assert records[-1]['train_step_traces'] == 2
  state = _final_state(str(tmp_path), config)
  assert 'gate' not in state.params


def _rates_used(losses, lr, patience, restarts):
  """The rate each epoch trains with under torch's ReduceLROnPlateau stepped after every epoch
  with its mean loss (`test_optim.torch_reduce_on_plateau`, written from the PyTorch docs): the
  initial rate in epoch 0 and at SRT, else the rate the previous epoch's step left."""
  after = torch_reduce_on_plateau(losses, lr, 0.5, patience, restarts)
  return [lr if e == 0 or e in restarts else after[e - 1] for e in range(len(losses))]


def test_the_rate_follows_the_plateau_rule_and_srt_restores_it(tmp_path):
  """A run whose loss stalls with patience 1 at a high rate: its rates are torch's rule applied
  to the run's own losses, the rate is reduced before SRT at epoch 8 and SRT brings it back to
  the initial rate; the rate in the record is the one the epoch trained with."""
  config = tiny_config(
    method='close_s',
    num_epochs=9,
    **{
      'close.close_s_switch_epoch': 4,
      'close.lr_restart_epochs': (8,),
      'optim.plateau_patience': 1,
      'optim.plateau_metric': 'train_loss',
      'optim.learning_rate': 0.4,
      'eval.at_end': False,
    },
  )
  train.train_and_evaluate(config, str(tmp_path))
  records = _metrics(str(tmp_path))
  losses = [r['loss'] for r in records]
  rates = [r['lr'] for r in records]
  assert rates == pytest.approx(_rates_used(losses, 0.4, 1, (8,)))
  assert min(rates[:8]) < 0.4 and rates[8] == pytest.approx(0.4)
  assert rates[8] > _rates_used(losses, 0.4, 1, ())[8]  # SRT: without it the rate stays low


def test_cli_resumes_with_workdir_alone(tmp_path):
  """A run started from a config file continues with `--workdir` alone (config.json)."""
  config = tiny_config(num_epochs=2, **{'eval.at_end': False})
  train.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / 'config.json').read_text())
  saved['num_epochs'] = 3
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  out = _run_cli(f'--workdir={tmp_path}')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'restored checkpoint of epoch 2' in out.stdout
  assert [r['epoch'] for r in _metrics(str(tmp_path))] == [0, 1, 2]
  # Overrides apply to the saved config too: one more epoch, then rank the checkpoint.
  out = _run_cli(f'--workdir={tmp_path}', '--config.num_epochs=4')
  assert out.returncode == 0, out.stderr[-2000:]
  assert [r['epoch'] for r in _metrics(str(tmp_path))] == [0, 1, 2, 3]
  out = _run_cli(f'--workdir={tmp_path}', '--config.mode', 'evaluate')
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads((tmp_path / 'ranking.json').read_text())['epoch'] == 4
  # A shape-defining change is refused, naming the value, before anything is written.
  before = (tmp_path / 'metrics.jsonl').read_text()
  out = _run_cli(f'--workdir={tmp_path}', '--config.model.channels=8', '--config.num_epochs=5')
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
    f'error: config.model.channels=8 differs from 4 of the run in {tmp_path} (its checkpoints '
    'have that shape): keep the value or use a new --workdir'
  ]
  assert (tmp_path / 'metrics.jsonl').read_text() == before


def test_older_saved_config_gets_the_later_keys():
  """A config.json written before the GATE options and samplers existed still loads and runs."""
  config = tiny_config()
  saved = json.loads(config.to_json())
  del saved['train_sampler'], saved['close']['gate_embed_norm'], saved['eval']['gate_samples']
  old = config_check.fill_later_keys(ml_collections.ConfigDict(saved))
  assert old.train_sampler == 'valid' and old.close.gate_embed_norm == 'none'
  assert old.eval.gate_samples == 1
  config_check.validate(old)


# Recorded on this version (after the NB-301 fixes that follow the official code), so
# that refactoring the space interface cannot silently change NB201 training or ranking.
def test_nb201_runs_start_at_chance_and_learn(full_run, close_run):
  """Properties any compiler setting keeps (no float trajectory of one XLA build is pinned): the
  first epoch's mean loss is near ln(10), the loss of a fresh 10-class classifier, and training
  lowers it; CLOSE, with its switches, learns too."""
  for workdir in (full_run[0], close_run[0]):
    losses = [r['loss'] for r in _metrics(workdir)]
    assert all(np.isfinite(losses))
    assert abs(losses[0] - np.log(10)) < 0.1, losses
    assert losses[-1] < losses[0] - 0.1, losses
  result = full_run[2]
  assert -1.0 <= result['kendall_tau'] <= 1.0


def test_a_failed_write_names_the_path_and_keeps_the_previous_files(tmp_path, monkeypatch):
  """Disk full (simulated: a root test process ignores read-only modes) at epoch 3's metrics
  line: a one-line error naming the file, no temporary left, the first three lines intact; the
  rerun resumes and finishes."""
  from close_jax import metric_writer

  workdir = str(tmp_path)
  config = tiny_config(num_epochs=5, **{'eval.at_end': False})
  real_replace = os.replace
  calls = {'n': 0}

  def full_disk(src, dst):
    if dst.endswith('metrics.jsonl'):
      calls['n'] += 1
      if calls['n'] == 4:
        raise OSError(28, 'No space left on device')
    return real_replace(src, dst)

  monkeypatch.setattr(metric_writer.os, 'replace', full_disk)
  with pytest.raises(metric_writer.WriteError) as info:
    train.train_and_evaluate(config, workdir)
  path = os.path.join(workdir, 'metrics.jsonl')
  assert str(info.value) == (
    f'cannot write {path}: No space left on device; the previous file is intact'
  )
  assert [r['epoch'] for r in _metrics(workdir)] == [0, 1, 2]
  assert not os.path.exists(path + '.tmp')
  monkeypatch.setattr(metric_writer.os, 'replace', real_replace)
  train.train_and_evaluate(config, workdir)
  assert [r['epoch'] for r in _metrics(workdir)] == [0, 1, 2, 3, 4]
