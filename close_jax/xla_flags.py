"""close_jax's default XLA:CPU flags, appended to `XLA_FLAGS` at a program's start, and the
persistent compilation cache.

Why: on jaxlib 0.10's XLA:CPU the YNNPACK fusion (`xla_cpu_experimental_ynn_fusion_type`,
default `INDIVIDUAL_DOT`) takes over the kernel-gradient convolution of every conv and runs it
3-9x slower than XLA's own emitter; XNNPACK's dot path is slower here too. Both are CPU-only
options (GPU and TPU ignore them), measured with `experiments/bench_reference.py`
(docs/performance.md#xlacpu-flags). A flag the user already put in `XLA_FLAGS` is never touched,
and the flags are only added on jaxlib versions where they were measured, since XLA aborts the
process on a flag it does not know.
"""

from __future__ import annotations

import os

CPU_DEFAULTS = {
  'xla_cpu_experimental_ynn_fusion_type': '',
  'xla_cpu_use_xnnpack': 'false',
}
MEASURED_JAXLIB = ('0.10.',)  # jaxlib versions that know the flags set here (and were measured)
# config.json's record of the flags a run used (dropped again when a run is resumed from it).
RECORDED_KEY = 'xla_flags_in_effect'


def _flag_names(flags: str) -> set[str]:
  return {f.lstrip('-').split('=', 1)[0] for f in flags.split()}


def add_flags(
  flags: dict[str, str], environ=None, jaxlib_version: str | None = None
) -> dict[str, str]:
  """Adds the `flags` ({name: value}) the user did not set to `XLA_FLAGS` (in `environ`, default
  `os.environ`), on the jaxlib versions of `MEASURED_JAXLIB` only (XLA aborts the process on a
  flag it does not know); returns the flags added. Must run before JAX initialises its backend
  (the first computation or `jax.devices()`)."""
  environ = os.environ if environ is None else environ
  if jaxlib_version is None:
    import jaxlib.version

    jaxlib_version = jaxlib.version.__version__
  if not jaxlib_version.startswith(MEASURED_JAXLIB):
    return {}
  current = environ.get('XLA_FLAGS', '')
  added = {k: v for k, v in flags.items() if k not in _flag_names(current)}
  if added:
    extra = ' '.join(f'--{k}={v}' for k, v in added.items())
    environ['XLA_FLAGS'] = f'{current} {extra}'.strip()
  return added


def apply_cpu_defaults(environ=None, jaxlib_version: str | None = None) -> dict[str, str]:
  """Adds the `CPU_DEFAULTS` the user did not set (`add_flags`); returns the flags added ({} when
  none, or on an unmeasured jaxlib)."""
  return add_flags(CPU_DEFAULTS, environ, jaxlib_version)


def apply_defaults(environ=None) -> dict[str, str]:
  """What a program calls once at its start (`python -m close_jax.main`, the notebook, the
  experiments), before its first JAX computation: XLA reads `XLA_FLAGS` when its backend starts,
  so a later call changes nothing. Adds `CPU_DEFAULTS` (`apply_cpu_defaults`) unless
  `CLOSE_JAX_XLA_DEFAULTS=0`; returns the flags added. Importing close_jax changes no flag."""
  environ = os.environ if environ is None else environ
  if environ.get('CLOSE_JAX_XLA_DEFAULTS', '1') == '0':
    return {}
  return apply_cpu_defaults(environ)


def in_effect() -> str:
  """The XLA_FLAGS this process runs with (recorded in config.json and benchmark output)."""
  return os.environ.get('XLA_FLAGS', '')


def use_compilation_cache(path: str) -> None:
  """Keeps compiled programs in `path` ('' = off) so a rerun or a resume skips their compiles.
  Only compiles of a second or more are kept unless `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`
  is set: a run compiles a few large programs and hundreds of small ones, which would fill the
  folder for little gain. The test suite, which compiles the same small programs in hundreds of
  runs, sets it to 0."""
  if not path:
    return
  import jax

  jax.config.update('jax_compilation_cache_dir', os.path.expanduser(path))
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
