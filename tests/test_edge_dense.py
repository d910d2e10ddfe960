"""`edge_impl=dense` (no conditionals) computes what `switch` computes: values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax import config_check
from close_jax.models import edge_dense, nb201_supernet
from close_jax.spaces import nb201_space
from close_jax.supernet import build_supernet
from configs import nb201 as nb201_config

# Five architectures that put every op on every edge: arch k has op (k + e) % 5 on edge e.
EVERY_OP = np.array([[(k + e) % 5 for e in range(6)] for k in range(5)], np.int32)


def _close(a, b, rtol, scale_atol):
  np.testing.assert_allclose(a, b, rtol=rtol, atol=scale_atol * float(np.abs(b).max()) + 1e-7)


def _cell_grads(impl, params, x, mix_or_blocks, dtype=jnp.float32):
  cell = nb201_supernet.SearchCell(4, 3, impl)
  probe = jax.random.normal(jax.random.key(9), x.shape)

  @jax.jit
  def value_and_grads(ops, params, x, assignment):
    def loss(params, x, assignment):
      p = jax.tree.map(lambda w: w.astype(dtype), params)
      out = cell.apply(p, x.astype(dtype), ops, assignment)
      return jnp.sum(out.astype(jnp.float32) * probe)

    mixing = assignment.ndim == 2
    argnums = (0, 1, 2) if mixing else (0, 1)
    return jax.value_and_grad(loss, argnums=argnums)(params, x, assignment)

  results = [value_and_grads(jnp.asarray(ops), params, x, mix_or_blocks) for ops in EVERY_OP]
  assert value_and_grads._cache_size() == 1  # one executable for every architecture
  return results


@pytest.mark.parametrize('mixing', [False, True], ids=['select', 'mix'])
def test_dense_cell_equals_the_switch_cell_for_every_op_on_every_edge(mixing):
  x = jax.random.normal(jax.random.key(1), (4, 6, 6, 4))
  init = nb201_supernet.SearchCell(4, 3, 'switch')
  params = init.init(jax.random.key(0), x, jnp.asarray(EVERY_OP[0]), jnp.zeros(6, jnp.int32))
  if mixing:  # a straight-through-like mix over 3 blocks: a one-hot plus a small gradient part
    assignment = jax.nn.softmax(jax.random.normal(jax.random.key(2), (6, 3)))
  else:
    assignment = jnp.asarray([0, 2, 1, 1, 0, 2], jnp.int32)
  switch = _cell_grads('switch', params, x, assignment)
  dense = _cell_grads('dense', params, x, assignment)
  for (v_s, g_s), (v_d, g_d), ops in zip(switch, dense, EVERY_OP, strict=True):
    np.testing.assert_allclose(v_d, v_s, rtol=1e-4, err_msg=str(ops))
    for a, b in zip(jax.tree.leaves(g_d), jax.tree.leaves(g_s), strict=True):
      _close(a, b, rtol=1e-4, scale_atol=1e-5)


def test_dense_matches_switch_under_bf16():
  """bf16 compute (fp32 parameters): the two agree to 2% of the output's scale."""
  x = jax.random.normal(jax.random.key(1), (4, 6, 6, 4))
  init = nb201_supernet.SearchCell(4, 3, 'switch')
  params = init.init(jax.random.key(0), x, jnp.asarray(EVERY_OP[0]), jnp.zeros(6, jnp.int32))
  assignment = jnp.asarray([2, 0, 1, 1, 2, 0], jnp.int32)
  switch = _cell_grads('switch', params, x, assignment, jnp.bfloat16)
  dense = _cell_grads('dense', params, x, assignment, jnp.bfloat16)
  for (v_s, g_s), (v_d, g_d) in zip(switch, dense, strict=True):
    np.testing.assert_allclose(v_d, v_s, rtol=2e-2, atol=2e-2 * abs(float(v_s)) + 1e-2)
    for a, b in zip(jax.tree.leaves(g_d), jax.tree.leaves(g_s), strict=True):
      _close(a, b, rtol=0, scale_atol=2e-2)


def test_fold_kernel_puts_the_1x1_at_the_centre_tap():
  k1 = jnp.arange(4.0).reshape(1, 1, 2, 2) + 1
  k3 = jnp.ones((3, 3, 2, 2))
  one_hot = lambda op: jax.nn.one_hot(op, 5)
  np.testing.assert_array_equal(edge_dense.fold_kernel(one_hot(3), k1, k3), k3)
  folded = np.asarray(edge_dense.fold_kernel(one_hot(2), k1, k3))
  np.testing.assert_array_equal(folded[1, 1], k1[0, 0])
  assert np.count_nonzero(folded) == 4  # only the centre tap
  assert not np.any(edge_dense.fold_kernel(one_hot(1), k1, k3))


def test_dense_supernet_gradients_equal_switch_including_the_gate():
  """The whole smoke CLOSENet (2 gated blocks, straight-through mix; the cell tests above cover
  one block per edge as vanilla runs it): logits and every parameter's gradient, the GATE's
  included, agree, one executable per implementation for both architectures."""
  config = nb201_config.get_config('smoke')
  config.method = 'close'
  nets = {}
  for impl in ('switch', 'dense'):
    config.model.edge_impl = impl
    nets[impl] = build_supernet(config, 10, 2)
  params = nets['switch'].init(jax.random.key(0), (8, 8, 3))
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
  y = jnp.arange(6) % 10
  key = jax.random.key(3)

  def value_and_grads(supernet):
    def loss(p, ops):
      logits = supernet.apply(p, x, ops, key, train=True)
      return jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), y])

    return jax.jit(jax.value_and_grad(loss))

  fns = {impl: value_and_grads(net) for impl, net in nets.items()}
  for ops in EVERY_OP[[1, 3]]:  # live convolutions on several edges
    (v_s, g_s), (v_d, g_d) = (fns[i](params, jnp.asarray(ops)) for i in ('switch', 'dense'))
    np.testing.assert_allclose(v_d, v_s, rtol=1e-4)
    gate_reach = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_s['gate']))
    assert gate_reach > 0  # the GATE gets a gradient, and the two must agree on it
    for a, b in zip(jax.tree.leaves(g_d), jax.tree.leaves(g_s), strict=True):
      _close(a, b, rtol=1e-3, scale_atol=1e-4)
  assert all(f._cache_size() == 1 for f in fns.values())


def test_auto_picks_by_backend_and_bad_values_are_refused(monkeypatch):
  assert nb201_space.resolve_edge_impl('auto') == 'switch'  # this suite runs on XLA:CPU
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert nb201_space.resolve_edge_impl('auto') == 'dense'
  monkeypatch.setattr(jax, 'default_backend', lambda: 'tpu')
  assert nb201_space.resolve_edge_impl('auto') == 'dense'
  assert nb201_space.resolve_edge_impl('switch') == 'switch'
  config = nb201_config.get_config('smoke')
  config.model.edge_impl = 'cond'
  with pytest.raises(ValueError, match=r"config.model.edge_impl='cond' is not supported"):
    config_check.validate(config)
