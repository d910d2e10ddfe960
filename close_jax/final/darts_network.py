"""The DARTS standalone networks (quark0/darts `cnn/model.py`, `cnn/operations.py`) in flax.

A genotype is a static Python value here: the network of one found cell is built once and
compiled once per run, with exactly the reference's modules, so its parameter count equals the
DARTS code's (`param_count.darts_num_params`, tested). Differences from the PyTorch code: the
input is NHWC; `NetworkImageNet` pools globally where the reference uses AvgPool2d(7) (the same
on the 7x7 maps of 224x224 inputs); dropout before the classifier (`dropout`, 0 in DARTS).

The call returns `(logits, aux_logits)`; `aux_logits` is None unless the network has the
auxiliary head and is training (as the reference; `init` creates the head's parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from close_jax.final.layers import (
  BatchNorm,
  ReLUConvBN,
  TorchConv,
  avg_pool_valid,
  drop_path,
)
from close_jax.models import darts_ops
from close_jax.models.layers import TorchDense
from close_jax.spaces import nb301

STEM_MULTIPLIER = 3
AUX_HIDDEN, AUX_FEATURES = 128, 768


class FactorizedReduce(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = jax.nn.relu(x)
    half = self.features // 2
    a = TorchConv(half, 1, stride=2)(x)
    b = TorchConv(half, 1, stride=2)(x[:, 1:, 1:, :])
    return BatchNorm()(jnp.concatenate([a, b], axis=-1), train)


class SepConv(nn.Module):
  """(ReLU, depthwise kxk, pointwise 1x1, BN) twice; the first depthwise carries the stride."""

  features: int
  kernel_size: int
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k, c, pad = self.kernel_size, self.features, self.kernel_size // 2
    for stride in (self.stride, 1):
      x = TorchConv(c, k, stride, pad, groups=x.shape[-1])(jax.nn.relu(x))
      x = BatchNorm()(TorchConv(c, 1)(x), train)
    return x


class DilConv(nn.Module):
  """ReLU, depthwise kxk dilation 2, pointwise 1x1, BN."""

  features: int
  kernel_size: int
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k, c = self.kernel_size, self.features
    x = TorchConv(c, k, self.stride, k - 1, dilation=2, groups=x.shape[-1])(jax.nn.relu(x))
    return BatchNorm()(TorchConv(c, 1)(x), train)


def _op(name: str, channels: int, stride: int, index: int):
  """One edge's module (or function) as `OPS[name](C, stride, affine=True)` in DARTS; pools have
  no BN in the final network (the search network's `MixedOp` adds one)."""
  label = f'op{index}_{name}'
  if name == 'max_pool_3x3':
    return lambda x, train: darts_ops.max_pool(x, stride)
  if name == 'avg_pool_3x3':
    return lambda x, train: darts_ops.avg_pool(x, stride)
  if name == 'skip_connect':
    return None if stride == 1 else FactorizedReduce(channels, name=label)
  k = int(name[-1])
  if name.startswith('sep_conv'):
    return SepConv(channels, k, stride, name=label)
  return DilConv(channels, k, stride, name=label)


class Cell(nn.Module):
  """One cell: preprocess both inputs to C channels, 4 nodes of 2 ops each, concat nodes 2-5."""

  pairs: tuple  # 8 (op name, input node) pairs, DARTS order
  channels: int
  reduction: bool
  reduction_prev: bool

  @nn.compact
  def __call__(self, s0, s1, drop_prob, train: bool):
    c = self.channels
    if self.reduction_prev:
      s0 = FactorizedReduce(c, name='preprocess0')(s0, train)
    else:
      s0 = ReLUConvBN(c, 1, name='preprocess0')(s0, train)
    s1 = ReLUConvBN(c, 1, name='preprocess1')(s1, train)
    states = [s0, s1]
    for node in range(nb301.NUM_INTERMEDIATE):
      total = None
      for e in (2 * node, 2 * node + 1):
        name, source = self.pairs[e]
        stride = 2 if self.reduction and source < 2 else 1
        op = _op(name, c, stride, e)
        h = states[source] if op is None else op(states[source], train)
        if train and op is not None:  # DARTS drops every path but the identity
          h = drop_path(h, drop_prob, self.make_rng('drop_path'))
        total = h if total is None else total + h
      states.append(total)
    return jnp.concatenate(states[nb301.NUM_INPUT_NODES :], axis=-1)


class AuxiliaryHead(nn.Module):
  """AuxiliaryHeadCIFAR (8x8 input, pool 5 stride 3) or AuxiliaryHeadImageNet (7x7 input, pool
  5 stride 2, no BN after the 2x2 conv, as the reference's commented-out line)."""

  num_classes: int
  imagenet: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = avg_pool_valid(jax.nn.relu(x), 5, 2 if self.imagenet else 3)
    x = jax.nn.relu(BatchNorm()(TorchConv(AUX_HIDDEN, 1)(x), train))
    x = TorchConv(AUX_FEATURES, 2)(x)
    if not self.imagenet:
      x = BatchNorm()(x, train)
    x = jax.nn.relu(x)
    if x.shape[1:3] != (1, 1):
      raise ValueError(
        f'the auxiliary head reduces its input to {x.shape[1]}x{x.shape[2]}, not 1x1: the '
        f'DARTS auxiliary head needs {"224x224" if self.imagenet else "32x32"} images'
      )
    return TorchDense(self.num_classes)(x.reshape(x.shape[0], -1))


def _cell_plan(layers: int, channels: int, reduction_prev: bool):
  """(C_curr, reduction, reduction_prev) per cell: reductions at layers//3 and 2*layers//3."""
  plan, c = [], channels
  for i in range(layers):
    reduction = i in (layers // 3, 2 * layers // 3)
    c = c * 2 if reduction else c
    plan.append((c, reduction, reduction_prev))
    reduction_prev = reduction
  return plan


class DartsNetwork(nn.Module):
  """NetworkCIFAR (`imagenet=False`: 3x3 stem to 3C) or NetworkImageNet (stem0 / stem1, each
  stride 2 twice / once) of one genotype (int (2, 8, 2) as `spaces.nb301`, as nested tuples)."""

  genotype: tuple
  channels: int = 36
  layers: int = 20
  num_classes: int = 10
  auxiliary: bool = True
  imagenet: bool = False
  dropout: float = 0.0
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x, drop_prob, train: bool):
    c = self.channels
    x = x.astype(jnp.dtype(self.dtype))
    if self.imagenet:
      s0 = TorchConv(c // 2, 3, 2, 1, name='stem0_conv0')(x)
      s0 = jax.nn.relu(BatchNorm(name='stem0_bn0')(s0, train))
      s0 = BatchNorm(name='stem0_bn1')(TorchConv(c, 3, 2, 1, name='stem0_conv1')(s0), train)
      s1 = ReLUConvBN(c, 3, 2, 1, name='stem1')(s0, train)
    else:
      stem = TorchConv(STEM_MULTIPLIER * c, 3, 1, 1, name='stem_conv')
      s0 = s1 = BatchNorm(name='stem_bn')(stem(x), train)
    aux = None
    cells = [[(nb301.OPS[op], source) for op, source in cell] for cell in self.genotype]
    for i, (width, reduction, reduction_prev) in enumerate(
      _cell_plan(self.layers, c, self.imagenet)
    ):
      cell = Cell(tuple(cells[int(reduction)]), width, reduction, reduction_prev, name=f'cell_{i}')
      s0, s1 = s1, cell(s0, s1, drop_prob, train)
      if i == 2 * self.layers // 3 and self.auxiliary and (train or self.is_initializing()):
        head = AuxiliaryHead(self.num_classes, self.imagenet, name='auxiliary_head')
        aux = head(s1, train)
    out = jnp.mean(s1.astype(jnp.float32), axis=(1, 2))
    out = nn.Dropout(self.dropout, deterministic=not train)(out)
    logits = TorchDense(self.num_classes, name='classifier')(out)
    return logits, (aux if train else None)


def genotype_tuple(arch) -> tuple:
  """The int array as the hashable nested tuple a flax module field needs."""
  arch = nb301.validate(arch)
  return tuple(tuple(tuple(int(v) for v in pair) for pair in cell) for cell in arch)
