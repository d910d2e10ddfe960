"""An ImageNet-style class-folder tree (ROOT/train/<class>/*.JPEG, ROOT/val/<class>/*), read with
PIL, preprocessed on the host as torchvision's standard recipe, in batches decoded by a thread pool.

Why on the host: ImageNet does not fit in device memory like CIFAR, and JPEG decoding is host
work anyway; PIL releases the GIL while decoding and resizing, so threads scale without
processes. Training images get RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) and a
horizontal flip, validation images Resize(256) (shorter side) and CenterCrop(224), both with
bilinear (antialiased) resizing as torchvision's PIL path. Every random draw comes from a
generator seeded by (seed, epoch, position in the epoch), so an epoch's batches do not depend
on thread timing and a resumed run replays them exactly. Normalisation happens on the device
(`MEAN`, `STD` in pixel units).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os

import numpy as np

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * np.float32(255)
STD = np.array([0.229, 0.224, 0.225], np.float32) * np.float32(255)


def _pil():
  try:
    from PIL import Image
  except ImportError as e:  # a missing dependency is one line, not a traceback
    raise OSError('reading image folders needs Pillow: pip install Pillow') from e
  return Image


@dataclasses.dataclass(frozen=True)
class FolderSplit:
  """The files of one split, sorted by class then name, and their class indices."""

  paths: tuple[str, ...]
  labels: np.ndarray
  classes: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.paths)


def scan(directory: str, classes: tuple[str, ...] | None = None) -> FolderSplit:
  """The images under `directory`/<class>/ (torchvision `ImageFolder` order). `classes` (the
  training split's) fixes the label of each class name; a split may hold a subset of them."""
  if not os.path.isdir(directory):
    raise ValueError(f'image folder {directory!r} does not exist: expected <class>/<image> folders')
  found = sorted(e.name for e in os.scandir(directory) if e.is_dir())
  if not found:
    raise ValueError(f'image folder {directory!r} has no class folders')
  if classes is None:
    classes = tuple(found)
  index = {name: i for i, name in enumerate(classes)}
  unknown = [name for name in found if name not in index]
  if unknown:
    raise ValueError(
      f'image folder {directory!r} has class folders not in the training split: {unknown[:3]}'
    )
  paths, labels = [], []
  for name in found:
    folder = os.path.join(directory, name)
    files = sorted(
      f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS) and not f.startswith('.')
    )
    if not files:
      raise ValueError(f'class folder {folder!r} holds no image ({", ".join(EXTENSIONS)})')
    paths += [os.path.join(folder, f) for f in files]
    labels += [index[name]] * len(files)
  return FolderSplit(tuple(paths), np.asarray(labels, np.int32), tuple(classes))


def load_rgb(path: str):
  image_cls = _pil()
  try:
    with image_cls.open(path) as image:
      return image.convert('RGB')
  except (OSError, ValueError) as e:
    raise ValueError(f'cannot decode image {path} ({type(e).__name__}: {e})') from None


