"""Shared test settings (a persistent XLA cache so repeated compiles of the same step are cheap)
and the fixtures several test files use. Plain helpers are in tests/helpers.py."""

import os

# CLI and experiment subprocesses apply close_jax's XLA:CPU defaults at their start unless this is
# set; this process does not apply them. Tests compare in-process runs with CLI runs (a resume
# against an uninterrupted run) to float tolerance, so both sides must compile under one setting.
os.environ.setdefault('CLOSE_JAX_XLA_DEFAULTS', '0')
# The suite's programs are tiny and compiled once each: XLA's optimisation passes cost far more
# than they save (measured: the NB201 smoke search 103 s -> 56 s). Read by jax at import, and by
# the CLI subprocesses through the environment. No test depends on it: tests check properties,
# invariants and independent computations, never one compiler setting's floats.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')

import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = os.path.join(os.path.dirname(os.path.dirname(__file__)), '.jax_cache')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def counted_train_step(supernet, tx, params, dataset):
  """The setup of the compile-count tests: (a fresh train state of `params`, replicated as the
  step returns it; the jitted train step, its traces counted; the counter; the training images
  and labels as device arrays)."""
  import jax.numpy as jnp

  from close_jax import parallel
  from close_jax.train_step import TraceCounter, TrainState, make_train_step

  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  state = parallel.replicate(state, parallel.make_mesh(1))
  counter = TraceCounter()
  step = make_train_step(
    supernet, tx, mean=dataset.mean, std=dataset.std, crop_padding=1, hflip=True, counter=counter
  )
  return state, step, counter, jnp.asarray(dataset.train_images), jnp.asarray(dataset.train_labels)


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
  """A tiny vanilla NB201 run (helpers.tiny_config: 6 epochs of 8 steps, then a ranking of 12
  architectures), trained once per test module: (workdir, config, ranking result)."""
  from helpers import tiny_config

  from close_jax import train

  workdir = str(tmp_path_factory.mktemp('full'))
  config = tiny_config()
  result = train.train_and_evaluate(config, workdir)
  return workdir, config, result
