"""Keep XLA:CPU's step buffers mapped: glibc malloc settings, applied by re-executing once.

Why: XLA:CPU allocates each execution's temporary buffer (342 MB for the NB201 supernet step at
batch 64) and Eigen's convolution scratch (38 MB) with malloc. glibc serves requests above its
32 MB mmap ceiling, and large requests from worker threads' arenas, with a fresh `mmap` that
`free` unmaps again, so every step faults its whole working set back in, zero-filled by the
kernel: 84k page faults and ~170 ms of kernel time per step on a 2-core AMD EPYC VM
(docs/performance.md#host-memory). One arena, no mmap and no trimming make glibc keep the memory
and reuse it (no fault after the first step). glibc reads these settings once, when the process
starts, hence the re-execution; it happens before anything else runs and keeps the pid, the
arguments and the rest of the environment.
"""

from __future__ import annotations

import os
import platform
import sys

GLIBC_SETTINGS = {
  'MALLOC_ARENA_MAX': '1',
  'MALLOC_MMAP_MAX_': '0',
  'MALLOC_TRIM_THRESHOLD_': str(1 << 46),
}
SWITCH = 'CLOSE_JAX_HOST_MALLOC'  # '0': leave malloc as it is (no re-execution)
_MARK = 'CLOSE_JAX_HOST_MALLOC_APPLIED'


def settings_to_add(environ=None, libc: str | None = None) -> dict[str, str]:
  """The `GLIBC_SETTINGS` a re-execution would add: none off Linux/glibc, with the switch at '0',
  after the re-execution, or where the user set any of them (their choice is kept whole)."""
  environ = os.environ if environ is None else environ
  libc = platform.libc_ver()[0] if libc is None else libc
  if environ.get(SWITCH, '1') == '0' or environ.get(_MARK) or libc != 'glibc':
    return {}
  if any(key in environ for key in GLIBC_SETTINGS):
    return {}
  return dict(GLIBC_SETTINGS)


def restart_with_kept_buffers() -> None:
  """Re-executes this program once with `GLIBC_SETTINGS` in its environment, when
  `settings_to_add` says so. Call it first thing in a program's entry point (the command line and
  the benchmarks do), never in an interactive session: there, start the interpreter with the
  variables set instead."""
  added = settings_to_add()
  if not added:
    return
  env = {**os.environ, **added, _MARK: '1'}
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, env)
