"""NAS-Bench-201 ground-truth accuracies to rank supernet scores against.

The shipped table (see data/PROVENANCE.md) has one row per official index. Supernet scores are
computed per isomorphism class, so the ground truth is averaged over each class too. Users may
also supply their own CSV of (arch, accuracy) pairs.
"""

import os

import numpy as np

from close_jax.benchmarks import csv_table, nb201_table
from close_jax.benchmarks.nb201_table import COLUMNS
from close_jax.spaces import nb201


def read_table() -> dict[str, tuple[str, ...]]:
  """The shipped table as raw strings per column, one row per official index (checked)."""
  return nb201_table.read_table(nb201.NUM_ARCHS)


def load_column(name: str) -> np.ndarray:
  """One accuracy column (percent) as float64 (15625,), NaN where the table is blank."""
  if name not in COLUMNS:
    raise ValueError(f'unknown ground-truth column {name!r}: expected one of {", ".join(COLUMNS)}')
  return np.array([float(v) if v.strip() else np.nan for v in read_table()[name]])


def deiso_ground_truth(name: str) -> tuple[np.ndarray, np.ndarray]:
  """Class representatives and the class-mean accuracy of column `name`.

  Classes with no value at all (possible for the sparse tagates column) are dropped from both
  outputs, so the arrays stay aligned.

  Returns:
    (archs, acc): int32 (M, 6) and float64 (M,), M = 6466 for complete columns.
  """
  values = load_column(name)
  rep_index, class_of = nb201.deiso_classes()
  known = ~np.isnan(values)
  sums = np.bincount(class_of[known], weights=values[known], minlength=len(rep_index))
  counts = np.bincount(class_of[known], minlength=len(rep_index))
  keep = counts > 0
  archs = np.array(nb201.deiso_representatives()[keep])
  return archs, sums[keep] / counts[keep]


def user_ground_truth(csv_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads a user CSV with columns `arch` (NB201 string) and `accuracy`.

  Rows are deduplicated by isomorphism class, because the supernet cannot tell isomorphic cells
  apart and duplicates would otherwise count twice in rank correlations. The first arch seen in a
  class represents it and its accuracy is the mean over the class's rows.

  Returns:
    (archs, acc): int32 (M, 6) and float64 (M,) in order of first appearance.
  """
  return csv_table.read_ground_truth(csv_path, nb201.parse, nb201.canonical_key)
