"""The rankings a supernet run makes, and rankings.jsonl, their one record per ranking.

Why one object: a run ranks after chosen epochs, just before and just after a curriculum switch,
and in evaluate mode; a resumed run must neither lose a ranking its previous process did not
finish nor record one twice. Keeping what was ranked (in this process and in the file) in one
place keeps rankings.jsonl free of duplicates.
"""

from __future__ import annotations

import json

import jax

from close_jax import evaluate
from close_jax.metric_writer import MetricWriter, write_atomic
from close_jax.supernet import Supernet

WHEN = ('epoch', 'before_switch', 'after_switch')


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


class Rankings:
  """Ranks through the run's compiled scorers (`evaluate.Scorers`) and records each ranking."""

  def __init__(self, run):
    self.run = run
    self.writer = MetricWriter(
      run.workdir, jax.process_index() == 0, 'rankings.jsonl', run.config.tensorboard
    )
    self._end_of_epoch: dict[int, dict] = {}  # this process's rankings of end-of-epoch states

  def recorded(self, epoch: int) -> bool:
    """Whether rankings.jsonl holds the end-of-epoch ranking after `epoch` epochs."""
    return any(
      r['epoch'] == epoch and r.get('when', 'epoch') == 'epoch' for r in self.writer.read()
    )

  def drop_to_redo(self, start_epoch: int) -> None:
    """A run resumed at `start_epoch` ranks again after it and at a switch there: drops those
    records (an end-of-epoch ranking at `start_epoch` stays)."""
    records = self.writer.read()
    kept = [
      r
      for r in records
      if r['epoch'] < start_epoch
      or (r['epoch'] == start_epoch and r.get('when', 'epoch') == 'epoch')
    ]
    if self.writer.enabled and len(kept) != len(records):
      lines = [json.dumps(r, sort_keys=True) + '\n' for r in kept]
      write_atomic(self.writer.path, lambda f: f.writelines(lines))

  def rank(
    self, supernet: Supernet, params, epoch: int, when: str = 'epoch', record: bool = True
  ) -> dict:
    """Ranks the state after `epoch` epochs (writes ranking.json/.csv) and, with `record`, adds
    its summary to rankings.jsonl. `when` tells a switch's rankings (same epoch) apart; the
    state just before a switch is the end of the previous epoch, so an end-of-epoch ranking of
    it made by this process is recorded again, not recomputed."""
    if when not in WHEN:
      raise ValueError(f'when={when!r}: expected one of {WHEN}')
    result = self._end_of_epoch.get(epoch) if when == 'before_switch' else None
    if result is None:
      run = self.run
      result = evaluate.rank(
        run.config,
        supernet,
        params,
        run.dataset,
        run.workdir,
        epoch,
        run.eval_key,
        log=_log,
        scorers=run.scorers,
        subset=self._curve_subset(epoch, when),
      )
    if when == 'epoch':
      self._end_of_epoch[epoch] = result
    summary = evaluate.summary(result)
    where = f'epoch {epoch}' + ('' if when == 'epoch' else f' ({when.replace("_", " ")})')
    _log(f'ranking at {where}: ' + json.dumps(summary))
    if record:
      self.writer.write(
        {'epoch': epoch, 'when': when, 'num_blocks': supernet.num_blocks, **summary}
      )
    return result

  def _curve_subset(self, epoch: int, when: str) -> int:
    """`eval.curve_num_archs` for a ranking along the learning curve: a curve needs many
    points, each a full ranking, and a subset of the architectures shows its shape for a
    fraction of the cost. 0 (all of them) for the run's final ranking and in evaluate mode,
    whose scores are the run's result."""
    config = self.run.config
    if config.mode == 'evaluate' or (when == 'epoch' and epoch >= config.num_epochs):
      return 0
    return int(config.eval.get('curve_num_archs', 0))

  def close(self) -> None:
    self.writer.close()
