"""A final-training run's data: a training and a test split behind one batch interface.

Why two kinds of source: CIFAR-sized sets (CIFAR-10, synthetic, npz) sit in host memory as uint8
and are cropped, flipped and cut out on the device inside the train step; ImageNet is read from
class folders and cropped on the host (`data.imagenet_folder`), so the step only normalises it.
Either way the host sends uint8 batches drawn in a seeded order (`(seed, epoch)` fixes an epoch's
batches), so a resumed run replays an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from close_jax.data import imagenet_folder, load_cifar10, load_cifar10_test, load_dataset

NAMES = ('cifar10', 'synthetic', 'npz', 'imagenet_folder')


class ArrayLoader:
  """`FolderLoader`'s interface over in-memory uint8 arrays."""

  def __init__(self, images, labels, *, train: bool, batch_size: int, seed: int, rows=None):
    self.images, self.labels = images, labels
    self.train, self.batch_size, self.seed = train, batch_size, seed
    self.rows = rows or (0, batch_size)

  def __len__(self) -> int:
    n = len(self.images)
    return n // self.batch_size if self.train else -(-n // self.batch_size)

  def epoch(self, epoch: int = 0):
    n, b = len(self.images), self.batch_size
    if self.train:
      plan = np.random.default_rng([self.seed, epoch, 1 << 30]).permutation(n)[: len(self) * b]
    else:
      plan = np.arange(len(self) * b) % n
    start, stop = self.rows
    for i in range(len(self)):
      positions = np.arange(i * b + start, i * b + stop)
      index = plan[positions]
      valid = np.ones(len(index), bool) if self.train else positions < n
      yield self.images[index], self.labels[index], valid


@dataclasses.dataclass(frozen=True)
class FinalData:
  train: Any  # ArrayLoader | FolderLoader
  test: Any
  mean: np.ndarray
  std: np.ndarray
  num_classes: int
  image_size: int
  num_train: int
  num_test: int
  host_augmented: bool  # cropped and flipped on the host (ImageNet); else inside the step


def load(data_cfg, batch_size: int, eval_batch_size: int, seed: int, workdir: str) -> FinalData:
  """The splits `data_cfg` names; batch sizes are global, each process gets its rows."""
  name = data_cfg.name
  if name not in NAMES:
    raise ValueError(f'config.data.name={name!r}: expected one of {", ".join(NAMES)}')
  processes, pid = jax.process_count(), jax.process_index()
  for label, size in (('batch_size', batch_size), ('eval_batch_size', eval_batch_size)):
    if size % processes:
      raise ValueError(f'config.{label}={size} must be a multiple of the {processes} processes')
  rows = lambda size: (pid * size // processes, (pid + 1) * size // processes)
  if name == 'imagenet_folder':
    return _folders(data_cfg, batch_size, eval_batch_size, seed, workdir, rows)
  if name == 'cifar10':
    data = load_cifar10(data_cfg.data_dir, bool(data_cfg.download), train_size=49999)
    train_images = np.concatenate([data.train_images, data.rank_images])
    train_labels = np.concatenate([data.train_labels, data.rank_labels])
    test_images, test_labels = load_cifar10_test(data_cfg.data_dir, bool(data_cfg.download))
  else:  # synthetic and npz: their ranking split is the test split
    data = load_dataset(data_cfg)
    train_images, train_labels = data.train_images, data.train_labels
    test_images, test_labels = data.rank_images, data.rank_labels
  if train_images.shape[3] != 3:
    raise ValueError(
      f'config.data.name={name!r}: images with {train_images.shape[3]} channels, expected RGB (3)'
    )
  if train_images.shape[1] != train_images.shape[2]:
    raise ValueError(
      f'config.data.name={name!r}: images of {train_images.shape[1:3]} are not square'
    )
  _check_batch(batch_size, len(train_images), 'training')
  return FinalData(
    train=ArrayLoader(
      train_images,
      train_labels,
      train=True,
      batch_size=batch_size,
      seed=seed,
      rows=rows(batch_size),
    ),
    test=ArrayLoader(
      test_images,
      test_labels,
      train=False,
      batch_size=eval_batch_size,
      seed=seed,
      rows=rows(eval_batch_size),
    ),
    mean=data.mean,
    std=data.std,
    num_classes=data.num_classes,
    image_size=int(train_images.shape[1]),
    num_train=len(train_images),
    num_test=len(test_images),
    host_augmented=False,
  )


def _folders(cfg, batch_size, eval_batch_size, seed, workdir, rows) -> FinalData:
  root = cfg.imagenet_dir
  if not root and cfg.fake_imagenet_per_class > 0:  # smoke runs: a tiny generated tree
    root = os.path.join(workdir, 'fake_imagenet')
    if not os.path.isdir(os.path.join(root, 'val')):
      per_class = int(cfg.fake_imagenet_per_class)
      imagenet_folder.write_fake_tree(root, int(cfg.fake_imagenet_classes), per_class, per_class)
  if not root or not os.path.isdir(os.path.join(root, 'train')):
    raise ValueError(
      f'config.data.imagenet_dir={root!r}: expected a directory holding train/ and val/ class '
      'folders (the standard ImageNet layout)'
    )
  train = imagenet_folder.scan(os.path.join(root, 'train'))
  test = imagenet_folder.scan(os.path.join(root, 'val'), train.classes)
  _check_batch(batch_size, len(train), 'training')
  common = dict(
    image_size=int(cfg.image_size),
    resize_size=int(cfg.resize_size),
    seed=seed,
    num_workers=int(cfg.num_workers),
    min_scale=float(cfg.min_crop_scale),
  )
  return FinalData(
    train=imagenet_folder.FolderLoader(
      train, train=True, batch_size=batch_size, rows=rows(batch_size), **common
    ),
    test=imagenet_folder.FolderLoader(
      test, train=False, batch_size=eval_batch_size, rows=rows(eval_batch_size), **common
    ),
    mean=imagenet_folder.MEAN.copy(),
    std=imagenet_folder.STD.copy(),
    num_classes=len(train.classes),
    image_size=int(cfg.image_size),
    num_train=len(train),
    num_test=len(test),
    host_augmented=True,
  )


def _check_batch(batch_size: int, count: int, split: str) -> None:
  if batch_size > count:
    raise ValueError(f'config.batch_size={batch_size} exceeds the {count} {split} images')
