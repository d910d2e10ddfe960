"""Ground-truth CSVs of (architecture string, accuracy) rows, for any search space.

Rows are de-duplicated by the space's canonical key, because the supernet cannot tell equivalent
architectures apart and duplicates would otherwise count twice in rank correlations: the first
row of a class represents it and its accuracy is the mean over the class's rows. Every bad row is
reported with its file, row and line, in one line.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable

import numpy as np


def read_ground_truth(
  csv_path: str | os.PathLike,
  parse: Callable[[str], np.ndarray],
  key: Callable[[np.ndarray], object],
  arch_column: str = 'arch',
  accuracy_column: str = 'accuracy',
) -> tuple[np.ndarray, np.ndarray]:
  """(archs, accuracy): int32 (M, *arch_shape) and float64 (M,) in order of first appearance."""
  path = os.fspath(csv_path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'ground-truth CSV {path!r} does not exist or is not a file')
  firsts: dict[object, np.ndarray] = {}
  accs: dict[object, list[float]] = {}
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    missing = {arch_column, accuracy_column} - set(reader.fieldnames or ())
    if missing:
      raise ValueError(
        f'ground-truth CSV {path!r} lacks column(s) {sorted(missing)}: expected a header with '
        f'{arch_column!r} and {accuracy_column!r}, found {reader.fieldnames}'
      )
    for row_num, row in enumerate(reader, start=1):
      where = f'ground-truth CSV {path!r}, row {row_num} (line {reader.line_num})'
      try:
        arch = parse(row[arch_column])
        acc = float(row[accuracy_column])
      except (ValueError, TypeError) as e:
        raise ValueError(f'{where}: {e}') from e
      if not math.isfinite(acc):
        raise ValueError(f'{where}: accuracy {row[accuracy_column]!r} is not finite')
      k = key(arch)
      firsts.setdefault(k, arch)
      accs.setdefault(k, []).append(acc)
  if not firsts:
    raise ValueError(f'ground-truth CSV {path!r} has no data rows')
  archs = np.stack(list(firsts.values())).astype(np.int32)
  return archs, np.array([np.mean(v) for v in accs.values()])
