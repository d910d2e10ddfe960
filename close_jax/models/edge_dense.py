"""NB201 cells without conditionals (`model.edge_impl=dense`), for GPUs and TPUs.

Why: a `lax.switch` per edge is free on XLA:CPU, but XLA:GPU's conditional copies its branch
index to the host and waits for the stream before launching the branch (openxla/xla
`ConditionalThunk`), about 180 host round trips per NB201 step. Here an edge is a static graph
whose op is data: with `a` the one-hot of the edge's op,

    y = (a_1x1 + a_3x3) * BN(conv(ReLU(x), a_3x3 * W3 + a_1x1 * pad(W1)))
        + a_skip * x + a_pool * pool(x)

the 1x1 kernel sitting at the centre tap of the 3x3 one (both convs are ReLU -> conv -> affine-free
BN). For a one-hot `a` this is the switch's value, and plain autodiff gives the switch's gradients:
W1 receives the centre tap of the kernel gradient only when the op is the 1x1 conv, a zero factor
stops everything else. Edges leaving the same node share one convolution over their concatenated
kernels (3 convolutions per cell instead of 6; batch norm is per channel, so normalising the
concatenation normalises each edge). With L GLOW blocks mixed by the GATE's straight-through
one-hot, blocks stack along the output channels as in `edge_ops.edge_mix` and parameter-free ops
are scaled by the mix's sum (exactly 1 forward), so the GATE gets the same gradient.

Dead edges need no case of their own: `live_ops` has set them to `none`, whose `a` zeroes them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from close_jax.models import edge_ops, layers
from close_jax.spaces import nb201

SKIP, CONV1, CONV3, POOL = (
  nb201.OPS.index(name) for name in ('skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')
)  # `none` needs no term: its one-hot entry multiplies nothing


def fold_kernel(a: jax.Array, k1: jax.Array, k3: jax.Array) -> jax.Array:
  """The 3x3 kernel of an edge whose op one-hot is `a`: a_3x3 * k3 + a_1x1 * (k1 at the centre)."""
  return a[CONV3] * k3 + a[CONV1] * jnp.pad(k1, ((1, 1), (1, 1), (0, 0), (0, 0)))


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return lax.conv_general_dilated(
    x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=layers.DIMS
  )


def dense_cell(nodes_in: jax.Array, ops: jax.Array, assignment: jax.Array, w1, w3, edges):
  """The cell's output node. `ops` (6,) int; `assignment` int (6,) block per edge or float
  (6, L) mix; `w1`/`w3` the cell's (blocks, kh, kw, C, C) kernels; `edges` the (from, to)
  order of the space."""
  x = nodes_in
  a = jax.nn.one_hot(ops, nb201.NUM_OPS, dtype=x.dtype)  # (edges, ops)
  mixing = assignment.ndim == 2
  if mixing:
    num = assignment.shape[1]
    mix = assignment.astype(x.dtype)
    k1s, k3s = edge_ops.stack_blocks(w1[:num]), edge_ops.stack_blocks(w3[:num])
  sums: dict[int, jax.Array] = {}
  node = x
  for source in range(nb201.NUM_NODES - 1):  # the output node sends nothing
    if source:
      node = sums.pop(source)
    out = [e for e, (i, _) in enumerate(edges) if i == source]
    if mixing:
      kernels = [fold_kernel(a[e], k1s, k3s) for e in out]
    else:
      kernels = [fold_kernel(a[e], w1[assignment[e]], w3[assignment[e]]) for e in out]
    width = kernels[0].shape[-1]
    y, _ = layers.normalise(_conv(jax.nn.relu(node), jnp.concatenate(kernels, axis=-1)))
    y = y.astype(x.dtype)
    pooled = layers.avg_pool_3x3(node)
    for j, e in enumerate(out):
      conv = y[..., j * width : (j + 1) * width]
      free = a[e, SKIP] * node + a[e, POOL] * pooled
      if mixing:
        conv = jnp.einsum('bhwlc,l->bhwc', edge_ops._split(conv, num), mix[e])
        free = free * jnp.sum(mix[e])
      value = (a[e, CONV1] + a[e, CONV3]) * conv + free
      to = edges[e][1]
      sums[to] = value if to not in sums else sums[to] + value
  return sums[nb201.NUM_NODES - 1]
