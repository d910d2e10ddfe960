"""Standalone ground-truth runs in parallel CPU worker processes (`close_jax.cpu_workers`: why and
how the workers are pinned), each appending every finished run to the campaign's runs file itself
(`gt_runs.RunsFile`, under a lock), so a kill of any process loses only the runs in progress. On
an accelerator train in one process, or batch cells (`StandaloneTrainer.train_batch`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from close_jax import cpu_workers
from close_jax.benchmarks.gt_runs import RunsFile

Train = Callable[[str, int], float]  # (cell string, seed) -> test accuracy


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
  `functools.partial` of one) and is called once in each worker to build the trainer. `on_run`
  is called in this process as each run ends (progress). A worker that fails or dies stops the
  others and raises RuntimeError naming it; the runs that finished are in the runs file."""
  RunsFile(runs_path).start()
  return cpu_workers.map_unordered(
    functools.partial(_recording, make_train, runs_path, epochs),
    [tuple(job) for job in jobs],
    workers,
    on_result=None if on_run is None else lambda job, accuracy: on_run(*job, accuracy),
    what='ground-truth worker',
  )


def _recording(make_train, runs_path: str, epochs: int):
  """In a worker: the trainer, wrapped to append each run to the runs file as it ends."""
  train, runs = make_train(), RunsFile(runs_path)

  def run(job):
    cell, seed = job
    accuracy = round(float(train(cell, seed)), 4)  # as the runs file holds it
    runs.append([(cell, seed, epochs, accuracy)])
    return accuracy

  return run


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
