"""close_jax.host_memory: which glibc settings a program restarts with, and the restart itself
(the page faults it removes are measured in docs/performance.md#host-memory)."""

import os
import subprocess
import sys

import pytest

from close_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED = {
  'MALLOC_ARENA_MAX': '1',
  'MALLOC_MMAP_MAX_': '0',
  'MALLOC_TRIM_THRESHOLD_': str(2**46),
}
glibc_only = pytest.mark.skipif(host_memory.settings_to_add({}) == {}, reason='not glibc Linux')


def test_settings_are_added_only_on_glibc_when_the_user_set_none():
  assert host_memory.settings_to_add({}, 'glibc') == EXPECTED
  assert host_memory.settings_to_add({}, '') == {}  # musl, macOS, Windows
  assert host_memory.settings_to_add({'CLOSE_JAX_HOST_MALLOC': '0'}, 'glibc') == {}
  assert host_memory.settings_to_add({'MALLOC_ARENA_MAX': '4'}, 'glibc') == {}  # the user's
  assert host_memory.settings_to_add({'CLOSE_JAX_HOST_MALLOC_APPLIED': '1'}, 'glibc') == {}


def _run(code: str, **env) -> list[str]:
  environ = {k: v for k, v in os.environ.items() if k not in EXPECTED and 'HOST_MALLOC' not in k}
  environ.update(PYTHONPATH=ROOT, **env)
  out = subprocess.run(
    [sys.executable, '-c', code], env=environ, capture_output=True, text=True, check=True
  )
  return out.stdout.split()


RESTART = (
  'import os; from close_jax import host_memory; print("start", os.getpid()); '
  'host_memory.restart_with_kept_buffers(); '
  'print("after", os.getpid(), os.environ.get("MALLOC_ARENA_MAX"))'
)


@glibc_only
def test_the_program_restarts_once_in_place_with_the_settings():
  start, pid, start_again, pid_again, after, pid_after, arenas = _run(RESTART)
  assert (start, start_again, after) == ('start', 'start', 'after')  # twice from the top
  assert pid == pid_again == pid_after  # the same process (exec), not a child
  assert arenas == '1'
  # switched off: it runs once and malloc keeps glibc's defaults
  start, pid, after, pid_after, arenas = _run(RESTART, CLOSE_JAX_HOST_MALLOC='0')
  assert (start, after, arenas) == ('start', 'after', 'None') and pid == pid_after
