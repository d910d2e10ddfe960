"""The hand-written edge VJPs against stock autodiff of a plain (switch-free) implementation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from close_jax.models import edge_ops

C, L = 3, 4


def _ref_bn(z):
  mean = jnp.mean(z, (0, 1, 2))
  var = jnp.mean(jnp.square(z - mean), (0, 1, 2))
  return (z - mean) / jnp.sqrt(var + 1e-5)


def _ref_conv(x, k):
  return lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _ref_pool(x):
  total = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1,) * 4, 'SAME')
  count = lax.reduce_window(jnp.ones_like(x), 0.0, lax.add, (1, 3, 3, 1), (1,) * 4, 'SAME')
  return total / count


def _ref_op(op, x, k1, k3):
  return [
    lambda: jnp.zeros_like(x),
    lambda: x,
    lambda: _ref_bn(_ref_conv(jax.nn.relu(x), k1)),
    lambda: _ref_bn(_ref_conv(jax.nn.relu(x), k3)),
    lambda: _ref_pool(x),
  ][op]()


@pytest.fixture(scope='module')
def data():
  keys = jax.random.split(jax.random.key(0), 6)
  x = jax.random.normal(keys[0], (4, 5, 5, C))
  k1 = jax.random.normal(keys[1], (L, 1, 1, C, C)) * 0.5
  k3 = jax.random.normal(keys[2], (L, 3, 3, C, C)) * 0.3
  cot = jax.random.normal(keys[3], (4, 5, 5, C))
  mix = jnp.asarray([0.2, 0.3, 0.1, 0.4])
  return x, k1, k3, cot, mix


@pytest.mark.parametrize('op', range(5))
def test_edge_select_value_and_grads(data, op):
  x, k1, k3, cot, _ = data
  loss = lambda x, a, b: jnp.sum(edge_ops.edge_select(x, jnp.int32(op), a, b) * cot)
  ref = lambda x, a, b: jnp.sum(_ref_op(op, x, a, b) * cot)
  args = (x, k1[0], k3[0])
  np.testing.assert_allclose(jax.jit(loss)(*args), ref(*args), rtol=1e-5, atol=1e-5)
  got = jax.jit(jax.grad(loss, (0, 1, 2)))(*args)
  want = jax.grad(ref, (0, 1, 2))(*args)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)


# A soft mix runs every block's backward; a one-hot one (the straight-through GATE's forward
# value) only its block's: both against autodiff of the plain sum over blocks.
MIXES = {
  'soft': None,
  'first': [1.0, 0.0, 0.0, 0.0],
  'middle': [0.0, 0.0, 1.0, 0.0],
  'last': [0.0, 0.0, 0.0, 1.0],
  'scaled': [0.0, 0.7, 0.0, 0.0],
}


@pytest.mark.parametrize('mix_name', list(MIXES))
@pytest.mark.parametrize('op', range(5))
def test_edge_mix_value_and_grads(data, op, mix_name):
  x, k1, k3, cot, mix = data
  if MIXES[mix_name] is not None:
    mix = jnp.asarray(MIXES[mix_name])

  def loss(x, m, a, b):
    out = edge_ops.edge_mix(x, jnp.int32(op), m, edge_ops.stack_blocks(a), edge_ops.stack_blocks(b))
    return jnp.sum(out * cot)

  def ref(x, m, a, b):
    if op in (2, 3):
      out = sum(m[i] * _ref_op(op, x, a[i], b[i]) for i in range(L))
    else:
      out = _ref_op(op, x, a[0], b[0]) * jnp.sum(m)
    return jnp.sum(out * cot)

  args = (x, mix, k1, k3)
  np.testing.assert_allclose(jax.jit(loss)(*args), ref(*args), rtol=1e-5, atol=1e-5)
  got = jax.jit(jax.grad(loss, (0, 1, 2, 3)))(*args)
  want = jax.grad(ref, (0, 1, 2, 3))(*args)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)


def test_edge_select_traced_op_compiles_once(data):
  x, k1, k3, cot, _ = data
  traces = []

  @jax.jit
  def grad(op):
    traces.append(1)
    return jax.grad(lambda x: jnp.sum(edge_ops.edge_select(x, op, k1[0], k3[0]) * cot))(x)

  results = [np.asarray(grad(jnp.int32(op))) for op in range(5)]
  assert len(traces) == 1
  np.testing.assert_array_equal(results[0], 0.0)
  np.testing.assert_allclose(results[1], cot)


@pytest.mark.parametrize('op', [2, 3])
def test_a_one_hot_mix_runs_only_the_one_block_backward(data, op, monkeypatch):
  """With every block's backward poisoned, a one-hot mix still gets finite gradients (its
  backward never ran) and a soft mix gets NaNs (it did)."""

  def poisoned(g, x, mix, k, y, rstd):
    return jnp.full_like(x, jnp.nan), jnp.full_like(k, jnp.nan)

  monkeypatch.setattr(edge_ops, '_all_blocks_bwd', poisoned)
  x, k1, k3, cot, soft = data

  def grads(mix):
    def loss(x, a, b):
      out = edge_ops.edge_mix(
        x, jnp.int32(op), mix, edge_ops.stack_blocks(a), edge_ops.stack_blocks(b)
      )
      return jnp.sum(out * cot)

    return jax.grad(loss, (0, 1, 2))(x, k1, k3)

  assert all(np.isfinite(g).all() for g in grads(jnp.asarray(MIXES['middle'])))
  assert not np.isfinite(grads(soft)[0]).all()
