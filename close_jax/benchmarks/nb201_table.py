"""The shipped NAS-Bench-201 table (data/PROVENANCE.md) as raw strings per column.

Both the space (`spaces/nb201.py`: row i is the official index i) and the ground truth
(`benchmarks/nb201_gt.py`: the accuracy columns) read it; this module depends on neither.
"""

import csv
import functools
import importlib.resources

GT_FILE = 'nb201_cifar10_gt.csv'
COLUMNS = (
  'cifar10_valid_200ep',
  'cifar10_test_200ep',
  'cifar100_test_200ep',
  'imagenet16_test_200ep',
  'tagates_cifar10_test',
  'cifar10_test_12ep',
)
HEADER = ('index', 'arch', *COLUMNS)


@functools.cache
def read_table(num_rows: int) -> dict[str, tuple[str, ...]]:
  """Reads the table, checking it has `num_rows` rows with index 0..num_rows-1 in order.

  Row order defines the official index everywhere else, so a reordered or truncated file must fail
  here rather than silently misalign accuracies.
  """
  path = importlib.resources.files('close_jax.benchmarks') / 'data' / GT_FILE
  with path.open(newline='') as f:
    rows = list(csv.reader(f))
  if tuple(rows[0]) != HEADER:
    raise ValueError(f'{GT_FILE} header {rows[0]!r}: expected {list(HEADER)!r}')
  body = rows[1:]
  if len(body) != num_rows or any(r[0] != str(i) for i, r in enumerate(body)):
    raise ValueError(f'{GT_FILE}: expected rows with index 0..{num_rows - 1} in order')
  return {name: tuple(col) for name, col in zip(HEADER, zip(*body, strict=True), strict=True)}
