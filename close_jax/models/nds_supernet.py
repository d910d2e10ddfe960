"""NDS ResNet supernet: GLOW blocks over the positions of each stage, widths and depths traced.

The official `GermResNet` shares weights across widths ordinally (an architecture of width w uses
the first w channels of every kernel) and across depths (a stage of depth d runs its first d
blocks). Here both are traced, so one compiled step serves every architecture of a level: widths
are channel masks on max-width kernels and depth is a mask over positions. The price is that every
architecture computes the widest, deepest network (the `mask` strategy of the NDS issue); the
masked channels are exact zeros (inputs zero, batch norm of a zero channel is zero, outputs masked),
so the function computed and the gradients of the used weights are those of the child.

Layout (CIFAR, as pycls's AnyNet with `res_stem_cifar`): stem 3x3 conv to 16 channels + affine BN
+ ReLU; three stages with strides 1/2/2; head global average pool + dense. A stage's first block
(stride, projection) is unshared (`first_<s>`); positions 1..max_depth-1 are served by the stage's
GLOW blocks (`cell_stage<s>`, leading block axis) through the position -> block `assignment`.
Batch norm inside stages is affine-free and always uses batch statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from close_jax.models import layers
from close_jax.spaces import nds

STRIDES = (1, 2, 2)


def _conv(x, kernel, stride):
  pad = kernel.shape[0] // 2
  return lax.conv_general_dilated(
    x,
    kernel.astype(x.dtype),
    (stride, stride),
    ((pad, pad), (pad, pad)),
    dimension_numbers=layers.DIMS,
  )


def basic_residual(x, conv1, conv2, stride, mask):
  """The residual branch of a basic block (3x3 conv-BN-ReLU-3x3 conv-BN) at the masked width."""
  y = jax.nn.relu(layers.batch_norm(_conv(x, conv1, stride)) * mask)
  return layers.batch_norm(_conv(y, conv2, 1)) * mask


class NDSResNetSupernet(nn.Module):
  family: nds.Family
  num_blocks: int
  num_classes: int = 10
  stem_width: int = 16
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, arch, assignment, *, train: bool = True):
    del train  # batch statistics always, as the official supernet evaluates
    family, width = self.family, max(self.family.ws)
    ws = jnp.asarray(family.ws, jnp.int32)[arch[:, 1]]
    ds = jnp.asarray(family.ds, jnp.int32)[arch[:, 0]]
    x = x.astype(self.dtype)
    x = layers.Conv(self.stem_width, 3, name='stem_conv')(x)
    x = jax.nn.relu(layers.AffineBatchNorm(name='stem_bn')(x))
    in_width = jnp.int32(self.stem_width)
    positions = jnp.arange(family.num_positions)
    for s, stride in enumerate(STRIDES):
      mask = (jnp.arange(width) < ws[s]).astype(self.dtype)
      c_in = x.shape[-1]
      init = layers.torch_kernel_init
      conv1 = self.param(f'first_{s}_conv1', init, (3, 3, c_in, width))
      conv2 = self.param(f'first_{s}_conv2', init, (3, 3, width, width))
      proj = self.param(f'first_{s}_proj', init, (1, 1, c_in, width))
      branch = basic_residual(x, conv1, conv2, stride, mask)
      shortcut = layers.batch_norm(_conv(x, proj, stride)) * mask
      if stride == 1:  # no projection when the shape does not change (the width is traced)
        same = jnp.pad(x, ((0, 0),) * 3 + ((0, width - c_in),))
        shortcut = jnp.where(in_width == ws[s], same, shortcut)
      x = jax.nn.relu(branch + shortcut)
      cell = self.param(
        f'cell_stage{s}',
        lambda key, shape: {
          'conv1': layers.block_kernel_init(jax.random.fold_in(key, 1), shape),
          'conv2': layers.block_kernel_init(jax.random.fold_in(key, 2), shape),
        },
        (self.num_blocks, 3, 3, width, width),
      )
      kernels = jax.tree.map(lambda k: jnp.take(k, assignment, axis=0), cell)
      active = positions < ds[s] - 1

      def position(x, xs, mask=mask):
        k1, k2, on = xs
        y = jax.nn.relu(basic_residual(x, k1, k2, 1, mask) + x)
        return jnp.where(on, y, x), None

      x, _ = lax.scan(position, x, (kernels['conv1'], kernels['conv2'], active))
      in_width = ws[s]
    x = jnp.mean(x, axis=(1, 2))
    return layers.TorchDense(self.num_classes, name='classifier')(x)


def child_param_count(family: nds.Family, arch, num_classes: int = 10, stem: int = 16) -> int:
  """Parameters of the standalone network of `arch` (closed form, pycls's AnyNet ResNet)."""
  values = nds.values_of(family, np.asarray(arch))
  count = 9 * 3 * stem + 2 * stem  # stem conv + affine BN
  w_in = stem
  for s, (d, w) in enumerate(zip(values['ds'], values['ws'], strict=True)):
    count += 9 * w_in * w + 9 * w * w  # first block
    if STRIDES[s] != 1 or w_in != w:
      count += w_in * w  # 1x1 projection (its BN is affine-free)
    count += (d - 1) * 2 * 9 * w * w
    w_in = w
  return count + w_in * num_classes + num_classes
