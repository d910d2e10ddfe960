"""User-supplied datasets stored as a single .npz file.

This is the escape hatch for running CLOSE on data we do not ship a reader for: any uint8 NHWC
images with integer labels. The test split of the file becomes the ranking split, mirroring how
the supernet is scored on held-out data.
"""

import os
import zipfile

import numpy as np

from close_jax.data.dataset import Dataset, channel_stats

EXPECTED_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def load_npz(path: str) -> Dataset:
  """Loads a Dataset from an .npz holding x_train, y_train, x_test and y_test.

  Images must be uint8 (N, H, W, C); labels are non-negative integers of shape (N,) or (N, 1)
  (the latter is how Keras ships CIFAR). Normalisation stats are measured on x_train.

  Args:
    path: path of the .npz file.

  Returns:
    A Dataset named after the file; num_classes is the largest label in either split plus one.

  Raises:
    FileNotFoundError: path does not exist.
    ValueError: the file is not an .npz, lacks a key, or holds arrays of the wrong kind.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'npz dataset not found: {path}')
  try:
    loaded = np.load(path, allow_pickle=False)
  except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
    raise ValueError(f'{path} is not a readable .npz file ({_one_line(err)})') from err
  if not isinstance(loaded, np.lib.npyio.NpzFile):
    raise ValueError(f'{path} holds a single array; expected an .npz with keys {EXPECTED_KEYS}')
  with loaded:
    for key in EXPECTED_KEYS:
      if key not in loaded.files:
        raise ValueError(
          f'{path} lacks key {key!r}; expected keys {EXPECTED_KEYS}, found {loaded.files}'
        )
    arrays = {}
    for key in EXPECTED_KEYS:
      try:
        arrays[key] = loaded[key]
      except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        # Includes object arrays, which allow_pickle=False refuses to unpickle.
        raise ValueError(f'{path}: array {key} cannot be read ({_one_line(err)})') from err

  x_train = _check_images(path, 'x_train', arrays['x_train'])
  x_test = _check_images(path, 'x_test', arrays['x_test'])
  if x_train.shape[1:] != x_test.shape[1:]:
    raise ValueError(
      f'{path}: x_test images are {x_test.shape[1:]} but x_train images are {x_train.shape[1:]}'
    )
  y_train = _check_labels(path, 'y_train', arrays['y_train'], len(x_train))
  y_test = _check_labels(path, 'y_test', arrays['y_test'], len(x_test))
  mean, std = channel_stats(x_train)
  name = os.path.splitext(os.path.basename(path))[0] or 'npz'
  return Dataset(
    train_images=x_train,
    train_labels=y_train,
    rank_images=x_test,
    rank_labels=y_test,
    mean=mean,
    std=std,
    num_classes=int(max(y_train.max(), y_test.max())) + 1,
    name=name,
  )


def _check_images(path: str, key: str, images: np.ndarray) -> np.ndarray:
  if images.dtype != np.uint8 or images.ndim != 4 or min(images.shape) < 1:
    raise ValueError(
      f'{path}: {key} must be a non-empty uint8 NHWC array (N, H, W, C); '
      f'got {images.dtype} of shape {images.shape}'
    )
  return images


def _check_labels(path: str, key: str, labels: np.ndarray, count: int) -> np.ndarray:
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (count,):
    raise ValueError(
      f'{path}: {key} must be integer labels of shape ({count},) or ({count}, 1); '
      f'got {labels.dtype} of shape {labels.shape}'
    )
  if labels.min() < 0 or labels.max() > np.iinfo(np.int32).max:
    raise ValueError(
      f'{path}: {key} must be non-negative int32-sized labels, '
      f'got values in [{labels.min()}, {labels.max()}]'
    )
  return labels.astype(np.int32)


def _one_line(err: Exception) -> str:
  return ' '.join(str(err).split()) or type(err).__name__
