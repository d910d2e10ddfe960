"""Tests for the NAS-Bench-201 search space: parsing, isomorphism classes, live edges, sampling."""

import csv
import importlib.resources

import jax
import numpy as np
import pytest

from close_jax.spaces import nb201

N, SKIP, C1, C3, POOL = range(5)  # Op indices, named for readable hand examples.
ROW1 = (
  '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
)


def _csv_strings() -> list[str]:
  path = importlib.resources.files('close_jax.benchmarks') / 'data' / 'nb201_cifar10_gt.csv'
  with path.open(newline='') as f:
    return [row['arch'] for row in csv.DictReader(f)]


def test_constants():
  assert nb201.OPS[nb201.NONE] == 'none' and nb201.OPS[nb201.SKIP] == 'skip_connect'
  assert nb201.NUM_ARCHS == 15625 == len(nb201.OPS) ** len(nb201.EDGES)
  assert nb201.NUM_DEISO == 6466


def test_parse_known_string():
  np.testing.assert_array_equal(nb201.parse(ROW1), [C3, C3, POOL, SKIP, C3, SKIP])
  assert nb201.parse(ROW1).dtype == np.int32


def test_round_trip_on_every_csv_string():
  strings = _csv_strings()
  assert len(strings) == 15625
  for s in strings:
    assert nb201.to_str(nb201.parse(s)) == s


def test_all_archs_matches_csv_order():
  archs = nb201.all_archs()
  assert archs.shape == (15625, 6) and archs.dtype == np.int32
  np.testing.assert_array_equal(archs[1], nb201.parse(ROW1))
  assert len(np.unique(archs, axis=0)) == 15625
  with pytest.raises(ValueError):
    archs[0, 0] = 1  # Cached and shared, so it must be read-only.


@pytest.mark.parametrize(
  'bad',
  [
    '|none~0|+|none~0|none~1|',  # Too few groups.
    '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|',  # Too many groups.
    'none~0|+|none~0|none~1|+|none~0|none~1|none~2|',  # Missing leading pipe.
    '|none~0|+|none~0|none~1+|none~0|none~1|none~2|',  # Missing closing pipe.
    '|none~0|+|none~1|none~0|+|none~0|none~1|none~2|',  # Sources out of order.
    '|none~0|+|none~0|none~1|+|none~0|none~1|none~3|',  # Wrong source node.
    '|none~0|+|none~0|+|none~0|none~1|none~2|',  # Too few edges into node 2.
    '|none|+|none~0|none~1|+|none~0|none~1|none~2|',  # No source.
    '|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|',  # Unknown op.
    '| none~0|+|none~0|none~1|+|none~0|none~1|none~2|',  # Whitespace.
    '',
  ],
)
def test_parse_rejects_malformed_strings(bad):
  with pytest.raises(ValueError) as info:
    nb201.parse(bad)
  assert repr(bad) in str(info.value)
  assert '\n' not in str(info.value)


def test_parse_unknown_op_message_lists_ops():
  bad = '|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|'
  with pytest.raises(ValueError, match="unknown op 'conv_5x5'.*expected one of none, skip_connect"):
    nb201.parse(bad)


@pytest.mark.parametrize('bad', [None, 42, b'|none~0|', [0] * 6])
def test_parse_rejects_non_strings(bad):
  with pytest.raises(ValueError) as info:
    nb201.parse(bad)
  assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
  'bad, fragment',
  [
    ([0, 1, 2, 3, 4, 5], 'op index 5'),
    ([0, -1, 2, 3, 4, 0], 'op index -1'),
    ([0, 1, 2, 3, 4], 'shape (5,)'),
    ([0.0, 1.0, 2.0, 3.0, 4.0, 0.0], 'dtype float64'),
  ],
)
def test_validate_and_to_str_reject_bad_arrays(bad, fragment):
  for fn in (nb201.validate, nb201.to_str, nb201.canonical_key):
    with pytest.raises(ValueError) as info:
      fn(bad)
    assert fragment in str(info.value)


