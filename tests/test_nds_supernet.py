"""NDS ResNet supernet: a child is exactly the standalone network with sliced weights."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from close_jax.models import nds_supernet
from close_jax.spaces import nds

TINY = dataclasses.replace(nds.RESNET, ds=(1, 2, 3), ws=(4, 8, 12))  # 2 positions per stage


def _net(blocks):
  return nds_supernet.NDSResNetSupernet(TINY, num_blocks=blocks, stem_width=4)


def _bn(x):
  mean = x.mean((0, 1, 2))
  return (x - mean) / jnp.sqrt(((x - mean) ** 2).mean((0, 1, 2)) + 1e-5)


def _conv(x, k, stride):
  p = k.shape[0] // 2
  return lax.conv_general_dilated(
    x, k, (stride,) * 2, ((p, p),) * 2, dimension_numbers=nds_supernet.layers.DIMS
  )


def _standalone(params, arch, assignment, x):
  """The child written out at its exact widths, on slices of the supernet's weights."""
  values = nds.values_of(TINY, arch)
  p = params['params']
  x = _conv(x, p['stem_conv']['kernel'], 1)
  x = jax.nn.relu(_bn(x) * p['stem_bn']['scale'] + p['stem_bn']['bias'])
  for s, (d, w) in enumerate(zip(values['ds'], values['ws'], strict=True)):
    c = x.shape[-1]
    stride = nds_supernet.STRIDES[s]
    y = jax.nn.relu(_bn(_conv(x, p[f'first_{s}_conv1'][:, :, :c, :w], stride)))
    y = _bn(_conv(y, p[f'first_{s}_conv2'][:, :, :w, :w], 1))
    short = (
      x if (stride == 1 and c == w) else _bn(_conv(x, p[f'first_{s}_proj'][:, :, :c, :w], stride))
    )
    x = jax.nn.relu(y + short)
    for position in range(d - 1):
      block = p[f'cell_stage{s}']
      k1, k2 = (block[n][assignment[position], :, :, :w, :w] for n in ('conv1', 'conv2'))
      y = jax.nn.relu(_bn(_conv(x, k1, 1)))
      x = jax.nn.relu(_bn(_conv(y, k2, 1)) + x)
  head = p['classifier']
  return x.mean((1, 2)) @ head['kernel'][: x.shape[-1]] + head['bias']


def _archs(n, seed):
  return np.asarray(nds.sample(TINY, jax.random.key(seed), n))


@pytest.mark.parametrize('assignment', [(0, 1), (0, 0), (1, 0)])
def test_child_equals_the_standalone_network_on_sliced_weights(assignment):
  net, x = _net(2), jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
  assignment = jnp.asarray(assignment)
  params = net.init(jax.random.key(0), x, jnp.asarray(_archs(1, 0)[0]), assignment)
  apply = jax.jit(net.apply)
  for arch in _archs(6, 2):
    got = apply(params, x, jnp.asarray(arch), assignment)
    want = _standalone(params, arch, np.asarray(assignment), x)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5, err_msg=nds.to_str(TINY, arch))
  assert apply._cache_size() == 1  # one executable for every width and depth


def test_used_parameters_equal_the_closed_form_count():
  """The entries a child's gradient reaches, with one block per position (no sharing), are as
  many as the standalone network's parameters. (16x16 images and two probes, so that no used
  3x3 tap of the 4x4 last stage has an exactly zero gradient by chance.)"""
  net, x = _net(2), jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
  assignment = jnp.arange(2)
  params = net.init(jax.random.key(0), x, jnp.asarray(_archs(1, 0)[0]), assignment)
  probes = jax.random.normal(jax.random.key(2), (2, 8, 10))

  @jax.jit
  def support(arch):
    loss = lambda p, probe: jnp.sum(net.apply(p, x, arch, assignment) * probe)
    grads = [jax.grad(loss)(params, probe) for probe in probes]
    return jax.tree.map(lambda a, b: jnp.count_nonzero(jnp.abs(a) + jnp.abs(b)), *grads)

  archs = np.array(_archs(12, 3))
  archs[0] = nds.parse(TINY, 'ds=[3,3,3] ws=[4,12,8]')  # stage 0 at the stem width: no projection
  for arch in archs:
    used = sum(int(n) for n in jax.tree.leaves(support(jnp.asarray(arch))))
    assert used == nds_supernet.child_param_count(TINY, arch, stem=4), nds.to_str(TINY, arch)


def test_closed_form_count_by_hand():
  # ds=[1,1,1] ws=[16,16,16] at full size: stem 464 (432 + affine BN 32), stage 0 4608 (no
  # projection), stages 1-2 4608 + 256 each, head 170.
  arch = nds.parse(nds.RESNET, 'ds=[1,1,1] ws=[16,16,16]')
  assert nds_supernet.child_param_count(nds.RESNET, arch) == 464 + 4608 + 2 * 4864 + 170
