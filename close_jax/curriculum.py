"""Curriculum on the sharing extent: how many weight blocks each cell has at each epoch.

A curriculum is a list of levels; level l starts at `start_epochs[l]` with `block_counts[l]` blocks
per cell (`cl_schedule` gives one start epoch per block, so repeated epochs add several blocks at
once, as NDS's 9 initial blocks). The number of blocks is the only thing that changes shapes, so
a run compiles its train step once per level. `lr_restart_epochs` are the SRT epochs (fresh
optimizer state and plateau controller, learning rate back to its initial value).
"""

from __future__ import annotations

import bisect
import dataclasses

import ml_collections

from close_jax import intervals, spaces

START_BLOCKS = ('split', 'independent')  # interval spaces: how the first level's blocks start


@dataclasses.dataclass(frozen=True)
class Curriculum:
  method: str
  block_counts: tuple[int, ...]
  start_epochs: tuple[int, ...]
  lr_restart_epochs: tuple[int, ...] = ()
  wit: str = 'sum'
  parents: tuple[int, ...] = ()  # interval spaces: block b inherits from parents[b]
  # Interval spaces: the first level's blocks 1..n-1 come from n-1 splits of block 0 with WIT
  # (aw_nas `GermCloseWeightsManager.on_epoch_start(1)`), not from independent draws.
  split_start: bool = False

  @property
  def num_levels(self) -> int:
    return len(self.block_counts)

  @property
  def max_blocks(self) -> int:
    return self.block_counts[-1]

  def level_at(self, epoch: int) -> int:
    return bisect.bisect_right(self.start_epochs, epoch) - 1

  def blocks_at(self, epoch: int) -> int:
    return self.block_counts[self.level_at(epoch)]

  def parent(self, block: int) -> int:
    """The block a new block inherits from: the previous one (CLOSE, `wit_from=prev`), or the one
    shared block (CLOSE-S, whose stage 2 splits block 0 into one copy per edge), or, in an
    interval space, the block whose interval the new block split off."""
    if self.parents:
      return self.parents[block]
    return 0 if self.method == 'close_s' else block - 1


def from_config(config: ml_collections.ConfigDict, space: spaces.Space | None = None) -> Curriculum:
  """Builds and checks the curriculum; errors name the config value at fault. `space`: the
  config's space when the caller has it already."""
  method = config.method
  space = space or spaces.get(config.get('space', 'nb201'))
  vanilla = space.vanilla_blocks  # one block per owner
  if method == 'vanilla':
    return Curriculum(method, (vanilla,), (0,))
  cfg = config.close
  restarts = tuple(int(e) for e in cfg.lr_restart_epochs)
  if method == 'close_s' and space.interval_curriculum:
    raise ValueError(
      f'config.method=close_s is not defined for the interval space {space.name!r} (CLOSE-S has '
      'no NDS form): expected vanilla or close'
    )
  if method == 'close_s':
    if not cfg.close_s_switch_epoch > 0:
      raise ValueError(
        f'config.close.close_s_switch_epoch={cfg.close_s_switch_epoch!r}: expected an epoch > 0'
      )
    curriculum = Curriculum(method, (1, vanilla), (0, cfg.close_s_switch_epoch), restarts, cfg.wit)
  else:
    schedule = tuple(int(e) for e in cfg.cl_schedule)
    if not schedule or schedule[0] != 0 or list(schedule) != sorted(schedule):
      raise ValueError(
        f'config.close.cl_schedule={schedule!r}: expected non-decreasing epochs starting at 0 '
        '(one entry per block; blocks sharing an epoch are added together)'
      )
    starts = tuple(dict.fromkeys(schedule))
    counts = tuple(sum(e <= start for e in schedule) for start in starts)
    curriculum = Curriculum(method, counts, starts, restarts, cfg.wit)
    if space.interval_curriculum:
      criterion = cfg.get('interval_criterion', 'pre')
      if len(schedule) > space.num_positions or criterion not in intervals.CRITERIA:
        raise ValueError(
          f'config.close.cl_schedule has {len(schedule)} entries and '
          f'config.close.interval_criterion={criterion!r}: expected at most '
          f'{space.num_positions} blocks (one per position of {space.name!r}) and one of '
          f'{intervals.CRITERIA}'
        )
      start = cfg.get('start_blocks', 'split')
      if start not in START_BLOCKS:
        raise ValueError(
          f'config.close.start_blocks={start!r} is not supported: expected one of {START_BLOCKS}'
        )
      parents = intervals.parents(space.num_positions, len(schedule), criterion)
      curriculum = dataclasses.replace(curriculum, parents=parents, split_start=start == 'split')
  for epoch in restarts:
    if not epoch > 0:
      raise ValueError(f'config.close.lr_restart_epochs={restarts!r}: epochs must be > 0')
  return curriculum
