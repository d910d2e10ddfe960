"""One NB201 edge: the traced op id picks the operation, with a hand-written VJP.

Why a custom VJP for the whole edge and not only for the convolution: differentiating a
`lax.switch` makes every branch return the union of all branches' residuals, so an edge that runs
`none` or `skip_connect` still writes zero-filled copies of the conv branches' activations (ReLU
output, conv output, normalised output, ...). On the full NB201 supernet that is gigabytes of
memset per step and it set a floor of 0.42 s/step at batch 64 on a 2-core CPU even when every cell
was an identity. Here the forward saves only what the backward truly needs, and the same buffer
for every op: the edge's own output (for a conv op that is the normalised conv output, which batch
norm's backward needs anyway) and the conv's inverse standard deviation. The backward is a second
`lax.switch` that recomputes the cheap parts (the ReLU of the input) and runs only the chosen op's
gradient. Convolution gradients keep the canonical dimension orders of `layers.conv_same`, which
XLA:CPU needs inside conditionals (jax-ml/jax#12868).

Ops in index order: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3; a conv op is
ReLU -> conv (stride 1, same padding) -> batch norm with batch statistics and no affine.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from close_jax.models import layers


def _normalise_bwd(g: jax.Array, y: jax.Array, rstd: jax.Array) -> jax.Array:
  """d/dz of y = (z - mean) * rstd with batch statistics, given y and rstd."""
  gf, yf = g.astype(jnp.float32), y.astype(jnp.float32)
  mean_g = layers.channel_mean(gf)
  mean_gy = layers.channel_mean(gf * yf)
  return (rstd * (gf - mean_g - yf * mean_gy)).astype(g.dtype)


def _conv_bn(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  """ReLU -> conv -> BN: the output (in x's dtype) and the BN's 1/std (float32)."""
  y, rstd = layers.normalise(layers.conv_same(jax.nn.relu(x), kernel))
  return y.astype(x.dtype), rstd


def _conv_bn_bwd(g, x, kernel, y, rstd):
  """(dx, dkernel) of ReLU -> conv -> BN, from the saved output y and 1/std."""
  dz = _normalise_bwd(g, y, rstd)
  da, dk = layers.conv_same_bwd(jax.nn.relu(x), kernel, dz)
  return jnp.where(x > 0, da, jnp.zeros_like(da)), dk


def _pool_bwd(g: jax.Array) -> jax.Array:
  return jax.linear_transpose(layers.avg_pool_3x3, g)(g)[0]


# --- one block per edge -----------------------------------------------------------------------


def _select_fwd_branches(x, k1, k3):
  zeros = jnp.zeros(x.shape[-1:], jnp.float32)
  return (
    lambda: (jnp.zeros_like(x), zeros),
    lambda: (x, zeros),
    lambda: _conv_bn(x, k1),
    lambda: _conv_bn(x, k3),
    lambda: (layers.avg_pool_3x3(x), zeros),
  )


@jax.custom_vjp
def edge_select(x: jax.Array, op: jax.Array, k1: jax.Array, k3: jax.Array) -> jax.Array:
  """Runs op `op` on `x` with the 1x1 kernel `k1` or 3x3 kernel `k3`; only that op executes."""
  return lax.switch(op, [lambda b=b: b()[0] for b in _select_fwd_branches(x, k1, k3)])


def _edge_select_fwd(x, op, k1, k3):
  y, rstd = lax.switch(op, _select_fwd_branches(x, k1, k3))
  return y, (x, op, k1, k3, y, rstd)


def _edge_select_bwd(res, g):
  x, op, k1, k3, y, rstd = res
  z1, z3 = jnp.zeros_like(k1), jnp.zeros_like(k3)

  def conv1():
    dx, dk = _conv_bn_bwd(g, x, k1, y, rstd)
    return dx, dk, z3

  def conv3():
    dx, dk = _conv_bn_bwd(g, x, k3, y, rstd)
    return dx, z1, dk

  branches = (
    lambda: (jnp.zeros_like(g), z1, z3),
    lambda: (g, z1, z3),
    conv1,
    conv3,
    lambda: (_pool_bwd(g), z1, z3),
  )
  dx, dk1, dk3 = lax.switch(op, branches)
  return dx, None, dk1, dk3


edge_select.defvjp(_edge_select_fwd, _edge_select_bwd)


# --- all L blocks, mixed with the gate's straight-through one-hot -------------------------------


def stack_blocks(w: jax.Array) -> jax.Array:
  """(L, kh, kw, C, C) -> (kh, kw, C, L*C): all L blocks as one convolution."""
  num, kh, kw, ci, co = w.shape
  return w.transpose(1, 2, 3, 0, 4).reshape(kh, kw, ci, num * co)


def _split(y: jax.Array, num: int) -> jax.Array:
  return y.reshape(*y.shape[:-1], num, y.shape[-1] // num)


def _mix_fwd_branches(x, mix, k1, k3):
  """Each branch returns (output, saved (B,H,W,L*C) normalised conv outputs, 1/std, pool)."""
  num = mix.shape[0]
  total = jnp.sum(mix)  # exactly 1 in the forward pass; carries the gate's gradient
  wide = jnp.zeros((*x.shape[:-1], num * x.shape[-1]), x.dtype)
  zeros = jnp.zeros((num * x.shape[-1],), jnp.float32)

  def conv(k):
    y, rstd = _conv_bn(x, k)
    return jnp.einsum('bhwlc,l->bhwc', _split(y, num), mix), y, rstd

  return (
    lambda: (jnp.zeros_like(x), wide, zeros),
    lambda: (x * total, wide, zeros),
    lambda: conv(k1),
    lambda: conv(k3),
    lambda: (layers.avg_pool_3x3(x) * total, wide, zeros),
  )


def _all_blocks_bwd(g, x, mix, k, y, rstd):
  """(dx, dk) through every block, each output's cotangent scaled by its mix weight."""
  dy = (g[..., None, :] * mix[:, None].astype(g.dtype)).reshape(y.shape)
  return _conv_bn_bwd(dy, x, k, y, rstd)


def _one_block_bwd(g, x, mix, k, y, rstd):
  """The same (dx, dk) when one block alone has a nonzero weight, as the straight-through
  one-hot has: the other blocks' cotangents are exactly zero, so their convolution and batch-norm
  gradients are skipped (the backward costs one block's, not L blocks'). Only the GATE's dmix
  needs every block's output, and that is the forward's."""
  width = x.shape[-1]
  start = jnp.argmax(mix != 0) * width
  part = lambda a: lax.dynamic_slice_in_dim(a, start, width, axis=-1)
  scale = jnp.sum(mix).astype(g.dtype)  # the one nonzero weight
  dx, dk = _conv_bn_bwd(g * scale, x, part(k), part(y), part(rstd))
  return dx, lax.dynamic_update_slice_in_dim(jnp.zeros_like(k), dk, start, axis=-1)


@jax.custom_vjp
def edge_mix(x: jax.Array, op: jax.Array, mix: jax.Array, k1: jax.Array, k3: jax.Array):
  """Runs op `op` with all L blocks (stacked kernels, (kh, kw, C, L*C)) and mixes the L outputs
  with `mix` (L,); parameter-free ops are scaled by sum(mix) so the gate sees them too."""
  branches = _mix_fwd_branches(x, mix, k1, k3)
  return lax.switch(op, [lambda b=b: b()[0] for b in branches])


def _edge_mix_fwd(x, op, mix, k1, k3):
  out, y, rstd = lax.switch(op, _mix_fwd_branches(x, mix, k1, k3))
  return out, (x, op, mix, k1, k3, y, rstd)


def _edge_mix_bwd(res, g):
  x, op, mix, k1, k3, y, rstd = res
  num = mix.shape[0]
  total = jnp.sum(mix)
  z1, z3 = jnp.zeros_like(k1), jnp.zeros_like(k3)
  ones = jnp.ones_like(mix)

  def conv(k):
    ys = _split(y, num)
    dmix = jnp.einsum('bhwlc,bhwc->l', ys.astype(jnp.float32), g.astype(jnp.float32))
    dx, dk = lax.cond(
      jnp.sum(mix != 0) == 1, _one_block_bwd, _all_blocks_bwd, g, x, mix, k, y, rstd
    )
    return dx, dmix.astype(mix.dtype), dk

  def conv1():
    dx, dmix, dk = conv(k1)
    return dx, dmix, dk, z3

  def conv3():
    dx, dmix, dk = conv(k3)
    return dx, dmix, z1, dk

  def scaled(primal, dx):
    dtotal = jnp.sum(g.astype(jnp.float32) * primal.astype(jnp.float32))
    return dx * total.astype(g.dtype), (dtotal * ones).astype(mix.dtype), z1, z3

  branches = (
    lambda: (jnp.zeros_like(g), jnp.zeros_like(mix), z1, z3),
    lambda: scaled(x, g),
    conv1,
    conv3,
    lambda: scaled(layers.avg_pool_3x3(x), _pool_bwd(g)),
  )
  dx, dmix, dk1, dk3 = lax.switch(op, branches)
  return dx, None, dmix, dk1, dk3


edge_mix.defvjp(_edge_mix_fwd, _edge_mix_bwd)
