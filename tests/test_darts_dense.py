"""The DARTS edge without conditionals (`darts_dense`) equals the switch (`darts_ops`): every op,
both strides, one block and an L-block mix, values and every gradient; then a whole NB-301
supernet (normal and reduce cells, edges from inputs and from nodes)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax import spaces
from close_jax.models import darts_dense, darts_ops
from close_jax.models.nb301_supernet import NB301Supernet
from close_jax.spaces import nb301
from configs import nb301 as nb301_config

C = 4


def _weights(key, stride, blocks):
  shapes = darts_ops.param_shapes(C, stride)
  keys = jax.random.split(key, len(shapes))
  return {
    name: 0.5 * jax.random.normal(k, (blocks, *shape))
    for k, (name, shape) in zip(keys, shapes.items(), strict=True)
  }


def _close(a, b, rtol=1e-4):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1e-3, np.abs(b).max()))


@pytest.mark.parametrize('stride', [1, 2])
def test_every_op_equals_the_switch_in_value_and_gradients(stride):
  key_x, key_w, key_m, key_g = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(key_x, (2, 8, 8, C))
  weights = _weights(key_w, stride, blocks=3)
  mix = jax.nn.softmax(jax.random.normal(key_m, (3,)))
  size = 8 // stride
  cotangent = jax.random.normal(key_g, (2, size, size, C))

  def loss(impl, mixed, op, x, weights, mix):
    if mixed:
      y = impl.edge_mix(stride, op, x, weights, mix)
    else:
      y = impl.edge(stride, op, x, jax.tree.map(lambda w: w[1], weights))
    return jnp.sum(y * cotangent), y

  fns = {
    (impl, mixed): jax.jit(
      jax.value_and_grad(functools.partial(loss, impl, mixed), argnums=(1, 2, 3), has_aux=True)
    )
    for impl in (darts_ops, darts_dense)
    for mixed in (False, True)
  }
  for mixed in (False, True):
    for op in range(darts_ops.NUM_OPS):
      (_, y_s), g_s = fns[darts_ops, mixed](op, x, weights, mix)
      (_, y_d), g_d = fns[darts_dense, mixed](op, x, weights, mix)
      _close(y_d, y_s)
      for a, b in zip(jax.tree.leaves(g_d), jax.tree.leaves(g_s), strict=True):
        _close(a, b)
  assert all(f._cache_size() == 1 for f in fns.values())  # the op is data: one program each


def test_folds_put_the_small_kernels_at_the_centre():
  weights = {
    'sep3_dw1': jnp.ones((3, 3, 1, C)),
    'sep5_dw1': 2 * jnp.ones((5, 5, 1, C)),
  }
  a = jax.nn.one_hot(darts_ops.SEP3, darts_ops.NUM_OPS)
  (kernel,) = darts_dense.fold_family(
    a, weights, darts_ops.SEP3, darts_ops.SEP5, ('sep3', 'sep5'), ('dw1',)
  )
  assert kernel.shape == (5, 5, 1, C)
  np.testing.assert_array_equal(kernel[1:4, 1:4], 1.0)
  assert float(jnp.sum(kernel)) == 9 * C  # the ring of the 5x5 holds zeros


def _supernet(edge_impl, blocks):
  return NB301Supernet(
    channels=C, num_layers=3, num_blocks=blocks, dropout=0.0, edge_impl=edge_impl
  )


def test_a_whole_supernet_equals_the_switch_for_several_genotypes():
  genotypes = np.asarray(nb301.sample(jax.random.key(3), 2))
  # Reduce-cell edges from both input nodes and from intermediate nodes occur in the sample.
  sources = genotypes[:, 1, :, 1]
  assert (sources < 2).any() and (sources >= 2).any()
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  labels = jnp.arange(4) % 10
  blocks = 2
  params = _supernet('switch', blocks).init(
    jax.random.key(2), x, genotypes[0], jnp.zeros(16, jnp.int32), train=False
  )['params']
  mix = jax.nn.softmax(jax.random.normal(jax.random.key(4), (16, blocks)))

  def loss(edge_impl, params, genotype, assignment):
    logits = _supernet(edge_impl, blocks).apply(
      {'params': params}, x, genotype, assignment, train=True
    )
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels]), logits

  fns = {
    impl: jax.jit(jax.value_and_grad(functools.partial(loss, impl), argnums=(0, 2), has_aux=True))
    for impl in ('switch', 'dense')
  }
  # A GATE mix (the curriculum's training assignment) on every position; the single-block case
  # is covered edge by edge above.
  for genotype in genotypes[:2]:
    (_, logits_s), grads_s = fns['switch'](params, genotype, mix)
    (_, logits_d), grads_d = fns['dense'](params, genotype, mix)
    _close(logits_d, logits_s)
    for a, b in zip(jax.tree.leaves(grads_d[0]), jax.tree.leaves(grads_s[0]), strict=True):
      _close(a, b, rtol=1e-3)
    _close(grads_d[1], grads_s[1], rtol=1e-3)  # the GATE's gradient through the mix
  assert fns['dense']._cache_size() == 1  # two genotypes, one program


def test_the_space_builds_the_dense_network_and_refuses_a_bad_value():
  space = spaces.get('nb301')
  config = nb301_config.get_config('smoke')
  config.model.edge_impl = 'dense'
  assert space.build_network(config.model, 10, 1, jnp.float32).edge_impl == 'dense'
  config.model.edge_impl = 'auto'
  assert space.build_network(config.model, 10, 1, jnp.float32).edge_impl == 'switch'  # CPU
  config.model.edge_impl = 'cond'
  with pytest.raises(ValueError, match=r"config.model.edge_impl='cond' is not supported"):
    space.check_model(config.model)