def test_exactly_6466_classes():
  keys = [nb201.canonical_key(a) for a in nb201.all_archs()]
  assert len(set(keys)) == 6466
  rep_index, class_of = nb201.deiso_classes()
  assert rep_index.shape == (6466,) and class_of.shape == (15625,)
  assert np.all(np.diff(rep_index) > 0)
  np.testing.assert_array_equal(class_of[rep_index], np.arange(6466))
  # Same class iff same key, and each representative is its class's smallest index.
  key_of_class = {}
  for index, (key, cls) in enumerate(zip(keys, class_of, strict=True)):
    assert key_of_class.setdefault(cls, key) == key
    assert rep_index[cls] <= index
  assert len(key_of_class) == 6466
  np.testing.assert_array_equal(nb201.deiso_representatives(), nb201.all_archs()[rep_index])


@pytest.mark.parametrize(
  'a, b, c, d', [(C3, C1, POOL, SKIP), (SKIP, C3, C3, C1), (POOL, N, C1, C3)]
)
@pytest.mark.parametrize('e03', [N, C3])
def test_node_swap_is_not_merged_by_the_benchmark_key(a, b, c, d, e03):
  # Swapping nodes 1 and 2 (with 1->2 = none) is a true graph isomorphism, but the benchmark key
  # sees node 2's none input as an extra '#' term and keeps the two apart. Merging them would give
  # fewer than the 6466 classes everyone reports, so this pins the benchmark's (weaker) notion.
  x = [a, b, N, e03, c, d]
  y = [b, a, N, e03, d, c]
  assert nb201.canonical_key(x) != nb201.canonical_key(y)


def test_key_detected_isomorphisms_share_a_class():
  _, class_of = nb201.deiso_classes()
  index = {tuple(arch): i for i, arch in enumerate(nb201.all_archs().tolist())}
  pairs = [
    # A conv reached through a skip equals the same conv applied directly.
    ([SKIP, N, N, N, C3, N], [N, N, N, C3, N, N]),
    # With node 1 = node 0 (skip), the two parallel paths into node 3 commute.
    ([SKIP, N, N, C3, C1, N], [SKIP, N, N, C1, C3, N]),
    ([SKIP, C3, POOL, N, N, SKIP], [SKIP, POOL, C3, N, N, SKIP]),
    # Anything fed only by the none edge 0->1 contributes nothing.
    ([N, N, N, C1, C3, N], [N, N, N, C1, POOL, N]),
    ([N, C1, C3, SKIP, C3, N], [N, C1, POOL, SKIP, SKIP, N]),
    # Nothing reaches node 3.
    ([C3, C3, C3, N, N, N], [N] * 6),
  ]
  for x, y in pairs:
    assert nb201.canonical_key(x) == nb201.canonical_key(y), (x, y)
    assert class_of[index[tuple(x)]] == class_of[index[tuple(y)]]


def test_known_non_isomorphisms():
  pairs = [
    ([N, N, N, C1, N, N], [N, N, N, C3, N, N]),  # Different op.
    ([C3, N, N, N, C3, N], [C3, N, N, C3, SKIP, N]),  # conv(conv(x)) vs conv(x) + conv(x).
    ([C3, C1, N, N, C3, C1], [C3, C1, N, N, C1, C3]),  # Branch ops crossed.
    ([N] * 6, [N, N, N, SKIP, N, N]),  # Zero vs identity.
  ]
  for x, y in pairs:
    assert nb201.canonical_key(x) != nb201.canonical_key(y), (x, y)


def test_live_ops_hand_examples():
  # Single conv chains 0->1->3 and 0->1->2->3 are fully live.
  for chain in ([C3, N, N, N, C3, N], [C3, N, C1, N, N, C3]):
    np.testing.assert_array_equal(nb201.live_ops(chain), chain)
  # Node 2 does not reach node 3 (2->3 is none), so 1->2 and 0->2 are dead.
  np.testing.assert_array_equal(nb201.live_ops([C3, C1, C3, N, C3, N]), [C3, N, N, N, C3, N])
  # Node 1 receives only none, so edges out of it are dead.
  np.testing.assert_array_equal(
    nb201.live_ops([N, C1, POOL, SKIP, C3, C3]), [N, C1, N, SKIP, N, C3]
  )
  # Node 2 receives only dead input (via node 1), so 2->3 is dead too.
  np.testing.assert_array_equal(nb201.live_ops([N, N, C3, C1, C3, C3]), [N, N, N, C1, N, N])


