"""In-memory dataset container shared by every data source.

The whole dataset lives in host memory as uint8 so it can be copied to the accelerator once and
augmented inside jit; nothing here touches JAX. Validation is strict and eager because a wrong
dtype or layout would otherwise surface much later as a silent accuracy bug (e.g. NCHW images
normalised along the wrong axis).
"""

import dataclasses

import numpy as np

# Images per chunk when computing channel statistics; bounds the float64 temporary.
_STATS_CHUNK = 1024


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
  """A supernet-training split and an architecture-ranking split, plus normalisation stats.

  `eq=False` because element-wise array comparison has no single truth value; datasets compare
  by identity, and the repr summarises shapes instead of printing every pixel. The arrays are
  stored as read-only views so that an accidental in-place edit (e.g. augmenting on the host)
  cannot corrupt the data shared by every later step.

  Attributes:
    train_images: uint8 (N, H, W, C) images used to train the supernet.
    train_labels: int32 (N,) labels in [0, num_classes).
    rank_images: uint8 (M, H, W, C) held-out images used to rank architectures.
    rank_labels: int32 (M,) labels in [0, num_classes).
    mean: float32 (C,) per-channel mean in pixel units (0..255).
    std: float32 (C,) per-channel standard deviation in pixel units, strictly positive.
    num_classes: number of classes.
    name: short dataset name used in logs and result files.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  rank_images: np.ndarray
  rank_labels: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  num_classes: int
  name: str

  def __post_init__(self) -> None:
    if not isinstance(self.name, str) or not self.name:
      raise ValueError(f'Dataset.name must be a non-empty str, got {self.name!r}')
    if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int | np.integer):
      raise ValueError(f'Dataset.num_classes must be an int, got {self.num_classes!r}')
    if self.num_classes < 1:
      raise ValueError(f'Dataset.num_classes must be >= 1, got {self.num_classes}')
    object.__setattr__(self, 'num_classes', int(self.num_classes))

    train_shape = _check_images('train_images', self.train_images)
    rank_shape = _check_images('rank_images', self.rank_images)
    if train_shape[1:] != rank_shape[1:]:
      raise ValueError(
        f'Dataset.rank_images must have the same (H, W, C) as train_images '
        f'{train_shape[1:]}, got {rank_shape[1:]}'
      )
    _check_labels('train_labels', self.train_labels, train_shape[0], self.num_classes)
    _check_labels('rank_labels', self.rank_labels, rank_shape[0], self.num_classes)
    channels = train_shape[3]
    _check_stat('mean', self.mean, channels, positive=False)
    _check_stat('std', self.std, channels, positive=True)

    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        object.__setattr__(self, field.name, view)

  def __repr__(self) -> str:
    return (
      f'Dataset(name={self.name!r}, train={self.train_images.shape}, '
      f'rank={self.rank_images.shape}, num_classes={self.num_classes}, '
      f'mean={np.round(self.mean, 2).tolist()}, std={np.round(self.std, 2).tolist()})'
    )

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image, as models need it to build their input layer."""
    _, height, width, channels = self.train_images.shape
    return (height, width, channels)

  @property
  def num_train(self) -> int:
    """Number of supernet-training images."""
    return int(self.train_images.shape[0])

  @property
  def num_rank(self) -> int:
    """Number of architecture-ranking images."""
    return int(self.rank_images.shape[0])


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of uint8 NHWC images, in pixel units.

  Accumulates in float64 over chunks so a large dataset never needs a full float copy. A
  constant channel gets std 1 instead of 0: its normalised value is 0 either way, and this
  keeps normalisation free of division by zero.

  Args:
    images: uint8 array of shape (N, H, W, C) with N >= 1.

  Returns:
    (mean, std), each float32 of shape (C,).
  """
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f'channel_stats needs a non-empty (N, H, W, C) array, got {images.shape}')
  channels = images.shape[-1]
  total = np.zeros(channels, np.float64)
  total_sq = np.zeros(channels, np.float64)
  for start in range(0, images.shape[0], _STATS_CHUNK):
    chunk = images[start : start + _STATS_CHUNK].reshape(-1, channels).astype(np.float64)
    total += chunk.sum(axis=0)
    total_sq += np.square(chunk).sum(axis=0)
  count = images.size // channels
  mean = total / count
  var = np.maximum(total_sq / count - np.square(mean), 0.0)
  std = np.sqrt(var)
  std = np.where(std > 0, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


def _check_images(field: str, images: object) -> tuple[int, int, int, int]:
  if not isinstance(images, np.ndarray):
    raise ValueError(f'Dataset.{field} must be a numpy array, got {type(images).__name__}')
  if images.dtype != np.uint8:
    raise ValueError(f'Dataset.{field} must have dtype uint8, got {images.dtype}')
  if images.ndim != 4:
    raise ValueError(f'Dataset.{field} must be 4-D (N, H, W, C), got shape {images.shape}')
  if min(images.shape) < 1:
    raise ValueError(f'Dataset.{field} must have every dimension >= 1, got {images.shape}')
  return images.shape


def _check_labels(field: str, labels: object, count: int, num_classes: int) -> None:
  if not isinstance(labels, np.ndarray):
    raise ValueError(f'Dataset.{field} must be a numpy array, got {type(labels).__name__}')
  if labels.dtype != np.int32:
    raise ValueError(f'Dataset.{field} must have dtype int32, got {labels.dtype}')
  if labels.shape != (count,):
    raise ValueError(f'Dataset.{field} must have shape ({count},), got {labels.shape}')
  low, high = int(labels.min()), int(labels.max())
  if low < 0 or high >= num_classes:
    raise ValueError(
      f'Dataset.{field} must lie in [0, {num_classes}), got values in [{low}, {high}]'
    )


def _check_stat(field: str, stat: object, channels: int, positive: bool) -> None:
  if not isinstance(stat, np.ndarray):
    raise ValueError(f'Dataset.{field} must be a numpy array, got {type(stat).__name__}')
  if stat.dtype != np.float32 or stat.shape != (channels,):
    raise ValueError(
      f'Dataset.{field} must be float32 of shape ({channels},), got {stat.dtype} {stat.shape}'
    )
  if not np.all(np.isfinite(stat)) or (positive and not np.all(stat > 0)):
    kind = 'finite and > 0' if positive else 'finite'
    raise ValueError(f'Dataset.{field} must be {kind}, got {stat.tolist()}')
