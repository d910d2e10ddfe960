"""Tests for the NB201 supernet: live edges, search cells (select and mix), network, params tree.

Compiled programs are shared through module-scoped fixtures (ops and assignments are traced), so
the whole file compiles a handful of programs however many cases it runs.
"""

import collections
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax import lax

from close_jax import supernet as supernet_lib
from close_jax.models import layers
from close_jax.models import nb201_supernet as model
from close_jax.spaces import nb201

N, SKIP, C1, C3, POOL = range(5)  # Op indices, named for readable hand examples.
C = 4  # Channels of the test cell.
BLOCKS = 6
SHAPE = (2, 8, 8, C)
DIMS = ('NHWC', 'HWIO', 'NHWC')
# Edge list written out independently of both modules: (from, to) in NB201 string order.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl='rbg')


def _ops(ops) -> jax.Array:
  return jnp.asarray(ops, jnp.int32)


# --- Independent reference computations (numpy + stock lax conv) ---------------------------------


def _np_batch_norm(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=(0, 1, 2))
  var = ((x - mean) ** 2).mean(axis=(0, 1, 2))
  return (x - mean) / np.sqrt(var + 1e-5)


def _np_avg_pool_3x3(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  _, h, w, _ = x.shape
  out = np.empty(x.shape, np.float64)
  for i in range(h):
    for j in range(w):
      out[:, i, j, :] = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, :].mean(axis=(1, 2))
  return out


