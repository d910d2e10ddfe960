"""Interval curriculum for sequential (NDS) spaces: which GLOW block serves each position.

In a stage of a ResNet-like space the positions 1..max_depth-1 are consecutive, so CLOSE shares a
block over an interval of positions instead of choosing one with a GATE. Every level adds one
block by splitting an interval (l, r) at m = (l + r) // 2: the left half keeps its block, the
right half goes to the new block, which inherits (WIT) from the block it split. This is the
official `GermCloseWeightsManager.split_curriculum`; the map is host data (numpy), fixed per level,
and enters the jitted step as a traced int array, so it costs no compile of its own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CRITERIA = ('pre', 'max')


@dataclasses.dataclass(frozen=True)
class Split:
  parent: int  # the block whose interval was split (the new block's WIT source)
  new: int  # the new block's id (= the number of blocks before the split)
  interval: tuple[int, int]  # [l, r) handed to the new block


def splits(num_positions: int, num_blocks: int, criterion: str = 'pre') -> tuple[Split, ...]:
  """The `num_blocks - 1` splits that take one block over [0, num_positions) to `num_blocks`.

  `pre` splits the splittable interval (two positions or more) with the smallest left end, so
  early positions get private blocks first and deep ones stay shared longest; `max` splits the
  longest (the first such on a tie, as Python's `max` in the official code)."""
  if criterion not in CRITERIA:
    raise ValueError(f'interval criterion {criterion!r}: expected one of {CRITERIA}')
  if not 1 <= num_blocks <= num_positions:
    raise ValueError(
      f'{num_blocks} blocks over {num_positions} positions: expected 1 to {num_positions} blocks '
      '(every block owns at least one position)'
    )
  groups = {0: (0, num_positions)}
  out = []
  for new in range(1, num_blocks):
    splittable = [(k, lr) for k, lr in groups.items() if lr[1] - lr[0] > 1]
    if criterion == 'pre':
      parent, (left, right) = min(splittable, key=lambda item: item[1][0])
    else:
      parent, (left, right) = max(splittable, key=lambda item: item[1][1] - item[1][0])
    middle = (left + right) // 2
    groups[parent] = (left, middle)
    groups[new] = (middle, right)
    out.append(Split(parent, new, (middle, right)))
  return tuple(out)


def position_map(num_positions: int, num_blocks: int, criterion: str = 'pre') -> np.ndarray:
  """int32 (num_positions,): the block serving each position at `num_blocks` blocks."""
  blocks = np.zeros(num_positions, np.int32)
  for split in splits(num_positions, num_blocks, criterion):
    blocks[split.interval[0] : split.interval[1]] = split.new
  return blocks


def parents(num_positions: int, num_blocks: int, criterion: str = 'pre') -> tuple[int, ...]:
  """parents[b]: the block that block b inherits from when it is created (block 0: itself)."""
  return (0,) + tuple(s.parent for s in splits(num_positions, num_blocks, criterion))
