"""Parameter counts of the standalone networks: the flax models (shapes from `jax.eval_shape`,
nothing compiled) against the closed forms of `final.param_count`, and both against published
figures of the reference networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax.final import genotypes, networks
from close_jax.final.darts_network import DartsNetwork, genotype_tuple
from close_jax.final.nb201_network import InferCell, NB201Network
from close_jax.final.param_count import darts_num_params, nb201_num_params
from close_jax.spaces import nb201, nb301

# DARTS_V2 at C=36, 20 cells, CIFAR-10, without the auxiliary head, as quark0/darts `train.py`
# logs it: "param size = 3.349342MB" (the log line quoted in an annotated copy of that script,
# found in the code index; the DARTS paper and README round it to 3.3M).
DARTS_V2_CIFAR = 3_349_342
# Published in M (one or two decimals): PC-DARTS paper Table 1 3.6M (its CIFAR cell); P-DARTS
# 3.43M (chenxin061/pdarts issue #7, the default PDARTS genotype trained with train_cifar.py; the
# paper says 3.4M); DARTS on ImageNet 4.7M (quark0/darts README, C=48, 14 cells, 1000 classes).
PUBLISHED_M = {('PC_DARTS', False): 3.6, ('PDARTS', False): 3.43, ('DARTS_V2', True): 4.7}
# NAS-Bench-201 on CIFAR-10 (C=16, N=5): the largest network (every edge nor_conv_3x3) has
# 1.531546 MB of parameters and the smallest (no parameterised edge) 0.073306 MB, the min/max
# `params` of the benchmark's cifar10 records (tables in the code index, e.g. evoxbench's).
NB201_MAX, NB201_MIN = 1_531_546, 73_306


def _model_counts(model, image_size):
  return networks.param_counts(model, image_size)


def test_darts_v2_matches_the_logged_reference_figure():
  arch = genotypes.published('DARTS_V2')
  assert darts_num_params(arch, 36, 20, 10, auxiliary=False) == DARTS_V2_CIFAR
  model = DartsNetwork(genotype_tuple(arch), 36, 20, 10, auxiliary=True)
  assert _model_counts(model, 32) == (
    DARTS_V2_CIFAR,
    darts_num_params(arch, 36, 20, 10, auxiliary=True),
  )
  # The CIFAR auxiliary head by hand: 1x1 conv 576->128 + BN, 2x2 conv 128->768 + BN, linear.
  head = 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10
  assert darts_num_params(arch, 36, 20, 10, auxiliary=True) == DARTS_V2_CIFAR + head


@pytest.mark.parametrize(
  ('name', 'channels', 'layers'),
  [('PC_DARTS', 36, 20), ('PDARTS', 36, 20), ('DARTS_V1', 16, 8), ('PC_DARTS_IMAGENET', 16, 8)],
)
def test_published_genotypes_model_equals_closed_form(name, channels, layers):
  arch = genotypes.published(name)
  model = DartsNetwork(genotype_tuple(arch), channels, layers, 10, auxiliary=True)
  expected = tuple(darts_num_params(arch, channels, layers, 10, a) for a in (False, True))
  assert _model_counts(model, 32) == expected
  if (name, False) in PUBLISHED_M and (channels, layers) == (36, 20):
    digits = len(str(PUBLISHED_M[name, False]).split('.')[1])
    assert round(expected[0] / 1e6, digits) == PUBLISHED_M[name, False]


def test_imagenet_network_model_equals_closed_form_and_published_size():
  arch = genotypes.published('DARTS_V2')
  model = DartsNetwork(genotype_tuple(arch), 48, 14, 1000, auxiliary=True, imagenet=True)
  counts = _model_counts(model, 224)
  assert counts == tuple(
    darts_num_params(arch, 48, 14, 1000, auxiliary=a, imagenet=True) for a in (False, True)
  )
  assert round(counts[0] / 1e6, 1) == PUBLISHED_M['DARTS_V2', True]
  # The ImageNet head has no BN after its 2x2 conv: 2 x 768 fewer than the CIFAR head's formula.
  head = 768 * 128 + 2 * 128 + 128 * 768 * 4 + 768 * 1000 + 1000
  assert counts[1] - counts[0] == head


def test_random_genotypes_small_networks_equal_closed_form():
  archs = np.asarray(nb301.sample(jax.random.key(7), 3))
  for i, arch in enumerate(archs):
    layers, channels = (3, 5, 4)[i], (4, 6, 8)[i]
    model = DartsNetwork(genotype_tuple(arch), channels, layers, 7, auxiliary=True)
    expected = tuple(darts_num_params(arch, channels, layers, 7, a) for a in (False, True))
    assert _model_counts(model, 32) == expected, nb301.to_str(arch)


def test_darts_closed_form_per_op_difference():
  """Swapping one normal-cell edge's op changes the count by that op's weights in every normal
  cell, counted here by hand (sep_conv_3x3 -> sep_conv_5x5: 2 x 16 extra depthwise taps x C)."""
  arch = genotypes.published('DARTS_V2').copy()
  base = darts_num_params(arch, 36, 20, 10, False)
  assert arch[0, 0, 0] == nb301.OPS.index('sep_conv_3x3')
  arch[0, 0, 0] = nb301.OPS.index('sep_conv_5x5')
  widths = [36] * 6 + [72] * 6 + [144] * 6  # the 18 normal cells' C
  assert darts_num_params(arch, 36, 20, 10, False) - base == sum(2 * 16 * c for c in widths)


def test_nb201_extremes_equal_the_benchmark():
  conv3 = np.full(6, nb201.OPS.index('nor_conv_3x3'))
  assert nb201_num_params(conv3) == NB201_MAX
  assert nb201_num_params(np.zeros(6, int)) == NB201_MIN
  assert nb201_num_params(np.full(6, nb201.OPS.index('avg_pool_3x3'))) == NB201_MIN


def test_nb201_sampled_cells_model_equals_benchmark_counts():
  """Every cell: the benchmark minimum plus, per convolution edge (dead or alive: the benchmark
  builds them all), (max - min) / 6 for a 3x3 conv and the 1x1 conv's ReLU-Conv-BN over 5 cells
  of 3 stages; the flax network equals it too."""
  per_conv3 = (NB201_MAX - NB201_MIN) // 6
  per_conv1 = sum(5 * (c * c + 2 * c) for c in (16, 32, 64))
  rng = np.random.default_rng(0)
  cells = [rng.integers(0, 5, 6) for _ in range(7)]
  cells.append(nb201.parse('|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|'))
  for cell in cells:
    n3 = int(np.sum(cell == nb201.OPS.index('nor_conv_3x3')))
    n1 = int(np.sum(cell == nb201.OPS.index('nor_conv_1x1')))
    expected = NB201_MIN + n3 * per_conv3 + n1 * per_conv1
    assert nb201_num_params(cell) == expected
    model = NB201Network(tuple(int(v) for v in cell))
    assert _model_counts(model, 32) == (expected, expected), nb201.to_str(cell)


def test_nb201_dead_edge_after_an_empty_node_outputs_its_bn_shift():
  """Why every edge is built: a conv edge reading a node that receives nothing outputs its
  affine BN's shift in the benchmark's network (train mode), so it is not dead."""
  cell = nb201.parse('|none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|')
  module = InferCell(tuple(int(v) for v in cell), 4)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 4)), jnp.float32)
  variables = module.init(jax.random.key(0), x, train=False)
  shift = jnp.arange(4.0)
  params = {'edge2': {**variables['params']['edge2']}}
  params['edge2']['BatchNorm_0'] = {'scale': jnp.ones(4), 'bias': shift}
  out, _ = module.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(out, x + shift, rtol=1e-6)  # skip(x) + BN shift of conv(0)
