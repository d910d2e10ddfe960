"""The NAS-Bench-201 network of one cell as the benchmark built and trained it (xautodl
`TinyNetwork` with `InferCell`): stem 3x3 conv + BN, three stages of N cells (C, 2C, 4C) joined by
ResNet basic blocks, BN + ReLU, global pool, classifier; every BN affine with running statistics.

Unlike the supernet (`models.nb201_supernet`), every edge's op is built and run, also on a path
that cannot reach the output, because the benchmark's network does: its parameters count
(`param_count.nb201_num_params`), and with an affine BN a convolution that reads an all-zero node
outputs its learned shift, which is not zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from close_jax.final.layers import BatchNorm, ReLUConvBN, TorchConv
from close_jax.models.layers import TorchDense, avg_pool_2x2, avg_pool_3x3
from close_jax.spaces import nb201


class ResNetBasicBlock(nn.Module):
  """ReLUConvBN 3x3 stride 2, ReLUConvBN 3x3, plus AvgPool2 + 1x1 conv shortcut."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = ReLUConvBN(self.features, 3, 2, 1, name='conv_a')(x, train)
    y = ReLUConvBN(self.features, 3, 1, 1, name='conv_b')(y, train)
    return TorchConv(self.features, 1, name='downsample')(avg_pool_2x2(x)) + y


class InferCell(nn.Module):
  ops: tuple  # 6 op indices in nb201.EDGES order
  channels: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    nodes = [x]
    for j in range(1, nb201.NUM_NODES):
      total = jnp.zeros_like(x)  # a node fed only by `none` edges is zero, as x.mul(0.)
      for e, (i, to) in enumerate(nb201.EDGES):
        if to != j:
          continue
        name = nb201.OPS[self.ops[e]]
        if name == 'skip_connect':
          total = total + nodes[i]
        elif name == 'avg_pool_3x3':
          total = total + avg_pool_3x3(nodes[i])
        elif name.startswith('nor_conv'):
          k = int(name[-1])
          total = total + ReLUConvBN(self.channels, k, 1, k // 2, name=f'edge{e}')(nodes[i], train)
      nodes.append(total)
    return nodes[-1]


class NB201Network(nn.Module):
  ops: tuple
  channels: int = 16
  cells_per_stage: int = 5
  num_classes: int = 10
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x, drop_prob=None, train: bool = False):
    """`(logits, None)`: the same call as the DARTS networks (no drop path, no auxiliary head)."""
    del drop_prob
    x = x.astype(jnp.dtype(self.dtype))
    x = BatchNorm(name='stem_bn')(TorchConv(self.channels, 3, 1, 1, name='stem')(x), train)
    cell = 0
    for stage in range(3):
      width = self.channels * 2**stage
      if stage:
        x = ResNetBasicBlock(width, name=f'reduce_{stage}')(x, train)
      for _ in range(self.cells_per_stage):
        x = InferCell(self.ops, width, name=f'cell_{cell}')(x, train)
        cell += 1
    x = jax.nn.relu(BatchNorm(name='lastact_bn')(x, train))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return TorchDense(self.num_classes, name='classifier')(x), None
