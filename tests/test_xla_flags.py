"""close_jax's XLA:CPU defaults: added before the backend starts, never over a user's flag."""

import json
import os
import subprocess
import sys

import pytest

from close_jax import xla_flags

# The defaults as measured (docs/performance.md#xlacpu-flags), written out here rather than read
# from xla_flags.CPU_DEFAULTS, so that the checks do not compare the module with itself.
MEASURED_DEFAULTS = {'xla_cpu_experimental_ynn_fusion_type': '', 'xla_cpu_use_xnnpack': 'false'}


def _parse(flags: str) -> dict[str, str]:
  """`--name=value` flags as {name: value}; a name twice is an error here (XLA takes the last)."""
  out = {}
  for flag in flags.split():
    assert flag.startswith('--') and '=' in flag, flag
    name, value = flag[2:].split('=', 1)
    assert name not in out, f'{name} given twice in {flags!r}'
    out[name] = value
  return out


def test_defaults_are_appended_without_touching_the_users_flags():
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8 --xla_cpu_use_xnnpack=true'}
  added = xla_flags.apply_cpu_defaults(env, jaxlib_version='0.10.2')
  assert added == {'xla_cpu_experimental_ynn_fusion_type': ''}  # xnnpack: the user's choice
  assert env['XLA_FLAGS'] == (
    '--xla_force_host_platform_device_count=8 --xla_cpu_use_xnnpack=true '
    '--xla_cpu_experimental_ynn_fusion_type='
  )
  assert _parse(env['XLA_FLAGS']) == {
    'xla_force_host_platform_device_count': '8',
    **MEASURED_DEFAULTS,
    'xla_cpu_use_xnnpack': 'true',  # the user's value stays
  }
  assert xla_flags.apply_cpu_defaults(env, jaxlib_version='0.10.2') == {}  # idempotent
  empty = {}
  xla_flags.apply_cpu_defaults(empty, jaxlib_version='0.10.2')
  assert empty['XLA_FLAGS'] == (
    '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_use_xnnpack=false'
  )
  assert _parse(empty['XLA_FLAGS']) == MEASURED_DEFAULTS


def test_an_unmeasured_jaxlib_gets_no_flags():
  env = {}  # XLA aborts on a flag it does not know: only versions that were measured
  assert xla_flags.apply_cpu_defaults(env, jaxlib_version='0.11.0') == {}
  assert 'XLA_FLAGS' not in env


def test_a_program_applies_them_at_its_start_not_the_import(tmp_path, monkeypatch):
  import jaxlib.version

  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'CLOSE_JAX_XLA_DEFAULTS')}
  code = (
    'import os, close_jax; before = os.environ.get("XLA_FLAGS", ""); '
    'from close_jax import xla_flags; xla_flags.apply_defaults(); '
    'print(before, os.environ.get("XLA_FLAGS", ""), sep="|")'
  )
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  before, after = out.stdout.strip().split('|')
  assert before == ''  # importing close_jax changes nothing
  if jaxlib.version.__version__.startswith('0.10.'):  # the measured jaxlib
    assert _parse(after) == MEASURED_DEFAULTS
  off = subprocess.run(
    [sys.executable, '-c', code],
    env={**env, 'CLOSE_JAX_XLA_DEFAULTS': '0'},
    capture_output=True,
    text=True,
  )
  assert off.stdout.strip() == '|'  # the switch turns them off (the suite: conftest)
  # The command line applies them before anything else (here: before it rejects the config).
  from close_jax import main

  monkeypatch.setenv('CLOSE_JAX_XLA_DEFAULTS', '1')
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_use_xnnpack=true')
  monkeypatch.setattr(sys, 'argv', ['main', f'--workdir={tmp_path}', '--config=missing.py'])
  monkeypatch.setattr(
    xla_flags, 'apply_cpu_defaults', lambda environ: environ.update(XLA_FLAGS='applied')
  )
  with pytest.raises(SystemExit):
    main.run()
  assert os.environ['XLA_FLAGS'] == 'applied'
  monkeypatch.undo()  # before anything starts JAX's backend in this process with those flags
  from close_jax import train
  from configs import nb201 as nb201_config

  # config.json records the flags the process runs with: a known string set here (the backend
  # of this process is already up, so it changes nothing else), then none at all.
  for flags in ('--xla_cpu_use_xnnpack=true --xla_force_host_platform_device_count=3', None):
    with pytest.MonkeyPatch.context() as patch:
      if flags is None:
        patch.delenv('XLA_FLAGS', raising=False)
      else:
        patch.setenv('XLA_FLAGS', flags)
      train._write_config(nb201_config.get_config('smoke'), str(tmp_path))
    saved = json.loads((tmp_path / 'config.json').read_text())
    assert saved['xla_flags_in_effect'] == (flags or '')


def test_the_compilation_cache_keeps_a_users_threshold(monkeypatch, tmp_path):
  """Without JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS only compiles of 1 s or more are kept;
  with it (the suite sets 0) the user's value stands. '' leaves the cache as it was."""
  import jax

  keys = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs')
  before = {k: getattr(jax.config, k) for k in keys}
  try:
    xla_flags.use_compilation_cache('')
    assert {k: getattr(jax.config, k) for k in keys} == before
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.25)
    monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.25')
    xla_flags.use_compilation_cache(str(tmp_path / 'a'))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'a')
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.25
    monkeypatch.delenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')
    xla_flags.use_compilation_cache(str(tmp_path / 'b'))
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
  finally:
    for k, v in before.items():
      jax.config.update(k, v)
