"""Tests for the functional layers: custom-VJP convolution, batch-stat BN, pools and inits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from close_jax.models import layers

DIMS = ('NHWC', 'HWIO', 'NHWC')


def _rng(seed: int = 0) -> np.random.Generator:
  return np.random.default_rng(seed)


def _stock_conv(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=DIMS)


def _np_batch_norm(x: np.ndarray) -> np.ndarray:
  x = x.astype(np.float64)
  mean = x.mean(axis=(0, 1, 2))
  var = ((x - mean) ** 2).mean(axis=(0, 1, 2))  # Biased.
  return (x - mean) / np.sqrt(var + 1e-5)


def _np_avg_pool_3x3(x: np.ndarray) -> np.ndarray:
  """Window clipped at the border, divided by the number of real pixels in it."""
  _, h, w, _ = x.shape
  out = np.empty(x.shape, np.float64)
  for i in range(h):
    for j in range(w):
      window = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, :]
      out[:, i, j, :] = window.mean(axis=(1, 2))
  return out


# --- conv_same ------------------------------------------------------------------------------------


@pytest.mark.parametrize('ksize', [1, 3])
def test_conv_same_forward_and_grads_match_stock(ksize):
  rng = _rng(ksize)
  # Non-square image and cin != cout so that a swapped axis or a transposed image would show.
  x = jnp.asarray(rng.normal(size=(2, 6, 5, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(ksize, ksize, 3, 4)), jnp.float32)
  cot = jnp.asarray(rng.normal(size=(2, 6, 5, 4)), jnp.float32)

  y, vjp = jax.vjp(layers.conv_same, x, kernel)
  y_ref, vjp_ref = jax.vjp(_stock_conv, x, kernel)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  dx, dk = vjp(cot)
  dx_ref, dk_ref = vjp_ref(cot)
  assert dx.shape == x.shape and dk.shape == kernel.shape
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('ksize', [1, 3])
def test_conv_same_grads_inside_switch_match_stock(ksize):
  rng = _rng(10 + ksize)
  x = jnp.asarray(rng.normal(size=(2, 5, 5, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(ksize, ksize, 3, 3)), jnp.float32)
  cot = jnp.asarray(rng.normal(size=(2, 5, 5, 3)), jnp.float32)

  def loss(conv, index, x, kernel):
    branches = (lambda x, k: x * 2.0, lambda x, k: jnp.tanh(conv(x, k)))
    return jnp.sum(lax.switch(index, branches, x, kernel) * cot)

  grad = jax.jit(jax.grad(loss, argnums=(2, 3)), static_argnums=0)
  index = jnp.int32(1)
  dx, dk = grad(layers.conv_same, index, x, kernel)
  dx_ref, dk_ref = grad(_stock_conv, index, x, kernel)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-4)
  # The other branch must give the other branch's gradient (and none for the kernel).
  dx0, dk0 = grad(layers.conv_same, jnp.int32(0), x, kernel)
  np.testing.assert_allclose(dx0, 2.0 * cot, rtol=1e-6)
  np.testing.assert_array_equal(dk0, np.zeros_like(kernel))


# --- batch_norm -----------------------------------------------------------------------------------


def test_batch_norm_matches_numpy():
  rng = _rng(1)
  x_np = rng.normal(loc=3.0, scale=2.5, size=(4, 5, 6, 3)) * np.array([1.0, 0.1, 10.0])
  x = jnp.asarray(x_np, jnp.float32)
  y = np.asarray(layers.batch_norm(x))
  assert y.dtype == np.float32
  np.testing.assert_allclose(y, _np_batch_norm(x_np), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)


def test_batch_norm_eps_is_1e_5():
  # Tiny variance makes eps visible: var = 1e-6, so y = x / sqrt(1e-6 + 1e-5).
  x_np = np.array([-1e-3, 1e-3]).reshape(2, 1, 1, 1)
  y = layers.batch_norm(jnp.asarray(x_np, jnp.float32))
  np.testing.assert_allclose(y, x_np / np.sqrt(1e-6 + 1e-5), rtol=1e-4)


def test_batch_norm_scale_bias():
  rng = _rng(2)
  x_np = rng.normal(size=(3, 4, 4, 5))
  scale = rng.normal(size=(5,))
  bias = rng.normal(size=(5,))
  y = layers.batch_norm(
    jnp.asarray(x_np, jnp.float32), jnp.asarray(scale, jnp.float32), jnp.asarray(bias, jnp.float32)
  )
  np.testing.assert_allclose(y, _np_batch_norm(x_np) * scale + bias, rtol=1e-4, atol=1e-4)


def test_batch_norm_of_zeros_is_zero():
  # The supernet's live-edge pruning relies on BN mapping an all-zero tensor to exact zeros.
  y = layers.batch_norm(jnp.zeros((2, 3, 3, 4), jnp.float32))
  np.testing.assert_array_equal(y, 0.0)


def test_affine_batch_norm_module_initialises_to_identity_affine():
  x_np = _rng(3).normal(size=(2, 4, 4, 3))
  x = jnp.asarray(x_np, jnp.float32)
  module = layers.AffineBatchNorm()
  params = module.init(jax.random.key(0, impl='rbg'), x)['params']
  np.testing.assert_array_equal(params['scale'], np.ones(3))
  np.testing.assert_array_equal(params['bias'], np.zeros(3))
  params = {'scale': jnp.array([1.0, 2.0, 3.0]), 'bias': jnp.array([0.5, -1.0, 0.0])}
  y = module.apply({'params': params}, x)
  expect = _np_batch_norm(x_np) * np.array([1.0, 2.0, 3.0]) + np.array([0.5, -1.0, 0.0])
  np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-4)


# --- pools ----------------------------------------------------------------------------------------


def test_avg_pool_3x3_excludes_padding():
  x_np = _rng(4).normal(size=(2, 5, 6, 3))
  y = np.asarray(layers.avg_pool_3x3(jnp.asarray(x_np, jnp.float32)))
  assert y.shape == x_np.shape
  np.testing.assert_allclose(y, _np_avg_pool_3x3(x_np), rtol=1e-5, atol=1e-6)
  # Spelled out: a corner averages its 4 pixels, an edge pixel 6, an interior pixel 9.
  np.testing.assert_allclose(y[:, 0, 0], x_np[:, :2, :2].mean(axis=(1, 2)), rtol=1e-5)
  np.testing.assert_allclose(y[:, 0, 3], x_np[:, :2, 2:5].mean(axis=(1, 2)), rtol=1e-5)
  np.testing.assert_allclose(y[:, 2, 3], x_np[:, 1:4, 2:5].mean(axis=(1, 2)), rtol=1e-5)


def test_avg_pool_3x3_of_constant_is_constant():
  # With count_include_pad=True the border would shrink towards zero.
  y = layers.avg_pool_3x3(jnp.full((1, 4, 4, 2), 7.0, jnp.float32))
  np.testing.assert_allclose(y, 7.0, rtol=1e-6)


def test_avg_pool_2x2():
  x_np = _rng(5).normal(size=(2, 6, 4, 3))
  y = layers.avg_pool_2x2(jnp.asarray(x_np, jnp.float32))
  expect = x_np.reshape(2, 3, 2, 2, 2, 3).mean(axis=(2, 4))
  assert y.shape == (2, 3, 2, 3)
  np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-6)


# --- modules and inits ----------------------------------------------------------------------------


def test_torch_dense_init_bounds_and_forward():
  fan_in, features = 64, 300
  x = jnp.asarray(_rng(6).normal(size=(3, fan_in)), jnp.float32)
  module = layers.TorchDense(features)
  params = module.init(jax.random.key(1, impl='rbg'), x)['params']
  kernel, bias = np.asarray(params['kernel']), np.asarray(params['bias'])
  assert kernel.shape == (fan_in, features) and bias.shape == (features,)
  bound = 1.0 / np.sqrt(fan_in)
  for w in (kernel, bias):
    assert np.abs(w).max() <= bound
    # Uniform on the full interval, not a narrower one: the extremes come close to the bound.
    assert np.abs(w).max() > 0.95 * bound
    assert w.min() < 0 < w.max()
  np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3.0), rtol=0.05)
  y = module.apply({'params': params}, x)
  np.testing.assert_allclose(y, np.asarray(x) @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_conv_stride_1_is_same_conv_with_torch_init():
  x = jnp.asarray(_rng(7).normal(size=(2, 8, 8, 6)), jnp.float32)
  module = layers.Conv(features=32, kernel_size=3)
  params = module.init(jax.random.key(2, impl='rbg'), x)['params']
  kernel = np.asarray(params['kernel'])
  assert kernel.shape == (3, 3, 6, 32)
  bound = 1.0 / np.sqrt(3 * 3 * 6)
  assert bound * 0.95 < np.abs(kernel).max() <= bound
  y = module.apply({'params': params}, x)
  np.testing.assert_allclose(y, _stock_conv(x, params['kernel']), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('size', [8, 7])
def test_conv_stride_2_shape_and_values(size):
  x = jnp.asarray(_rng(size).normal(size=(2, size, size, 3)), jnp.float32)
  module = layers.Conv(features=5, kernel_size=3, stride=2)
  params = module.init(jax.random.key(3, impl='rbg'), x)['params']
  y = module.apply({'params': params}, x)
  out = (size + 1) // 2  # PyTorch: floor((size + 2 * 1 - 3) / 2) + 1.
  assert y.shape == (2, out, out, 5)
  # Stride 2 with symmetric padding 1 = stride-1 SAME conv subsampled at even positions.
  full = _stock_conv(x, params['kernel'])
  np.testing.assert_allclose(y, full[:, ::2, ::2, :], rtol=1e-5, atol=1e-5)


def test_block_kernel_init_is_per_block():
  blocks, kh, kw, cin, cout = 6, 3, 3, 16, 16
  w = np.asarray(
    layers.block_kernel_init(jax.random.key(4, impl='rbg'), (blocks, kh, kw, cin, cout))
  )
  assert w.shape == (blocks, kh, kw, cin, cout) and w.dtype == np.float32
  bound = 1.0 / np.sqrt(kh * kw * cin)  # The fan-in of one block, not of the stack.
  flat = w.reshape(blocks, -1)
  for b in range(blocks):
    assert np.abs(flat[b]).max() <= bound
    assert np.abs(flat[b]).max() > 0.95 * bound
    np.testing.assert_allclose(flat[b].std(), bound / np.sqrt(3.0), rtol=0.1)
  # Independent draws: no two blocks equal, and pairwise correlations are near zero.
  corr = np.corrcoef(flat)
  off_diag = corr[~np.eye(blocks, dtype=bool)]
  assert np.abs(off_diag).max() < 0.1  # ~ 3 sigma for 2304 samples is 0.06.
  for a in range(blocks):
    for b in range(a + 1, blocks):
      assert not np.allclose(flat[a], flat[b])
