"""Tests for the jit-friendly augmentation transforms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax.data import normalize, random_crop, random_flip, test_transform, train_transform

MEAN = np.array([125.3, 123.0, 113.9], np.float32)
STD = np.array([63.0, 62.1, 66.7], np.float32)


def _images(n=6, size=8, channels=3, seed=0):
  # Values in [1, 255] so a zero can only come from the padding.
  return np.random.default_rng(seed).integers(1, 256, (n, size, size, channels), dtype=np.uint8)


def _windows(image, padding):
  """Every (H, W) window of the zero-padded image, keyed by its offset."""
  h, w, _ = image.shape
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  return {
    (dy, dx): padded[dy : dy + h, dx : dx + w]
    for dy in range(2 * padding + 1)
    for dx in range(2 * padding + 1)
  }


def _offsets(outputs, inputs, padding, allow_flip=False):
  """Matches each output to the windows of its input; fails if some output matches none."""
  found = []
  for out, image in zip(outputs, inputs, strict=True):
    matches = [
      (offset, flipped)
      for offset, window in _windows(image, padding).items()
      for flipped in ((False, True) if allow_flip else (False,))
      if np.array_equal(out, window[:, ::-1] if flipped else window)
    ]
    assert matches, 'output is not a window of the zero-padded input'
    found.append(matches[0])
  return found


def _denormalize(x):
  return np.rint(np.asarray(x) * STD + MEAN).astype(np.uint8)


def test_normalize_matches_torchvision_formula():
  images = _images()
  expected = (images.astype(np.float32) / 255 - MEAN / 255) / (STD / 255)
  out = normalize(images, MEAN, STD)
  assert out.dtype == jnp.float32 and out.shape == images.shape
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(test_transform(images, MEAN, STD), out)


def test_no_padding_no_flip_is_exactly_normalize():
  images = _images()
  out = train_transform(images, jax.random.key(0), MEAN, STD, padding=0, flip=False)
  np.testing.assert_array_equal(out, normalize(images, MEAN, STD))


def test_forced_flip_mirrors_width():
  images = _images()
  np.testing.assert_array_equal(
    random_flip(jnp.asarray(images), jax.random.key(1), prob=1.0), images[:, :, ::-1]
  )
  np.testing.assert_array_equal(random_flip(jnp.asarray(images), jax.random.key(1), 0.0), images)


def test_flip_probability_is_about_half():
  images = jnp.asarray(_images(n=2000, size=4))
  out = np.asarray(random_flip(images, jax.random.key(2)))
  flipped = np.all(out == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
  assert 0.45 < flipped.mean() < 0.55


def test_crops_are_windows_of_the_zero_padded_image():
  images = _images(n=16)
  out = np.asarray(random_crop(jnp.asarray(images), jax.random.key(3), padding=2))
  assert out.dtype == np.uint8 and out.shape == images.shape
  offsets = _offsets(out, images, padding=2)
  assert len({offset for offset, _ in offsets}) > 3  # Offsets are drawn per image.


def test_train_transform_crops_and_flips_before_normalising():
  images = _images(n=16)
  out = train_transform(images, jax.random.key(4), MEAN, STD, padding=4, flip=True)
  assert out.dtype == jnp.float32 and out.shape == images.shape
  matches = _offsets(_denormalize(out), images, padding=4, allow_flip=True)
  # Padding is pixel 0 before normalisation, so some outputs hold -mean/std exactly there.
  assert np.any(np.isclose(np.asarray(out), -MEAN / STD).all(axis=-1))
  assert {flipped for _, flipped in matches} == {False, True}


def test_same_key_same_output_different_key_different_output():
  images = _images(n=32)
  first = train_transform(images, jax.random.key(5), MEAN, STD)
  np.testing.assert_array_equal(first, train_transform(images, jax.random.key(5), MEAN, STD))
  assert not np.array_equal(first, train_transform(images, jax.random.key(6), MEAN, STD))


@pytest.mark.parametrize('padding, flip', [(4, True), (0, True), (4, False)])
def test_jit_matches_eager(padding, flip):
  images = jnp.asarray(_images(n=8, size=32))
  jitted = jax.jit(functools.partial(train_transform, padding=padding, flip=flip))
  eager = train_transform(images, jax.random.key(7), MEAN, STD, padding=padding, flip=flip)
  np.testing.assert_array_equal(jitted(images, jax.random.key(7), MEAN, STD), eager)


def test_raw_uint32_keys_work():
  images = _images(n=4)
  out = train_transform(images, jax.random.PRNGKey(0), MEAN, STD)
  assert out.shape == images.shape
