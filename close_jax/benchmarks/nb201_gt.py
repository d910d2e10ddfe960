"""NAS-Bench-201 ground-truth accuracies to rank supernet scores against.

The shipped table (see data/PROVENANCE.md) has one row per official index. Supernet scores are
computed per isomorphism class, so the ground truth is averaged over each class too. Users may
also supply their own CSV of (arch, accuracy) pairs.
"""

import csv
import functools
import importlib.resources
import os

import numpy as np

from close_jax.benchmarks import csv_table
from close_jax.spaces import nb201

GT_FILE = 'nb201_cifar10_gt.csv'
COLUMNS = (
  'cifar10_valid_200ep',
  'cifar10_test_200ep',
  'cifar100_test_200ep',
  'imagenet16_test_200ep',
  'tagates_cifar10_test',
  'cifar10_test_12ep',
)
_HEADER = ('index', 'arch', *COLUMNS)


@functools.cache
def read_table() -> dict[str, tuple[str, ...]]:
  """Reads the shipped table as raw strings per column, checking it is complete and in order.

  Row order defines the official index everywhere else, so a reordered or truncated file must fail
  here rather than silently misalign accuracies.
  """
  path = importlib.resources.files('close_jax.benchmarks') / 'data' / GT_FILE
  with path.open(newline='') as f:
    rows = list(csv.reader(f))
  if tuple(rows[0]) != _HEADER:
    raise ValueError(f'{GT_FILE} header {rows[0]!r}: expected {list(_HEADER)!r}')
  body = rows[1:]
  if len(body) != nb201.NUM_ARCHS or any(r[0] != str(i) for i, r in enumerate(body)):
    raise ValueError(f'{GT_FILE}: expected rows with index 0..{nb201.NUM_ARCHS - 1} in order')
  return {name: tuple(col) for name, col in zip(_HEADER, zip(*body, strict=True), strict=True)}


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
