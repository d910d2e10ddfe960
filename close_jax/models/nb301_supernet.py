"""The NAS-Bench-301 (DARTS) supernet with a block axis on every cell's operation weights.

As the official code (aw_nas `CloseCell` / `SharedNet`): stem 3x3 conv to
3C channels + BN; `num_layers` cells reducing at layers num_layers // 3 and 2 * num_layers // 3
(`nb301.reduction_layers`; 8 layers: 2 and 5, C = 16, 16, 32, 32, 32, 64, 64, 64);
per cell an unshared preprocessing of its two inputs (ReLU-Conv1x1-BN, or FactorizedReduce when
the previous cell reduced), stored outside the cell (`pre_<i>`) because it is not block-shared;
four intermediate nodes, each the sum of its two chosen edges; output = concat of the four
(4C); global pool, dropout, dense. Cell BNs are affine-free with batch statistics.

A cell holds `num_blocks` complete op sets (GLOW blocks) with a leading block axis; reduce cells
hold a stride-1 set (`s1`) and a stride-2 set (`s2`, for the edges leaving the two input nodes),
as the official reduce cells do. The genotype (2, 8, 2) and the block assignment (16,) int or
(16, L) mix are traced: normal cells read positions 0-7, reduce cells 8-15.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from close_jax.models import darts_dense, darts_ops, layers
from close_jax.spaces import nb301

NUM_INPUT_NODES = nb301.NUM_INPUT_NODES
EDGES_PER_CELL = nb301.EDGES_PER_CELL
NUM_INTERMEDIATE = nb301.NUM_INTERMEDIATE
EDGE_LOOPS = ('auto', 'scan', 'unroll')


def _select_block(weights: dict, block: jax.Array) -> dict:
  return jax.tree.map(lambda w: jnp.take(w, block, axis=0), weights)


def _run_edge(stride, op, x, weights, assignment_e, edge_impl='switch'):
  """One chosen edge: block `assignment_e` (int) only, or all L blocks mixed by (L,) weights;
  `edge_impl` 'switch' (`darts_ops`, one conditional) or 'dense' (`darts_dense`, none)."""
  ops = darts_dense if edge_impl == 'dense' else darts_ops
  if assignment_e.ndim == 0:
    return ops.edge(stride, op, x, _select_block(weights, assignment_e))
  return ops.edge_mix(stride, op, x, weights, assignment_e)


def resolve_edge_loop(edge_loop: str) -> str:
  """`auto` rolls the 8 edges of a cell into one `lax.scan` on XLA:CPU, where compiling 8 copies
  of every op's forward and backward dominates a run (measured: docs/spaces.md), and unrolls them on
  GPU/TPU, where each loop iteration would add a host round trip for its trip condition."""
  if edge_loop not in EDGE_LOOPS:
    raise ValueError(f'edge_loop={edge_loop!r}: expected one of {EDGE_LOOPS}')
  if edge_loop == 'auto':
    return 'scan' if jax.default_backend() == 'cpu' else 'unroll'
  return edge_loop


class SearchCell(nn.Module):
  channels: int
  num_blocks: int
  reduction: bool
  edge_loop: str = 'auto'
  edge_impl: str = 'switch'  # resolved ('auto' -> by backend) by the space's build_network

  @nn.compact
  def __call__(self, s0, s1, genotype, assignment):
    """`genotype`: (8, 2) of (op, input); `assignment`: (8,) int or (8, L) mix."""

    def op_set(name, stride):
      return {
        key: self.param(f'{name}_{key}', layers.block_kernel_init, (self.num_blocks, *shape))
        for key, shape in darts_ops.param_shapes(self.channels, stride).items()
      }

    w1 = op_set('s1', 1)
    w2 = op_set('s2', 2) if self.reduction else None
    size = s1.shape[1] // 2 if self.reduction else s1.shape[1]
    node_shape = (s1.shape[0], size, size, self.channels)
    if self.is_initializing():  # the right output shape without tracing every op
      return jnp.zeros((*node_shape[:3], NUM_INTERMEDIATE * self.channels), s1.dtype)
    inputs = jnp.stack([s0, s1])
    # Every state lives in one buffer the edges index with their traced source: in a normal cell
    # the two inputs and the four intermediate nodes (one shape); in a reduce cell only the
    # (smaller) intermediate nodes, the inputs apart. A node is the sum of its two edges, so
    # each edge adds its output into its node's slot, which starts at zero.
    first = 0 if self.reduction else NUM_INPUT_NODES
    zeros = jnp.zeros((NUM_INTERMEDIATE, *node_shape), s1.dtype)
    states = zeros if self.reduction else jnp.concatenate([inputs, zeros])

    def step(states, xs):
      e, op, source, assignment_e = xs
      y = self._edge(inputs, states, op, source, w1, w2, assignment_e)
      return states.at[first + e // 2].add(y), None

    xs = (jnp.arange(EDGES_PER_CELL), genotype[:, 0], genotype[:, 1], assignment)
    unroll = resolve_edge_loop(self.edge_loop) == 'unroll'
    states, _ = jax.lax.scan(step, states, xs, unroll=EDGES_PER_CELL if unroll else 1)
    return jnp.concatenate(list(states[first:]), axis=-1)

  def _edge(self, inputs, states, op, source, w1, w2, assignment_e):
    impl = self.edge_impl
    if not self.reduction:  # every state has one shape: a single traced lookup
      return _run_edge(1, op, states[source], w1, assignment_e, impl)
    # Reduce cell: edges from the two inputs run the stride-2 set on the full-size inputs,
    # edges from intermediate nodes the stride-1 set on the reduced ones.
    from_input = lambda: _run_edge(
      2, op, inputs[jnp.minimum(source, NUM_INPUT_NODES - 1)], w2, assignment_e, impl
    )
    node = jnp.clip(source - NUM_INPUT_NODES, 0, NUM_INTERMEDIATE - 1)
    from_node = lambda: _run_edge(1, op, states[node], w1, assignment_e, impl)
    if impl == 'dense':  # both, selected: no conditional (a reduce cell's edges cost twice)
      return jnp.where(source < NUM_INPUT_NODES, from_input(), from_node())
    return jax.lax.cond(source < NUM_INPUT_NODES, from_input, from_node)


class ReLUConvBN(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
      'kernel', layers.torch_kernel_init, (1, 1, x.shape[-1], self.features), jnp.float32
    )
    return layers.batch_norm(darts_ops.pointwise(jax.nn.relu(x), kernel))


class FactorizedReduce(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    c_in, half = x.shape[-1], self.features // 2
    w_a = self.param('w_a', layers.torch_kernel_init, (1, 1, c_in, half), jnp.float32)
    w_b = self.param('w_b', layers.torch_kernel_init, (1, 1, c_in, self.features - half))
    return darts_ops.factorized_reduce(x, w_a, w_b)


class NB301Supernet(nn.Module):
  channels: int = 16
  num_layers: int = 8
  stem_multiplier: int = 3
  num_blocks: int = nb301.NUM_CANDIDATES  # vanilla sharing: one op set per candidate edge
  num_classes: int = 10
  dropout: float = 0.1
  dtype: jnp.dtype = jnp.float32
  edge_loop: str = 'auto'
  edge_impl: str = 'switch'

  @nn.compact
  def __call__(self, x, genotype, assignment, *, train: bool):
    x = x.astype(self.dtype)
    stem = layers.Conv(self.stem_multiplier * self.channels, 3, name='stem_conv')(x)
    s0 = s1 = layers.AffineBatchNorm(name='stem_bn')(stem)
    channels, reduction_prev = self.channels, False
    reductions = nb301.reduction_layers(self.num_layers)
    for i in range(self.num_layers):
      reduction = i in reductions
      if reduction:
        channels *= 2
      kind = 1 if reduction else 0
      pre0 = (
        FactorizedReduce(channels, name=f'pre_{i}_0')
        if reduction_prev
        else ReLUConvBN(channels, name=f'pre_{i}_0')
      )
      p0, p1 = pre0(s0), ReLUConvBN(channels, name=f'pre_{i}_1')(s1)
      cell = SearchCell(
        channels, self.num_blocks, reduction, self.edge_loop, self.edge_impl, name=f'cell_{i}'
      )
      positions = slice(kind * EDGES_PER_CELL, (kind + 1) * EDGES_PER_CELL)
      s0, s1 = s1, cell(p0, p1, genotype[kind], assignment[positions])
      reduction_prev = reduction
    x = jnp.mean(s1.astype(jnp.float32), axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return layers.TorchDense(self.num_classes, name='classifier')(x)
