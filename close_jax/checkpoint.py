"""Orbax checkpoints of the train state plus a small JSON record of the run's position.

The JSON part (epoch, and whatever the curriculum needs to rebuild pytree shapes) is restored first,
so the caller can build the right abstract state before restoring the arrays.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
  """A checkpoint exists but cannot be read back."""


class Checkpointer:
  """Epoch-numbered checkpoints in WORKDIR/checkpoints, keeping the last `keep`."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def save(self, epoch: int, state: Any, meta: dict) -> None:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    try:
      self._manager.save(epoch, args=args)
      self._manager.wait_until_finished()
    except Exception as e:  # orbax writes to a temporary directory: older checkpoints are intact
      first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
      raise CheckpointError(
        f'cannot write checkpoint {os.path.join(self.directory, str(epoch))} '
        f'({type(e).__name__}: {first}); the older checkpoints are intact'
      ) from e

  def restore_meta(self, epoch: int) -> dict:
    try:
      out = self._manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types; report one clear line
      raise CheckpointError(self._message(epoch, e)) from e
    return dict(out['meta'])

  def restore_state(self, epoch: int, abstract_state: Any, sharding=None) -> Any:
    """Restores into the shapes of `abstract_state`, placed with `sharding` (e.g. replicated
    over the run's mesh; default: as saved)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    if sharding is not None:
      abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract
      )
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    try:
      return self._manager.restore(epoch, args=args)['state']
    except Exception as e:
      raise CheckpointError(self._message(epoch, e)) from e

  def restore_newest(
    self, abstract_of: Callable[[dict], Any], sharding=None, log=print
  ) -> tuple[int, dict, Any] | None:
    """(epoch, meta, state) of the newest checkpoint that restores, or None when there is none.

    A checkpoint that fails to restore (a torn write, a disk error) is moved aside to
    WORKDIR/corrupt_checkpoints/<epoch> (kept for inspection, out of orbax's way) with one line
    of explanation, and the next older one is tried; CheckpointError only when none restores.
    `abstract_of(meta)` gives the abstract state for a checkpoint's meta record.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    errors = []
    for epoch in steps:
      try:
        meta = self.restore_meta(epoch)
        return epoch, meta, self.restore_state(epoch, abstract_of(meta), sharding)
      except CheckpointError as e:
        errors.append(str(e))
        aside = os.path.join(os.path.dirname(self.directory), 'corrupt_checkpoints', str(epoch))
        if jax.process_index() == 0:  # one process moves it; every process tries the older one
          os.makedirs(os.path.dirname(aside), exist_ok=True)
          shutil.rmtree(aside, ignore_errors=True)
          shutil.move(os.path.join(self.directory, str(epoch)), aside)
        self._manager.reload()
        log(f'checkpoint of epoch {epoch} does not restore: moved to {aside}; trying an older one')
    if errors:
      raise CheckpointError(f'no checkpoint in {self.directory} restores; the newest: {errors[0]}')
    return None

  def _message(self, epoch: int, error: Exception) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    path = os.path.join(self.directory, str(epoch))
    return (
      f'cannot restore checkpoint {path} ({type(error).__name__}: {first[:300]}); '
      'it may be corrupted or from an incompatible config'
    )

  def close(self) -> None:
    self._manager.close()
