"""Shared test settings (a persistent XLA cache so repeated compiles of the same step are cheap)
and the fixtures several test files use. Plain helpers are in tests/helpers.py."""

import os

from close_jax import xla_flags  # imports no JAX: the settings below must come first

# CLI and experiment subprocesses apply close_jax's XLA:CPU defaults at their start unless this is
# set; this process does not apply them. Tests compare in-process runs with CLI runs (a resume
# against an uninterrupted run) to float tolerance, so both sides must compile under one setting.
os.environ.setdefault('CLOSE_JAX_XLA_DEFAULTS', '0')
# The suite's programs are tiny and compiled once each: XLA's optimisation passes cost far more
# than they save (measured: the NB201 smoke search 103 s -> 56 s). Read by jax at import, and by
# the CLI subprocesses through the environment. No test depends on it: tests check properties,
# invariants and independent computations, never one compiler setting's floats.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')

# Every compile is cached, however short: the suite compiles the same small programs (inits,
# samplers, scorers) in hundreds of runs and processes, and loading them beats compiling them
# (measured: a tiny CLOSE run rerun 19 s with the 1 s threshold, 13 s with none). Read by jax at
# import, here and in the CLI subprocesses (close_jax.xla_flags.use_compilation_cache keeps it).
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

# XLA:CPU's newer (MLIR) fusion emitters compile the suite's tiny programs slower than the older
# ones (a three-level CLOSE run of tiny_config, cold cache: 44 s -> 33-39 s). Inherited by the CLI
# subprocesses; added as close_jax adds its own defaults: not over a value in XLA_FLAGS, and only
# on the jaxlib versions known to have the flag (XLA aborts on others).
xla_flags.add_flags({'xla_cpu_use_fusion_emitters': 'false'})

import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = os.path.join(os.path.dirname(os.path.dirname(__file__)), '.jax_cache')
jax.config.update('jax_compilation_cache_dir', _CACHE)


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


# The files that take 20 s or more, longest first (per-file times of a cold two-worker run): under
# `--dist loadfile` xdist hands whole files out in this order (its own reordering, by number of
# tests, is turned off below), so neither worker starts a long file while the other runs out of
# work (longest-first scheduling). The sort is stable: the order inside a file and among the rest
# is kept.
HEAVY_FILES_FIRST = (
  'test_parallel.py',
  'test_train_curriculum.py',
  'test_nb301_train.py',
  'test_nds_train.py',
  'test_experiments.py',
  'test_gate_variants.py',
  'test_nb301_supernet.py',
  'test_nds_supernet.py',
  'test_crash.py',
  'test_search_run.py',
  'test_notebook.py',
  'test_ranking_study.py',
  'test_darts_dense.py',
  'test_train_run.py',
  'test_final_cli.py',
  'test_bf16.py',
  'test_edge_dense.py',
  'test_gate.py',
  'test_train_cli.py',
  'test_surgery.py',
  'test_space_interface.py',
)


def pytest_configure(config):
  if hasattr(config.option, 'loadscopereorder'):  # pytest-xdist's --no-loadscope-reorder
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(HEAVY_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