def _np_relu_conv_bn(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  relu = jnp.asarray(np.maximum(x, 0.0), jnp.float32)
  conv = lax.conv_general_dilated(relu, jnp.asarray(kernel), (1, 1), 'SAME', dimension_numbers=DIMS)
  return _np_batch_norm(np.asarray(conv))


def _ref_cell(x, ops, assignment, w1, w3) -> np.ndarray:
  """The NB201 cell written out directly: node j = sum over edges i->j of op(node i)."""
  x = np.asarray(x, np.float64)
  w1, w3 = np.asarray(w1), np.asarray(w3)
  nodes = [x]
  for j in range(1, 4):
    total = np.zeros_like(x)
    for e, (i, to) in enumerate(EDGES):
      if to != j:
        continue
      op, block, inp = int(ops[e]), int(assignment[e]), nodes[i]
      if op == SKIP:
        total = total + inp
      elif op == C1:
        total = total + _np_relu_conv_bn(inp, w1[block])
      elif op == C3:
        total = total + _np_relu_conv_bn(inp, w3[block])
      elif op == POOL:
        total = total + _np_avg_pool_3x3(inp)
    nodes.append(total)
  return nodes[3]


# --- live_ops ------------------------------------------------------------------------------------


def test_edges_match_space():
  assert model.EDGES == nb201.EDGES == EDGES


def test_live_ops_matches_numpy_on_all_archs():
  archs = nb201.all_archs()
  got = np.asarray(model.live_ops(jnp.asarray(archs)))
  expect = nb201.live_ops(archs)
  assert got.shape == (nb201.NUM_ARCHS, 6)
  np.testing.assert_array_equal(got, expect)
  # Not vacuous: many archs have dead edges.
  assert (expect != archs).any(axis=1).sum() > 1000


def test_live_ops_hand_examples():
  cases = [
    ([C3, N, C3, N, N, N], [N, N, N, N, N, N]),  # Nothing reaches node 3.
    ([N, C3, C1, SKIP, C3, POOL], [N, C3, N, SKIP, N, POOL]),  # Node 1 receives nothing.
    ([C1, C3, POOL, C3, N, N], [N, N, N, C3, N, N]),  # Node 2 feeds nothing.
    ([C3, POOL, N, SKIP, N, C1], [N, POOL, N, SKIP, N, C1]),  # Node 1 feeds nothing.
    ([C3, N, SKIP, N, N, POOL], [C3, N, SKIP, N, N, POOL]),  # A chain 0->1->2->3 only.
  ]
  for raw, live in cases:
    np.testing.assert_array_equal(model.live_ops(_ops(raw)), live, err_msg=str(raw))


# --- SearchCell ----------------------------------------------------------------------------------


@dataclasses.dataclass
class CellFixture:
  params: dict
  x: jax.Array
  apply: callable  # jitted (params, x, ops, assignment) -> cell output
  mix_grad: callable  # jitted (params, x, ops, mix, cot) -> d sum(out * cot) / d mix
  full_grad: callable  # jitted (params, x, ops, assignment, cot) -> grads w.r.t. (params, x)


@pytest.fixture(scope='module')
def cell():
  module = model.SearchCell(C, BLOCKS)
  x = jnp.asarray(np.random.default_rng(0).normal(size=SHAPE), jnp.float32)
  params = module.init(_key(0), x, _ops([C3] * 6), jnp.arange(6))['params']

  def apply(params, x, ops, assignment):
    return module.apply({'params': params}, x, ops, assignment)

  def loss(params, x, ops, assignment, cot):
    return jnp.sum(apply(params, x, ops, assignment) * cot)

  mix_grad = jax.jit(jax.grad(loss, argnums=3))
  full_grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return CellFixture(params, x, jax.jit(apply), mix_grad, full_grad)


def test_cell_params_shape(cell):
  assert cell.params['conv1x1'].shape == (BLOCKS, 1, 1, C, C)
  assert cell.params['conv3x3'].shape == (BLOCKS, 3, 3, C, C)


def test_cell_all_skip_is_4x(cell):
  # node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x.
  out = cell.apply(cell.params, cell.x, _ops([SKIP] * 6), jnp.arange(6))
  np.testing.assert_array_equal(out, 4.0 * np.asarray(cell.x))


def test_cell_all_none_is_zero(cell):
  out = cell.apply(cell.params, cell.x, _ops([N] * 6), jnp.arange(6))
  np.testing.assert_array_equal(out, 0.0)


def test_cell_single_pool_edge(cell):
  out = cell.apply(cell.params, cell.x, _ops([N, N, N, POOL, N, N]), jnp.arange(6))
  np.testing.assert_allclose(out, _np_avg_pool_3x3(cell.x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('op,name', [(C3, 'conv3x3'), (C1, 'conv1x1')])
def test_cell_single_conv_edge_uses_assigned_block(cell, op, name):
  ops = _ops([N, N, N, op, N, N])
  kernels = np.asarray(cell.params[name])
  # Edge 3 on block 4; the other edges point elsewhere (including block 3) and must not matter.
  out4 = cell.apply(cell.params, cell.x, ops, jnp.array([0, 1, 2, 4, 3, 5]))
  np.testing.assert_allclose(out4, _np_relu_conv_bn(cell.x, kernels[4]), rtol=1e-4, atol=1e-4)
  out2 = cell.apply(cell.params, cell.x, ops, jnp.array([4, 4, 4, 2, 4, 4]))
  np.testing.assert_allclose(out2, _np_relu_conv_bn(cell.x, kernels[2]), rtol=1e-4, atol=1e-4)
  assert np.abs(np.asarray(out4) - np.asarray(out2)).max() > 1e-2


@pytest.mark.parametrize('seed', range(4))
def test_cell_select_matches_reference(cell, seed):
  rng = np.random.default_rng(100 + seed)
  # All edges active and each op present, so every path through the cell is exercised.
  ops = rng.permutation([SKIP, C1, C3, POOL, C3, C1]) if seed < 2 else rng.integers(0, 5, 6)
  assignment = rng.integers(0, BLOCKS, 6)
  out = cell.apply(cell.params, cell.x, _ops(ops), jnp.asarray(assignment, jnp.int32))
  expect = _ref_cell(cell.x, ops, assignment, cell.params['conv1x1'], cell.params['conv3x3'])
  np.testing.assert_allclose(out, expect, rtol=1e-4, atol=2e-4, err_msg=f'{ops} {assignment}')


DEAD_EDGE_ARCHS = [
  [C3, N, C3, N, N, N],
  [N, C3, C1, SKIP, C3, POOL],  # Convs and a skip reading an all-zero node.
  [N, POOL, SKIP, C1, POOL, C3],
  [C1, C3, POOL, C3, N, N],
  [C3, POOL, N, SKIP, N, C1],
  [C3, SKIP, N, POOL, C1, N],  # Node 2 feeds nothing.
]


def test_dead_edges_skipping_is_exact(cell):
  """Running dead edges (raw ops) gives the same output and gradients as skipping them."""
  cot = jnp.asarray(np.random.default_rng(1).normal(size=SHAPE), jnp.float32)
  rng = np.random.default_rng(2)
  for raw in DEAD_EDGE_ARCHS:
    live = nb201.live_ops(np.asarray(raw, np.int32))
    assert (live != raw).any()
    assignment = jnp.asarray(rng.integers(0, BLOCKS, 6), jnp.int32)
    out_raw = cell.apply(cell.params, cell.x, _ops(raw), assignment)
    out_live = cell.apply(cell.params, cell.x, _ops(live), assignment)
    np.testing.assert_allclose(out_raw, out_live, rtol=1e-6, atol=1e-6, err_msg=str(raw))
    g_raw = cell.full_grad(cell.params, cell.x, _ops(raw), assignment, cot)
    g_live = cell.full_grad(cell.params, cell.x, _ops(live), assignment, cot)
    for a, b in zip(jax.tree.leaves(g_raw), jax.tree.leaves(g_live), strict=True):
      assert np.isfinite(np.asarray(a)).all()
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=str(raw))


@pytest.mark.parametrize('num', [BLOCKS, 4])
def test_cell_mix_one_hot_equals_select(cell, num):
  """A one-hot (6, L) mix equals selecting its argmax; L < num_blocks uses the first L blocks."""
  rng = np.random.default_rng(num)
  for ops in ([C3, SKIP, C1, POOL, C3, C1], [C1, C3, SKIP, C3, POOL, SKIP]):
    blocks = rng.integers(0, num, 6)
    mix = jax.nn.one_hot(blocks, num, dtype=jnp.float32)
    out_mix = cell.apply(cell.params, cell.x, _ops(ops), mix)
    out_sel = cell.apply(cell.params, cell.x, _ops(ops), jnp.asarray(blocks, jnp.int32))
    np.testing.assert_allclose(out_mix, out_sel, rtol=1e-5, atol=1e-5, err_msg=f'{ops} {blocks}')


def test_cell_mix_gate_gradient(cell):
  ops = [C1, SKIP, C3, C3, POOL, C1]
  conv_edges = [e for e, op in enumerate(ops) if op in (C1, C3)]
  blocks = np.array([2, 0, 5, 1, 3, 4])
  mix = jax.nn.one_hot(blocks, BLOCKS, dtype=jnp.float32)
  cot = jnp.asarray(np.random.default_rng(3).normal(size=SHAPE), jnp.float32)
  grad = np.asarray(cell.mix_grad(cell.params, cell.x, _ops(ops), mix, cot))
  assert grad.shape == (6, BLOCKS)
  # Every block of a conv edge, selected or not, gets a gradient.
  assert (np.abs(grad[conv_edges]) > 1e-6).all()
  # Edge 3 (0->3) enters the output linearly, so d<cot, out>/d mix[3, l] = <cot, conv_l(x)>.
  kernels = np.asarray(cell.params['conv3x3'])
  cot_np = np.asarray(cot, np.float64)
  expect = [np.sum(cot_np * _np_relu_conv_bn(cell.x, kernels[b])) for b in range(BLOCKS)]
  np.testing.assert_allclose(grad[3], expect, rtol=1e-3, atol=1e-3)


# --- The full network through close_jax.supernet ------------------------------------------------


def _config(**model_fields) -> ml_collections.ConfigDict:
  """The fields `build_supernet` reads for the vanilla method (close.gate is read regardless)."""
  fields = dict(channels=C, cells_per_stage=1, dropout=0.5, dtype='float32')
  fields.update(model_fields)
  return ml_collections.ConfigDict(
    {'space': 'nb201', 'method': 'vanilla', 'model': fields, 'close': {'gate': 'node'}}
  )


@dataclasses.dataclass
class NetFixture:
  supernet: supernet_lib.Supernet
  params: dict  # Supernet params: {'net': network params}
  x: jax.Array
  forward: callable  # jitted (params, x, ops, key, train) -> logits
  traces: collections.Counter


@pytest.fixture(scope='module')
def net():
  sn = supernet_lib.build_supernet(_config(), num_classes=10)
  params = jax.jit(sn.init, static_argnums=1)(_key(0), (8, 8, 3))  # Faster than eager.
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 8, 3)), jnp.float32)
  traces = collections.Counter()

  def forward(params, x, ops, key, train):
    traces[train] += 1
    return sn.apply(params, x, ops, key, train)

  return NetFixture(sn, params, x, jax.jit(forward, static_argnames='train'), traces)


