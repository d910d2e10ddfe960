"""Layers of the standalone networks with the PyTorch reference semantics they are compared to.

The supernets' layers (`close_jax.models.layers`) normalise with batch statistics only; a network
trained from scratch and tested like the DARTS and NAS-Bench-201 releases needs BatchNorm with
running statistics (PyTorch's: momentum 0.1, the unbiased batch variance in the running average,
eps 1e-5), convolutions with groups and dilation, and PyTorch's default initialisation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from close_jax.models.layers import DIMS, conv_same, torch_kernel_init


class BatchNorm(nn.Module):
  """torch.nn.BatchNorm2d (affine, track_running_stats) over the last axis."""

  momentum: float = 0.1
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    mean_var = self.variable('batch_stats', 'mean', jnp.zeros, (c,), jnp.float32)
    var_var = self.variable('batch_stats', 'var', jnp.ones, (c,), jnp.float32)
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    xf = x.astype(jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)  # biased: what the batch is normalised with
      if not self.is_initializing():
        n = x.size // c
        m = self.momentum
        mean_var.value = (1 - m) * mean_var.value + m * mean
        var_var.value = (1 - m) * var_var.value + m * var * (n / max(n - 1, 1))
    else:
      mean, var = mean_var.value, var_var.value
    y = (xf - mean) * lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(x.dtype)


class TorchConv(nn.Module):
  """Bias-free nn.Conv2d with PyTorch's default init; `groups == in` is a depthwise conv."""

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  groups: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, c_in = self.kernel_size, x.shape[-1]
    shape = (k, k, c_in // self.groups, self.features)
    kernel = self.param('kernel', torch_kernel_init, shape).astype(x.dtype)
    same = self.padding == (k - 1) // 2 and k % 2
    if self.stride == 1 and self.dilation == 1 and self.groups == 1 and same:
      return conv_same(x, kernel)  # the XLA:CPU-friendly gradient layouts
    pad = ((self.padding, self.padding), (self.padding, self.padding))
    return lax.conv_general_dilated(
      x,
      kernel,
      (self.stride, self.stride),
      pad,
      rhs_dilation=(self.dilation, self.dilation),
      dimension_numbers=DIMS,
      feature_group_count=self.groups,
    )


class ReLUConvBN(nn.Module):
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = TorchConv(self.features, self.kernel_size, self.stride, self.padding)(jax.nn.relu(x))
    return BatchNorm()(y, train)


def avg_pool_valid(x: jax.Array, window: int, stride: int) -> jax.Array:
  """nn.AvgPool2d(window, stride, padding=0): every window is whole, so the count is fixed."""
  dims, strides = (1, window, window, 1), (1, stride, stride, 1)
  return lax.reduce_window(x, 0.0, lax.add, dims, strides, 'VALID') / (window * window)


def drop_path(x: jax.Array, drop_prob: jax.Array, key: jax.Array) -> jax.Array:
  """DARTS `utils.drop_path`: each sample's whole path is zeroed with probability `drop_prob`
  and the kept ones scaled by 1 / keep. `drop_prob` is traced (it grows over the epochs without
  a recompile); at 0 the mask is all ones and x passes unchanged."""
  keep = 1.0 - jnp.asarray(drop_prob, jnp.float32)
  mask = jax.random.bernoulli(key, keep, (x.shape[0], 1, 1, 1))
  return x * (mask.astype(x.dtype) / keep.astype(x.dtype))
