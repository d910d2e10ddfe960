"""Shared test settings: a persistent XLA cache so repeated compiles of the same step are cheap."""

import os

# The suite runs with XLA's stock CPU flags, also in the CLI and experiment subprocesses it
# starts (they inherit the environment and apply close_jax's defaults at their start unless
# this is set): its pinned losses and rankings were recorded with them, and close_jax's defaults
# (close_jax/xla_flags.py, tested in test_xla_flags.py) change float results in the last digits.
os.environ.setdefault('CLOSE_JAX_XLA_DEFAULTS', '0')
# The suite's programs are tiny and compiled once each: XLA's optimisation passes cost far more
# than they save (measured: the NB201 smoke search 103 s -> 56 s). Read by jax at import, and by
# the CLI subprocesses through the environment; the pinned values hold to their tolerances.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')

import jax  # noqa: E402

_CACHE = os.path.join(os.path.dirname(os.path.dirname(__file__)), '.jax_cache')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
