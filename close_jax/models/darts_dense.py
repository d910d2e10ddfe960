"""DARTS / NB-301 edges without conditionals (`model.edge_impl=dense`), for GPUs and TPUs.

Why: `darts_ops.edge` is a `lax.switch` per edge, free on XLA:CPU and a host round trip per
edge on XLA:GPU (see `edge_dense.py` for NB201). Here the op is data: with `a` the one-hot of
the edge's op, each family of ops runs once, its larger member's shape holding the smaller one:

- `FOLDS`: sep_conv_3x3 folds into sep_conv_5x5 (each of its four kernels `a_sep3 * pad(W3) +
  a_sep5 * W5`, the 3x3 depthwise kernels at the centre of a 5x5, pointwise kernels mixed as
  they are), dil_conv_3x3 into dil_conv_5x5 (the same with dilation 2: the 3x3 taps at offsets
  -2..2 are the centre of the 5x5 taps at -4..4). Zero taps add zeros, so the padded op equals
  the small one in value, and plain autodiff gives each kernel its switch gradient (a zero
  factor stops the other kernel's).
- weight-free ops (the two pools, skip at stride 1) and FactorizedReduce (skip at stride 2) run
  and are weighted by their entry of `a`.

    y = a_max * BN(maxpool x) + a_avg * BN(avgpool x) + a_skip * skip(x)
        + (a_sep3 + a_sep5) * sep5(x; folded) + (a_dil3 + a_dil5) * dil5(x; folded)

An edge costs one sep_conv_5x5, one dil_conv_5x5, both pools and the skip, whatever its op
(the switch runs one op): the price of no host round trips. With L GLOW blocks the weighted
families run per block and mix by the GATE's weights, weight-free ops once scaled by the mix's
sum, as `darts_ops.edge_mix`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from close_jax.models import darts_ops
from close_jax.models.darts_ops import AVG_POOL, DIL3, DIL5, MAX_POOL, SEP3, SEP5, SKIP
from close_jax.models.layers import batch_norm

# (small op, large op, kernel names of the family): the small op's kernels are padded into the
# large op's shape.
FOLDS = (
  (SEP3, SEP5, ('sep3', 'sep5'), ('dw1', 'pw1', 'dw2', 'pw2')),
  (DIL3, DIL5, ('dil3', 'dil5'), ('dw', 'pw')),
)


def _pad_to(kernel: jax.Array, size: int) -> jax.Array:
  p = (size - kernel.shape[0]) // 2
  return jnp.pad(kernel, ((p, p), (p, p), (0, 0), (0, 0)))


def fold_family(a: jax.Array, weights: dict, small: int, large: int, names, parts) -> list:
  """The large op's kernels holding `a[small] * small + a[large] * large` (one-hot `a`)."""
  out = []
  for part in parts:
    k_small, k_large = weights[f'{names[0]}_{part}'], weights[f'{names[1]}_{part}']
    out.append(a[small] * _pad_to(k_small, k_large.shape[0]) + a[large] * k_large)
  return out


def _weighted_families(stride: int, a: jax.Array, x: jax.Array, weights: dict) -> jax.Array:
  """The op families that carry weights, on one op set: sep, dil, and FactorizedReduce."""
  dt = x.dtype
  (sep_small, sep_large, sep_names, sep_parts), (dil_small, dil_large, dil_names, dil_parts) = FOLDS
  sep = darts_ops.sep_conv(
    x, *fold_family(a, weights, sep_small, sep_large, sep_names, sep_parts), stride
  )
  dil = darts_ops.dil_conv(
    x, *fold_family(a, weights, dil_small, dil_large, dil_names, dil_parts), stride
  )
  y = (a[SEP3] + a[SEP5]).astype(dt) * sep + (a[DIL3] + a[DIL5]).astype(dt) * dil
  if stride == 2:
    y = y + a[SKIP].astype(dt) * darts_ops.factorized_reduce(x, weights['fr_a'], weights['fr_b'])
  return y


def _weight_free(stride: int, a: jax.Array, x: jax.Array) -> jax.Array:
  dt = x.dtype
  y = a[MAX_POOL].astype(dt) * batch_norm(darts_ops.max_pool(x, stride))
  y = y + a[AVG_POOL].astype(dt) * batch_norm(darts_ops.avg_pool(x, stride))
  if stride == 1:
    y = y + a[SKIP].astype(dt) * x
  return y


def _one_hot(op: jax.Array, x: jax.Array) -> jax.Array:
  return jax.nn.one_hot(op, darts_ops.NUM_OPS, dtype=x.dtype)


def edge(stride: int, op: jax.Array, x: jax.Array, weights: dict) -> jax.Array:
  """`darts_ops.edge` without a conditional: op `op` of one op set `weights` on `x`."""
  a = _one_hot(op, x)
  return _weight_free(stride, a, x) + _weighted_families(stride, a, x, weights)


def edge_mix(stride: int, op: jax.Array, x: jax.Array, weights: dict, mix: jax.Array) -> jax.Array:
  """`darts_ops.edge_mix` without a conditional: sum_k mix[k] * op(x; block k) over the first
  L = len(mix) blocks."""
  a = _one_hot(op, x)
  y = _weight_free(stride, a, x) * jnp.sum(mix).astype(x.dtype)
  for k in range(mix.shape[0]):
    block = jax.tree.map(lambda w, k=k: w[k], weights)
    y = y + mix[k].astype(x.dtype) * _weighted_families(stride, a, x, block)
  return y
