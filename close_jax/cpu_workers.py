"""Independent jobs (standalone runs, supernet seeds) in parallel CPU worker processes, each pinned
to its own cores.

Why: close_jax's CPU-sized networks (the ranking study's NB201 at C=8, batch 256 of 16x16 images)
are streams of small convolutions that XLA:CPU's intra-op threads share poorly. Measured on a
2-core AMD EPYC VM (`experiments/bench_gt_workers.py`, docs/ranking_quality.md): a standalone run
on one core takes ~1.45x its time on two, so two one-core processes finish 1.3x the runs per hour
of one two-core process; on a many-core host one process uses its cores worse still. So a study's
independent jobs go to worker processes: worker i keeps a disjoint slice of the cores this process
may use (`os.sched_getaffinity`), single-threaded when its slice is one core, and takes the next
job from a shared queue (jobs differ in cost, so a fixed split would leave workers idle). Workers
die with their parent (Linux `PR_SET_PDEATHSIG`), so a killed and resumed study never races
orphans; a job must record its own result durably (a runs file, a checkpoint) for a kill to lose
only the jobs in progress. Workers run JAX on the CPU whatever the host has: on an accelerator,
run the jobs in one process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable, Hashable, Sequence


def usable_cores() -> list[int]:
  return sorted(os.sched_getaffinity(0))


def core_slices(cores: Sequence[int], workers: int) -> list[list[int]]:
  """`workers` contiguous, disjoint, near-equal slices of `cores`."""
  if not 1 <= workers <= len(cores):
    raise ValueError(
      f'workers={workers}: expected 1..{len(cores)} (the cores this process may use)'
    )
  size, extra = divmod(len(cores), workers)
  bounds = [i * size + min(i, extra) for i in range(workers + 1)]
  return [list(cores[bounds[i] : bounds[i + 1]]) for i in range(workers)]


def map_unordered(
  make_fn: Callable[[], Callable],
  jobs: Sequence[Hashable],
  workers: int,
  on_result: Callable[[Hashable, object], None] | None = None,
  what: str = 'worker',
) -> dict:
  """{job: fn(job)} over `jobs`, computed in `workers` processes; `make_fn` is picklable (a
  top-level function or a `functools.partial` of one) and is called once in each worker, after
  its cores and XLA flags are set, to build `fn`. `on_result(job, result)` runs in this process
  as each job ends. A worker that fails or dies stops the others and raises RuntimeError naming
  it (`what` says what the workers do)."""
  slices = core_slices(usable_cores(), workers)[: max(1, len(jobs))]
  context = multiprocessing.get_context('spawn')  # a fresh interpreter: no inherited JAX state
  todo, results = context.Queue(), context.Queue()
  for job in jobs:
    todo.put(job)
  for _ in slices:
    todo.put(None)
  procs = [
    context.Process(target=_work, args=(i, cores, make_fn, todo, results), daemon=True)
    for i, cores in enumerate(slices)
  ]
  for p in procs:
    p.start()
  out = {}
  try:
    while len(out) < len(jobs):
      try:
        message = results.get(timeout=2.0)
      except queue.Empty:
        for i, p in enumerate(procs):
          if p.exitcode is not None and p.exitcode != 0:
            raise RuntimeError(
              f'{what} {i} (cores {slices[i]}) died with exit code {p.exitcode} after '
              f'{len(out)} of {len(jobs)} jobs; rerun to resume'
            ) from None
        if all(p.exitcode == 0 for p in procs) and results.empty():
          raise RuntimeError(f'{what}s stopped after {len(out)} of {len(jobs)} jobs') from None
        continue
      if message[0] == 'error':
        raise RuntimeError(f'{what} {message[1]} failed (rerun to resume):\n{message[2]}')
      _, job, result = message
      out[job] = result
      if on_result is not None:
        on_result(job, result)
  finally:
    for p in procs:
      if p.is_alive():
        p.terminate()
    for p in procs:
      p.join()
  return out


def _work(index, cores, make_fn, todo, results) -> None:
  """One worker: pin, set XLA's threads, build `fn`, run queued jobs until None."""
  _die_with_parent()
  os.sched_setaffinity(0, cores)
  from close_jax import xla_flags

  if len(cores) == 1:  # Eigen's intra-op pool would still start threads on the one core
    xla_flags.add_flags({'xla_cpu_multi_thread_eigen': 'false'})
  xla_flags.apply_defaults()
  os.environ['JAX_PLATFORMS'] = 'cpu'
  try:
    import jax

    jax.config.update('jax_platforms', 'cpu')
    fn = make_fn()
    while (job := todo.get()) is not None:
      results.put(('result', job, fn(job)))
  except BaseException:
    results.put(('error', index, traceback.format_exc()))
    time.sleep(0.5)  # let the queue's feeder thread hand the message over
    raise SystemExit(1) from None


def _die_with_parent() -> None:
  """Linux: the kernel kills this worker when its parent dies."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass
