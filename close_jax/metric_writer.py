"""Machine-readable metrics: one JSON object per line in WORKDIR/metrics.jsonl."""

from __future__ import annotations

import contextlib
import json
import os


class WriteError(OSError):
  """An output file could not be written (disk full, read-only directory); the previous
  version of the file is intact."""


def write_atomic(path: str, write) -> None:
  """Writes through `write(file)` to a temporary file, then renames: never a half-written file.
  On failure the temporary file is removed and the old file stays as it was."""
  tmp = path + '.tmp'
  try:
    with open(tmp, 'w', newline='') as f:
      write(f)
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise WriteError(f'cannot write {path}: {e.strerror or e}; the previous file is intact') from e


class MetricWriter:
  """Appends records; on resume, drops records the restored checkpoint has not yet reached.

  Only one process (process 0) should own a writer; others pass `enabled=False`.
  """

  def __init__(self, workdir: str, enabled: bool = True, filename: str = 'metrics.jsonl'):
    self.path = os.path.join(workdir, filename)
    self.enabled = enabled

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    # Rewritten whole (atomically) rather than appended: a failed write never leaves half a line.
    lines = [json.dumps(r, sort_keys=True) + '\n' for r in self.read()]
    lines.append(json.dumps(record, sort_keys=True) + '\n')
    write_atomic(self.path, lambda f: f.writelines(lines))

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_from_epoch(self, epoch: int) -> None:
    """Keeps only records with `epoch < epoch` (written atomically), so a resumed run has no
    duplicate or orphaned epochs."""
    if not self.enabled or not os.path.exists(self.path):
      return
    kept = [r for r in self.read() if r.get('epoch', -1) < epoch]
    write_atomic(
      self.path, lambda f: f.writelines(json.dumps(r, sort_keys=True) + '\n' for r in kept)
    )
