"""The runs file of a ground-truth campaign: one CSV row (`arch,seed,epochs,accuracy`) per finished
standalone run, appended and fsynced as each run ends, so a campaign killed at any point resumes
from its last whole row. Several processes may append at once (`gt_workers`): every append takes
an exclusive `flock` and first cuts a line torn by a killed writer, so rows never interleave or
glue onto a torn one."""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Iterable

FIELDS = ('arch', 'seed', 'epochs', 'accuracy')
Key = tuple[str, int, int]  # (cell, seed, epochs)


class RunsFile:
  def __init__(self, path: str):
    self.path = path

  def read(self) -> dict[Key, float]:
    """{(cell, seed, epochs): accuracy}; a torn last line or a malformed line is skipped, and a
    run written twice keeps its last value."""
    if not os.path.exists(self.path):
      return {}
    runs = {}
    with open(self.path, newline='') as f:
      text = f.read()
    if not text.endswith('\n'):  # a line torn by a kill: '...,6' of '...,61.2345' would parse
      text = text[: text.rfind('\n') + 1]
    for row in csv.DictReader(io.StringIO(text)):
      try:
        runs[(row['arch'], int(row['seed']), int(row['epochs']))] = float(row['accuracy'])
      except (TypeError, ValueError):
        continue
    return runs

  def start(self) -> None:
    """Writes the header of a new file, or cuts a line torn by a kill (so appends stay rows)."""
    with open(self.path, 'ab+') as f, _locked(f):
      _repair(f)

  def append(self, rows: Iterable[tuple[str, int, int, float]]) -> None:
    """Appends whole rows (accuracy to 4 decimals, as `read` returns them) and fsyncs."""
    text = ''.join(f'{a},{s},{e},{acc:.4f}\n' for a, s, e, acc in rows)
    with open(self.path, 'ab+') as f, _locked(f):
      _repair(f)
      f.write(text.encode())
      f.flush()
      os.fsync(f.fileno())


class _locked:
  def __init__(self, f):
    self.f = f

  def __enter__(self):
    fcntl.flock(self.f.fileno(), fcntl.LOCK_EX)

  def __exit__(self, *exc):
    fcntl.flock(self.f.fileno(), fcntl.LOCK_UN)


def _repair(f) -> None:
  """Under the lock: cut the tail after the last newline; a header when nothing whole is left."""
  size = f.seek(0, os.SEEK_END)
  if size:
    f.seek(size - 1)
    if f.read(1) == b'\n':
      return
  f.seek(0)
  keep = f.read().rfind(b'\n') + 1
  f.truncate(keep)
  if keep == 0:  # a new file, or its header torn
    f.write((','.join(FIELDS) + '\n').encode())
