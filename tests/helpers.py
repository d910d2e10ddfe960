"""Helpers shared by the test files (not fixtures: those are in conftest.py). No test file imports
another test file; what several share lives here."""

import functools
import importlib.util
import json
import os
import time

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


def fake_gt_accuracy(cell: str, seed: int) -> float:
  """A made-up standalone accuracy of a (cell string, seed), 4 decimals as a runs file holds it."""
  return round(50 + sum(map(ord, cell)) % 97 / 7 + 0.1234 * seed, 4)


def _wait_for_workers(log_dir, workers):
  """A start barrier: waits (up to 60 s) until `workers` processes have called it, so that every
  worker of a test's pool gets jobs however fast the first one starts."""
  open(os.path.join(log_dir, f'started_{os.getpid()}'), 'w').close()
  deadline = time.monotonic() + 60
  while sum(n.startswith('started_') for n in os.listdir(log_dir)) < workers:
    if time.monotonic() > deadline:
      break
    time.sleep(0.05)


def thread_cores() -> list[str]:
  """The CPU affinity of every thread of this process (Linux), as /proc lists it."""
  out = []
  for task in os.listdir('/proc/self/task'):
    try:
      with open(f'/proc/self/task/{task}/status') as f:
        out += [x.split(':')[1].strip() for x in f if x.startswith('Cpus_allowed_list')]
    except FileNotFoundError:  # a thread that ended meanwhile
      continue
  return out


def fake_gt_train(log_dir, fail_on=None, error_on=None, workers=1, protocol=None):
  """A `gt_workers` trainer (built in each worker process): returns `fake_gt_accuracy`, logs
  every run with the worker's pid, the cores of all its threads (after JAX's CPU backend has
  started its thread pools) and its JAX platform to LOG_DIR/<pid>.jsonl; the process dies (exit
  code 7, as if killed) at run `fail_on` or raises at `error_on`. `protocol` is unused: passing
  a `nb201_gt_trainer.Protocol` makes unpickling import JAX code, as the real trainer's does."""
  import jax

  platform = jax.devices()[0].platform  # starts the backend and its threads
  _wait_for_workers(log_dir, workers)

  def train(cell, seed):
    if (cell, seed) == fail_on:
      os._exit(7)
    if (cell, seed) == error_on:
      raise ValueError(f'no such cell {cell!r}')
    record = {
      'cell': cell,
      'seed': seed,
      'thread_cores': sorted(set(thread_cores())),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'platform': platform,
    }
    with open(os.path.join(log_dir, f'{os.getpid()}.jsonl'), 'a') as f:
      f.write(json.dumps(record) + '\n')
    time.sleep(0.1)  # a run takes time: the other workers get their share of the queue
    return fake_gt_accuracy(cell, seed)

  return train


def fake_gt_log(log_dir) -> dict[str, list[dict]]:
  """{pid: [records]} that `fake_gt_train` wrote in LOG_DIR."""
  return {
    name[: -len('.jsonl')]: [json.loads(x) for x in open(os.path.join(log_dir, name))]
    for name in sorted(os.listdir(log_dir))
    if name.endswith('.jsonl')
  }


def fake_arm_runner(args, arms, gt_csv, workers=2):
  """Stands in for the ranking-quality study's `arm_runner` (same arguments): logs each (arm,
  seed) job with the worker's pid to WORKDIR/log/<pid>.jsonl instead of training."""
  log_dir = os.path.join(args.workdir, 'log')
  _wait_for_workers(log_dir, workers)

  def run(job):
    with open(os.path.join(log_dir, f'{os.getpid()}.jsonl'), 'a') as f:
      f.write(json.dumps({'arm': job[0], 'seed': job[1]}) + '\n')
    time.sleep(0.1)  # a job takes time: the other workers get their share of the queue
    return job[0]

  return run
