"""NDS supernets: a child is exactly the standalone network on slices of the shared weights."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from close_jax.models import nds_supernet
from close_jax.spaces import nds

# Two positions per stage; ResNeXt inner widths 4..16, every group count divides them.
RESNET = dataclasses.replace(nds.RESNET, ds=(1, 2, 3), ws=(4, 8, 12))
RESNEXT = dataclasses.replace(nds.RESNEXTA, ds=(1, 2, 3), ws=(8, 16), bot_muls=(0.5, 1.0))
FAMILIES = [RESNET, RESNEXT]


def _net(family, blocks):
  return nds_supernet.NDSSupernet(family, num_blocks=blocks, stem_width=4)


def _bn(x):
  mean = x.mean((0, 1, 2))
  return (x - mean) / jnp.sqrt(((x - mean) ** 2).mean((0, 1, 2)) + 1e-5)


def _conv(x, k, stride, groups=1):
  p = k.shape[0] // 2
  return lax.conv_general_dilated(
    x,
    k,
    (stride,) * 2,
    ((p, p),) * 2,
    dimension_numbers=nds_supernet.layers.DIMS,
    feature_group_count=groups,
  )


def _branch(family, x, k, stride, w, inner, g):
  """One residual branch at exact widths; k holds full-size kernels, sliced here."""
  c = x.shape[-1]
  if family.block == 'basic':
    y = jax.nn.relu(_bn(_conv(x, k['conv1'][:, :, :c, :w], stride)))
    return _bn(_conv(y, k['conv2'][:, :, :w, :w], 1))
  size = inner // g  # a real group conv: output o reads its group's inputs from the dense kernel
  rows = (np.arange(inner) // size * size)[None, :] + np.arange(size)[:, None]  # (size, inner)
  grouped = k['b'][:, :, rows, np.arange(inner)[None, :]]  # (3, 3, size, inner)
  y = jax.nn.relu(_bn(_conv(x, k['a'][:, :, :c, :inner], 1)))
  y = jax.nn.relu(_bn(_conv(y, grouped, stride, g)))
  return _bn(_conv(y, k['c'][:, :, :inner, :w], 1))


def _standalone(family, params, arch, assignment, x):
  """The child written out at its exact widths (pycls AnyNet layout)."""
  values = nds.values_of(family, arch)
  p = params['params']
  x = _conv(x, p['stem_conv']['kernel'], 1)
  x = jax.nn.relu(_bn(x) * p['stem_bn']['scale'] + p['stem_bn']['bias'])
  for s in range(3):
    d, w, bot_mul, g = (values[k][s] for k in nds.DECISIONS)
    inner, c, stride = nds.inner_width(w, bot_mul), x.shape[-1], nds_supernet.STRIDES[s]
    first = {k[len(f'first_{s}_') :]: v for k, v in p.items() if k.startswith(f'first_{s}_')}
    y = _branch(family, x, first, stride, w, inner, g)
    same = stride == 1 and c == w
    x = jax.nn.relu(y + (x if same else _bn(_conv(x, first['proj'][:, :, :c, :w], stride))))
    for position in range(d - 1):
      block = jax.tree.map(lambda k, b=assignment[position]: k[b], p[f'cell_stage{s}'])
      x = jax.nn.relu(_branch(family, x, block, 1, w, inner, g) + x)
  head = p['classifier']
  return x.mean((1, 2)) @ head['kernel'][: x.shape[-1]] + head['bias']


def _archs(family, n, seed):
  return np.array(nds.sample(family, jax.random.key(seed), n))


@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize('assignment', [(0, 1), (0, 0), (1, 0)])
def test_child_equals_the_standalone_network_on_sliced_weights(family, assignment):
  net, x = _net(family, 2), jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
  assignment = jnp.asarray(assignment)
  params = net.init(jax.random.key(0), x, jnp.asarray(_archs(family, 1, 0)[0]), assignment)
  apply = jax.jit(net.apply)
  for arch in _archs(family, 6, 2):
    got = apply(params, x, jnp.asarray(arch), assignment)
    want = _standalone(family, params, arch, np.asarray(assignment), x)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5, err_msg=nds.to_str(family, arch))
  assert apply._cache_size() == 1  # one executable for every width, depth and group count


@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.name)
def test_used_parameters_equal_the_closed_form_count(family):
  """The entries a child's gradient reaches, with one block per position (no sharing), are as
  many as the standalone network's parameters. (16x16 images and two probes, so that no used
  3x3 tap of the 4x4 last stage has an exactly zero gradient by chance.)"""
  net, x = _net(family, 2), jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
  assignment = jnp.arange(2)
  params = net.init(jax.random.key(0), x, jnp.asarray(_archs(family, 1, 0)[0]), assignment)
  probes = jax.random.normal(jax.random.key(2), (2, 8, 10))

  @jax.jit
  def support(arch, params, x, probes):  # arguments, not closed-over constants: a small program
    loss = lambda p, probe: jnp.sum(net.apply(p, x, arch, assignment) * probe)
    grads = [jax.grad(loss)(params, probe) for probe in probes]
    return jax.tree.map(lambda a, b: jnp.count_nonzero(jnp.abs(a) + jnp.abs(b)), *grads)

  archs = _archs(family, 6, 3)
  archs[0] = 0  # stage 0 at its smallest width
  if family is RESNET:
    archs[1] = nds.parse(family, 'ds=[3,3,3] ws=[4,12,8]')  # the stem's width: no projection
  for arch in archs:
    used = sum(int(n) for n in jax.tree.leaves(support(jnp.asarray(arch), params, x, probes)))
    expected = nds_supernet.child_param_count(family, arch, stem=4)
    assert used == expected, nds.to_str(family, arch)


def test_closed_form_counts_by_hand():
  # ResNet ds=[1,1,1] ws=[16,16,16]: stem 464 (432 + affine BN 32), stage 0 4608 (no
  # projection), stages 1-2 4608 + 256 each, head 170.
  arch = nds.parse(nds.RESNET, 'ds=[1,1,1] ws=[16,16,16]')
  assert nds_supernet.child_param_count(nds.RESNET, arch) == 464 + 4608 + 2 * 4864 + 170
  # ResNeXt-A ds=[2,1,1] ws=[32,16,16] bot_muls=[0.5,1,1] num_gs=[4,1,2]: stage 0 blocks with
  # inner 16, 4 groups: first 16*16 + 9*16*16/4 + 16*32 = 1344 + projection 512, second
  # 32*16 + 576 + 512 = 1600; stage 1 (inner 16): 32*16 + 2304 + 256 + 512 = 3584; stage 2
  # (inner 16, 2 groups): 256 + 1152 + 256 + 256 = 1920; head 170.
  arch = nds.parse(nds.RESNEXTA, 'ds=[2,1,1] ws=[32,16,16] bot_muls=[0.5,1,1] num_gs=[4,1,2]')
  total = 464 + 1344 + 512 + 1600 + 3584 + 1920 + 170
  assert nds_supernet.child_param_count(nds.RESNEXTA, arch) == total


@pytest.mark.parametrize(
  ('family', 'strategy'),
  [(RESNEXT, 'exact'), (RESNET, 'bucket')],
  ids=lambda v: getattr(v, 'name', v),
)
def test_capped_strategies_compute_the_masked_network(family, strategy):
  """`exact` and `bucket` compute slices of the same max-size parameters: the logits and every
  parameter's gradient equal the full-size `mask` computation, one executable per shape key."""
  buckets = {'width_buckets': (8, 12, 16), 'depth_buckets': (2, 3)}
  net = dataclasses.replace(_net(family, 2), strategy=strategy, **buckets)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  assignment = jnp.asarray((1, 0))
  params = net.init(jax.random.key(0), x, jnp.asarray(_archs(family, 1, 0)[0]), assignment)

  def loss(p, arch, caps):
    return jnp.sum(dataclasses.replace(net, caps=caps).apply(p, x, arch, assignment) ** 2)

  value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=2)
  archs = _archs(family, 3, 5)
  keys = [net.shape_key(a) for a in archs]
  for arch, caps in zip(archs, keys, strict=True):
    (v_cap, g_cap), (v_mask, g_mask) = (value_and_grad(params, arch, c) for c in (caps, None))
    np.testing.assert_allclose(v_cap, v_mask, rtol=1e-4, err_msg=nds.to_str(family, arch))
    for a, b in zip(jax.tree.leaves(g_cap), jax.tree.leaves(g_mask), strict=True):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.abs(b).max()) + 1e-7)
  assert value_and_grad._cache_size() == len(set(keys)) + 1  # + the mask's executable
  values = [nds.values_of(family, a) for a in archs]
  for caps, v in zip(keys, values, strict=True):
    depth, width = [c[0] for c in caps], [c[1] for c in caps]
    if strategy == 'exact':  # the architecture's own sizes
      assert depth == list(v['ds']) and width == list(v['ws'])
    else:  # the smallest edge at or above each size
      assert depth == [min(e for e in (2, 3) if e >= d) for d in v['ds']]
      assert width == [min(e for e in (8, 12, 16) if e >= w) for w in v['ws']]
  assert _net(family, 2).shape_key(archs[0]) is None  # `mask`: one executable for all


