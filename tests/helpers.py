"""Helpers shared by the test files (not fixtures: those are in conftest.py). No test file imports
another test file; what several share lives here."""

import functools
import importlib.util
import json
import os

import jax
import numpy as np
from conftest import _CACHE

from close_jax import train
from close_jax.checkpoint import Checkpointer
from configs import nb201 as nb201_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_experiment(name):
  """The module of `experiments/<name>.py` (the experiments are scripts, not a package)."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.path.join(repo, 'experiments', f'{name}.py')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def tiny_config(**overrides):
  """The NB201 smoke config shrunk for tests: vanilla, 256 synthetic training images at batch 32
  (8 steps per epoch), 6 epochs, 12 ranked architectures; `overrides` as {'group.key': value}."""
  config = nb201_config.get_config('smoke')
  config.method = 'vanilla'
  config.eval.eval_epochs = ()
  # The suite's cache: in-process conftest set it already; a CLI resumed from this config's
  # config.json (`--workdir` alone) finds it there.
  config.compilation_cache_dir = _CACHE
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


def final_state(workdir, config):
  """The train state of the latest checkpoint in `workdir`."""
  run = train.Run(config, workdir)
  ckpt = Checkpointer(workdir)
  epoch = ckpt.latest_epoch()
  num_blocks = ckpt.restore_meta(epoch)['num_blocks']
  state = ckpt.restore_state(
    epoch, jax.eval_shape(functools.partial(run.initial_state, num_blocks))
  )
  ckpt.close()
  return state


def assert_same_state(a, b, rtol=1e-6, atol=1e-7):
  """Same step, parameters and optimizer state, leaf by leaf."""
  assert int(a.step) == int(b.step)
  leaves_a = jax.tree.leaves((a.params, a.opt_state))
  leaves_b = jax.tree.leaves((b.params, b.opt_state))
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def read_jsonl(workdir, name='metrics.jsonl'):
  """The records of a run's JSON-lines output (metrics.jsonl by default)."""
  with open(os.path.join(workdir, name)) as f:
    return [json.loads(line) for line in f]


def torch_reduce_on_plateau(values, lr, factor, patience, restarts=()):
  """The rate after each epoch's `scheduler.step(value)`, written from the PyTorch docs of
  torch.optim.lr_scheduler.ReduceLROnPlateau (mode 'min', threshold 1e-4 'rel', cooldown 0,
  min_lr 0, eps 1e-8), independently of close_jax. SRT at epoch e (the official code): a new
  scheduler stepped once with the previous epoch's value, at the initial rate."""
  rate, best, bad, out = lr, float('inf'), 0, []
  for epoch, value in enumerate(values):
    if epoch in restarts:
      rate, best, bad = lr, values[epoch - 1], 0
    if value < best * (1 - 1e-4):
      best, bad = value, 0
    else:
      bad += 1
    if bad > patience:
      new = max(rate * factor, 0.0)
      if rate - new > 1e-8:
        rate = new
      bad = 0
    out.append(rate)
  return out