def random_resized_crop(
  image, rng: np.random.Generator, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> np.ndarray:
  """torchvision RandomResizedCrop: 10 tries at a random area and log-uniform aspect ratio,
  else the centre crop at the clamped ratio; then a bilinear resize to size x size."""
  width, height = image.size
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      break
  else:
    in_ratio = width / height
    if in_ratio < min(ratio):
      w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
      h, w = height, int(round(height * max(ratio)))
    else:
      w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
  crop = image.crop((left, top, left + w, top + h))
  return np.asarray(crop.resize((size, size), _pil().BILINEAR), np.uint8)


def resize_center_crop(image, resize: int, size: int) -> np.ndarray:
  """torchvision Resize(resize) (shorter side, aspect kept) then CenterCrop(size)."""
  width, height = image.size
  if width <= height:
    new_w, new_h = resize, int(resize * height / width)
  else:
    new_w, new_h = int(resize * width / height), resize
  image = image.resize((new_w, new_h), _pil().BILINEAR)
  top = int(round((new_h - size) / 2.0))
  left = int(round((new_w - size) / 2.0))
  return np.asarray(image.crop((left, top, left + size, top + size)), np.uint8)


class FolderLoader:
  """Batches of one split: uint8 (B, size, size, 3) images, int32 labels and a bool mask of real
  rows (evaluation pads its last batch by repeating images; training drops the ragged tail).

  `rows` = (start, stop) picks this process's part of each global batch (multi-host); several
  batches are decoded ahead (`prefetch`) by `num_workers` threads.
  """

  def __init__(
    self,
    split: FolderSplit,
    *,
    train: bool,
    batch_size: int,
    image_size: int,
    resize_size: int,
    seed: int,
    num_workers: int = 8,
    prefetch: int = 2,
    min_scale: float = 0.08,
    rows: tuple[int, int] | None = None,
  ):
    self.split, self.train, self.batch_size = split, train, batch_size
    self.image_size, self.resize_size, self.seed = image_size, resize_size, seed
    self.num_workers, self.prefetch, self.min_scale = (
      max(1, num_workers),
      max(1, prefetch),
      min_scale,
    )
    self.rows = rows or (0, batch_size)

  def __len__(self) -> int:
    """Batches per epoch."""
    n = len(self.split)
    return n // self.batch_size if self.train else -(-n // self.batch_size)

  def _load(self, epoch: int, position: int, index: int) -> np.ndarray:
    image = load_rgb(self.split.paths[index])
    if not self.train:
      return resize_center_crop(image, self.resize_size, self.image_size)
    rng = np.random.default_rng([self.seed, epoch, position])
    out = random_resized_crop(image, rng, self.image_size, (self.min_scale, 1.0))
    return out[:, ::-1] if rng.random() < 0.5 else out

  def _plan(self, epoch: int) -> np.ndarray:
    n = len(self.split)
    if self.train:
      order = np.random.default_rng([self.seed, epoch, 1 << 30]).permutation(n)
      return order[: len(self) * self.batch_size]
    return np.arange(len(self) * self.batch_size) % n  # the tail repeats the first images

  def epoch(self, epoch: int = 0):
    """Yields (images, labels, valid) for every batch of `epoch` (this process's rows)."""
    plan = self._plan(epoch)
    n = len(self.split)
    start, stop = self.rows
    with concurrent.futures.ThreadPoolExecutor(self.num_workers) as pool:
      pending = collections.deque()

      def submit(b: int) -> None:
        positions = range(b * self.batch_size + start, b * self.batch_size + stop)
        pending.append(
          (positions, [pool.submit(self._load, epoch, p, int(plan[p])) for p in positions])
        )

      for b in range(min(self.prefetch, len(self))):
        submit(b)
      for b in range(len(self)):
        positions, futures = pending.popleft()
        if b + self.prefetch < len(self):
          submit(b + self.prefetch)
        images = np.stack([f.result() for f in futures])
        index = plan[list(positions)]
        valid = np.asarray([self.train or p < n for p in positions])
        yield images, self.split.labels[index], valid


def write_fake_tree(
  root: str, num_classes: int, train_per_class: int, val_per_class: int, seed: int = 0
) -> str:
  """A tiny ImageNet-format tree of JPEG and PNG files of random sizes, each class a different
  mean colour (learnable), for smoke runs and tests; returns `root`."""
  image_cls = _pil()
  rng = np.random.default_rng(seed)
  colours = rng.uniform(40, 215, (num_classes, 3))
  for split, per_class in (('train', train_per_class), ('val', val_per_class)):
    for c in range(num_classes):
      folder = os.path.join(root, split, f'n{c:08d}')
      os.makedirs(folder, exist_ok=True)
      for i in range(per_class):
        h, w = (int(v) for v in rng.integers(24, 80, 2))
        pixels = colours[c] + rng.normal(0, 25, (h, w, 3))
        image = image_cls.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        ext = '.JPEG' if i % 2 == 0 else '.png'
        image.save(os.path.join(folder, f'img_{i:04d}{ext}'))
  return root
