"""Shared test settings: a persistent XLA cache so repeated compiles of the same step are cheap."""

import os

import jax

_CACHE = os.path.join(os.path.dirname(os.path.dirname(__file__)), '.jax_cache')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
