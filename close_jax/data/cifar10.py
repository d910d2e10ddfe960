"""CIFAR-10 read straight from the official python tarball.

Reading members out of the .tar.gz (rather than extracting) means the only file on disk is the
one whose md5 we can check, so a half-extracted directory can never be mistaken for the data.
The split follows CLOSE: the supernet trains on train images [0, train_size) and architectures
are ranked on the remaining train images [train_size, 50000) with the test transform; the
official test batch is kept for training discovered architectures later.
"""

import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib

import numpy as np

from close_jax.data.dataset import Dataset

CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
ARCHIVE_NAME = 'cifar-10-python.tar.gz'

TRAIN_MEMBERS = tuple(f'cifar-10-batches-py/data_batch_{i}' for i in range(1, 6))
TEST_MEMBER = 'cifar-10-batches-py/test_batch'

# NB201's CIFAR-10 normalisation, converted to pixel units.
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32) * np.float32(255)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], np.float32) * np.float32(255)

_HEIGHT = _WIDTH = 32
_CHANNELS = 3
_DOWNLOAD_TIMEOUT_S = 60
_READ_CHUNK = 1 << 20
# Everything a damaged gzip, tar or pickle stream can raise while being read.
_CORRUPT_ERRORS = (
  tarfile.TarError,
  EOFError,
  OSError,
  zlib.error,
  pickle.UnpicklingError,
  AttributeError,
  ImportError,
  IndexError,
  TypeError,
  ValueError,
)


def load_cifar10(data_dir: str, download: bool = False, train_size: int = 40000) -> Dataset:
  """Loads the CLOSE supernet-training and ranking splits of CIFAR-10.

  Args:
    data_dir: directory holding (or to receive) cifar-10-python.tar.gz.
    download: fetch the archive if it is missing (checked against its md5).
    train_size: number of leading train images used for supernet training; the rest of the
      50000 train images form the ranking split.

  Returns:
    A Dataset with uint8 NHWC images and NB201 normalisation stats.

  Raises:
    FileNotFoundError: the archive is absent and could not be downloaded.
    ValueError: the archive is corrupt or train_size leaves an empty split.
  """
  path = _ensure_archive(data_dir, download)
  batches = _read_members(path, TRAIN_MEMBERS)
  images = np.concatenate([batches[m][0] for m in TRAIN_MEMBERS])
  labels = np.concatenate([batches[m][1] for m in TRAIN_MEMBERS])
  if not 0 < train_size < len(images):
    raise ValueError(
      f'train_size must be in [1, {len(images) - 1}] so both splits are non-empty, got {train_size}'
    )
  return Dataset(
    train_images=images[:train_size],
    train_labels=labels[:train_size],
    rank_images=images[train_size:],
    rank_labels=labels[train_size:],
    mean=CIFAR10_MEAN.copy(),
    std=CIFAR10_STD.copy(),
    num_classes=10,
    name='cifar10',
  )


def load_cifar10_test(data_dir: str, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Returns the official CIFAR-10 test batch as (uint8 NHWC images, int32 labels)."""
  path = _ensure_archive(data_dir, download)
  return _read_members(path, (TEST_MEMBER,))[TEST_MEMBER]


def _ensure_archive(data_dir: str, download: bool) -> str:
  """Returns the archive path, downloading it first when allowed and needed."""
  path = os.path.join(data_dir, ARCHIVE_NAME)
  if os.path.isfile(path):
    return path
  hint = f'put {ARCHIVE_NAME} at {path} (download it from {CIFAR10_URL})'
  if not download:
    raise FileNotFoundError(f'CIFAR-10 archive not found: {hint}, or pass download=True')
  try:
    _download(CIFAR10_URL, path, CIFAR10_MD5)
  except OSError as err:  # urllib.error.URLError and socket timeouts are OSErrors.
    reason = ' '.join(str(err).split())
    raise FileNotFoundError(f'CIFAR-10 download failed ({reason}): {hint}') from err
  return path


def _download(url: str, path: str, md5: str) -> None:
  """Downloads url to path atomically; path only ever appears with the right checksum."""
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  fd, tmp_path = tempfile.mkstemp(prefix=f'.{ARCHIVE_NAME}.', suffix='.part', dir=directory)
  try:
    digest = hashlib.md5(usedforsecurity=False)
    with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as r:
      while chunk := r.read(_READ_CHUNK):
        digest.update(chunk)
        out.write(chunk)
    if digest.hexdigest() != md5:
      raise ValueError(
        f'downloaded {url} has md5 {digest.hexdigest()}, expected {md5}; nothing was saved'
      )
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


def _read_members(path: str, members: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Decodes the named pickled batches of the archive into NHWC images and labels."""
  return {m: _decode_batch(path, m, batch) for m, batch in _load_pickles(path, members).items()}


def _load_pickles(path: str, members: tuple[str, ...]) -> dict[str, object]:
  """Unpickles the named archive members, mapping any stream damage to one ValueError."""
  batches = {}
  try:
    with tarfile.open(path, 'r:gz') as archive:
      # One pass in archive order: seeking backwards in a gzip stream re-decompresses it.
      for info in archive:
        if info.name in members and info.isfile():
          with archive.extractfile(info) as stream:
            batches[info.name] = pickle.load(stream, encoding='bytes')
  except _CORRUPT_ERRORS as err:
    reason = ' '.join(str(err).split()) or type(err).__name__
    raise ValueError(f'{path} is corrupt or truncated ({reason})') from err
  for member in members:
    if member not in batches:
      raise ValueError(f'{path} is not a CIFAR-10 archive: member {member} is missing')
  return batches


def _decode_batch(path: str, member: str, batch: object) -> tuple[np.ndarray, np.ndarray]:
  """Turns one batch dict (CHW row-major rows) into NHWC uint8 images and int32 labels."""
  if not isinstance(batch, dict) or b'data' not in batch or b'labels' not in batch:
    raise ValueError(f"{path}: member {member} lacks the b'data'/b'labels' entries")
  data = np.asarray(batch[b'data'])
  labels = np.asarray(batch[b'labels'])
  row = _CHANNELS * _HEIGHT * _WIDTH
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
    raise ValueError(
      f'{path}: member {member} data must be uint8 (n, {row}), got {data.dtype} {data.shape}'
    )
  if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
      f'{path}: member {member} needs {data.shape[0]} integer labels, got {labels.shape}'
    )
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise ValueError(f'{path}: member {member} has labels outside [0, 9]')
  images = data.reshape(-1, _CHANNELS, _HEIGHT, _WIDTH).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)
