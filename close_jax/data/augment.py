"""Batched image augmentation in pure JAX, so it runs inside the jitted train step.

Doing augmentation on the accelerator from uint8 images already resident there means the
training loop never waits on host-side Python. Cropping and flipping act on uint8 pixels before
normalisation, so zero padding means pixel value 0, exactly as torchvision's
RandomCrop(32, padding=4) followed by ToTensor and Normalize.
"""

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """Maps uint8 NHWC images to float32 (x - mean) / std, with mean and std in pixel units.

  Equal to torchvision ToTensor + Normalize(mean / 255, std / 255) up to float rounding.
  """
  x = jnp.asarray(images).astype(jnp.float32)
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_crop(images: jax.Array, key: jax.Array, padding: int) -> jax.Array:
  """Crops each image at an independent random offset from its zero-padded version.

  Args:
    images: (N, H, W, C) images of any dtype.
    key: PRNG key.
    padding: pixels of zeros added on every side before cropping back to (H, W).

  Returns:
    Images with the input's shape and dtype.
  """
  if padding == 0:
    return images
  n, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

  def crop_one(image: jax.Array, offset: jax.Array) -> jax.Array:
    start = (offset[0], offset[1], jnp.zeros((), offset.dtype))
    return jax.lax.dynamic_slice(image, start, (height, width, channels))

  return jax.vmap(crop_one)(padded, offsets)


def random_flip(images: jax.Array, key: jax.Array, prob: float = 0.5) -> jax.Array:
  """Mirrors each (N, H, W, C) image left-right independently with probability `prob`."""
  flip = jax.random.bernoulli(key, prob, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def train_transform(
  images: jax.Array,
  key: jax.Array,
  mean: jax.Array,
  std: jax.Array,
  padding: int = 4,
  flip: bool = True,
) -> jax.Array:
  """Standard CIFAR training augmentation: pad-and-crop, horizontal flip, normalise.

  `padding` and `flip` change the traced program, so mark them static when jitting. The key is
  split per purpose so enabling one augmentation does not change the draws of the other.

  Args:
    images: uint8 (N, H, W, C) images.
    key: PRNG key; the same key gives the same augmentation.
    mean: (C,) mean in pixel units.
    std: (C,) standard deviation in pixel units.
    padding: zero padding for the random crop; 0 disables cropping.
    flip: whether to apply random horizontal flips.

  Returns:
    float32 (N, H, W, C) normalised images.
  """
  crop_key, flip_key = jax.random.split(key)
  if padding:
    images = random_crop(images, crop_key, padding)
  if flip:
    images = random_flip(images, flip_key)
  return normalize(images, mean, std)


def test_transform(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """Evaluation transform: normalisation only, as in the CLOSE ranking protocol."""
  return normalize(images, mean, std)


# Keeps pytest from collecting the transform as a test when it is imported into a test module.
test_transform.__test__ = False