def test_live_ops_batched_and_table():
  archs = nb201.all_archs()
  live = nb201.live_ops(archs)
  assert live.shape == archs.shape and live.dtype == np.int32
  for i in range(0, 15625, 997):
    np.testing.assert_array_equal(live[i], nb201.live_ops(archs[i]))
  np.testing.assert_array_equal(nb201.live_ops(live), live)  # Idempotent.
  assert np.all((live == archs) | (live == N))  # Only ever removes edges.
  np.testing.assert_array_equal(live.reshape(5, 3125, 6)[2], live[6250:9375])
  table = nb201.live_ops_table()
  np.testing.assert_array_equal(table, nb201.live_ops(nb201.deiso_representatives()))
  assert table.shape == (6466, 6)


def test_live_ops_rejects_bad_input():
  with pytest.raises(ValueError, match='op index 7'):
    nb201.live_ops([[0, 1, 2, 3, 4, 7]])
  with pytest.raises(ValueError, match=r'\(5,\)'):
    nb201.live_ops([0, 1, 2, 3, 4])


def test_sample_is_deterministic_and_uniform_over_classes():
  key = jax.random.key(0)
  first = nb201.sample(key, 64)
  assert first.shape == (64, 6) and first.dtype == np.int32
  np.testing.assert_array_equal(first, nb201.sample(key, 64))
  assert not np.array_equal(first, nb201.sample(jax.random.key(1), 64))
  np.testing.assert_array_equal(jax.jit(nb201.sample, static_argnums=1)(key, 64), first)
  reps = {tuple(r) for r in nb201.deiso_representatives().tolist()}
  assert all(tuple(r) in reps for r in np.asarray(first).tolist())
  ids = np.asarray(nb201.sample_indices(jax.random.key(2), 200_000, 'all'))
  assert ids.min() >= 0 and ids.max() < 6466
  assert len(np.unique(ids)) == 6466  # Every class reachable (misses have probability ~1e-3).
  np.testing.assert_array_equal(
    nb201.sample(key, 64), nb201.deiso_representatives()[np.asarray(nb201.sample_indices(key, 64))]
  )


def _official_check_valid(ops) -> bool:
  """aw_nas `NasBench201RSController.check_valid_arch`, on the 4x4 matrix arch[to][from] = op."""
  arch = np.zeros((4, 4), np.int64)
  for (i, j), op in zip(nb201.EDGES, ops, strict=True):
    arch[j][i] = op
  valid_input = [0]
  for to in range(1, 4):
    for inp in valid_input:
      if arch[to][inp] > 0:
        valid_input.append(to)
        break
  valid_output = [3]
  for frm in range(2, -1, -1):
    for out in valid_output:
      if arch[out][frm] > 0:
        valid_output.append(frm)
  return any('conv' in nb201.OPS[arch[o][i]] for i in valid_input for o in valid_output)


def test_valid_classes_match_the_official_check():
  reps = nb201.deiso_representatives()
  official = np.array([_official_check_valid(r) for r in reps])
  assert official.sum() == 6321 and (~official).sum() == 145
  np.testing.assert_array_equal(nb201.valid_classes(), np.flatnonzero(official))


def test_training_sampler_never_draws_an_invalid_class():
  ids = np.asarray(nb201.sample_indices(jax.random.key(3), 200_000))  # default: 'valid'
  valid = set(nb201.valid_classes().tolist())
  assert set(np.unique(ids).tolist()) == valid  # every valid class, nothing else
  archs = np.asarray(jax.jit(nb201.sample, static_argnums=1)(jax.random.key(4), 4096))
  assert all(_official_check_valid(a) for a in archs)
  with pytest.raises(ValueError, match="sampler 'some'"):
    nb201.sample(jax.random.key(0), 4, 'some')
