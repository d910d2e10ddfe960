"""Batch norm's per-channel statistics (`layers.channel_mean`): the dot form XLA:CPU runs and the
reduction other backends run give the same numbers, and the backend picks the form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax.models import edge_ops, layers


@pytest.fixture
def channel_sum():
  """Sets this backend's form for the test; restores the default afterwards."""
  backend, before = jax.default_backend(), dict(layers.CHANNEL_SUM)

  def use(form):
    layers.CHANNEL_SUM[backend] = form

  yield use
  layers.CHANNEL_SUM.clear()
  layers.CHANNEL_SUM.update(before)


def _data(seed=0, shape=(6, 5, 7, 3)):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal(shape) * 3 + 1).astype(np.float32)


@pytest.mark.parametrize('form', ['dot', 'reduce'])
def test_both_forms_equal_a_float64_mean_and_batch_norm(channel_sum, form):
  channel_sum(form)
  x = _data()
  np.testing.assert_allclose(
    layers.channel_mean(jnp.asarray(x)), x.astype(np.float64).mean((0, 1, 2)), rtol=1e-5
  )
  y, rstd = layers.normalise(jnp.asarray(x))
  mean, var = x.astype(np.float64).mean((0, 1, 2)), x.astype(np.float64).var((0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + layers.BN_EPS), atol=2e-5)
  np.testing.assert_allclose(rstd, 1 / np.sqrt(var + layers.BN_EPS), rtol=1e-5)


def test_the_hand_written_batch_norm_gradient_is_the_same_in_both_forms(channel_sum):
  x, g = jnp.asarray(_data(1)), jnp.asarray(_data(2))
  grads = {}
  for form in ('dot', 'reduce'):
    channel_sum(form)
    y, rstd = layers.normalise(x)
    grads[form] = edge_ops._normalise_bwd(g, y, rstd)
  # and both equal autodiff of the reduction form
  autodiff = jax.vjp(lambda z: layers.normalise(z)[0], x)[1](g)[0]
  np.testing.assert_allclose(grads['dot'], grads['reduce'], atol=1e-5)
  np.testing.assert_allclose(grads['reduce'], autodiff, atol=1e-5)


def test_the_backend_setting_picks_the_form_at_trace_time(channel_sum):
  x = jnp.ones((4, 3, 3, 2))
  channel_sum('dot')
  dot = str(jax.make_jaxpr(lambda v: layers.channel_mean(v))(x))  # a new trace
  channel_sum('reduce')
  reduce = str(jax.make_jaxpr(lambda v: layers.channel_mean(v))(x))
  assert 'dot_general' in dot and 'reduce_sum' not in dot
  assert 'reduce_sum' in reduce and 'dot_general' not in reduce
  assert layers.CHANNEL_SUM.get('gpu', 'reduce') == 'reduce'  # GPUs/TPUs keep reductions
