"""Tests for CLOSENet's GATE: straight-through Gumbel, Gumbel-max, the flow embedder's permutation
property, the gate kinds, and block assignment through `Supernet`.

Compiled programs live in module-scoped fixtures with params, ops and keys as traced arguments, so
each program compiles once however many cases use it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from close_jax import supernet as supernet_lib
from close_jax import surgery
from close_jax.models import gate as gate_lib
from configs import nb201 as nb201_config

K = 3  # blocks of the smoke config (cl_schedule (0, 3, 6))
NUM_EDGES = 6
N, SKIP, C1, C3, POOL = range(5)
# Swapping nodes 1 and 2 maps edge e of arch b onto edge SWAP[e] of arch a (edge 2, (1->2), is
# its own reverse and is `none` in every pair, so it is left out of the comparison).
SWAP = {0: 1, 1: 0, 3: 3, 4: 5, 5: 4}


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl='rbg')


def _ops(ops) -> jax.Array:
  return jnp.asarray(ops, jnp.int32)


def _swapped(a):
  """The arch with nodes 1 and 2 exchanged; `a` has (1->2) = none."""
  o01, o02, o12, o03, o13, o23 = a
  assert o12 == N
  return [o02, o01, N, o03, o23, o13]


# --- straight_through_gumbel / sample_blocks ------------------------------------------------------


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_straight_through_forward_is_exact_one_hot_at_noisy_argmax(seed):
  logits = jax.random.normal(_key(100 + seed), (NUM_EDGES, K)) * 2.0
  key = _key(seed)
  m = np.asarray(gate_lib.straight_through_gumbel(logits, key))
  noise = jax.random.gumbel(key, logits.shape)
  expected = np.eye(K, dtype=np.float32)[np.argmax(np.asarray(logits + noise), -1)]
  assert np.array_equal(m, expected)
  assert set(np.unique(m)) <= {0.0, 1.0}
  assert np.array_equal(m.sum(-1), np.ones(NUM_EDGES))


@pytest.mark.parametrize('seed, temperature', [(0, 5.0), (1, 5.0), (2, 1.0), (3, 0.5)])
def test_straight_through_gradient_is_tempered_softmax_gradient(seed, temperature):
  logits = jax.random.normal(_key(200 + seed), (NUM_EDGES, K))
  c = jax.random.normal(_key(300 + seed), (NUM_EDGES, K))
  key = _key(seed)
  noise = jax.random.gumbel(key, logits.shape)

  def mixed(z):
    if temperature == gate_lib.GUMBEL_TEMPERATURE:  # the official default, not passed
      return gate_lib.straight_through_gumbel(z, key)
    return gate_lib.straight_through_gumbel(z, key, temperature)

  got = jax.grad(lambda z: jnp.sum(mixed(z) * c))(logits)
  # By hand: d/dz sum_k c_k softmax((z + g) / T)_k = p * (c - <p, c>) / T.
  p = np.asarray(jax.nn.softmax((logits + noise) / temperature, axis=-1), np.float64)
  c64 = np.asarray(c, np.float64)
  want = p * (c64 - (p * c64).sum(-1, keepdims=True)) / temperature
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert np.abs(np.asarray(got)).max() > 1e-3  # a real gradient, not an accidental zero


def test_sample_blocks_is_deterministic_per_key():
  logits = jnp.zeros((NUM_EDGES, K))
  first = gate_lib.sample_blocks(logits, _key(5))
  assert np.array_equal(first, gate_lib.sample_blocks(logits, _key(5)))
  draws = {tuple(np.asarray(gate_lib.sample_blocks(logits, _key(s)))) for s in range(6)}
  assert len(draws) > 1  # different keys give different draws


def test_sample_blocks_frequencies_match_softmax():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.5]])
  num = 20000
  keys = jax.random.split(_key(7), num)
  draws = np.asarray(jax.jit(jax.vmap(gate_lib.sample_blocks, in_axes=(None, 0)))(logits, keys))
  freq = np.stack([(draws == k).mean(0) for k in range(K)], -1)  # (rows, K)
  # Binomial std <= 0.0036 at n=20000: 0.015 is over 4 sigma.
  np.testing.assert_allclose(freq, jax.nn.softmax(logits, -1), atol=0.015)


# --- FlowEmbedder / Gate --------------------------------------------------------------------------


@dataclasses.dataclass
class GateFixture:
  params: dict  # node-kind Gate(K) params
  embed: callable  # jitted (embedder params, ops) -> (4, D)
  logits: callable  # jitted (gate params, ops) -> (6, K), train=False
  train_logits: callable  # jitted (gate params, ops, dropout key) -> (6, K), train=True


@pytest.fixture(scope='module')
def gate_fx():
  gate = gate_lib.Gate(K, kind='node')
  ops0 = jnp.zeros((NUM_EDGES,), jnp.int32)
  params = jax.jit(lambda k: gate.init(k, ops0, train=False)['params'])(_key(0))
  # At init the embeddings are tiny and the gate is near-uniform and almost input-independent,
  # which hides mistakes; a trained-looking gate: kernels doubled (larger embeddings and logits)
  # and the biases perturbed.
  rng = np.random.default_rng(0)

  def trained_looking(path, x):
    if path[-1].key == 'kernel':
      return 2.0 * x
    if path[-1].key == 'bias':
      return x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    return x

  params = jax.tree_util.tree_map_with_path(trained_looking, params)
  embed = jax.jit(lambda p, ops: gate_lib.FlowEmbedder().apply({'params': p}, ops))
  logits = jax.jit(lambda p, ops: gate.apply({'params': p}, ops, train=False))
  train_logits = jax.jit(
    lambda p, ops, k: gate.apply({'params': p}, ops, train=True, rngs={'dropout': k})
  )
  return GateFixture(params, embed, logits, train_logits)


def _swap_pairs(num: int, seed: int):
  rng = np.random.default_rng(seed)
  pairs = []
  while len(pairs) < num:
    o01, o02, o03, o13, o23 = rng.integers(0, 5, size=5)
    if o01 == o02 and o13 == o23:
      continue  # symmetric: a == b, nothing to test
    a = [o01, o02, N, o03, o13, o23]
    pairs.append((a, _swapped(a)))
  return pairs


@pytest.mark.parametrize('pair', _swap_pairs(8, seed=0), ids=lambda p: ''.join(map(str, p[0])))
def test_embedding_and_logits_follow_node_swap(gate_fx, pair):
  a, b = pair
  emb_a = np.asarray(gate_fx.embed(gate_fx.params['embedder'], _ops(a)))
  emb_b = np.asarray(gate_fx.embed(gate_fx.params['embedder'], _ops(b)))
  assert emb_a.shape == (4, 128)
  for node_b, node_a in ((0, 0), (1, 2), (2, 1), (3, 3)):
    np.testing.assert_allclose(emb_b[node_b], emb_a[node_a], rtol=1e-5, atol=1e-6)

  logits_a = np.asarray(gate_fx.logits(gate_fx.params, _ops(a)))
  logits_b = np.asarray(gate_fx.logits(gate_fx.params, _ops(b)))
  assert logits_a.shape == logits_b.shape == (NUM_EDGES, K)
  for edge_b, edge_a in SWAP.items():
    np.testing.assert_allclose(logits_b[edge_b], logits_a[edge_a], rtol=1e-5, atol=1e-6)
    assert np.argmax(logits_b[edge_b]) == np.argmax(logits_a[edge_a])


def test_node_swap_is_not_trivially_symmetric(gate_fx):
  """Guards the swap test: nodes 1 and 2 fed by different ops really get different embeddings."""
  a = [C3, SKIP, N, POOL, C1, C3]
  emb = np.asarray(gate_fx.embed(gate_fx.params['embedder'], _ops(a)))
  assert np.abs(emb[1] - emb[2]).max() > 1e-2
  logits = np.asarray(gate_fx.logits(gate_fx.params, _ops(a)))
  assert np.abs(logits[0] - logits[1]).max() > 1e-2


def _perturbed_embedder(params: dict, *, input_node=False, none_row=False) -> dict:
  p = jax.tree_util.tree_map(lambda x: x, params)  # shallow structural copy
  if input_node:
    p['input_node'] = p['input_node'] + 1.5
  if none_row:
    table = p['op_embedding']['embedding']
    p['op_embedding'] = {'embedding': table.at[N].add(3.0)}
  return p


@pytest.mark.parametrize(
  'arch', [[N, C3, SKIP, C1, POOL, C3], [N, SKIP, C1, N, C3, N], [N, N, N, C3, C3, C3]]
)
def test_node_without_live_input_has_zero_embedding(gate_fx, arch):
  """(0->1) = none: node 1 receives no message, whatever the input node's learned embedding."""
  params = gate_fx.params['embedder']
  emb = np.asarray(gate_fx.embed(params, _ops(arch)))
  moved = np.asarray(gate_fx.embed(_perturbed_embedder(params, input_node=True), _ops(arch)))
  assert np.array_equal(emb[1], np.zeros_like(emb[1]))
  assert np.array_equal(moved[1], emb[1])
  assert np.abs(moved[0] - emb[0]).max() > 1e-3  # the perturbation does reach the input node

  # With a live (0->1) the same perturbation does reach node 1 (the check above can fail).
  live = [C3, *arch[1:]]
  emb_live = np.asarray(gate_fx.embed(params, _ops(live)))
  moved_live = np.asarray(gate_fx.embed(_perturbed_embedder(params, input_node=True), _ops(live)))
  assert np.abs(moved_live[1] - emb_live[1]).max() > 1e-3


