"""The NAS-Bench-201 supernet with a block axis on every cell's operation weights.

Every search cell stores its candidate-op weights with a leading *block* axis, and the caller says,
per edge, which block supplies the weights. That single mechanism covers every sharing extent the
project needs: vanilla sharing is 6 blocks with edge e on block e, CLOSE-S stage 1 is 1 block for
all edges, and CLOSENet is L gated blocks. The architecture (op per edge) and the assignment are
traced arrays, so one compiled program serves every architecture; only the number of blocks is a
shape, and changing it is the one thing that recompiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from close_jax.models import edge_dense, edge_ops, layers
from close_jax.spaces import nb201
from close_jax.spaces.nb201 import EDGES

# The cell's edges and the dead-edge rule are the space's (`close_jax.spaces.nb201`).
live_ops = nb201.live_ops_traced


class SearchCell(nn.Module):
  """One NB201 cell; `num_blocks` complete op-weight sets, chosen per edge by the caller."""

  channels: int
  num_blocks: int
  edge_impl: str = 'switch'  # 'switch' (edge_ops: one conditional per edge) | 'dense' (edge_dense)

  @nn.compact
  def __call__(self, x: jax.Array, ops: jax.Array, assignment: jax.Array) -> jax.Array:
    """`assignment`: int (6,) block per edge (run that block only) or float (6, L) mix weights.

    The mix form runs the first L blocks of the cell; L is the static size of its last axis.
    """
    shape = (self.num_blocks, 1, 1, self.channels, self.channels)
    w1 = self.param('conv1x1', layers.block_kernel_init, shape).astype(x.dtype)
    shape = (self.num_blocks, 3, 3, self.channels, self.channels)
    w3 = self.param('conv3x3', layers.block_kernel_init, shape).astype(x.dtype)
    if self.is_initializing():
      return x  # a cell keeps the shape; skipping the ops keeps `init` cheap to compile
    if self.edge_impl == 'dense':
      return edge_dense.dense_cell(x, ops, assignment, w1, w3, EDGES)
    if assignment.ndim == 2:
      num = assignment.shape[1]
      k1, k3 = edge_ops.stack_blocks(w1[:num]), edge_ops.stack_blocks(w3[:num])
      mix = assignment.astype(x.dtype)
    nodes = [x]
    for j in range(1, nb201.NUM_NODES):
      total = None
      for e, (i, to) in enumerate(EDGES):
        if to != j:
          continue
        if assignment.ndim == 2:
          y = edge_ops.edge_mix(nodes[i], ops[e], mix[e], k1, k3)
        else:
          y = edge_ops.edge_select(nodes[i], ops[e], w1[assignment[e]], w3[assignment[e]])
        total = y if total is None else total + y
      nodes.append(total)
    return nodes[-1]


class ResidualBlock(nn.Module):
  """NB201's reduction block: ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN, shortcut AvgPool2 + Conv1x1."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = layers.AffineBatchNorm()(layers.Conv(self.features, 3, stride=2)(jax.nn.relu(x)))
    y = layers.AffineBatchNorm()(layers.Conv(self.features, 3)(jax.nn.relu(y)))
    shortcut = layers.Conv(self.features, 1)(layers.avg_pool_2x2(x))
    return shortcut + y


class NB201Supernet(nn.Module):
  """Stem, 3 stages of search cells (C, 2C, 4C) joined by residual blocks, then the head."""

  channels: int = 16
  cells_per_stage: int = 5
  num_blocks: int = 6
  num_classes: int = 10
  dropout: float = 0.1
  dtype: jnp.dtype = jnp.float32
  edge_impl: str = 'switch'  # resolved ('auto' -> by backend) by the space's build_network

  @nn.compact
  def __call__(self, x, ops, assignment, *, train: bool):
    ops = live_ops(jnp.asarray(ops, jnp.int32))
    x = x.astype(self.dtype)
    x = layers.AffineBatchNorm(name='stem_bn')(layers.Conv(self.channels, 3, name='stem')(x))
    cell = 0
    for stage in range(3):
      features = self.channels * 2**stage
      if stage:
        x = ResidualBlock(features, name=f'reduce_{stage}')(x)
      for _ in range(self.cells_per_stage):
        x = SearchCell(features, self.num_blocks, self.edge_impl, name=f'cell_{cell}')(
          x, ops, assignment
        )
        cell += 1
    x = jax.nn.relu(layers.AffineBatchNorm(name='head_bn')(x))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return layers.TorchDense(self.num_classes, name='classifier')(x)
