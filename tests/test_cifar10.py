"""Tests for the CIFAR-10 tarball reader, split protocol and checksummed download."""

import hashlib
import io
import os
import pathlib
import pickle
import tarfile

import ml_collections
import numpy as np
import pytest

from close_jax.data import cifar10, load_dataset

PER_BATCH = 4
SAMPLES = pathlib.Path(__file__).parent / 'data' / 'cifar10_test_first20.npz'


def _pixel(image, channel, row, col):
  """Known pixel value of fake image `image`, independent of any memory layout."""
  return (image * 7 + channel * 50 + row * 3 + col * 5) % 256


def _formula_rows(first_image, count):
  """CHW row-major flat rows built from the flat index, as the CIFAR format defines them."""
  flat = np.arange(3072)
  channel, row, col = flat // 1024, (flat % 1024) // 32, flat % 32
  images = np.arange(first_image, first_image + count)[:, None]
  return _pixel(images, channel, row, col).astype(np.uint8)


def _formula_nhwc(first_image, count):
  image, row, col, channel = np.indices((count, 32, 32, 3))
  return _pixel(image + first_image, channel, row, col).astype(np.uint8)


def _hwc_to_rows(images):
  return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _write_tarball(path, batches, skip=()):
  """Writes a cifar-10-python.tar.gz whose members are the given {name: (rows, labels)}."""
  with tarfile.open(path, 'w:gz') as archive:
    for name, (rows, labels) in batches.items():
      if name in skip:
        continue
      payload = pickle.dumps(
        {
          b'batch_label': name.encode(),
          b'labels': [int(v) for v in labels],
          b'data': np.asarray(rows, np.uint8),
          b'filenames': [f'img_{i}.png'.encode() for i in range(len(labels))],
        },
        protocol=2,
      )
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(payload)
      archive.addfile(info, io.BytesIO(payload))


def _formula_batches():
  names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
  batches = {}
  for index, name in enumerate(names):
    first = index * PER_BATCH
    batches[name] = (_formula_rows(first, PER_BATCH), (np.arange(PER_BATCH) + first) % 10)
  return batches


@pytest.fixture
def formula_dir(tmp_path):
  _write_tarball(tmp_path / cifar10.ARCHIVE_NAME, _formula_batches())
  return tmp_path


def test_split_order_layout_and_labels(formula_dir):
  ds = cifar10.load_cifar10(str(formula_dir), train_size=13)
  all_train = _formula_nhwc(0, 5 * PER_BATCH)
  assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
  assert ds.train_images.shape == (13, 32, 32, 3)
  assert ds.rank_images.shape == (7, 32, 32, 3)
  np.testing.assert_array_equal(ds.train_images, all_train[:13])
  np.testing.assert_array_equal(ds.rank_images, all_train[13:])
  np.testing.assert_array_equal(ds.train_labels, np.arange(13) % 10)
  np.testing.assert_array_equal(ds.rank_labels, np.arange(13, 20) % 10)
  assert ds.num_classes == 10 and ds.name == 'cifar10' and ds.image_shape == (32, 32, 3)
  # Spot-check one pixel against the raw flat index: image 9, channel 2, row 5, col 17.
  assert ds.train_images[9, 5, 17, 2] == _formula_rows(9, 1)[0, 2 * 1024 + 5 * 32 + 17]


def test_normalisation_constants(formula_dir):
  ds = cifar10.load_cifar10(str(formula_dir), train_size=10)
  np.testing.assert_allclose(ds.mean, np.array([0.4914, 0.4822, 0.4465]) * 255, rtol=1e-6)
  np.testing.assert_allclose(ds.std, np.array([0.2470, 0.2435, 0.2616]) * 255, rtol=1e-6)
  assert ds.mean.dtype == np.float32 and ds.std.dtype == np.float32


def test_test_batch(formula_dir):
  images, labels = cifar10.load_cifar10_test(str(formula_dir))
  np.testing.assert_array_equal(images, _formula_nhwc(5 * PER_BATCH, PER_BATCH))
  np.testing.assert_array_equal(labels, np.arange(20, 24) % 10)
  assert labels.dtype == np.int32


@pytest.mark.parametrize('train_size', [0, 20, 25])
def test_train_size_must_leave_both_splits(formula_dir, train_size):
  with pytest.raises(ValueError, match='train_size'):
    cifar10.load_cifar10(str(formula_dir), train_size=train_size)