def test_network_output_shape_and_arch_dependence(net):
  archs = [[C3] * 6, [C1] * 6, [SKIP] * 6, [POOL] * 6, [C3, SKIP, C1, POOL, C3, SKIP]]
  logits = [np.asarray(net.forward(net.params, net.x, _ops(a), _key(1), False)) for a in archs]
  for y in logits:
    assert y.shape == (3, 10) and y.dtype == np.float32
    assert np.isfinite(y).all()
  for i in range(len(archs)):
    for j in range(i + 1, len(archs)):
      assert np.abs(logits[i] - logits[j]).max() > 1e-4, (archs[i], archs[j])


def test_network_with_zero_cells_outputs_classifier_bias(net):
  # A cell with no live path outputs zeros; BN (bias init 0) and convs keep zeros all the way to
  # the head, so the logits are exactly the classifier bias for every image.
  bias = np.asarray(net.params['net']['classifier']['bias'])
  for ops in ([N] * 6, [C3, N, C3, N, N, N]):
    y = net.forward(net.params, net.x, _ops(ops), _key(1), False)
    np.testing.assert_allclose(y, np.broadcast_to(bias, (3, 10)), atol=1e-6)


def test_network_compiles_once_for_many_archs(net):
  archs = np.asarray(nb201.sample(_key(5), 10))
  assert len({tuple(a) for a in archs.tolist()}) > 1
  outs = [net.forward(net.params, net.x, _ops(a), _key(1), False) for a in archs]
  assert net.traces[False] == 1
  distinct = {np.asarray(o).tobytes() for o in outs}
  assert len(distinct) > 1


