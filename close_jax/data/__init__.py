"""Datasets held in host memory and the JAX transforms that augment them on the accelerator."""

from typing import Any

from close_jax.data.augment import (
  normalize,
  random_crop,
  random_flip,
  test_transform,
  train_transform,
)
from close_jax.data.cifar10 import load_cifar10, load_cifar10_test
from close_jax.data.dataset import Dataset, channel_stats
from close_jax.data.idx import load_idx
from close_jax.data.npz import load_npz
from close_jax.data.synthetic import load_synthetic

DATASET_NAMES = ('cifar10', 'synthetic', 'npz', 'idx')

__all__ = [
  'DATASET_NAMES',
  'Dataset',
  'channel_stats',
  'load_cifar10',
  'load_cifar10_test',
  'load_dataset',
  'load_idx',
  'load_npz',
  'load_synthetic',
  'normalize',
  'random_crop',
  'random_flip',
  'test_transform',
  'train_transform',
]


def load_dataset(cfg: Any) -> Dataset:
  """Builds the Dataset a config asks for, so callers never branch on the dataset name.

  Args:
    cfg: an ml_collections.ConfigDict or any object with the attributes `name` plus those of
      the chosen source: `data_dir`, `download` and `cifar_train_size` (default 40000) for
      'cifar10'; `npz_path` for 'npz'; `synthetic_num_train`, `synthetic_num_rank`,
      `synthetic_image_size`, `synthetic_channels`, `synthetic_num_classes` and
      `synthetic_seed` for 'synthetic'; `idx_dir`, `idx_train_size`, `idx_rank_size` (0 = the
      rest) and `image_size` (0 = as stored) for 'idx'.

  Returns:
    The loaded Dataset.

  Raises:
    ValueError: cfg.name is not one of DATASET_NAMES.
  """
  name = cfg.name
  if name == 'cifar10':
    return load_cifar10(
      cfg.data_dir,
      download=bool(getattr(cfg, 'download', False)),
      train_size=int(getattr(cfg, 'cifar_train_size', 40000)),
    )
  if name == 'synthetic':
    return load_synthetic(
      num_train=int(cfg.synthetic_num_train),
      num_rank=int(cfg.synthetic_num_rank),
      image_size=int(cfg.synthetic_image_size),
      channels=int(cfg.synthetic_channels),
      num_classes=int(cfg.synthetic_num_classes),
      seed=int(cfg.synthetic_seed),
    )
  if name == 'npz':
    return load_npz(cfg.npz_path)
  if name == 'idx':
    return load_idx(
      cfg.idx_dir,
      train_size=int(cfg.idx_train_size),
      image_size=int(cfg.get('image_size', 0)),
      rank_size=int(cfg.get('idx_rank_size', 0)),
    )
  raise ValueError(f'unknown dataset name {name!r}; valid names are {DATASET_NAMES}')
