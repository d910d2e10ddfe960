"""The DARTS / NB-301 candidate operations as pure functions of (input, weights, stride), and one
edge that picks among them with a traced op index.

Ops (index order of `spaces.nb301.OPS`), as the official `ops.py`: pools followed by an
affine-free BN; skip (identity, or FactorizedReduce at stride 2); SepConv = (ReLU, depthwise kxk,
pointwise 1x1, BN) twice, the first depthwise carrying the stride; DilConv = ReLU, depthwise kxk
dilation 2, pointwise, BN. Every BN here normalises with the batch's statistics, no affine.

`edge` runs `lax.switch` on the op index with a custom VJP that saves only the edge's inputs and
recomputes the chosen op's forward inside its backward switch: differentiating a plain switch
would make every branch emit zero-filled copies of the other branches' residuals (measured on
NB201, `edge_ops.py`), and the backward runs only the chosen op's gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from close_jax.models.layers import DIMS, batch_norm
from close_jax.spaces import nb301

NUM_OPS = nb301.NUM_OPS
MAX_POOL, AVG_POOL, SKIP, SEP3, SEP5, DIL3, DIL5 = (
  nb301.OPS.index(name)
  for name in (
    'max_pool_3x3',
    'avg_pool_3x3',
    'skip_connect',
    'sep_conv_3x3',
    'sep_conv_5x5',
    'dil_conv_3x3',
    'dil_conv_5x5',
  )
)


def param_shapes(channels: int, stride: int) -> dict[str, tuple[int, ...]]:
  """Weight shapes of one complete op set (a GLOW block) at `stride`."""
  c = channels
  shapes = {}
  for name, k in (('sep3', 3), ('sep5', 5)):
    shapes.update(
      {
        f'{name}_dw1': (k, k, 1, c),
        f'{name}_pw1': (1, 1, c, c),
        f'{name}_dw2': (k, k, 1, c),
        f'{name}_pw2': (1, 1, c, c),
      }
    )
  for name, k in (('dil3', 3), ('dil5', 5)):
    shapes.update({f'{name}_dw': (k, k, 1, c), f'{name}_pw': (1, 1, c, c)})
  if stride == 2:
    shapes.update({'fr_a': (1, 1, c, c // 2), 'fr_b': (1, 1, c, c - c // 2)})
  return shapes


def depthwise(x: jax.Array, kernel: jax.Array, stride: int = 1, dilation: int = 1) -> jax.Array:
  pad = dilation * (kernel.shape[0] - 1) // 2
  return lax.conv_general_dilated(
    x,
    kernel.astype(x.dtype),
    (stride, stride),
    ((pad, pad), (pad, pad)),
    rhs_dilation=(dilation, dilation),
    dimension_numbers=DIMS,
    feature_group_count=x.shape[-1],
  )


def pointwise(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  return lax.conv_general_dilated(
    x, kernel.astype(x.dtype), (stride, stride), 'VALID', dimension_numbers=DIMS
  )


def max_pool(x: jax.Array, stride: int) -> jax.Array:
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def avg_pool(x: jax.Array, stride: int) -> jax.Array:
  """3x3 average pool, padding excluded from the count (count_include_pad=False)."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  window, strides = (1, 3, 3, 1), (1, stride, stride, 1)
  total = lax.reduce_window(x, 0.0, lax.add, window, strides, pad)
  ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
  return total / lax.reduce_window(ones, 0.0, lax.add, window, strides, pad)


def factorized_reduce(x: jax.Array, w_a: jax.Array, w_b: jax.Array) -> jax.Array:
  """ReLU, two stride-2 1x1 convolutions on x and on x shifted by one pixel, concat, BN."""
  x = jax.nn.relu(x)
  a = pointwise(x, w_a, 2)
  b = pointwise(x[:, 1:, 1:, :], w_b, 2)
  return batch_norm(jnp.concatenate([a, b], axis=-1))