@pytest.mark.parametrize('arch', [[N, C3, N, C1, POOL, C3], [SKIP, N, N, N, C3, N]])
def test_none_edges_carry_no_message(gate_fx, arch):
  """The `none` op's embedding never enters: changing it changes no node embedding."""
  params = gate_fx.params['embedder']
  emb = np.asarray(gate_fx.embed(params, _ops(arch)))
  moved = np.asarray(gate_fx.embed(_perturbed_embedder(params, none_row=True), _ops(arch)))
  assert np.array_equal(moved, emb)


def test_gate_dropout_only_in_training(gate_fx):
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  eval_a = np.asarray(gate_fx.logits(gate_fx.params, ops))
  eval_b = np.asarray(gate_fx.logits(gate_fx.params, ops))
  assert np.array_equal(eval_a, eval_b)
  train_a = np.asarray(gate_fx.train_logits(gate_fx.params, ops, _key(1)))
  train_a2 = np.asarray(gate_fx.train_logits(gate_fx.params, ops, _key(1)))
  train_b = np.asarray(gate_fx.train_logits(gate_fx.params, ops, _key(2)))
  assert train_a.shape == (NUM_EDGES, K)
  assert np.array_equal(train_a, train_a2)
  assert np.abs(train_a - train_b).max() > 1e-6
  assert np.abs(train_a - eval_a).max() > 1e-6


