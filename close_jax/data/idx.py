"""Datasets in the idx format of MNIST and Fashion-MNIST (Debian: `dataset-fashion-mnist`).

Why this reader: it is the one real image dataset installable offline here, so it is what the
ranking-quality study trains on. The supernet trains on the first `train_size` training images and
ranks on the rest of them; the test images (`t10k-*`) stay apart, for standalone ground truth.
Images may be shrunk (linear, antialiased: `jax.image.resize`) so CPU studies stay cheap.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from close_jax.data.dataset import Dataset, channel_stats

DEFAULT_DIR = '/usr/share/datasets/fashion-mnist'
_FILES = {
  'train_images': 'train-images-idx3-ubyte',
  'train_labels': 'train-labels-idx1-ubyte',
  'test_images': 't10k-images-idx3-ubyte',
  'test_labels': 't10k-labels-idx1-ubyte',
}
_UBYTE = 0x08


def read_idx(path: str) -> np.ndarray:
  """One idx file (optionally gzipped) as a uint8 array of the shape its header gives."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise ValueError(f'cannot read idx file {path}: {e}') from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
    raise ValueError(f'{path} is not an unsigned-byte idx file (magic {raw[:4].hex()!r})')
  ndim = raw[3]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
  if len(raw) != header + int(np.prod(shape)):
    raise ValueError(
      f'{path}: header says shape {shape} ({int(np.prod(shape))} bytes), '
      f'the file holds {len(raw) - header} bytes of data'
    )
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
  """The inverse of `read_idx` (gzipped when `path` ends in .gz): for tests and fixtures."""
  array = np.ascontiguousarray(array, np.uint8)
  header = bytes([0, 0, _UBYTE, array.ndim]) + b''.join(
    int(n).to_bytes(4, 'big') for n in array.shape
  )
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(header + array.tobytes())


def _find(directory: str, stem: str) -> str:
  for name in (stem, stem + '.gz'):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return path
  raise FileNotFoundError(
    f'idx dataset file {stem}[.gz] not found in {directory!r}: expected the four MNIST-format '
    f'files there (Fashion-MNIST: `apt-get install dataset-fashion-mnist` puts them in '
    f'{DEFAULT_DIR})'
  )


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """uint8 (N, H, W, C) -> (N, size, size, C), antialiased linear resampling."""
  if images.shape[1] == size and images.shape[2] == size:
    return images
  import jax

  out = jax.image.resize(
    images.astype(np.float32), (images.shape[0], size, size, images.shape[3]), 'linear'
  )
  return np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)


def load_idx_arrays(directory: str, image_size: int = 0) -> dict[str, np.ndarray]:
  """All four arrays: images uint8 (N, H, W, 1) resized to `image_size` (0 = as stored)."""
  arrays = {key: read_idx(_find(directory, stem)) for key, stem in _FILES.items()}
  for split in ('train', 'test'):
    images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise ValueError(
        f'idx {split} split in {directory!r}: expected images (N, H, W) and labels (N,), got '
        f'{images.shape} and {labels.shape}'
      )
    images = images[..., None]
    if image_size:
      images = resize(images, image_size)
    arrays[f'{split}_images'] = images
    arrays[f'{split}_labels'] = labels.astype(np.int32)
  return arrays


def load_idx(
  directory: str = DEFAULT_DIR, train_size: int = 50000, image_size: int = 0, rank_size: int = 0
) -> Dataset:
  """Supernet training split = the first `train_size` training images, ranking split = the next
  `rank_size` (0: all the rest)."""
  arrays = load_idx_arrays(directory, image_size)
  total = len(arrays['train_images'])
  if rank_size < 0 or train_size + rank_size > total:
    raise ValueError(
      f'data.idx_rank_size={rank_size}: expected 0 (the rest) or 1..{total - train_size} '
      f'(training images after the first idx_train_size={train_size})'
    )
  end = train_size + rank_size if rank_size else total
  if not 0 < train_size < total:
    raise ValueError(
      f'data.idx_train_size={train_size}: expected 0 < size < {total} (the training images)'
    )
  train_images = arrays['train_images'][:train_size]
  mean, std = channel_stats(train_images)
  labels = arrays['train_labels']
  return Dataset(
    train_images=train_images,
    train_labels=labels[:train_size],
    rank_images=arrays['train_images'][train_size:end],
    rank_labels=labels[train_size:end],
    mean=mean,
    std=std,
    num_classes=int(labels.max()) + 1,
    name=os.path.basename(os.path.normpath(directory)) or 'idx',
  )
