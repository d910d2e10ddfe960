"""The interval curriculum against the maps of aw_nas's splitting rule (germ_close)."""

import numpy as np
import pytest

from close_jax import intervals


def _hand_split(groups, parent, new):
  left, right = groups[parent]
  middle = (left + right) // 2
  groups[parent], groups[new] = (left, middle), (middle, right)


def _map(groups, num_positions):
  out = np.full(num_positions, -1)
  for block, (left, right) in groups.items():
    out[left:right] = block
  return out.tolist()


def test_resnet_maps_at_every_switch():
  ones = [1] * 12
  assert intervals.position_map(23, 9).tolist() == [0, 4, 3, 5, 6, 2, 8, 8, 7, 7, 7] + ones
  assert intervals.position_map(23, 11).tolist() == [0, 4, 3, 5, 6, 2, 8, 9, 7, 10, 10] + ones
  at_13 = intervals.position_map(23, 13).tolist()
  assert at_13[17:] == [12] * 6 and at_13[11:17] == [1] * 6
  assert intervals.position_map(23, 15).tolist()[11:] == [1, 14, 14, 13, 13, 13] + [12] * 6
  assert intervals.position_map(23, 17).tolist()[11:] == [1, 14, 15, 13, 16, 16] + [12] * 6


def test_resnexta_maps_at_every_switch():
  assert intervals.position_map(15, 9).tolist() == [0, 3, 4, 2, 6, 5, 7, 1, 1, 1, 1, 8, 8, 8, 8]
  maps = [intervals.position_map(15, n) for n in (9, 10, 11, 12, 13)]
  changed = [np.flatnonzero(a != b).tolist() for a, b in zip(maps, maps[1:], strict=False)]
  assert changed == [[9, 10], [8], [10], [13, 14]]
  assert [m[c[0]] for m, c in zip(maps[1:], changed, strict=True)] == [9, 10, 11, 12]


def test_splits_match_a_hand_worked_sequence_and_name_the_parent():
  # ResNeXt-A from 9 to 13 blocks, worked by hand from the 9-block groups.
  groups = {0: (0, 1), 3: (1, 2), 4: (2, 3), 2: (3, 4), 6: (4, 5), 5: (5, 6), 7: (6, 7)}
  groups |= {1: (7, 11), 8: (11, 15)}
  for parent, new in ((1, 9), (1, 10), (9, 11), (8, 12)):
    _hand_split(groups, parent, new)
  assert intervals.position_map(15, 13).tolist() == _map(groups, 15)
  assert intervals.parents(15, 13)[9:] == (1, 1, 9, 8)


@pytest.mark.parametrize('criterion', intervals.CRITERIA)
@pytest.mark.parametrize('positions', [1, 2, 7, 15, 23])
def test_every_level_is_a_partition_into_intervals(criterion, positions):
  for blocks in range(1, positions + 1):
    block_map = intervals.position_map(positions, blocks, criterion)
    assert sorted(set(block_map.tolist())) == list(range(blocks))
    for block in range(blocks):  # each block owns one run of consecutive positions
      where = np.flatnonzero(block_map == block)
      assert where.tolist() == list(range(where[0], where[-1] + 1))
    if blocks > 1:  # one split: only the new block's positions change, all from the parent
      before = intervals.position_map(positions, blocks - 1, criterion)
      moved = block_map != before
      assert set(block_map[moved].tolist()) == {blocks - 1}
      assert set(before[moved].tolist()) == {intervals.parents(positions, blocks, criterion)[-1]}


def test_max_splits_the_longest_interval():
  assert intervals.position_map(8, 3, 'max').tolist() == [0, 0, 2, 2, 1, 1, 1, 1]
  assert intervals.position_map(8, 4, 'max').tolist() == [0, 0, 2, 2, 1, 1, 3, 3]


@pytest.mark.parametrize(
  ('args', 'message'),
  [((23, 0), '0 blocks over 23'), ((23, 24), '24 blocks over 23'), ((4, 2, 'min'), "'min'")],
)
def test_impossible_requests_are_one_line_errors(args, message):
  with pytest.raises(ValueError, match=message):
    intervals.position_map(*args)
