"""The NB-301 (DARTS) space: genotype strings, errors, canonical form, sampling, ground truth."""

import csv
import importlib.resources

import jax
import numpy as np
import pytest

from close_jax.benchmarks import nb301_gt
from close_jax.spaces import nb301


def _rows() -> list[dict]:
  path = importlib.resources.files('close_jax.benchmarks') / 'data' / nb301_gt.GT_FILE
  with path.open(newline='') as f:
    return list(csv.DictReader(f))


GOOD = _rows()[0]['genotype']


def test_round_trip_is_byte_exact_on_every_shipped_row():
  rows = _rows()
  assert len(rows) == 1225
  for row in rows:
    arch = nb301.parse(row['genotype'])
    assert arch.shape == (2, 8, 2) and arch.dtype == np.int32
    assert nb301.to_str(arch) == row['genotype']


def test_parse_known_genotype():
  arch = nb301.parse(GOOD)
  # normal=[('max_pool_3x3', 0), ('dil_conv_3x3', 1), ...]
  assert arch[0, 0].tolist() == [nb301.OPS.index('max_pool_3x3'), 0]
  assert arch[0, 1].tolist() == [nb301.OPS.index('dil_conv_3x3'), 1]
  assert arch[1, 7].tolist() == [nb301.OPS.index('dil_conv_5x5'), 3]


@pytest.mark.parametrize(
  'bad, fragment',
  [
    (GOOD.replace("('max_pool_3x3', 0), ", '', 1), '7 (op, input) pairs in normal'),
    (
      GOOD.replace("('dil_conv_3x3', 1)", "('dil_conv_3x3', 0)", 1),
      'same input 0 twice for node 2',
    ),
    (GOOD.replace("('skip_connect', 3)]", "('skip_connect', 5)]", 1), 'input 5 of node 5'),
    (GOOD.replace('max_pool_3x3', 'max_pool_5x5', 1), "unknown op 'max_pool_5x5'"),
    (
      GOOD.replace('normal_concat=[2, 3, 4, 5]', 'normal_concat=[2, 3, 4]'),
      'normal_concat=[2, 3, 4]',
    ),
    (GOOD.replace('reduce_concat=[2, 3, 4, 5]', 'reduce_concat=range(2, 6)'), 'malformed text'),
    (GOOD.replace("('max_pool_3x3', 0)", "('max_pool_3x3',0)", 1), 'pair "(\'max_pool_3x3\',0)"'),
    (GOOD[:-1], 'malformed text'),
  ],
)
def test_malformed_genotypes_fail_with_one_line(bad, fragment):
  with pytest.raises(ValueError) as info:
    nb301.parse(bad)
  assert fragment in str(info.value)
  assert '\n' not in str(info.value)
  assert 'NB301 genotype' in str(info.value)


def test_non_string_and_bad_arrays():
  with pytest.raises(ValueError, match='non-string int'):
    nb301.parse(3)
  with pytest.raises(ValueError, match='expected int'):
    nb301.to_str(np.zeros((2, 8)))
  bad = nb301.parse(GOOD)
  bad[0, 0, 0] = 7
  with pytest.raises(ValueError, match='op index 7'):
    nb301.to_str(bad)


def test_canonical_treats_a_nodes_pairs_as_unordered():
  arch = nb301.parse(GOOD)
  swapped = arch.copy()
  swapped[0, [0, 1]] = arch[0, [1, 0]]  # node 2's two pairs exchanged
  assert not np.array_equal(arch, swapped)
  np.testing.assert_array_equal(nb301.canonical(arch), nb301.canonical(swapped))
  other = arch.copy()
  other[0, 0, 0] = (arch[0, 0, 0] + 1) % nb301.NUM_OPS
  assert not np.array_equal(nb301.canonical(arch), nb301.canonical(other))
  batch = nb301.canonical(np.stack([arch, swapped]))
  np.testing.assert_array_equal(batch[0], batch[1])


def test_candidate_index_matches_the_candidate_list():
  arch = nb301.parse(GOOD)
  idx = nb301.candidate_index(arch)
  assert len(nb301.CANDIDATES) == 14
  for c in range(2):
    for e in range(8):
      node = 2 + e // 2
      assert nb301.CANDIDATES[idx[c, e]] == (arch[c, e, 1], node)
  np.testing.assert_array_equal(nb301.candidate_index(jax.numpy.asarray(arch)), idx)


def test_sampling_is_valid_and_uniform():
  archs = np.asarray(jax.jit(nb301.sample, static_argnums=1)(jax.random.key(0), 4000))
  assert archs.shape == (4000, 2, 8, 2)
  for arch in archs[:300]:
    nb301.validate(arch)  # distinct earlier inputs, known ops
  inputs = archs[..., 1].reshape(4000, 2, 4, 2)
  assert np.all(inputs[..., 0] != inputs[..., 1])
  for node in range(4):
    assert inputs[:, :, node].max() == node + 1  # any earlier node, nothing later
    counts = np.bincount(inputs[:, :, node].ravel(), minlength=node + 2)
    expected = 2 * 4000 * 2 / (node + 2)
    assert np.all(np.abs(counts - expected) < 0.1 * expected)
  op_counts = np.bincount(archs[..., 0].ravel(), minlength=7)
  assert np.all(np.abs(op_counts / op_counts.sum() - 1 / 7) < 0.01)


def test_shipped_ground_truth_averages_duplicates():
  archs, acc = nb301_gt.shipped()
  assert archs.shape == (1218, 2, 8, 2)
  assert acc.min() > 90.7 and acc.max() < 94.5
  keys = {nb301.canonical(a).tobytes() for a in archs}
  assert len(keys) == 1218
  rows = _rows()
  by_key = {}
  for row in rows:
    k = nb301.canonical(nb301.parse(row['genotype'])).tobytes()
    by_key.setdefault(k, []).append(float(row['val_acc_surrogate']))
  for a, value in zip(archs, acc, strict=True):
    assert value == pytest.approx(np.mean(by_key[nb301.canonical(a).tobytes()]))
  assert any(len(v) > 1 for v in by_key.values())


def test_user_ground_truth_errors(tmp_path):
  path = tmp_path / 'gt.csv'
  path.write_text('genotype,accuracy\n"' + GOOD.replace('max_pool_3x3', 'foo', 1) + '",93.0\n')
  with pytest.raises(ValueError, match=r"row 1 \(line 2\).*unknown op 'foo'"):
    nb301_gt.user_ground_truth(path)
  path.write_text('genotype,accuracy\n"' + GOOD + '",93.0\n')
  archs, acc = nb301_gt.user_ground_truth(path)
  assert archs.shape == (1, 2, 8, 2) and acc.tolist() == [93.0]