def test_network_dropout_only_in_training(net):
  ops = _ops([C3, SKIP, C1, POOL, C3, SKIP])
  eval1 = net.forward(net.params, net.x, ops, _key(1), False)
  eval2 = net.forward(net.params, net.x, ops, _key(2), False)
  np.testing.assert_array_equal(eval1, eval2)
  train1 = net.forward(net.params, net.x, ops, _key(1), True)
  train1b = net.forward(net.params, net.x, ops, _key(1), True)
  train2 = net.forward(net.params, net.x, ops, _key(2), True)
  np.testing.assert_array_equal(train1, train1b)
  assert np.abs(np.asarray(train1) - np.asarray(train2)).max() > 1e-4
  assert np.abs(np.asarray(train1) - np.asarray(eval1)).max() > 1e-4


def test_supernet_params_tree(net):
  assert set(net.params) == {'net'}  # Vanilla sharing has no gate.
  params = net.params['net']
  assert params['stem']['kernel'].shape == (3, 3, 3, C)
  assert params['classifier']['kernel'].shape == (4 * C, 10)
  assert params['classifier']['bias'].shape == (10,)
  for cell_index, channels in enumerate([C, 2 * C, 4 * C]):
    cell = params[f'cell_{cell_index}']
    assert set(cell) == {'conv1x1', 'conv3x3'}
    assert cell['conv1x1'].shape == (6, 1, 1, channels, channels)
    assert cell['conv3x3'].shape == (6, 3, 3, channels, channels)
  assert 'cell_3' not in params
  assert {'reduce_1', 'reduce_2'} <= set(params) and 'reduce_0' not in params
  assignment = net.supernet.assign(net.params, _ops([C3] * 6), None, False)
  assert assignment.dtype == jnp.int32
  np.testing.assert_array_equal(assignment, np.arange(6))


def test_build_supernet_reads_config():
  sn = supernet_lib.build_supernet(
    _config(channels=8, cells_per_stage=2, dropout=0.2, dtype='bfloat16'), num_classes=7
  )
  network = sn.network
  assert (network.channels, network.cells_per_stage, network.num_blocks) == (8, 2, 6)
  assert (network.num_classes, network.dropout, network.dtype) == (7, 0.2, jnp.bfloat16)
  # Only shapes: no compile needed.
  shapes = jax.eval_shape(lambda key: sn.init(key, (8, 8, 3)), _key(0))['net']
  cells = sorted(k for k in shapes if k.startswith('cell_'))
  assert cells == [f'cell_{i}' for i in range(6)]
  for i in range(6):
    channels = 8 * 2 ** (i // 2)
    assert shapes[f'cell_{i}']['conv3x3'].shape == (6, 3, 3, channels, channels)
    assert shapes[f'cell_{i}']['conv3x3'].dtype == jnp.float32  # Params stay float32.
  assert shapes['classifier']['kernel'].shape == (32, 7)


def test_layers_batch_norm_used_by_cell_has_no_affine(cell):
  # The cell's conv op is exactly BN(conv(relu(x))) with no learned scale/shift: its output has
  # per-channel mean 0 and variance ~1 on the batch.
  out = np.asarray(cell.apply(cell.params, cell.x, _ops([N, N, N, C3, N, N]), jnp.arange(6)))
  np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
  assert layers.BN_EPS == 1e-5
