"""Tests for the synthetic and .npz data sources, Dataset validation and config dispatch."""

import dataclasses

import ml_collections
import numpy as np
import pytest

from close_jax.data import Dataset, channel_stats, load_dataset, load_npz, load_synthetic


def _nearest_mean_accuracy(ds):
  """Accuracy on the rank split of a nearest-class-mean classifier fitted on the train split."""
  x = ds.train_images.reshape(ds.num_train, -1).astype(np.float64)
  means = np.stack([x[ds.train_labels == k].mean(axis=0) for k in range(ds.num_classes)])
  r = ds.rank_images.reshape(ds.num_rank, -1).astype(np.float64)
  distances = (r**2).sum(1)[:, None] - 2 * r @ means.T + (means**2).sum(1)[None, :]
  return float(np.mean(distances.argmin(axis=1) == ds.rank_labels))


def test_synthetic_shapes_and_dtypes():
  ds = load_synthetic(num_train=50, num_rank=30, image_size=12, channels=2, num_classes=5)
  assert ds.train_images.shape == (50, 12, 12, 2) and ds.train_images.dtype == np.uint8
  assert ds.rank_images.shape == (30, 12, 12, 2) and ds.rank_images.dtype == np.uint8
  assert ds.train_labels.dtype == np.int32 and ds.rank_labels.dtype == np.int32
  assert ds.mean.shape == (2,) and ds.std.shape == (2,) and ds.mean.dtype == np.float32
  assert ds.num_classes == 5 and ds.image_shape == (12, 12, 2) and ds.name == 'synthetic'
  np.testing.assert_array_equal(np.bincount(ds.train_labels, minlength=5), [10] * 5)


def test_synthetic_is_deterministic_per_seed():
  a = load_synthetic(40, 20, 8, seed=3)
  b = load_synthetic(40, 20, 8, seed=3)
  c = load_synthetic(40, 20, 8, seed=4)
  for field in ('train_images', 'train_labels', 'rank_images', 'rank_labels', 'mean', 'std'):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert not np.array_equal(a.train_images, c.train_images)


def test_synthetic_stats_match_training_images():
  ds = load_synthetic(64, 8, 8, channels=3)
  pixels = ds.train_images.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(ds.mean, pixels.mean(axis=0), rtol=1e-5)
  np.testing.assert_allclose(ds.std, pixels.std(axis=0), rtol=1e-5)


def test_synthetic_classes_are_learnable():
  ds = load_synthetic(num_train=1000, num_rank=500, image_size=16, num_classes=10)
  # Chance is 0.1; a linear template matcher should do far better, a sign that a conv net can
  # learn the labels, yet not perfectly, so architectures still have something to separate.
  accuracy = _nearest_mean_accuracy(ds)
  assert 0.5 < accuracy < 0.99


def test_synthetic_rejects_bad_sizes():
  with pytest.raises(ValueError, match='num_rank'):
    load_synthetic(10, 0, 8)
  with pytest.raises(ValueError, match='num_classes'):
    load_synthetic(10, 5, 8, num_classes=1)


def _write_npz(path, **overrides):
  rng = np.random.default_rng(0)
  arrays = {
    'x_train': rng.integers(0, 256, (20, 6, 5, 4), dtype=np.uint8),
    'y_train': rng.integers(0, 3, 20).astype(np.int64),
    'x_test': rng.integers(0, 256, (7, 6, 5, 4), dtype=np.uint8),
    'y_test': np.array([0, 1, 2, 6, 1, 0, 2], np.uint8),
  }
  arrays.update(overrides)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  np.savez(path, **arrays)
  return arrays


def test_npz_loads_splits_and_stats(tmp_path):
  path = tmp_path / 'mydata.npz'
  arrays = _write_npz(path)
  ds = load_npz(str(path))
  np.testing.assert_array_equal(ds.train_images, arrays['x_train'])
  np.testing.assert_array_equal(ds.rank_images, arrays['x_test'])
  np.testing.assert_array_equal(ds.train_labels, arrays['y_train'])
  np.testing.assert_array_equal(ds.rank_labels, arrays['y_test'])
  assert ds.train_labels.dtype == np.int32 and ds.rank_labels.dtype == np.int32
  assert ds.num_classes == 7  # The largest label (6) is only in the test split.
  assert ds.image_shape == (6, 5, 4) and ds.name == 'mydata'
  pixels = arrays['x_train'].reshape(-1, 4).astype(np.float64)
  np.testing.assert_allclose(ds.mean, pixels.mean(axis=0), rtol=1e-5)
  np.testing.assert_allclose(ds.std, pixels.std(axis=0), rtol=1e-5)


def test_npz_accepts_keras_column_labels(tmp_path):
  path = tmp_path / 'keras.npz'
  arrays = _write_npz(path, y_train=np.arange(20).reshape(20, 1) % 4)
  ds = load_npz(str(path))
  np.testing.assert_array_equal(ds.train_labels, arrays['y_train'][:, 0])


def test_npz_missing_file(tmp_path):
  path = tmp_path / 'absent.npz'
  with pytest.raises(FileNotFoundError, match=str(path)):
    load_npz(str(path))