def test_real_pixels_round_trip(tmp_path):
  with np.load(SAMPLES) as samples:
    x, y = samples['x'], samples['y']
  assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8
  rows = _hwc_to_rows(x)
  batches = {
    f'data_batch_{i}': (rows[4 * i - 4 : 4 * i], y[4 * i - 4 : 4 * i]) for i in range(1, 6)
  }
  batches['test_batch'] = (rows, y)
  _write_tarball(tmp_path / cifar10.ARCHIVE_NAME, batches)

  test_images, test_labels = cifar10.load_cifar10_test(str(tmp_path))
  np.testing.assert_array_equal(test_images, x)
  np.testing.assert_array_equal(
    test_labels, [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
  )
  ds = cifar10.load_cifar10(str(tmp_path), train_size=12)
  np.testing.assert_array_equal(ds.train_images, x[:12])
  np.testing.assert_array_equal(ds.rank_images, x[12:])
  np.testing.assert_array_equal(ds.rank_labels, y[12:])


def test_truncated_tarball(formula_dir):
  path = formula_dir / cifar10.ARCHIVE_NAME
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match='corrupt or truncated') as info:
    cifar10.load_cifar10(str(formula_dir), train_size=10)
  assert str(path) in str(info.value) and '\n' not in str(info.value)


def test_not_a_gzip(tmp_path):
  (tmp_path / cifar10.ARCHIVE_NAME).write_bytes(b'definitely not a tarball' * 10)
  with pytest.raises(ValueError, match='corrupt or truncated'):
    cifar10.load_cifar10(str(tmp_path))


def test_missing_member(tmp_path):
  _write_tarball(tmp_path / cifar10.ARCHIVE_NAME, _formula_batches(), skip=('data_batch_3',))
  with pytest.raises(ValueError, match='data_batch_3 is missing'):
    cifar10.load_cifar10(str(tmp_path), train_size=10)
  # The test batch alone is still readable.
  images, _ = cifar10.load_cifar10_test(str(tmp_path))
  assert images.shape == (PER_BATCH, 32, 32, 3)


def test_missing_archive_without_download(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    cifar10.load_cifar10(str(tmp_path / 'nowhere'))
  message = str(info.value)
  assert os.path.join(str(tmp_path / 'nowhere'), cifar10.ARCHIVE_NAME) in message
  assert cifar10.CIFAR10_URL in message and '\n' not in message
  assert not (tmp_path / 'nowhere').exists()


@pytest.fixture
def served_archive(tmp_path, monkeypatch):
  """A fake archive served through a file:// URL, with its md5."""
  source = tmp_path / 'server' / 'cifar.tgz'
  source.parent.mkdir()
  _write_tarball(source, _formula_batches())
  monkeypatch.setattr(cifar10, 'CIFAR10_URL', source.as_uri())
  return hashlib.md5(source.read_bytes()).hexdigest()


def test_download_checksum_mismatch_leaves_nothing(tmp_path, served_archive):
  data_dir = tmp_path / 'data'
  assert served_archive != cifar10.CIFAR10_MD5
  with pytest.raises(ValueError, match='md5'):
    cifar10.load_cifar10(str(data_dir), download=True, train_size=10)
  assert os.listdir(data_dir) == []


def test_download_with_matching_checksum(tmp_path, served_archive, monkeypatch):
  monkeypatch.setattr(cifar10, 'CIFAR10_MD5', served_archive)
  data_dir = tmp_path / 'data'
  ds = cifar10.load_cifar10(str(data_dir), download=True, train_size=10)
  assert os.listdir(data_dir) == [cifar10.ARCHIVE_NAME]
  np.testing.assert_array_equal(ds.train_images, _formula_nhwc(0, 10))
  # A second call reuses the file rather than downloading again.
  monkeypatch.setattr(cifar10, 'CIFAR10_URL', (tmp_path / 'gone.tgz').as_uri())
  assert cifar10.load_cifar10(str(data_dir), download=True, train_size=10).num_train == 10


def test_download_failure_is_file_not_found(tmp_path, monkeypatch):
  url = (tmp_path / 'no_such_file.tgz').as_uri()
  monkeypatch.setattr(cifar10, 'CIFAR10_URL', url)
  data_dir = tmp_path / 'data'
  with pytest.raises(FileNotFoundError) as info:
    cifar10.load_cifar10(str(data_dir), download=True)
  message = str(info.value)
  assert os.path.join(str(data_dir), cifar10.ARCHIVE_NAME) in message and url in message
  assert '\n' not in message
  assert os.listdir(data_dir) == []


def test_load_dataset_dispatch(formula_dir):
  cfg = ml_collections.ConfigDict(
    {'name': 'cifar10', 'data_dir': str(formula_dir), 'download': False, 'cifar_train_size': 8}
  )
  ds = load_dataset(cfg)
  assert ds.name == 'cifar10' and ds.num_train == 8 and ds.num_rank == 12
