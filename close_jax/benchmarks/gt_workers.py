"""Standalone ground-truth runs in parallel CPU worker processes, each pinned to its own cores.

Why: a standalone NB201 run at the ranking study's size (C=8, batch 256 of 16x16 images) is a
stream of small convolutions that XLA:CPU's intra-op threads share poorly. Measured on a 2-core
AMD EPYC VM (`experiments/bench_gt_workers.py`, docs/ranking_quality.md): one run on one core
takes ~1.45x its time on two, so two one-core processes train 1.3x the runs per hour of one
two-core process; on a many-core host one process uses its cores worse still. The runs are
independent, so they are spread over worker processes: worker i keeps a disjoint slice of the
cores this process may use (`os.sched_getaffinity`), single-threaded when its slice is one core,
and takes the next (cell, seed) from a shared queue (runs differ up to 3x in cost with their
convolutions, so a static split would idle). Each worker appends every finished run to the
campaign's runs file itself (`gt_runs.RunsFile`, under a lock), so a kill of any process loses
only the runs in progress, and dies with its parent (Linux `PR_SET_PDEATHSIG`). Workers run JAX
on the CPU whatever the host has: on an accelerator, train in one process (`workers=1`) or batch
cells (`StandaloneTrainer.train_batch`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable, Sequence

from close_jax.benchmarks.gt_runs import RunsFile

Train = Callable[[str, int], float]  # (cell string, seed) -> test accuracy


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


def train_parallel(
  make_train: Callable[[], Train],
  jobs: Sequence[tuple[str, int]],
  epochs: int,
  runs_path: str,
  workers: int,
  on_run: Callable[[str, int, float], None] | None = None,
) -> dict[tuple[str, int], float]:
  """Trains `jobs` ((cell, seed) pairs) in `workers` processes; returns {(cell, seed): accuracy}
  as the runs file holds it (4 decimals). `make_train` is picklable (a top-level function or a
  `functools.partial` of one) and is called once in each worker, after its cores and XLA flags
  are set, to build the trainer. `on_run` is called in this process as each run ends (progress).
  A worker that fails or dies stops the others and raises RuntimeError naming it; the runs that
  finished are in the runs file."""
  slices = core_slices(usable_cores(), workers)[: max(1, len(jobs))]
  RunsFile(runs_path).start()
  context = multiprocessing.get_context('spawn')  # a fresh interpreter: no inherited JAX state
  todo, results = context.Queue(), context.Queue()
  for job in jobs:
    todo.put(tuple(job))
  for _ in slices:
    todo.put(None)
  procs = [
    context.Process(
      target=_work,
      args=(i, cores, make_train, epochs, runs_path, todo, results),
      name=f'gt-worker-{i}',
      daemon=True,
    )
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
              f'ground-truth worker {i} (cores {slices[i]}) died with exit code {p.exitcode} '
              f'after {len(out)} of {len(jobs)} runs; rerun to resume'
            ) from None
        if all(p.exitcode == 0 for p in procs) and results.empty():
          raise RuntimeError(
            f'ground-truth workers stopped after {len(out)} of {len(jobs)} runs'
          ) from None
        continue
      if message[0] == 'error':
        _, i, trace = message
        raise RuntimeError(f'ground-truth worker {i} failed (rerun to resume):\n{trace}')
      _, cell, seed, accuracy = message
      out[(cell, seed)] = accuracy
      if on_run is not None:
        on_run(cell, seed, accuracy)
  finally:
    for p in procs:
      if p.is_alive():
        p.terminate()
    for p in procs:
      p.join()
  return out


def _work(index, cores, make_train, epochs, runs_path, todo, results) -> None:
  """One worker: pin, set XLA's threads, build the trainer, train queued runs until None."""
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
    train = make_train()
    runs = RunsFile(runs_path)
    while (job := todo.get()) is not None:
      cell, seed = job
      accuracy = round(float(train(cell, seed)), 4)  # as the runs file holds it
      runs.append([(cell, seed, epochs, accuracy)])
      results.put(('run', cell, seed, accuracy))
  except BaseException:
    results.put(('error', index, traceback.format_exc()))
    time.sleep(0.5)  # let the queue's feeder thread hand the message over
    raise SystemExit(1) from None


def _die_with_parent() -> None:
  """Linux: the kernel kills this worker when its parent dies (a kill -9 leaves no orphan
  training runs that a resumed campaign would train again)."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def idx_standalone(data: dict, protocol) -> Train:
  """A worker's trainer for the ranking study: `StandaloneTrainer` (NB201, `protocol`) on the
  idx dataset's split (`data`: data_dir, train_size, image_size, rank_size), as
  `experiments/ranking_quality.py` trains in one process."""
  from close_jax.benchmarks.nb201_gt_trainer import StandaloneTrainer
  from close_jax.spaces import nb201

  trainer = StandaloneTrainer(protocol, *idx_split(**data))
  return lambda cell, seed: trainer.accuracy(nb201.parse(cell), seed)


def idx_split(data_dir: str, train_size: int, image_size: int, rank_size: int):
  """(dataset, test images, test labels): the supernet's training split and the test images."""
  from close_jax.data import idx

  dataset = idx.load_idx(data_dir, train_size, image_size, rank_size)
  test = idx.load_idx_arrays(data_dir, image_size)
  return dataset, test['test_images'], test['test_labels']
