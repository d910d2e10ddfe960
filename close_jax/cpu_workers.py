"""Independent jobs (standalone runs, supernet seeds) in parallel CPU worker processes, each pinned
to its own cores.

Why: close_jax's CPU-sized networks (the ranking study's NB201 at C=8, batch 256 of 16x16 images)
are streams of small convolutions that XLA:CPU's intra-op threads share poorly. Measured on a
2-core AMD EPYC VM (`experiments/bench_gt_workers.py`, docs/ranking_quality.md): a standalone run
on one core takes ~1.45x its time on two, and two one-core processes finish 1.28x the runs per
hour of one two-core process; on a many-core host one process uses its cores worse still. So a
study's independent jobs go to worker processes: worker i is born with a disjoint slice of the
cores this process may use as its affinity and its XLA flags in its environment (single-threaded
when its slice is one core), so every thread it starts is pinned, and takes the next job from a
shared queue (jobs differ in cost, so a fixed split would leave workers idle). Workers die with
their parent (Linux `PR_SET_PDEATHSIG`), so a killed and resumed study does not race orphans; a
job must record its own result durably (a runs file, a checkpoint) for a kill to lose only the
jobs in progress. Workers run JAX on the CPU whatever the host has: on an accelerator, run the
jobs in one process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
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
  top-level function or a `functools.partial` of one) and is called once in each worker to build
  `fn`. `on_result(job, result)` runs in this process as each job ends. A worker that fails or
  dies stops the others and raises RuntimeError naming it and its job (`what` says what the
  workers do)."""
  seen = set()
  for job in jobs:
    if job in seen:
      raise ValueError(f'job {job!r} is listed twice: expected distinct jobs')
    seen.add(job)
  slices = core_slices(usable_cores(), workers)[: max(1, len(jobs))]
  context = multiprocessing.get_context('spawn')  # a fresh interpreter: no inherited JAX state
  todo, results = context.Queue(), context.Queue()
  for k, job in enumerate(jobs):
    todo.put((k, job))
  for _ in slices:
    todo.put(None)
  todo.cancel_join_thread()  # jobs left unread when a worker fails must not block our exit
  payload = pickle.dumps(make_fn)  # unpickled in the worker: it may import JAX modules
  # Each worker's job in progress (its index in `jobs`), in shared memory: written before the
  # job runs, so a worker that dies mid-job is named with it (a queued message could be lost).
  running = context.Array('i', [-1] * len(slices), lock=False)
  procs = [
    context.Process(
      target=_work, args=(i, os.getpid(), payload, todo, results, running), daemon=True
    )
    for i in range(len(slices))
  ]
  for p, cores in zip(procs, slices, strict=True):
    _start_pinned(p, cores)
  out = {}
  try:
    while len(out) < len(jobs):
      try:
        message = results.get(timeout=2.0)
      except queue.Empty:
        for i, p in enumerate(procs):
          if p.exitcode is not None and p.exitcode != 0:
            raise RuntimeError(
              f'{what} {i} (cores {slices[i]}) died with exit code {p.exitcode} while running '
              f'{jobs[running[i]] if running[i] >= 0 else None!r}, after {len(out)} of '
              f'{len(jobs)} jobs; rerun to resume'
            ) from None
        if all(p.exitcode == 0 for p in procs) and results.empty():
          raise RuntimeError(f'{what}s stopped after {len(out)} of {len(jobs)} jobs') from None
        continue
      kind, i, k, body = message
      job = None if k < 0 else jobs[k]
      if kind == 'error':
        raise RuntimeError(f'{what} {i} failed on {job!r} (rerun to resume):\n{body}')
      out[job] = body
      if on_result is not None:
        on_result(job, body)
  finally:
    for p in procs:
      if p.is_alive():
        p.terminate()
    for p in procs:
      p.join()
  return out


def _start_pinned(process, cores: list[int]) -> None:
  """Starts `process` with `cores` as its affinity and its XLA settings in its environment from
  birth: every thread it ever starts (XLA's pools too, whichever import starts the backend)
  inherits them. This thread's own affinity and the environment are restored after."""
  saved_cores, saved_env = os.sched_getaffinity(0), dict(os.environ)
  try:
    os.sched_setaffinity(0, cores)
    from close_jax import xla_flags

    if len(cores) == 1:  # Eigen's intra-op pool would still start threads on the one core
      xla_flags.add_flags({'xla_cpu_multi_thread_eigen': 'false'})
    xla_flags.apply_defaults()
    os.environ['JAX_PLATFORMS'] = 'cpu'  # workers share the host's CPU, never an accelerator
    process.start()
  finally:
    os.sched_setaffinity(0, saved_cores)
    os.environ.clear()
    os.environ.update(saved_env)


def _work(index, parent, payload, todo, results, running) -> None:
  """One worker: build `fn`, run queued jobs until None, report each result or the error."""
  _die_with_parent(parent)
  k = -1
  try:
    fn = pickle.loads(payload)()
    while (item := todo.get()) is not None:
      k, job = item
      running[index] = k
      results.put(('result', index, k, fn(job)))
  except BaseException:
    results.put(('error', index, k, traceback.format_exc()))
    time.sleep(0.5)  # let the queue's feeder thread hand the message over
    raise SystemExit(1) from None


def _die_with_parent(parent: int) -> None:
  """Linux: the kernel kills this worker when its parent dies; a parent that died while this
  worker started (before the request) is caught by its pid."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass
  if os.getppid() != parent:
    os._exit(1)
