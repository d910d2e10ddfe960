"""Functional building blocks shared by the supernets.

Two facts about the target shape this module: (1) NB201 and CLOSE always normalise with the
statistics of the current batch (training and ranking alike), so batch norm here has no running
averages and no mutable collection; (2) candidate ops are selected per edge with `lax.switch`, and
on XLA:CPU the stock convolution gradient inside a conditional takes a slow, non-canonical layout
(about 18x slower; see jax-ml/jax#12868). `conv_same` therefore carries a custom VJP whose backward
convolutions use dimension orders XLA:CPU handles natively.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

DIMS = ('NHWC', 'HWIO', 'NHWC')
BN_EPS = 1e-5

# PyTorch's default conv/linear init (kaiming_uniform with a=sqrt(5)): U(+-1/sqrt(fan_in)).
# Matching it keeps the training dynamics of the official code (same initial scale).
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')
# The same per block of a stacked (blocks, kh, kw, in, out) kernel: each block is an independent
# draw with the fan-in of one kernel.
block_kernel_init = nn.initializers.variance_scaling(
  1.0 / 3.0, 'fan_in', 'uniform', in_axis=-2, out_axis=-1, batch_axis=(0,)
)


def _same_padding(kernel: jax.Array) -> tuple[tuple[int, int], tuple[int, int]]:
  kh, kw = kernel.shape[0], kernel.shape[1]
  return ((kh // 2, kh // 2), (kw // 2, kw // 2))


def _conv(x: jax.Array, kernel: jax.Array, stride: int = 1, padding=None) -> jax.Array:
  pad = _same_padding(kernel) if padding is None else padding
  return lax.conv_general_dilated(x, kernel, (stride, stride), pad, dimension_numbers=DIMS)


@jax.custom_vjp
def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'same' convolution (odd kernel), NHWC x HWIO, fast to differentiate in a switch."""
  return _conv(x, kernel)


def _conv_same_fwd(x, kernel):
  return _conv(x, kernel), (x, kernel)


def conv_same_bwd(x: jax.Array, kernel: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(dx, dkernel) of `conv_same` at (x, kernel) for the output cotangent g."""
  # Input gradient: correlate with the spatially flipped, in/out-swapped kernel.
  dx = _conv(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
  if kernel.shape[:2] == (1, 1):
    # A 1x1 kernel's gradient is one matrix product over every pixel, sum_bhw x[bhw,c] g[bhw,o]:
    # as a dot_general it is 4-8x faster on XLA:CPU than the convolution below (measured with
    # experiments/bench_kernel_grad.py: docs/performance.md#the-kernel-gradient-convolution), and
    # the same GEMM a GPU runs.
    dk = jnp.einsum('bhwc,bhwo->co', x, g)[None, None]
    return dx, dk.astype(kernel.dtype)
  # Kernel gradient as a convolution with batch and feature swapped: (C,H,W,N) * (H,W,N,O)
  # -> (C,kh,kw,O). These dimension labels are canonical for XLA:CPU inside conditionals; for
  # 3x3 kernels this beats a dot_general per tap or over a patch matrix 2-4x on XLA:CPU.
  dk = lax.conv_general_dilated(
    x.transpose(3, 1, 2, 0),
    g.transpose(1, 2, 0, 3),
    (1, 1),
    _same_padding(kernel),
    dimension_numbers=DIMS,
  ).transpose(1, 2, 0, 3)
  return dx, dk.astype(kernel.dtype)


conv_same.defvjp(_conv_same_fwd, lambda res, g: conv_same_bwd(*res, g))


# How batch norm sums over the batch and pixels, per backend ('reduce' where not listed).
# XLA:CPU splits a reduction over N*H*W into a `reduce-window` over 32-element tiles and a second
# `reduce` (a precision rewrite), two passes per statistic; a contraction with a ones vector is
# one Eigen GEMV pass, and the step runs faster with it
# (docs/performance.md#batch-norm-sums-layerschannel_sum).
# GPUs and TPUs keep XLA's reductions: they are fast there, and a dot could run in TF32/bf16.
CHANNEL_SUM = {'cpu': 'dot'}


def channel_mean(x: jax.Array) -> jax.Array:
  """Mean over every axis but the last (the per-channel batch statistic), as `CHANNEL_SUM` says
  for the backend this is traced for."""
  if CHANNEL_SUM.get(jax.default_backend(), 'reduce') == 'dot':
    flat = x.reshape(-1, x.shape[-1])
    ones = jnp.ones((flat.shape[0],), x.dtype)
    return jnp.dot(ones, flat, precision=lax.Precision.HIGHEST) / flat.shape[0]
  return jnp.mean(x, tuple(range(x.ndim - 1)))


def normalise(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x - mean) * rstd over every axis but the last, in float32, and rstd = 1/std per channel.

  Batch statistics with the biased variance, as PyTorch's train mode; rstd is returned because
  the edges' hand-written backward (`edge_ops`) needs it.
  """
  xf = x.astype(jnp.float32)
  mean = channel_mean(xf)
  rstd = lax.rsqrt(channel_mean(jnp.square(xf - mean)) + BN_EPS)
  return (xf - mean) * rstd, rstd


def batch_norm(x: jax.Array, scale=None, bias=None) -> jax.Array:
  """Normalise with the statistics of this batch (biased variance, as PyTorch's train mode)."""
  y, _ = normalise(x)
  if scale is not None:
    y = y * scale + bias
  return y.astype(x.dtype)


def avg_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool that excludes padding from the count (count_include_pad=False).

  Written as sums of shifted slices rather than `lax.reduce_window`: XLA:CPU fuses the slices
  (and their transposes in the backward pass) into one elementwise loop, where reduce_window and
  its transpose ran as separate, slower kernels (about 5 ms per edge at batch 64, 32x32, C=16).
  """
  height, width = x.shape[1], x.shape[2]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = xp[:, :-2] + xp[:, 1:-1] + xp[:, 2:]
  total = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
  count_h = np.full(height, 3.0, np.float32)
  count_w = np.full(width, 3.0, np.float32)
  count_h[[0, -1]] -= 1.0
  count_w[[0, -1]] -= 1.0
  inv_count = 1.0 / (count_h[:, None] * count_w[None, :])
  return total * jnp.asarray(inv_count[None, :, :, None], x.dtype)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  window = (1, 2, 2, 1)
  return lax.reduce_window(x, 0.0, lax.add, window, window, 'VALID') / 4.0


class AffineBatchNorm(nn.Module):
  """Batch-statistics BN with learned scale and shift (stem, residual blocks, head)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    return batch_norm(x, scale.astype(x.dtype), bias.astype(x.dtype))


class Conv(nn.Module):
  """Bias-free convolution with PyTorch's default init; stride 1 uses the fast custom VJP."""

  features: int
  kernel_size: int
  stride: int = 1
  kernel_init: nn.initializers.Initializer = torch_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features))
    kernel = kernel.astype(x.dtype)
    if self.stride == 1:
      return conv_same(x, kernel)
    return _conv(x, kernel, self.stride, ((k // 2, k // 2), (k // 2, k // 2)))


class TorchDense(nn.Module):
  """Linear layer with PyTorch's default init, including the U(+-1/sqrt(fan_in)) bias."""

  features: int
  kernel_init: nn.initializers.Initializer = torch_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (fan_in, self.features))
    bound = 1.0 / fan_in**0.5
    bias_init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    bias = self.param('bias', bias_init, (self.features,))
    return x.astype(jnp.float32) @ kernel + bias
