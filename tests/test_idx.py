"""The idx (MNIST / Fashion-MNIST format) reader: byte layout, splits, resizing, clear errors."""

import gzip
import os

import ml_collections
import numpy as np
import pytest

from close_jax.data import idx, load_dataset

STEMS = (
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
)


def make_idx_dir(path, num_train=30, num_test=12, size=28, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  arrays = (
    rng.integers(0, 256, (num_train, size, size), dtype=np.uint8),
    rng.integers(0, 10, num_train, dtype=np.uint8),
    rng.integers(0, 256, (num_test, size, size), dtype=np.uint8),
    rng.integers(0, 10, num_test, dtype=np.uint8),
  )
  os.makedirs(path, exist_ok=True)
  for stem, array in zip(STEMS, arrays, strict=True):
    idx.write_idx(os.path.join(path, stem + ('.gz' if gz else '')), array)
  return arrays


def test_header_is_the_mnist_layout(tmp_path):
  """Magic 0x00000803, then big-endian dims, then the bytes, as the MNIST page specifies."""
  path = str(tmp_path / 'x')
  array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  idx.write_idx(path, array)
  with open(path, 'rb') as f:
    raw = f.read()
  assert raw[:4] == b'\x00\x00\x08\x03'
  assert raw[4:16] == b'\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04'
  assert raw[16:] == bytes(range(24))
  np.testing.assert_array_equal(idx.read_idx(path), array)


@pytest.mark.parametrize('gz', [True, False])
def test_load_splits_train_rank_and_keeps_test_apart(tmp_path, gz):
  train_x, train_y, test_x, test_y = make_idx_dir(str(tmp_path), gz=gz)
  ds = idx.load_idx(str(tmp_path), train_size=20, rank_size=6)
  np.testing.assert_array_equal(ds.train_images[..., 0], train_x[:20])
  np.testing.assert_array_equal(ds.rank_images[..., 0], train_x[20:26])
  np.testing.assert_array_equal(ds.train_labels, train_y[:20])
  np.testing.assert_array_equal(ds.rank_labels, train_y[20:26])
  assert ds.train_images.shape == (20, 28, 28, 1) and ds.train_labels.dtype == np.int32
  np.testing.assert_allclose(ds.mean, [train_x[:20].mean()], rtol=1e-5)
  rest = idx.load_idx(str(tmp_path), train_size=20)  # rank_size 0: all the rest
  assert len(rest.rank_images) == 10
  test = idx.load_idx_arrays(str(tmp_path))
  np.testing.assert_array_equal(test['test_images'][..., 0], test_x)
  np.testing.assert_array_equal(test['test_labels'], test_y)


def test_resize_keeps_constant_images_and_the_mean():
  images = np.full((2, 28, 28, 1), 200, np.uint8)
  assert np.all(idx.resize(images, 16) == 200)
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
  small = idx.resize(noise, 16)
  assert small.shape == (4, 16, 16, 1) and small.dtype == np.uint8
  assert abs(small.mean() - noise.mean()) < 2.0
  assert small.std() < noise.std() / 2  # antialiased: pixel noise is averaged away


def test_config_dispatch_with_resolution(tmp_path):
  make_idx_dir(str(tmp_path))
  cfg = ml_collections.ConfigDict(
    {
      'name': 'idx',
      'idx_dir': str(tmp_path),
      'idx_train_size': 25,
      'idx_rank_size': 0,
      'image_size': 16,
    }
  )
  ds = load_dataset(cfg)
  assert ds.train_images.shape == (25, 16, 16, 1) and ds.rank_images.shape == (5, 16, 16, 1)


def test_errors_name_the_problem(tmp_path):
  with pytest.raises(FileNotFoundError, match='train-images-idx3-ubyte.*dataset-fashion-mnist'):
    idx.load_idx(str(tmp_path / 'nowhere'))
  make_idx_dir(str(tmp_path))
  with pytest.raises(ValueError, match=r'data.idx_train_size=30: expected 0 < size < 30'):
    idx.load_idx(str(tmp_path), train_size=30)
  with pytest.raises(ValueError, match=r'data.idx_rank_size=11: expected 0 \(the rest\) or 1..10'):
    idx.load_idx(str(tmp_path), train_size=20, rank_size=11)
  bad = str(tmp_path / 'bad.gz')
  with gzip.open(bad, 'wb') as f:
    f.write(b'\x00\x00\x0d\x01\x00\x00\x00\x02ab')  # float magic
  with pytest.raises(ValueError, match='not an unsigned-byte idx file'):
    idx.read_idx(bad)
  short = str(tmp_path / 'short')
  with open(short, 'wb') as f:
    f.write(b'\x00\x00\x08\x01\x00\x00\x00\x05abc')
  with pytest.raises(ValueError, match=r'header says shape \(5,\) \(5 bytes\), the file holds 3'):
    idx.read_idx(short)
