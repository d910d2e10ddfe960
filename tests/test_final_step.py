"""The final trainer's pieces against independent arithmetic: PyTorch BatchNorm, the DARTS ops
(against the supernet's functional ops), cutout, drop path, the cosine schedule, the optimizer."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from close_jax.final import darts_network, layers, step
from close_jax.models import darts_ops


def _x(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_batch_norm_is_torch_batchnorm2d():
  x = np.random.default_rng(1).normal(2.0, 3.0, size=(4, 3, 3, 2)).astype(np.float32)
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(0), x, train=False)
  params = {'scale': jnp.array([2.0, 0.5]), 'bias': jnp.array([1.0, -1.0])}
  y, new = bn.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
  flat = x.reshape(-1, 2).astype(np.float64)
  mean, var = flat.mean(0), flat.var(0)  # biased for normalising
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * [2.0, 0.5] + [1.0, -1.0], 1e-5)
  np.testing.assert_allclose(new['batch_stats']['mean'], 0.1 * mean, rtol=1e-5)
  unbiased = flat.var(0, ddof=1)  # the running average takes the unbiased variance
  np.testing.assert_allclose(new['batch_stats']['var'], 0.9 + 0.1 * unbiased, rtol=1e-5)
  out = bn.apply({**new, 'params': params}, x, train=False)
  stats = jax.tree.map(np.asarray, new['batch_stats'])
  expected = (x - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * [2.0, 0.5] + [1.0, -1.0]
  np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize('stride', [1, 2])
def test_darts_ops_equal_the_supernet_ops(stride):
  """Same weights, BN at scale 1 / shift 0 in train mode: the final network's SepConv, DilConv
  and FactorizedReduce compute the supernet's functional ops (models.darts_ops)."""
  x = _x((2, 8, 8, 4))
  for module, k in (
    (darts_network.SepConv(4, 3, stride), 'sep'),
    (darts_network.DilConv(4, 5, stride), 'dil'),
  ):
    variables = module.init(jax.random.key(1), x, train=False)
    y, _ = module.apply(variables, x, train=True, mutable=['batch_stats'])
    w = [variables['params'][f'TorchConv_{i}']['kernel'] for i in range(4 if k == 'sep' else 2)]
    expected = (
      darts_ops.sep_conv(x, *w, stride) if k == 'sep' else darts_ops.dil_conv(x, *w, stride)
    )
    np.testing.assert_allclose(y, expected, rtol=2e-4, atol=2e-5)
  if stride == 2:
    module = darts_network.FactorizedReduce(4)
    variables = module.init(jax.random.key(2), x, train=False)
    y, _ = module.apply(variables, x, train=True, mutable=['batch_stats'])
    p = variables['params']
    expected = darts_ops.factorized_reduce(
      x, p['TorchConv_0']['kernel'], p['TorchConv_1']['kernel']
    )
    np.testing.assert_allclose(y, expected, rtol=2e-4, atol=2e-5)


def test_cutout_zeroes_one_clipped_square_per_image():
  out = np.asarray(step.cutout(jnp.ones((64, 20, 20, 3)), jax.random.key(0), 8))
  assert np.all(out == out[..., :1])  # every channel alike
  sizes = set()
  for image in out[..., 0]:
    rows = np.flatnonzero((image == 0).any(1))
    cols = np.flatnonzero((image == 0).any(0))
    assert len(rows) and np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
    np.testing.assert_array_equal(
      image == 0, np.outer(np.isin(range(20), rows), np.isin(range(20), cols))
    )
    for idx in (rows, cols):
      assert len(idx) <= 8 and (len(idx) == 8 or idx[0] == 0 or idx[-1] == 19)
    sizes.add((len(rows), len(cols)))
  assert (8, 8) in sizes and len(sizes) > 3  # interior squares and clipped ones


def test_drop_path_drops_whole_samples_and_rescales():
  x = jnp.ones((2000, 2, 2, 1))
  y = np.asarray(layers.drop_path(x, jnp.float32(0.2), jax.random.key(0)))
  per_sample = y.reshape(2000, -1)
  assert np.all((per_sample == 0).all(1) | np.isclose(per_sample, 1 / 0.8).all(1))
  assert abs((per_sample[:, 0] == 0).mean() - 0.2) < 0.03
  np.testing.assert_array_equal(layers.drop_path(x, jnp.float32(0.0), jax.random.key(0)), x)


def _optim(**kw):
  cfg = ml_collections.ConfigDict(
    dict(
      learning_rate=0.05,
      min_learning_rate=0.001,
      schedule='epoch',
      momentum=0.9,
      nesterov=False,
      weight_decay=3e-4,
      grad_clip_norm=5.0,
    )
  )
  cfg.update(kw)
  return cfg


def test_cosine_schedule_per_epoch_and_per_step():
  sched = step.cosine(_optim(), steps_per_epoch=10, num_epochs=4)
  lrs = [float(sched(t)) for t in (0, 9, 10, 20, 39)]
  expected = [0.001 + 0.049 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in (0, 0, 1, 2, 3)]
  np.testing.assert_allclose(lrs, expected, rtol=1e-6)
  per_step = step.cosine(_optim(schedule='step', min_learning_rate=0.0), 10, 4)
  np.testing.assert_allclose(float(per_step(10)), 0.05 * 0.5 * (1 + np.cos(np.pi / 4)), 1e-6)


@pytest.mark.parametrize('nesterov', [False, True])
def test_optimizer_is_torch_sgd_with_clipping(nesterov):
  """clip_grad_norm_(5) on the raw gradient, then torch.optim.SGD (decay into the gradient,
  momentum buffer, Nesterov), two steps by hand."""
  cfg = _optim(nesterov=nesterov, schedule='step', min_learning_rate=0.05)
  tx = step.make_optimizer(cfg, step.cosine(cfg, 1, 10))
  p = np.array([1.0, -2.0])
  grads = [np.array([30.0, 40.0]), np.array([0.5, -1.0])]
  params, state = jnp.asarray(p), tx.init(jnp.asarray(p))
  buf = np.zeros(2)
  for g in grads:
    updates, state = tx.update(jnp.asarray(g), state, params)
    params = params + updates
    g = g * min(1.0, 5.0 / np.linalg.norm(g)) + 3e-4 * p
    buf = 0.9 * buf + g
    p = p - 0.05 * (g + 0.9 * buf if nesterov else buf)
    np.testing.assert_allclose(params, p, rtol=1e-6)