def sep_conv(x, dw1, pw1, dw2, pw2, stride: int) -> jax.Array:
  y = batch_norm(pointwise(depthwise(jax.nn.relu(x), dw1, stride), pw1))
  return batch_norm(pointwise(depthwise(jax.nn.relu(y), dw2), pw2))


def dil_conv(x, dw, pw, stride: int) -> jax.Array:
  return batch_norm(pointwise(depthwise(jax.nn.relu(x), dw, stride, dilation=2), pw))


def branches(stride: int):
  """The ops as functions (x, weights) -> y, in op-index order (`nb301.OPS`)."""
  skip = (
    (lambda x, p: x) if stride == 1 else (lambda x, p: factorized_reduce(x, p['fr_a'], p['fr_b']))
  )

  def sep(name):
    return lambda x, p: sep_conv(
      x, p[f'{name}_dw1'], p[f'{name}_pw1'], p[f'{name}_dw2'], p[f'{name}_pw2'], stride
    )

  def dil(name):
    return lambda x, p: dil_conv(x, p[f'{name}_dw'], p[f'{name}_pw'], stride)

  by_op = {
    MAX_POOL: lambda x, p: batch_norm(max_pool(x, stride)),
    AVG_POOL: lambda x, p: batch_norm(avg_pool(x, stride)),
    SKIP: skip,
    SEP3: sep('sep3'),
    SEP5: sep('sep5'),
    DIL3: dil('dil3'),
    DIL5: dil('dil5'),
  }
  return tuple(by_op[op] for op in range(NUM_OPS))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _switch(branches: tuple, op: jax.Array, *operands):
  """`lax.switch(op, branches, *operands)` whose backward saves only the operands and runs, in a
  second switch, the VJP of the chosen branch alone (recomputing its forward)."""
  return lax.switch(op, branches, *operands)


def _switch_fwd(branches, op, *operands):
  return _switch(branches, op, *operands), (op, operands)


def _switch_bwd(branches, res, g):
  op, operands = res

  def grad_of(branch):
    return lambda operands, g: jax.vjp(branch, *operands)[1](g)

  return (None, *lax.switch(op, [grad_of(b) for b in branches], operands, g))


_switch.defvjp(_switch_fwd, _switch_bwd)


def edge(stride: int, op: jax.Array, x: jax.Array, weights: dict) -> jax.Array:
  """Op `op` (traced int) of one op set `weights` on `x`."""
  return _switch(branches(stride), op, x, weights)


def _mixed_branches(stride: int):
  """Each op over all L blocks, mixed by (L,) weights; weight-free ops run once, scaled by the
  sum of the mix (so the GATE's gradient sees them, as the official code's)."""
  weight_free = {MAX_POOL, AVG_POOL} | ({SKIP} if stride == 1 else set())

  def mixed(index, branch):
    if index in weight_free:
      return lambda x, w, m: branch(x, None) * jnp.sum(m).astype(x.dtype)

    def run(x, w, m):
      total = 0.0
      for k in range(m.shape[0]):
        total = total + m[k].astype(x.dtype) * branch(x, jax.tree.map(lambda a, k=k: a[k], w))
      return total

    return run

  return tuple(mixed(i, b) for i, b in enumerate(branches(stride)))


def edge_mix(stride: int, op: jax.Array, x: jax.Array, weights: dict, mix: jax.Array) -> jax.Array:
  """sum_k mix[k] * op(x; block k) over the first L = len(mix) blocks of `weights` (leading block
  axis): every block runs, so the straight-through GATE gets its gradient. One conditional per
  edge whatever L is (measured: no faster to compile than L conditionals on XLA:CPU, but one
  stall instead of L where a conditional costs a host round trip)."""
  active = jax.tree.map(lambda w: w[: mix.shape[0]], weights)
  return _switch(_mixed_branches(stride), op, x, active, mix)
