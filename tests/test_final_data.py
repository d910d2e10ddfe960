"""The ImageNet class-folder pipeline on a tiny tree written here, and the in-memory loader."""

import os

import numpy as np
import pytest
from PIL import Image

from close_jax.data import imagenet_folder as folder
from close_jax.final.data import ArrayLoader


def _coordinate_image(width: int, height: int) -> Image.Image:
  """Red = column, green = row (scaled to 0..255), blue = 0: a crop's corners reveal its box."""
  cols = np.linspace(0, 255, width)[None, :].repeat(height, 0)
  rows = np.linspace(0, 255, height)[:, None].repeat(width, 1)
  return Image.fromarray(np.stack([cols, rows, np.zeros_like(cols)], -1).round().astype(np.uint8))


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp('imagenet')
  sizes = {'train': [(60, 40), (33, 71), (50, 50)], 'val': [(80, 60), (41, 29)]}
  for split, shapes in sizes.items():
    for c, name in enumerate(['zebra', 'ant']):  # scanned in sorted order: ant = 0, zebra = 1
      os.makedirs(root / split / name)
      for i, (w, h) in enumerate(shapes):
        pixels = np.full((h, w, 3), 60 + 120 * c, np.uint8)
        ext = 'JPEG' if i % 2 else 'png'
        Image.fromarray(pixels).save(root / split / name / f'{i}.{ext}')
      (root / split / name / 'notes.txt').write_text('not an image')
  return str(root)


def test_scan_orders_classes_and_files_like_image_folder(tree):
  train = folder.scan(os.path.join(tree, 'train'))
  assert train.classes == ('ant', 'zebra')
  assert [os.path.relpath(p, tree) for p in train.paths[:3]] == [
    'train/ant/0.png',
    'train/ant/1.JPEG',
    'train/ant/2.png',
  ]
  np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1])
  val = folder.scan(os.path.join(tree, 'val'), train.classes)
  np.testing.assert_array_equal(val.labels, [0, 0, 1, 1])


def test_scan_errors_are_one_line(tree, tmp_path):
  with pytest.raises(ValueError, match=r"image folder '/nonexistent' does not exist"):
    folder.scan('/nonexistent')
  os.makedirs(tmp_path / 'train' / 'empty')
  with pytest.raises(ValueError, match=r'class folder .*empty.* holds no image'):
    folder.scan(str(tmp_path / 'train'))
  with pytest.raises(ValueError, match=r"class folders not in the training split: \['ant'\]"):
    folder.scan(os.path.join(tree, 'val'), ('zebra',))


def test_validation_batches_resize_centre_crop_and_pad(tree):
  split = folder.scan(os.path.join(tree, 'val'))
  loader = folder.FolderLoader(
    split, train=False, batch_size=3, image_size=16, resize_size=20, seed=0, num_workers=2
  )
  batches = list(loader.epoch(0))
  assert len(loader) == len(batches) == 2
  images = np.concatenate([b[0] for b in batches])
  labels = np.concatenate([b[1] for b in batches])
  valid = np.concatenate([b[2] for b in batches])
  assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 0, 0])  # the tail repeats image 0, 1
  np.testing.assert_array_equal(valid, [True] * 4 + [False] * 2)
  assert np.all(images[:2] == 180) and np.all(images[2:4] == 60)  # ant (written 2nd), zebra


def test_resize_centre_crop_geometry():
  """Resize(20) of a 80x40 (w x h) image is 40x20, and CenterCrop(16) starts at column 12."""
  out = folder.resize_center_crop(_coordinate_image(80, 40), resize=20, size=16)
  assert out.shape == (16, 16, 3)
  resized = np.asarray(_coordinate_image(80, 40).resize((40, 20), Image.BILINEAR))
  np.testing.assert_array_equal(out, resized[2:18, 12:28])


def test_random_resized_crop_box_and_flip(tree):
  rng = np.random.default_rng(0)
  fractions = []
  for _ in range(40):
    out = folder.random_resized_crop(_coordinate_image(200, 100), rng, 32)
    assert out.shape == (32, 32, 3)
    left, right = out[16, 0, 0] / 255 * 199, out[16, -1, 0] / 255 * 199  # red = column
    top, bottom = out[0, 16, 1] / 255 * 99, out[-1, 16, 1] / 255 * 99
    w, h = right - left + 1, bottom - top + 1
    assert left >= 0 and right <= 199 and top >= 0 and bottom <= 99
    fractions.append(w * h / (200 * 100))
    assert 3 / 4 * 0.8 < w / h < 4 / 3 * 1.25  # log-uniform ratio, pixels are rounded
  assert min(fractions) > 0.06 and max(fractions) <= 1.05 and np.ptp(fractions) > 0.3
  split = folder.scan(os.path.join(tree, 'train'))
  kwargs = dict(train=True, batch_size=2, image_size=8, resize_size=8, seed=3)
  loader = folder.FolderLoader(split, num_workers=1, **kwargs)
  first = [b[0] for b in loader.epoch(0)]
  assert len(first) == 3 and all(b.shape == (2, 8, 8, 3) for b in first)
  threaded = [b[0] for b in folder.FolderLoader(split, num_workers=4, **kwargs).epoch(0)]
  np.testing.assert_array_equal(np.stack(first), np.stack(threaded))  # thread timing is no input
  labels = np.concatenate([b[1] for b in loader.epoch(0)])
  assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]  # a permutation of the whole split
  assert not np.array_equal(labels, np.concatenate([b[1] for b in loader.epoch(1)]))


def test_rows_split_a_global_batch_between_processes(tree):
  split = folder.scan(os.path.join(tree, 'train'))
  kwargs = dict(train=True, batch_size=4, image_size=8, resize_size=8, seed=1, num_workers=2)
  whole = list(folder.FolderLoader(split, **kwargs).epoch(2))
  parts = [list(folder.FolderLoader(split, rows=r, **kwargs).epoch(2)) for r in ((0, 2), (2, 4))]
  for b, batch in enumerate(whole):
    for k in range(3):
      np.testing.assert_array_equal(batch[k], np.concatenate([parts[0][b][k], parts[1][b][k]]))


def test_write_fake_tree_is_readable(tmp_path):
  root = folder.write_fake_tree(str(tmp_path), num_classes=2, train_per_class=3, val_per_class=2)
  train = folder.scan(os.path.join(root, 'train'))
  assert len(train) == 6 and train.classes == ('n00000000', 'n00000001')
  assert {os.path.splitext(p)[1] for p in train.paths} == {'.JPEG', '.png'}
  image = folder.load_rgb(train.paths[1])
  assert image.mode == 'RGB' and min(image.size) >= 24


def test_array_loader_epochs_and_padding():
  images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
  labels = np.arange(10, dtype=np.int32)
  train = ArrayLoader(images, labels, train=True, batch_size=4, seed=0)
  epoch = list(train.epoch(5))
  assert len(epoch) == 2  # the ragged tail is dropped
  seen = np.concatenate([b[1] for b in epoch])
  assert len(set(seen.tolist())) == 8
  np.testing.assert_array_equal(seen, np.concatenate([b[1] for b in train.epoch(5)]))
  test = list(ArrayLoader(images, labels, train=False, batch_size=4, seed=0).epoch())
  np.testing.assert_array_equal(np.concatenate([b[1] for b in test]), [*range(10), 0, 1])
  np.testing.assert_array_equal(np.concatenate([b[2] for b in test]), [True] * 10 + [False] * 2)
