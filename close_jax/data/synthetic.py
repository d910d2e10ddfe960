"""A tiny procedurally generated dataset for smoke tests and CPU-only runs.

Each class owns a smooth random colour pattern; an image is its class pattern circularly
shifted by a few pixels, with a random brightness offset and pixel noise. The shift makes
translation-equivariant (convolutional) features pay off and the noise keeps the task from being
solved by a single pixel, yet a small conv net learns it within a few hundred steps. Everything
is drawn from one numpy Generator, so a seed fixes every array bit for bit.
"""

import numpy as np

from close_jax.data.dataset import Dataset, channel_stats

# Number of cosine waves summed per class and channel; integer frequencies keep the pattern
# periodic so circular shifts have no seam.
_WAVES = 3
_MAX_FREQ = 2
_PATTERN_AMPLITUDE = 55.0
_COLOUR_SPREAD = 30.0
_BRIGHTNESS_SPREAD = 20.0
_NOISE_STD = 40.0


def load_synthetic(
  num_train: int,
  num_rank: int,
  image_size: int,
  channels: int = 3,
  num_classes: int = 10,
  seed: int = 0,
) -> Dataset:
  """Generates a deterministic, learnable classification dataset.

  Args:
    num_train: number of supernet-training images.
    num_rank: number of architecture-ranking images.
    image_size: height and width of the square images.
    channels: number of image channels.
    num_classes: number of classes; labels are balanced and shuffled.
    seed: seed for every random draw; equal seeds give identical arrays.

  Returns:
    A Dataset whose mean/std are measured on its training images.
  """
  for field, value, low in (
    ('num_train', num_train, 1),
    ('num_rank', num_rank, 1),
    ('image_size', image_size, 1),
    ('channels', channels, 1),
    ('num_classes', num_classes, 2),
  ):
    if value < low:
      raise ValueError(f'load_synthetic: {field} must be >= {low}, got {value}')
  rng = np.random.default_rng(seed)
  templates = _class_templates(rng, num_classes, image_size, channels)
  train_images, train_labels = _sample(rng, templates, num_train)
  rank_images, rank_labels = _sample(rng, templates, num_rank)
  mean, std = channel_stats(train_images)
  return Dataset(
    train_images=train_images,
    train_labels=train_labels,
    rank_images=rank_images,
    rank_labels=rank_labels,
    mean=mean,
    std=std,
    num_classes=num_classes,
    name='synthetic',
  )


def _class_templates(
  rng: np.random.Generator, num_classes: int, size: int, channels: int
) -> np.ndarray:
  """Returns float (num_classes, size, size, channels) smooth patterns centred near 128."""
  shape = (num_classes, channels, _WAVES)
  freq_y = rng.integers(0, _MAX_FREQ + 1, shape)
  freq_x = rng.integers(1, _MAX_FREQ + 1, shape)  # >= 1 so no wave is constant.
  phase = rng.uniform(0.0, 2 * np.pi, shape)
  amplitude = rng.uniform(0.5, 1.0, shape)
  colour = rng.uniform(-_COLOUR_SPREAD, _COLOUR_SPREAD, (num_classes, channels))
  coords = np.arange(size) * (2 * np.pi / size)
  # angle[k, c, w, y, x] = 2*pi*(fy*y + fx*x)/size + phase.
  angle = (
    freq_y[..., None, None] * coords[:, None]
    + freq_x[..., None, None] * coords[None, :]
    + phase[..., None, None]
  )
  waves = (amplitude[..., None, None] * np.cos(angle)).sum(axis=2) / _WAVES
  patterns = 128.0 + colour[..., None, None] + _PATTERN_AMPLITUDE * waves
  return patterns.transpose(0, 2, 3, 1)


def _sample(
  rng: np.random.Generator, templates: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
  """Draws `count` noisy, shifted images with balanced, shuffled labels."""
  num_classes, size, _, channels = templates.shape
  labels = rng.permutation(np.arange(count) % num_classes).astype(np.int32)
  max_shift = size // 8
  shifts = rng.integers(-max_shift, max_shift + 1, (count, 2))
  rows = (np.arange(size)[None, :] - shifts[:, :1]) % size
  cols = (np.arange(size)[None, :] - shifts[:, 1:]) % size
  images = templates[labels[:, None, None], rows[:, :, None], cols[:, None, :]]
  images = images + rng.uniform(-_BRIGHTNESS_SPREAD, _BRIGHTNESS_SPREAD, (count, 1, 1, 1))
  images = images + rng.normal(0.0, _NOISE_STD, (count, size, size, channels))
  return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels
