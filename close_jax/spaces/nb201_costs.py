"""Exact forward cost of an NB201 architecture in the supernet that ranks it, in closed form.

The CLOSE paper's complexity analysis (Fig. A1) groups ranked cells by FLOPs and parameters; both
must be those of the network the evaluator actually ran, at the ranking's image size and class
count, for every ranked architecture. Counting them by tracing or compiling the network would cost a
trace per architecture (6466 of them), so they are written out per layer here and checked against
the model's executed operations and parameter tree in `tests/test_analysis_complexity.py`.

Conventions (those of NAS-Bench-201's own tables): FLOPs are the multiply-adds of the
convolutions and the classifier per image; batch norm, pooling, ReLU and additions are not
counted. Parameters are the weights the architecture uses: the skeleton (stem, reduction blocks,
head, all with their affine batch norms) plus one block's kernel per live convolution edge (cell
batch norms are affine-free). Edges off every input-output path are not run (`live_ops`), so
they cost nothing.

The pieces (`cell_costs`, `skeleton_costs`) are the one closed form of NB201 costs in close_jax:
the standalone benchmark network's parameter count (`final.param_count`: every edge, affine BN
per convolution) and the ranking study's cell baselines (`analysis.ranking_study`) use them too.
"""

from __future__ import annotations

import numpy as np

from close_jax.spaces import nb201

CONV1X1, CONV3X3 = nb201.OPS.index('nor_conv_1x1'), nb201.OPS.index('nor_conv_3x3')


def _conv_out(size: int, stride: int) -> int:
  return (size - 1) // stride + 1  # 'same' padding (k // 2) for the odd kernels used here


def costs(
  model_cfg, image_shape: tuple[int, ...], num_classes: int, archs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """(flops, params), int64 (n,) each, of `archs` (n, 6) at `image_shape` (H, W, C_in)."""
  channels, cells = int(model_cfg.channels), int(model_cfg.cells_per_stage)
  cell_flops, cell_params = cell_costs(
    nb201.live_ops(np.asarray(archs)), channels, cells, image_shape
  )
  flops, params = skeleton_costs(channels, image_shape, num_classes)
  return cell_flops + flops, cell_params + params


def cell_costs(
  ops: np.ndarray,
  channels: int,
  cells_per_stage: int,
  image_shape: tuple[int, ...],
  affine_bn: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """(flops, params), int64 (n,), of the convolutions in the cells of `ops` (n, 6), every edge
  given (pass `live_ops` for the supernet, which skips dead edges). `affine_bn` adds the weight
  and bias of a BN after each convolution (the benchmark's standalone ReLU-Conv-BN edges; the
  supernet's cell BNs are affine-free)."""
  ops = np.asarray(ops)
  conv = (ops == CONV1X1) | (ops == CONV3X3)
  taps = ((ops == CONV1X1) * 1 + (ops == CONV3X3) * 9).sum(-1).astype(np.int64)  # sum of k*k
  num_convs = conv.sum(-1).astype(np.int64)
  height, width = int(image_shape[0]), int(image_shape[1])
  flops = np.zeros(len(ops), np.int64)
  params = np.zeros(len(ops), np.int64)
  for stage in range(3):
    c = channels * 2**stage
    if stage:
      height, width = _conv_out(height, 2), _conv_out(width, 2)
    flops += cells_per_stage * taps * c * c * height * width
    params += cells_per_stage * (taps * c * c + (2 * c * num_convs if affine_bn else 0))
  return flops, params


def skeleton_costs(
  channels: int, image_shape: tuple[int, ...], num_classes: int
) -> tuple[int, int]:
  """(flops, params) of what every cell shares: the stem, the two residual reduction blocks and
  the head, all with affine BNs."""
  height, width, c_in = (int(v) for v in image_shape)
  flops = 9 * c_in * channels * height * width  # stem
  params = 9 * c_in * channels + 2 * channels  # stem kernel + affine BN
  for stage in (1, 2):  # residual reduction block: 3x3 s2, 3x3, shortcut avg-pool + 1x1, 2 BNs
    c = channels * 2**stage
    height, width = _conv_out(height, 2), _conv_out(width, 2)
    half = c // 2
    flops += (9 * half * c + 9 * c * c + half * c) * height * width
    params += 9 * half * c + 9 * c * c + half * c + 4 * c
  top = channels * 4
  flops += top * num_classes
  params += 2 * top + top * num_classes + num_classes  # head BN + classifier with bias
  return flops, params
