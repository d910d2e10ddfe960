"""Machine-readable metrics: one JSON object per line in WORKDIR/metrics.jsonl, and the same
numbers as TensorBoard scalars in WORKDIR/tensorboard when asked (`config.tensorboard`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time

TENSORBOARD_DIR = 'tensorboard'
# Tag prefix per file: training metrics per epoch, rankings per evaluation.
TAG_PREFIX = {'metrics.jsonl': 'train', 'rankings.jsonl': 'ranking'}
NOT_SCALARS = ('epoch', 'step', 'when')


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

  Only one process (process 0) should own a writer; others pass `enabled=False`. With
  `tensorboard`, each record's numbers also go to WORKDIR/tensorboard as scalars (`scalars`).
  """

  def __init__(
    self,
    workdir: str,
    enabled: bool = True,
    filename: str = 'metrics.jsonl',
    tensorboard: bool = False,
  ):
    self.path = os.path.join(workdir, filename)
    self.enabled = enabled
    self.tensorboard_dir = os.path.join(workdir, TENSORBOARD_DIR) if tensorboard else None
    self._prefix = TAG_PREFIX.get(filename, os.path.splitext(filename)[0])
    self._events = None  # a tensorboardX EventsWriter, opened at the first record
    self._purge_step = None

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    # Rewritten whole (atomically) rather than appended: a failed write never leaves half a line.
    lines = [json.dumps(r, sort_keys=True) + '\n' for r in self.read()]
    lines.append(json.dumps(record, sort_keys=True) + '\n')
    write_atomic(self.path, lambda f: f.writelines(lines))
    if self.tensorboard_dir is not None:
      self._write_events(record)

  def scalars(self, record: dict) -> tuple[int, dict[str, float]]:
    """(step, {tag: value}) of a record as TensorBoard shows it. The step is epochs trained, so
    training metrics (0-based `epoch`) and rankings (`epoch` = epochs trained) share an axis; a
    switch's rankings get their own prefix, as they share the epoch with the end-of-epoch one."""
    step = int(record.get('epoch', 0)) + (self._prefix == 'train')
    prefix = self._prefix
    if record.get('when', 'epoch') != 'epoch':
      prefix = f'{prefix}_{record["when"]}'
    values = {}
    for key, value in record.items():
      if key in NOT_SCALARS:
        continue
      items = value.items() if isinstance(value, dict) else None
      if isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
      for sub, v in items if items is not None else ((None, value),):
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
          values[f'{prefix}/{key}' + (f'/{sub}' if sub is not None else '')] = float(v)
    return step, values

  def _write_events(self, record: dict) -> None:
    # tensorboardX's synchronous event-file writer: SummaryWriter queues events for a thread and
    # its flush does not wait for them, so a killed run would lose what its jsonl kept.
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2
    from tensorboardX.summary import scalar

    if self._events is None:
      os.makedirs(self.tensorboard_dir, exist_ok=True)
      # Unique and ordered even for two writers in one second (the name's stamp is seconds).
      self._events = EventsWriter(
        os.path.join(self.tensorboard_dir, 'events'), f'.{time.time_ns()}'
      )
      if self._purge_step is not None:
        start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
        self._events.write_event(
          event_pb2.Event(wall_time=time.time(), step=self._purge_step, session_log=start)
        )
    step, values = self.scalars(record)
    for tag, value in values.items():
      event = event_pb2.Event(wall_time=time.time(), step=step, summary=scalar(tag, value))
      self._events.write_event(event)
    self._events.flush()

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
      self._events = None

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_from_epoch(self, epoch: int) -> None:
    """Keeps only records with `epoch < epoch` (written atomically), so a resumed run has no
    duplicate or orphaned epochs."""
    if self.tensorboard_dir is not None and self._events is None:
      # TensorBoard drops the earlier events from this step on (all tags) when it reads the
      # new file's start marker, so resumed epochs are not shown twice.
      self._purge_step = epoch + 1
    if not self.enabled or not os.path.exists(self.path):
      return
    kept = [r for r in self.read() if r.get('epoch', -1) < epoch]
    write_atomic(
      self.path, lambda f: f.writelines(json.dumps(r, sort_keys=True) + '\n' for r in kept)
    )