def _init_params(init, classes=1000, stem=256, blocks=8):
  """A supernet whose every kernel is large enough for a 5% check on its standard deviation."""
  family = dataclasses.replace(nds.RESNET, ds=(1, 2), ws=(8, 64))
  net = nds_supernet.NDSSupernet(
    family, num_blocks=blocks, num_classes=classes, stem_width=stem, weight_init=init
  )
  x = jnp.zeros((1, 8, 8, 3))
  arch = jnp.zeros((nds.NUM_STAGES, len(nds.DECISIONS)), jnp.int32)
  return jax.jit(lambda k: net.init(k, x, arch, jnp.zeros(1, jnp.int32)))(jax.random.key(0))[
    'params'
  ]


def test_he_fan_out_init_of_every_convolution_and_the_head():
  """aw_nas `GermAnyNet._init_weights`: every conv (stem, blocks, projections, the 1x1 head)
  N(0, 2 / (k * k * C_out)) at its max-width shape; the head's bias PyTorch's U(+-1/sqrt(C_in))."""
  params = _init_params('he_fan_out')
  kernels = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path)
    if leaf.ndim >= 4:  # HWIO, with a leading block axis for the GLOW blocks
      kernels[name] = (leaf, leaf.shape[-4] * leaf.shape[-3] * leaf.shape[-1])
  kernels['classifier'] = (params['classifier']['kernel'], 1 * 1 * 1000)
  assert len(kernels) == 1 + 3 * 3 + 3 * 2 + 1  # stem, first blocks (2 convs + proj), cells, head
  for name, (leaf, fan_out) in kernels.items():
    values = np.asarray(leaf, np.float64)
    assert values.size >= 2000, name
    np.testing.assert_allclose(values.std(), np.sqrt(2.0 / fan_out), rtol=0.05, err_msg=name)
    assert abs(values.mean()) < 0.1 * np.sqrt(2.0 / fan_out), name
  bias = np.asarray(params['classifier']['bias'])
  assert np.abs(bias).max() <= 1 / np.sqrt(64) and bias.std() > 0.5 / np.sqrt(3 * 64)
  blocks = np.asarray(params['cell_stage0']['conv1'])  # every GLOW block its own draw
  assert np.abs(np.corrcoef(blocks[0].ravel(), blocks[1].ravel())[0, 1]) < 0.05


def test_torch_init_stays_available_and_bad_values_fail():
  params = _init_params('torch', blocks=4)
  kernel = np.asarray(params['cell_stage1']['conv2'])  # (4, 3, 3, 64, 64): fan_in 3 * 3 * 64
  np.testing.assert_allclose(kernel.std(), 1 / np.sqrt(3 * 3 * 3 * 64), rtol=0.05)
  with pytest.raises(ValueError, match="model.nds_init='he'"):
    nds_supernet.kernel_inits('he')
