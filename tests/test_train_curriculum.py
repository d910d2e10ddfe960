"""CLOSE and CLOSE-S training in-process on tiny NB201 configs: one compile per curriculum level,
switches, GATE diagnostics, rankings around switches, one scorer per level, resume across a
switch, the config resolved once, and the plateau rule with SRT."""

import collections
import json
import os
import shutil

import jax
import numpy as np
import pytest
from helpers import (
  assert_same_state,
  final_state,
  read_jsonl,
  tiny_config,
  torch_reduce_on_plateau,
)

from close_jax import config_check, train
from close_jax import curriculum as curriculum_lib
from close_jax import spaces as spaces_registry


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
  records = read_jsonl(workdir)
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
  rankings = read_jsonl(workdir, 'rankings.jsonl')
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
  state = final_state(workdir, close_run[1])
  assert state.params['net']['cell_0']['conv3x3'].shape[0] == 3
  assert state.params['gate']['mlp']['logits']['kernel'].shape == (200, 3)


def test_every_ranking_and_the_search_share_one_compiled_scorer_per_level(close_run, tmp_path):
  """Six rankings over three levels (end of epoch, before and after each switch) trace one
  scorer per level; the architecture search's fitness of the last level reuses its scorer and
  the ranking split; the run's writers are closed when training returns."""
  from close_jax.search import config as search_config
  from close_jax.search import hook as search_hook

  workdir, config, run, result, _ = close_run
  assert len(read_jsonl(workdir, 'rankings.jsonl')) == 6
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
  """From the run's checkpoint after epoch 3 (its newest removed), killed after the ranking
  before the switch at epoch 4 was written: the resumed run switches, restarts the rate (SRT)
  and trains epoch 4 to the same state. It stops at the SRT epoch, so the restarted plateau
  controller's best value (the previous epoch's mean) must come from the checkpoint: opt_state
  is compared leaf by leaf."""
  workdir_full, config = close_run[:2]
  workdir = str(tmp_path / 'resumed')
  shutil.copytree(workdir_full, workdir)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '5'))
  rankings = read_jsonl(workdir, 'rankings.jsonl')
  assert [(r['epoch'], r['when']) for r in rankings[-2:]] == [
    (4, 'before_switch'),
    (4, 'after_switch'),
  ]
  stale = [*rankings[:-2], {**rankings[-2], 'kendall_tau': 0.0}]  # a ranking the kill left
  with open(os.path.join(workdir, 'rankings.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in stale)
  train.train_and_evaluate(config, workdir)  # resumes, switches, SRT
  assert_same_state(final_state(workdir_full, config), final_state(workdir, config))
  assert [r['num_blocks'] for r in read_jsonl(workdir)] == [1, 1, 2, 2, 3]
  # No duplicated or stale ranking: the resumed run redid the switch's two rankings.
  assert read_jsonl(workdir, 'rankings.jsonl') == read_jsonl(workdir_full, 'rankings.jsonl')


@pytest.fixture(scope='module')
def close_s_run(tmp_path_factory):
  """A CLOSE-S run that cannot learn (learning rate 1e-6: its epoch losses only wander with the
  sampled architectures and batches, whatever the compiler's rounding), with patience 1, its
  switch at epoch 4 and SRT at epoch 8: (workdir, config)."""
  config = tiny_config(
    method='close_s',
    num_epochs=9,
    **{
      'close.close_s_switch_epoch': 4,
      'close.lr_restart_epochs': (8,),
      'optim.plateau_patience': 1,
      'optim.plateau_metric': 'train_loss',
      'optim.learning_rate': 1e-6,
      'eval.at_end': False,
    },
  )
  workdir = str(tmp_path_factory.mktemp('close_s'))
  train.train_and_evaluate(config, workdir)
  return workdir, config


def test_close_s_switches_once(close_s_run):
  workdir, config = close_s_run
  records = read_jsonl(workdir)
  assert [r['num_blocks'] for r in records] == [1] * 4 + [6] * 5
  assert records[-1]['train_step_traces'] == 2
  state = final_state(workdir, config)
  assert 'gate' not in state.params


def _rates_used(losses, lr, patience, restarts):
  """The rate each epoch trains with under torch's ReduceLROnPlateau stepped after every epoch
  with its mean loss (`helpers.torch_reduce_on_plateau`, written from the PyTorch docs): the
  initial rate in epoch 0 and at SRT, else the rate the previous epoch's step left."""
  after = torch_reduce_on_plateau(losses, lr, 0.5, patience, restarts)
  return [lr if e == 0 or e in restarts else after[e - 1] for e in range(len(losses))]


def test_the_rate_follows_the_plateau_rule_and_srt_restores_it(close_s_run):
  """The CLOSE-S run's rates are torch's rule applied to the run's own losses: the rate is
  reduced before SRT at epoch 8 and SRT brings it back to the initial rate; the rate in the
  record is the one the epoch trained with."""
  workdir, config = close_s_run
  lr = config.optim.learning_rate
  records = read_jsonl(workdir)
  losses = [r['loss'] for r in records]
  rates = [r['lr'] for r in records]
  assert rates == pytest.approx(_rates_used(losses, lr, 1, (8,)), rel=1e-6)
  assert min(rates[:8]) < lr and rates[8] == pytest.approx(lr)
  assert rates[8] > _rates_used(losses, lr, 1, ())[8]  # SRT: without it the rate stays low


def test_a_close_run_starts_at_chance_and_learns(close_run):
  """The CLOSE run with its two switches: the first epoch's mean loss is near ln(10) and
  training lowers it (the vanilla run's twin: tests/test_train_run.py)."""
  losses = [r['loss'] for r in read_jsonl(close_run[0])]
  assert all(np.isfinite(losses))
  assert abs(losses[0] - np.log(10)) < 0.1, losses
  assert losses[-1] < losses[0] - 0.1, losses
