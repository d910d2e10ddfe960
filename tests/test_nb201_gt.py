"""Tests for the NB201 ground-truth loaders (shipped table and user CSVs)."""

import numpy as np
import pytest

from close_jax.benchmarks import nb201_gt
from close_jax.spaces import nb201

# Indices 4 and 1817 form a class of two (both CSV rows checked by hand).
ARCH_4 = (
  '|skip_connect~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|skip_connect~1|nor_conv_1x1~2|'
)
ARCH_1817 = (
  '|skip_connect~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|skip_connect~1|nor_conv_1x1~2|'
)
OTHER = (
  '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
)


def _row_of(archs: np.ndarray, arch: np.ndarray) -> int:
  (rows,) = np.nonzero(np.all(archs == arch, axis=1))
  assert len(rows) == 1
  return int(rows[0])


def test_columns_and_load_column():
  assert nb201_gt.read_table().keys() == {'index', 'arch', *nb201_gt.COLUMNS}
  acc = nb201_gt.load_column('cifar10_test_200ep')
  assert acc.shape == (15625,) and acc.dtype == np.float64
  assert int(np.argmax(acc)) == 6111 and round(acc.max(), 2) == 94.37  # As in PROVENANCE.md.
  assert acc[4] == pytest.approx(88.216667)
  tagates = nb201_gt.load_column('tagates_cifar10_test')
  assert np.count_nonzero(~np.isnan(tagates)) == 9445
  assert np.isnan(tagates[3]) and tagates[0] == pytest.approx(85.863333)


def test_load_column_rejects_unknown_name():
  with pytest.raises(ValueError, match="'top1'.*cifar10_valid_200ep, cifar10_test_200ep"):
    nb201_gt.load_column('top1')


def test_deiso_ground_truth_is_class_mean():
  archs, acc = nb201_gt.deiso_ground_truth('cifar10_test_200ep')
  assert archs.shape == (6466, 6) and acc.shape == (6466,)
  np.testing.assert_array_equal(archs, nb201.deiso_representatives())
  row = _row_of(archs, nb201.parse(ARCH_4))
  assert nb201.deiso_classes()[0][row] == 4  # The smallest index represents the class.
  assert acc[row] == pytest.approx((88.216667 + 88.233333) / 2)


def test_deiso_ground_truth_skips_missing_values():
  archs, acc = nb201_gt.deiso_ground_truth('tagates_cifar10_test')
  # Some classes have no tagates value at all and are dropped together with their arch.
  assert 0 < len(acc) < 6466 and archs.shape == (len(acc), 6)
  assert np.all(np.isfinite(acc))
  # Class {34, 2522, 9341}: tagates values 91.62, blank, 91.99.
  row = _row_of(archs, nb201.all_archs()[34])
  assert acc[row] == pytest.approx((91.62 + 91.99) / 2)
  # Index 6 is blank and alone in its class, so its class is dropped.
  assert np.count_nonzero(nb201.deiso_classes()[1] == nb201.deiso_classes()[1][6]) == 1
  assert not np.any(np.all(archs == nb201.all_archs()[6], axis=1))


def _write(tmp_path, text):
  path = tmp_path / 'gt.csv'
  path.write_text(text)
  return path


def test_user_ground_truth_dedups_isomorphic_rows(tmp_path):
  path = _write(
    tmp_path,
    f'accuracy,arch\n90.0,{ARCH_1817}\n70.5,{OTHER}\n91.0,{ARCH_4}\n92.0,{ARCH_1817}\n',
  )
  archs, acc = nb201_gt.user_ground_truth(path)
  assert archs.shape == (2, 6) and archs.dtype == np.int32
  np.testing.assert_array_equal(archs[0], nb201.parse(ARCH_1817))  # First appearance wins.
  np.testing.assert_array_equal(archs[1], nb201.parse(OTHER))
  np.testing.assert_allclose(acc, [91.0, 70.5])
  archs_str, _ = nb201_gt.user_ground_truth(str(path))
  np.testing.assert_array_equal(archs_str, archs)


def test_user_ground_truth_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.csv'):
    nb201_gt.user_ground_truth(tmp_path / 'nope.csv')
  with pytest.raises(ValueError, match=r"lacks column\(s\) \['accuracy'\]"):
    nb201_gt.user_ground_truth(_write(tmp_path, f'arch,acc\n{OTHER},1\n'))
  bad_arch = '|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|'
  with pytest.raises(ValueError, match=r'gt\.csv.*row 2 .*unknown op') as info:
    nb201_gt.user_ground_truth(_write(tmp_path, f'arch,accuracy\n{OTHER},1\n{bad_arch},2\n'))
  assert repr(bad_arch) in str(info.value)
  with pytest.raises(ValueError, match=r'row 1 .*abc'):
    nb201_gt.user_ground_truth(_write(tmp_path, f'arch,accuracy\n{OTHER},abc\n'))
  with pytest.raises(ValueError, match='not finite'):
    nb201_gt.user_ground_truth(_write(tmp_path, f'arch,accuracy\n{OTHER},nan\n'))
  with pytest.raises(ValueError, match='no data rows'):
    nb201_gt.user_ground_truth(_write(tmp_path, 'arch,accuracy\n'))