# The NB201 cell's edges in gate order: (0->1), (0->2), (1->2), (0->3), (1->3), (2->3).
SENDERS, RECEIVERS = [0, 0, 1, 0, 1, 2], [1, 2, 2, 3, 3, 3]


def _numpy_mlp(params, x):
  """The GATE's MLP by hand: three ReLU layers x @ W + b, then the logits layer."""
  x = np.asarray(x, np.float64)
  for i in range(3):
    layer = params[f'hidden_{i}']
    x = np.maximum(x @ np.asarray(layer['kernel']) + np.asarray(layer['bias']), 0.0)
  return x @ np.asarray(params['logits']['kernel']) + np.asarray(params['logits']['bias'])


@pytest.mark.parametrize('ops', [[C3, C1, SKIP, POOL, C3, C1], [N, C3, SKIP, C1, POOL, C3]])
def test_node_gate_logits_are_the_mlp_of_each_edges_node_pair(gate_fx, ops):
  """GATE (kind='node'): edge i->j gets MLP([E_i; E_j]), computed here in numpy from the
  embedder's node embeddings; its per-edge block distribution is a softmax over K blocks."""
  emb = np.asarray(gate_fx.embed(gate_fx.params['embedder'], _ops(ops)))
  pairs = np.concatenate([emb[SENDERS], emb[RECEIVERS]], axis=-1)
  want = _numpy_mlp(gate_fx.params['mlp'], pairs)
  got = np.asarray(gate_fx.logits(gate_fx.params, _ops(ops)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # The edges really differ (the check above can tell the edges apart).
  assert np.abs(want - want[0]).max() > 1e-2


def test_arch_gate_logits_are_edge_major_from_the_output_node():
  """kind='arch' (use_final_only): one MLP on the output node's embedding gives edges * K logits,
  read edge-major: logits[e, k] = out[e * K + k] (checked against numpy)."""
  gate = gate_lib.Gate(K, kind='arch')
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  params = gate.init(_key(3), ops, train=False)['params']
  assert params['mlp']['logits']['kernel'].shape == (200, NUM_EDGES * K)
  out, inter = gate.apply(
    {'params': params}, ops, train=False, capture_intermediates=True, mutable=['intermediates']
  )
  emb = np.asarray(inter['intermediates']['embedder']['__call__'][0])
  flat = _numpy_mlp(params['mlp'], emb[-1])
  want = np.array([[flat[e * K + k] for k in range(K)] for e in range(NUM_EDGES)])
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-6)
  assert np.abs(want - flat.reshape(K, NUM_EDGES).T).max() > 1e-4  # block-major would fail


# --- Through Supernet -----------------------------------------------------------------------------


@dataclasses.dataclass
class NetFixture:
  config: object
  params2: dict  # K-block init with cells sliced to 2 blocks
  sn1: supernet_lib.Supernet
  sn2: supernet_lib.Supernet
  assign_train: callable  # jitted sn2.assign(..., train=True)
  assign_eval: callable  # jitted sn2.assign(..., train=False)
  loss_grad: callable  # jitted d CE / d params at L=2, training mode
  x: jax.Array
  y: jax.Array


@pytest.fixture(scope='module')
def net_fx():
  config = nb201_config.get_config('smoke')
  full = supernet_lib.build_supernet(config, num_classes=10)
  assert full.num_blocks == full.max_blocks == K
  fresh = jax.jit(lambda k: full.init(k, (8, 8, 3)))(_key(0))
  params2 = {**fresh, 'net': surgery.slice_blocks(fresh['net'], 2)}
  sn1 = supernet_lib.build_supernet(config, num_classes=10, num_blocks=1)
  sn2 = supernet_lib.build_supernet(config, num_classes=10, num_blocks=2)
  x = jax.random.normal(_key(1), (4, 8, 8, 3))
  y = jnp.array([0, 3, 7, 9])

  def loss(params, ops, key):
    logits = sn2.apply(params, x, ops, key, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return NetFixture(
    config,
    params2,
    sn1,
    sn2,
    jax.jit(lambda p, ops, k: sn2.assign(p, ops, k, train=True)),
    jax.jit(lambda p, ops, k: sn2.assign(p, ops, k, train=False)),
    jax.jit(jax.grad(loss)),
    x,
    y,
  )


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_training_assignment_is_exact_one_hot_mix(net_fx, seed):
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  mix = np.asarray(net_fx.assign_train(net_fx.params2, ops, _key(seed)))
  assert mix.shape == (NUM_EDGES, 2)
  assert np.issubdtype(mix.dtype, np.floating)
  assert set(np.unique(mix)) <= {0.0, 1.0}
  assert np.array_equal(mix.sum(-1), np.ones(NUM_EDGES))


def _fixed_logits(params, bias):
  """The gate's params with a zero logits kernel: its logits are `bias` on every edge, whatever
  the architecture and the dropout."""
  mlp = dict(params['gate']['mlp'])
  mlp['logits'] = {
    'kernel': jnp.zeros_like(mlp['logits']['kernel']),
    'bias': jnp.asarray(bias, jnp.float32),
  }
  return {**params, 'gate': {**params['gate'], 'mlp': mlp}}


def test_training_one_hot_follows_the_gate_softmax_not_the_temperature(net_fx):
  """Straight-through Gumbel draws block k with probability softmax(logits)_k: with logits (1, 0)
  on every edge, block 0 is chosen 73.1% of the time; the temperature (5) shapes the gradient
  only (a draw from softmax(logits / 5) would give 55%, an argmax 100%)."""
  params = _fixed_logits(net_fx.params2, [1.0, 0.0, 0.0])
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  # The fixture's compiled assignment, called per key (a vmap would be one more compile).
  mixes = np.stack([np.asarray(net_fx.assign_train(params, ops, _key(s))) for s in range(1000)])
  want = np.exp(1.0) / (np.exp(1.0) + 1.0)
  # Binomial std over 1000 draws x 6 edges is 0.0057: 0.03 is 5 sigma (0.07 per edge).
  assert abs(mixes[..., 0].mean() - want) < 0.03, mixes[..., 0].mean()
  np.testing.assert_allclose(mixes[..., 0].mean(0), want, atol=0.07)


def test_training_loss_reaches_gate(net_fx):
  ops = _ops([C3, C1, C3, C1, C3, C3])
  norms = [
    float(optax.tree.norm(net_fx.loss_grad(net_fx.params2, ops, _key(s))['gate'])) for s in range(2)
  ]
  assert all(np.isfinite(norms))
  assert all(n > 0 for n in norms), norms


def test_gate_gets_no_gradient_without_conv_edges(net_fx):
  """Contrast for the test above: with skip/pool/none edges only, the one-hot mix enters as its
  row sum (exactly 1 whatever the logits), so the gate's gradient vanishes."""
  conv = float(
    optax.tree.norm(
      net_fx.loss_grad(net_fx.params2, _ops([C3, C1, C3, C1, C3, C3]), _key(0))['gate']
    )
  )
  no_conv = float(
    optax.tree.norm(
      net_fx.loss_grad(net_fx.params2, _ops([SKIP, POOL, SKIP, N, POOL, SKIP]), _key(0))['gate']
    )
  )
  assert no_conv < 1e-4 * conv


def test_single_block_assigns_zeros_without_gate(net_fx):
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  params = {'net': net_fx.params2['net']}  # no 'gate': a single block must not need it
  for train in (True, False):
    a = net_fx.sn1.assign(params, ops, _key(0), train=train)
    assert a.shape == (NUM_EDGES,)
    assert jnp.issubdtype(a.dtype, jnp.integer)
    assert np.array_equal(a, np.zeros(NUM_EDGES))


def test_evaluation_assignment_is_seeded_ints(net_fx):
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  draws = []
  for seed in range(8):
    a = np.asarray(net_fx.assign_eval(net_fx.params2, ops, _key(seed)))
    assert a.shape == (NUM_EDGES,)
    assert np.issubdtype(a.dtype, np.integer)
    assert ((a >= 0) & (a < 2)).all()
    assert np.array_equal(a, net_fx.assign_eval(net_fx.params2, ops, _key(seed)))
    draws.append(a)
  assert len({tuple(d) for d in draws}) > 1


def test_evaluation_draws_blocks_from_the_softmax_of_the_gates_logits(net_fx):
  """The evaluation assignment is one Categorical(softmax(logits)) draw per edge: with the logits
  layer's bias shifted to favour block 0, the frequency of each block over 1500 keys is the
  softmax of the logits computed here in numpy (an argmax would give 0 or 1, a uniform 0.5)."""
  params = dict(net_fx.params2)
  mlp = dict(params['gate']['mlp'])
  mlp['logits'] = {**mlp['logits'], 'bias': mlp['logits']['bias'] + jnp.array([0.8, 0.0, 0.0])}
  params['gate'] = {**params['gate'], 'mlp': mlp}
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  emb = gate_lib.FlowEmbedder().apply({'params': params['gate']['embedder']}, ops)
  emb = np.asarray(emb)
  logits = _numpy_mlp(mlp, np.concatenate([emb[SENDERS], emb[RECEIVERS]], axis=-1))[:, :2]
  softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  assert softmax[:, 0].min() > 0.6 and softmax[:, 0].max() < 0.8  # neither uniform nor certain
  draws = np.stack([np.asarray(net_fx.assign_eval(params, ops, _key(s))) for s in range(1500)])
  # Binomial std <= 0.013 per edge at n=1500: 0.055 is over 4 sigma; an argmax is >= 0.2 off.
  np.testing.assert_allclose((draws == 0).mean(0), softmax[:, 0], atol=0.055)


def test_evaluation_gate_logits_ignore_the_key(net_fx):
  """No dropout in evaluation: the logits are the gate's deterministic ones, whatever the key."""
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  gate_logits = jax.jit(lambda p, ops, k: net_fx.sn2.gate_logits(p, ops, k, train=False))
  a = np.asarray(gate_logits(net_fx.params2, ops, _key(0)))
  b = np.asarray(gate_logits(net_fx.params2, ops, _key(1)))
  assert a.shape == (NUM_EDGES, 2)
  assert np.array_equal(a, b)
  full = gate_lib.Gate(K).apply({'params': net_fx.params2['gate']}, ops, train=False)
  np.testing.assert_allclose(a, np.asarray(full)[:, :2], rtol=1e-6, atol=1e-7)


def test_random_gate_has_no_params_and_assigns_ints(net_fx):
  config = nb201_config.get_config('smoke')
  config.close.gate = 'random'
  sn = supernet_lib.build_supernet(config, num_classes=10, num_blocks=2)
  shapes = jax.eval_shape(lambda k: sn.init(k, (8, 8, 3)), _key(0))
  assert set(shapes) == {'net'}
  assert shapes['net']['cell_0']['conv3x3'].shape[0] == 2
  params = {'net': net_fx.params2['net']}
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  draws = []
  for seed in range(6):
    for train in (False, True):
      a = np.asarray(sn.assign(params, ops, _key(seed), train=train))
      assert a.shape == (NUM_EDGES,)
      assert np.issubdtype(a.dtype, np.integer)
      assert ((a >= 0) & (a < 2)).all()
      draws.append(a)
    assert np.array_equal(draws[-2], sn.assign(params, ops, _key(seed), train=False))
  assert {0, 1} <= set(np.concatenate(draws).tolist())


# --- Initialisation as PyTorch -------------------------------------------------------------------


@pytest.mark.parametrize('kind', ['node', 'arch'])
def test_every_gate_bias_starts_as_torch_linear(kind):
  """Every linear layer's bias is U(+-1/sqrt(fan_in)) (nn.Linear), not zero (flax nn.Dense)."""
  gate = gate_lib.Gate(K, kind=kind)
  params = gate.init(_key(7), _ops([C3, C1, SKIP, POOL, C3, C1]), train=False)['params']
  biases = {
    '/'.join(str(getattr(k, 'key', k)) for k in path[:-1]): (leaf, params_of(params, path))
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    if path[-1].key == 'bias'
  }
  # node_in, five flow attentions A, three hidden layers and the logits layer.
  assert len(biases) == 1 + 5 + 3 + 1
  for name, (bias, kernel) in biases.items():
    bound = 1.0 / np.sqrt(kernel.shape[0])
    b = np.asarray(bias)
    assert np.all(np.abs(b) <= bound), name
    if b.size >= 96:  # enough draws to see the distribution: uniform has std bound / sqrt(3)
      assert 0.7 * bound / np.sqrt(3) < b.std() < 1.3 * bound / np.sqrt(3), name
      assert abs(b.mean()) < 0.3 * bound, name
    assert np.count_nonzero(b) == b.size, name


def params_of(params, bias_path):
  node = params
  for k in bias_path[:-1]:
    node = node[k.key]
  return node['kernel']


def test_arch_gate_reads_only_the_output_node():
  """use_final_only: changing the embedding of nodes 0-2 (not node 3) leaves the logits alone."""
  gate = gate_lib.Gate(K, kind='arch')
  ops = _ops([C3, C1, SKIP, POOL, C3, C1])
  params = gate.init(_key(3), ops, train=False)['params']
  out, emb = gate.apply(
    {'params': params}, ops, train=False, capture_intermediates=True, mutable=['intermediates']
  )
  emb = emb['intermediates']['embedder']['__call__'][0]
  mlp = gate_lib.MLP((200, 200, 200), NUM_EDGES * K, 0.1)
  direct = mlp.apply({'params': params['mlp']}, emb[-1], train=False).reshape(NUM_EDGES, K)
  np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-6)
  mean_pooled = mlp.apply({'params': params['mlp']}, emb.mean(0), train=False)
  assert np.abs(np.asarray(mean_pooled).reshape(NUM_EDGES, K) - np.asarray(out)).max() > 1e-4
