"""Parameter counts of the standalone networks in closed form, without building any model.

Why a second count: the search ranks architectures by (accuracy, parameters) for thousands of
genotypes, where building a flax model per genotype would cost seconds each; and the tests check
the flax networks against these formulas, so the two are independent witnesses of each other.
Every figure is the PyTorch reference network's `sum(p.numel())` (running BN statistics are
buffers, not parameters):

- DARTS (quark0/darts `cnn/model.py`, `operations.py`, affine BN): as its `count_parameters_in_MB`
  the auxiliary head is left out unless `auxiliary=True` asks for the total with it.
- NAS-Bench-201 (the release's `TinyNetwork` + `InferCell`, affine BN): every edge's op exists as
  a module, so a convolution on an edge that cannot reach the output still counts (the
  benchmark's all-`nor_conv_3x3` cell is 1,531,546 at C=16, N=5, its all-`none` cell 73,306).
"""

from __future__ import annotations

import numpy as np

from close_jax.spaces import nb201, nb201_costs, nb301

_AUX_HIDDEN, _AUX_FEATURES = 128, 768


def _bn(c: int) -> int:
  return 2 * c  # weight and bias


def _relu_conv_bn(c_in: int, c_out: int, k: int) -> int:
  return c_in * c_out * k * k + _bn(c_out)


def _factorized_reduce(c_in: int, c_out: int) -> int:
  return 2 * c_in * (c_out // 2) + _bn(c_out)


def _darts_op(name: str, c: int, stride: int) -> int:
  if name in ('max_pool_3x3', 'avg_pool_3x3'):
    return 0
  if name == 'skip_connect':
    return 0 if stride == 1 else _factorized_reduce(c, c)
  k = int(name[-1])
  dil = c * k * k + c * c + _bn(c)  # depthwise kxk, pointwise 1x1, BN
  return 2 * dil if name.startswith('sep_conv') else dil


def _darts_cell(cell: np.ndarray, c_pp: int, c_p: int, c: int, reduction: bool, red_prev: bool):
  total = _factorized_reduce(c_pp, c) if red_prev else _relu_conv_bn(c_pp, c, 1)
  total += _relu_conv_bn(c_p, c, 1)
  for op, source in cell.tolist():
    total += _darts_op(nb301.OPS[op], c, 2 if reduction and source < 2 else 1)
  return total


def darts_num_params(
  arch,
  channels: int,
  layers: int,
  num_classes: int,
  auxiliary: bool,
  imagenet: bool = False,
) -> int:
  """Parameters of DARTS `NetworkCIFAR` (or `NetworkImageNet`) for an NB-301 genotype array.

  `auxiliary=False` is the figure the DARTS code logs as `param size` (without the auxiliary
  head); `auxiliary=True` adds the head (`AuxiliaryHeadCIFAR`, or `AuxiliaryHeadImageNet`, which
  has no BN after its 2x2 convolution).
  """
  arch = nb301.validate(arch)
  c = channels
  if imagenet:
    half = c // 2
    total = _relu_conv_bn(3, half, 3) + _relu_conv_bn(half, c, 3)  # stem0
    total += _relu_conv_bn(c, c, 3)  # stem1
    c_pp, c_p, red_prev = c, c, True
  else:
    total = _relu_conv_bn(3, 3 * c, 3)
    c_pp, c_p, red_prev = 3 * c, 3 * c, False
  c_curr, c_aux = c, 0
  reductions = nb301.reduction_layers(layers)
  for i in range(layers):
    reduction = i in reductions
    if reduction:
      c_curr *= 2
    total += _darts_cell(arch[int(reduction)], c_pp, c_p, c_curr, reduction, red_prev)
    red_prev = reduction
    c_pp, c_p = c_p, nb301.NUM_INTERMEDIATE * c_curr
    if i == reductions[-1]:  # DARTS: the auxiliary head follows the second reduction
      c_aux = c_p
  total += c_p * num_classes + num_classes  # classifier
  if auxiliary:
    total += c_aux * _AUX_HIDDEN + _bn(_AUX_HIDDEN) + _AUX_HIDDEN * _AUX_FEATURES * 4
    total += 0 if imagenet else _bn(_AUX_FEATURES)
    total += _AUX_FEATURES * num_classes + num_classes
  return total


def nb201_num_params(arch, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10):
  """Parameters of the NAS-Bench-201 network of a cell (int (6,) op array), as the benchmark
  counts them: stem conv + BN, 3 stages of cells joined by ResNet basic blocks, BN, classifier."""
  arch = nb201.validate(arch)
  size = (1, 1, 3)  # parameters do not depend on the image size; 3 input channels
  _, cells = nb201_costs.cell_costs(arch[None], channels, cells_per_stage, size, affine_bn=True)
  _, skeleton = nb201_costs.skeleton_costs(channels, size, num_classes)
  return int(cells[0]) + skeleton
