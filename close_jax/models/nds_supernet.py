"""NDS ResNet / ResNeXt-A supernets: GLOW blocks per stage position, traced widths and depths.

The official `GermResNet` shares weights across widths ordinally (an architecture of width w uses
the first w channels of every kernel) and across depths (a stage of depth d runs its first d
blocks). Here both are traced, so one compiled step serves every architecture of a level: widths
are channel masks on max-width kernels and depth is a mask over positions. The price is that every
architecture computes the widest, deepest network (the `mask` strategy); the
masked channels are exact zeros (inputs zero, batch norm of a zero channel is zero, outputs masked),
so the function computed and the gradients of the used weights are those of the child.

Layout (CIFAR, as pycls's AnyNet with `res_stem_cifar`): stem 3x3 conv to 16 channels + affine BN
+ ReLU; three stages with strides 1/2/2; head global average pool + dense. A stage's first block
(stride, projection) is unshared (`first_<s>`); positions 1..max_depth-1 are served by the stage's
GLOW blocks (`cell_stage<s>`, leading block axis) through the position -> block `assignment`.
Batch norm inside stages is affine-free and always uses batch statistics.

ResNeXt-A's group convolution is the block diagonal of one dense max-width kernel at the child's
inner width (groups of inner/g consecutive channels), so every group count shares the same
weights. aw_nas (`GroupMaskHandler`) instead gathers each group's input columns by the max-width
partition before slicing to the child's width; both share ordinally, the partition differs. A
stage-0 child whose width equals the stem's (16) has no projection here, as its standalone
network; the official supernet builds that projection and always uses it.

Execution strategies (`model.nds_strategy`, measured in `experiments/bench_nds_strategies.py`):
the parameters are always the max-width, max-depth tensors; a static `caps` per stage (depth,
width, inner width) decides how much of them a compiled step computes, masks doing the rest.
`mask` computes everything (one executable per level); `exact` caps at the architecture's own
sizes (one executable per architecture, no wasted arithmetic); `bucket` rounds the sizes up to a
few bucket edges (one executable per bucket combination). The trainer asks `shape_key` for the
caps of each step's architecture on the host and passes them as a static argument; evaluation
always uses `mask`, which vmaps over architectures.
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
INITS = ('he_fan_out', 'torch')

# aw_nas's NDS supernets (`GermAnyNet`, `self.apply(_init_weights)`, pycls's ResNet init): every
# convolution, the stem's, the projections' and the 1x1 classifier's included, is drawn from
# N(0, 2 / (k * k * C_out)) at its largest (max-width) shape; biases keep PyTorch's default.
# 'torch' is PyTorch's default U(+-1/sqrt(fan_in)), what close_jax used before.
_HE_FAN_OUT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
_HE_FAN_OUT_BLOCKS = nn.initializers.variance_scaling(
  2.0, 'fan_out', 'normal', in_axis=-2, out_axis=-1, batch_axis=(0,)
)


def kernel_inits(init: str) -> tuple:
  """(kernel init, stacked-block kernel init) of an `init` in `INITS`."""
  if init not in INITS:
    raise ValueError(f'model.nds_init={init!r}: expected one of {INITS}')
  if init == 'torch':
    return layers.torch_kernel_init, layers.block_kernel_init
  return _HE_FAN_OUT, _HE_FAN_OUT_BLOCKS


def _conv(x, kernel, stride):
  pad = kernel.shape[0] // 2
  return lax.conv_general_dilated(
    x,
    kernel.astype(x.dtype),
    (stride, stride),
    ((pad, pad), (pad, pad)),
    dimension_numbers=layers.DIMS,
  )


def _kernel_shapes(family: nds.Family, c_in: int, width: int, inner: int) -> dict:
  if family.block == 'basic':
    return {'conv1': (3, 3, c_in, width), 'conv2': (3, 3, width, width)}
  return {'a': (1, 1, c_in, inner), 'b': (3, 3, inner, inner), 'c': (1, 1, inner, width)}


def residual_branch(family, x, kernels, stride, masks):
  """The residual branch at the masked widths: basic (3x3 conv-BN-ReLU-3x3 conv-BN) or bottleneck
  (1x1 conv-BN-ReLU, 3x3 group conv (stride)-BN-ReLU, 1x1 conv-BN)."""
  out, inner, groups = masks
  if family.block == 'basic':
    y = jax.nn.relu(layers.batch_norm(_conv(x, kernels['conv1'], stride)) * out)
    return layers.batch_norm(_conv(y, kernels['conv2'], 1)) * out
  y = jax.nn.relu(layers.batch_norm(_conv(x, kernels['a'], 1)) * inner)
  y = jax.nn.relu(layers.batch_norm(_conv(y, kernels['b'] * groups, stride)) * inner)
  return layers.batch_norm(_conv(y, kernels['c'], 1)) * out


def group_mask(inner_width, groups, size: int):
  """(size, size) 0/1: input channel i feeds output channel o iff both are below the inner width
  and in the same of `groups` consecutive groups, i.e. a group convolution as the block diagonal
  of the shared dense kernel at the child's width."""
  group_size = inner_width // groups
  channel = jnp.arange(size)
  same = (channel[:, None] // group_size) == (channel[None, :] // group_size)
  live = channel < inner_width
  return same & live[:, None] & live[None, :]


def _round_up(value: int, edges: tuple[int, ...]) -> int:
  return min(e for e in edges if e >= value)


def _max_inner(family: nds.Family) -> int:
  return max(nds.inner_width(w, b) for w in family.ws for b in family.bot_muls)


class NDSSupernet(nn.Module):
  family: nds.Family
  num_blocks: int
  num_classes: int = 10
  stem_width: int = 16
  dtype: jnp.dtype = jnp.float32
  strategy: str = 'mask'
  width_buckets: tuple[int, ...] = ()  # `bucket`: edges for widths and inner widths
  depth_buckets: tuple[int, ...] = ()  # `bucket`: edges for depths
  caps: tuple | None = None  # static per-stage (depth, width, inner) computed; None = maxima
  weight_init: str = 'he_fan_out'  # one of INITS

  def full_caps(self) -> tuple:
    family = self.family
    return ((family.max_depth, max(family.ws), _max_inner(family)),) * nds.NUM_STAGES

  @property
  def per_arch_shapes(self) -> bool:
    """Whether `shape_key` can be other than None (every strategy but `mask`)."""
    return self.strategy != 'mask'

  def shape_key(self, arch) -> tuple | None:
    """The static caps for one architecture (host int array) under the strategy; None for
    `mask` (one executable serves all)."""
    if not self.per_arch_shapes:
      return None
    values = nds.values_of(self.family, np.asarray(arch))
    caps = []
    for s in range(nds.NUM_STAGES):
      d, w, b = values['ds'][s], values['ws'][s], values['bot_muls'][s]
      inner = nds.inner_width(w, b) if self.family.block == 'bottleneck' else 0
      if self.strategy == 'bucket':
        d, w = _round_up(d, self.depth_buckets), _round_up(w, self.width_buckets)
        inner = _round_up(inner, self.width_buckets) if inner else 0
      caps.append((int(d), int(w), int(inner)))
    return tuple(caps)

  @nn.compact
  def __call__(self, x, arch, assignment, *, train: bool = True):
    del train  # batch statistics always, as the official supernet evaluates
    family, width = self.family, max(self.family.ws)
    inner_max = _max_inner(family)
    kernel_init, block_init = kernel_inits(self.weight_init)
    caps = self.caps or self.full_caps()
    table = lambda column, values: jnp.asarray(values)[arch[:, column]]
    ds, ws = table(0, family.ds), table(1, family.ws)
    inners = jnp.round(ws * table(2, family.bot_muls)).astype(jnp.int32)
    gs = table(3, family.num_gs)
    x = x.astype(self.dtype)
    x = layers.Conv(self.stem_width, 3, kernel_init=kernel_init, name='stem_conv')(x)
    x = jax.nn.relu(layers.AffineBatchNorm(name='stem_bn')(x))
    in_width = jnp.int32(self.stem_width)
    positions = jnp.arange(family.num_positions)
    for s, stride in enumerate(STRIDES):
      depth_cap, w_cap, i_cap = caps[s]
      i_cap = i_cap or inner_max  # ResNet has no inner width
      channel = jnp.arange(max(w_cap, i_cap))
      masks = (
        (channel[:w_cap] < ws[s]).astype(self.dtype),
        (channel[:i_cap] < inners[s]).astype(self.dtype),
        group_mask(inners[s], gs[s], i_cap).astype(self.dtype),
      )
      c_in = x.shape[-1]
      full_in = self.stem_width if s == 0 else width
      first = {
        name: self.param(f'first_{s}_{name}', kernel_init, shape)
        for name, shape in _kernel_shapes(family, full_in, width, inner_max).items()
      }
      first = _slice(first, c_in, w_cap, i_cap)
      proj = self.param(f'first_{s}_proj', kernel_init, (1, 1, full_in, width))
      branch = residual_branch(family, x, first, stride, masks)
      shortcut = layers.batch_norm(_conv(x, proj[:, :, :c_in, :w_cap], stride)) * masks[0]
      if stride == 1 and w_cap >= c_in:  # no projection when the shape does not change
        same = jnp.pad(x, ((0, 0),) * 3 + ((0, w_cap - c_in),))
        shortcut = jnp.where(in_width == ws[s], same, shortcut)
      x = jax.nn.relu(branch + shortcut)
      shapes = _kernel_shapes(family, width, width, inner_max)
      cell = self.param(
        f'cell_stage{s}',
        lambda key, shapes: {
          name: block_init(jax.random.fold_in(key, i), (self.num_blocks, *shape))
          for i, (name, shape) in enumerate(sorted(shapes.items()))
        },
        shapes,
      )
      used = depth_cap - 1  # positions this executable computes
      if used:
        kernels = jax.tree.map(lambda k, a=assignment[:used]: jnp.take(k, a, axis=0), cell)
        kernels = _slice(kernels, w_cap, w_cap, i_cap)
        active = positions[:used] < ds[s] - 1

        def position(x, xs, masks=masks):
          kernels, on = xs
          y = jax.nn.relu(residual_branch(family, x, kernels, 1, masks) + x)
          return jnp.where(on, y, x), None

        x, _ = lax.scan(position, x, (kernels, active))
      in_width = ws[s]
    x = jnp.mean(x, axis=(1, 2))
    x = jnp.pad(x, ((0, 0), (0, width - x.shape[-1])))  # the head's kernel is max-width
    return layers.TorchDense(self.num_classes, kernel_init=kernel_init, name='classifier')(x)


def _slice(kernels: dict, c_in: int, width: int, inner: int) -> dict:
  """The leading (input, output) channels a capped step computes, for every kernel of a
  residual branch (`conv1/conv2` basic, `a/b/c` bottleneck); a leading block axis is kept."""
  ends = {
    'conv1': (c_in, width),
    'conv2': (width, width),
    'a': (c_in, inner),
    'b': (inner, inner),
    'c': (inner, width),
  }
  return {name: k[..., : ends[name][0], : ends[name][1]] for name, k in kernels.items()}


def child_param_count(family: nds.Family, arch, num_classes: int = 10, stem: int = 16) -> int:
  """Parameters of the standalone network of `arch` (closed form, pycls's AnyNet)."""
  values = nds.values_of(family, np.asarray(arch))
  count = 9 * 3 * stem + 2 * stem  # stem conv + affine BN
  w_in = stem
  for s in range(nds.NUM_STAGES):
    d, w, bot_mul, g = (values[k][s] for k in nds.DECISIONS)
    inner = nds.inner_width(w, bot_mul)
    if family.block == 'basic':
      block = lambda c_in, w=w: 9 * c_in * w + 9 * w * w
    else:
      block = lambda c_in, w=w, inner=inner, g=g: c_in * inner + 9 * inner * inner // g + inner * w
    count += block(w_in)  # the first block
    if STRIDES[s] != 1 or w_in != w:
      count += w_in * w  # 1x1 projection (its BN is affine-free)
    count += (d - 1) * block(w)
    w_in = w
  return count + w_in * num_classes + num_classes