def test_npz_missing_key(tmp_path):
  path = tmp_path / 'partial.npz'
  _write_npz(path, y_test=None)
  with pytest.raises(ValueError, match="'y_test'") as info:
    load_npz(str(path))
  assert 'x_train' in str(info.value) and 'expected keys' in str(info.value)


@pytest.mark.parametrize(
  'key, value, needle',
  [
    ('x_train', np.zeros((20, 6, 5, 4), np.float32), 'x_train must be a non-empty uint8 NHWC'),
    ('x_test', np.zeros((7, 6, 5), np.uint8), 'x_test must be a non-empty uint8 NHWC'),
    ('x_test', np.zeros((7, 6, 6, 4), np.uint8), 'x_test images are'),
    ('y_train', np.zeros(19, np.int64), 'y_train must be integer labels of shape'),
    ('y_test', np.zeros(7, np.float32), 'y_test must be integer labels'),
    ('y_test', np.array([0, 1, -1, 0, 0, 0, 0]), 'non-negative'),
  ],
)
def test_npz_rejects_bad_arrays(tmp_path, key, value, needle):
  path = tmp_path / 'bad.npz'
  _write_npz(path, **{key: value})
  with pytest.raises(ValueError, match=needle) as info:
    load_npz(str(path))
  assert '\n' not in str(info.value)


def test_npz_rejects_non_npz(tmp_path):
  path = tmp_path / 'junk.npz'
  path.write_bytes(b'not a zip archive at all')
  with pytest.raises(ValueError, match='not a readable .npz'):
    load_npz(str(path))
  np.save(tmp_path / 'single.npy', np.zeros(3))
  with pytest.raises(ValueError, match='single array'):
    load_npz(str(tmp_path / 'single.npy'))


def _valid_fields():
  return dict(
    train_images=np.zeros((4, 3, 3, 2), np.uint8),
    train_labels=np.array([0, 1, 2, 0], np.int32),
    rank_images=np.zeros((2, 3, 3, 2), np.uint8),
    rank_labels=np.array([1, 2], np.int32),
    mean=np.zeros(2, np.float32),
    std=np.ones(2, np.float32),
    num_classes=3,
    name='tiny',
  )


@pytest.mark.parametrize(
  'field, value, needle',
  [
    ('train_images', np.zeros((4, 3, 3, 2), np.float32), 'train_images must have dtype uint8'),
    ('rank_images', np.zeros((2, 3, 3), np.uint8), r'rank_images must be 4-D'),
    ('rank_images', np.zeros((2, 3, 4, 2), np.uint8), 'same \\(H, W, C\\)'),
    ('train_labels', np.array([0, 1, 2, 0]), 'train_labels must have dtype int32'),
    ('train_labels', np.array([0, 1, 2], np.int32), r'train_labels must have shape \(4,\)'),
    ('rank_labels', np.array([1, 3], np.int32), r'rank_labels must lie in \[0, 3\)'),
    ('mean', np.zeros(3, np.float32), 'mean must be float32 of shape'),
    ('std', np.array([1.0, 0.0], np.float32), 'std must be finite and > 0'),
    ('num_classes', 0, 'num_classes must be >= 1'),
    ('name', '', 'name must be a non-empty str'),
  ],
)
def test_dataset_validation(field, value, needle):
  with pytest.raises(ValueError, match=needle):
    Dataset(**{**_valid_fields(), field: value})


def test_dataset_is_frozen_and_read_only():
  source = _valid_fields()
  ds = Dataset(**source)
  with pytest.raises(dataclasses.FrozenInstanceError):
    ds.name = 'other'
  with pytest.raises(ValueError, match='read-only'):
    ds.train_images[0, 0, 0, 0] = 1
  source['train_images'][0, 0, 0, 0] = 1  # The caller's own array stays writable.
  assert 'tiny' in repr(ds) and '(4, 3, 3, 2)' in repr(ds)


def test_channel_stats_constant_channel_gets_unit_std():
  images = np.zeros((3, 2, 2, 2), np.uint8)
  images[..., 1] = np.arange(3)[:, None, None]
  mean, std = channel_stats(images)
  np.testing.assert_allclose(mean, [0.0, 1.0])
  np.testing.assert_allclose(std, [1.0, np.sqrt(2 / 3)], rtol=1e-6)


def test_load_dataset_dispatch(tmp_path):
  cfg = ml_collections.ConfigDict(
    {
      'name': 'synthetic',
      'synthetic_num_train': 30,
      'synthetic_num_rank': 10,
      'synthetic_image_size': 8,
      'synthetic_channels': 1,
      'synthetic_num_classes': 3,
      'synthetic_seed': 1,
    }
  )
  ds = load_dataset(cfg)
  np.testing.assert_array_equal(ds.train_images, load_synthetic(30, 10, 8, 1, 3, 1).train_images)

  path = tmp_path / 'user.npz'
  _write_npz(path)
  assert (
    load_dataset(ml_collections.ConfigDict({'name': 'npz', 'npz_path': str(path)})).name == 'user'
  )

  with pytest.raises(ValueError, match="'imagenet'.*cifar10.*synthetic.*npz"):
    load_dataset(ml_collections.ConfigDict({'name': 'imagenet'}))
