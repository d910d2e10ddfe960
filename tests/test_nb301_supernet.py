"""The NB-301 (DARTS) supernet and its space binding: child parameter counts against a closed
form, one compilation for many genotypes, the DARTS GATE's isomorphism property."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax import evaluate, gate_stats, optim, spaces, surgery
from close_jax import supernet as supernet_lib
from close_jax.models import darts_ops
from close_jax.models import gate as gate_lib
from close_jax.models.nb301_supernet import NB301Supernet
from close_jax.spaces import nb301
from close_jax.spaces import nb301_space as binding
from close_jax.train_step import TrainState
from configs import nb301 as nb301_config

C, LAYERS, IMAGE = 4, 3, 8
SKIP = nb301.OPS.index('skip_connect')


def _reduces(i: int, layers: int) -> bool:
  """aw_nas `CNNSearchSpace`: cell_layout[layers // 3] = cell_layout[2 * layers // 3] = 1."""
  return i in (layers // 3, (2 * layers) // 3)


def _closed_form_child_count(genotype: np.ndarray, channels: int, layers: int, classes=10) -> int:
  """Parameters of the plain DARTS network of `genotype` (stem 3C, no auxiliary head), per op:
  sep_conv_k 2(k^2 C + C^2), dil_conv_k k^2 C + C^2, skip at stride 2 (FactorizedReduce) C^2,
  pools and identity 0; preprocessing 1x1 convs C_in C; affine-free BNs have none."""
  per_op = {
    3: lambda c: 2 * (9 * c + c * c),
    4: lambda c: 2 * (25 * c + c * c),
    5: lambda c: 9 * c + c * c,
    6: lambda c: 25 * c + c * c,
  }
  stem = 3 * channels
  total = 3 * 3 * 3 * stem + 2 * stem  # stem conv + affine BN
  c_pp, c_p, c = stem, stem, channels
  for i in range(layers):
    reduction = _reduces(i, layers)
    c = c * 2 if reduction else c
    total += c_pp * c + c_p * c  # preprocess0 (1x1 or FactorizedReduce) + preprocess1
    cell = genotype[1 if reduction else 0]
    for op, source in cell.tolist():
      if op in per_op:
        total += per_op[op](c)
      elif op == SKIP and reduction and source < 2:
        total += c * c
    c_pp, c_p = c_p, 4 * c
  return total + c_p * classes + classes


def _supernet_child_count(params: dict, genotype: np.ndarray) -> int:
  """Counted from the supernet's parameter tree: every non-cell weight, plus, per cell and chosen
  edge, one block's weights of the op it runs (the stride-2 set for a reduce cell's input edges)."""
  total = sum(
    int(np.prod(leaf.shape))
    for name, sub in params.items()
    if not name.startswith('cell_')
    for leaf in jax.tree.leaves(sub)
  )
  prefixes = {3: 'sep3_', 4: 'sep5_', 5: 'dil3_', 6: 'dil5_', SKIP: 'fr_'}
  layers = sum(name.startswith('cell_') for name in params)
  for i in range(layers):
    cell = params[f'cell_{i}']
    reduction = _reduces(i, layers)
    for op, source in genotype[1 if reduction else 0].tolist():
      if op not in prefixes:
        continue
      variant = 's2' if reduction and source < 2 else 's1'
      for name, leaf in cell.items():
        if name.startswith(f'{variant}_{prefixes[op]}'):
          total += int(np.prod(leaf.shape[1:]))  # one block
  return total


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_child_parameter_counts_match_the_plain_darts_network(seed):
  net = NB301Supernet(channels=C, num_layers=LAYERS, num_blocks=2)
  genotype = np.asarray(nb301.sample(jax.random.key(seed), 1))[0]
  x = jnp.zeros((2, IMAGE, IMAGE, 3))
  shapes = jax.eval_shape(
    lambda k: net.init(k, x, jnp.asarray(genotype), jnp.zeros(16, jnp.int32), train=False),
    jax.random.key(0),
  )['params']
  assert _supernet_child_count(shapes, genotype) == _closed_form_child_count(genotype, C, LAYERS)


def test_paper_size_child_count_against_closed_form():
  """C=16, 8 layers: the full NB-301 supernet (shapes only)."""
  net = NB301Supernet(num_blocks=1)
  genotype = nb301.parse(
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 0), "
    "('dil_conv_3x3', 2), ('max_pool_3x3', 1), ('dil_conv_5x5', 3), ('avg_pool_3x3', 0), "
    "('sep_conv_3x3', 4)], normal_concat=[2, 3, 4, 5], reduce=[('skip_connect', 0), "
    "('sep_conv_5x5', 1), ('skip_connect', 2), ('dil_conv_3x3', 1), ('max_pool_3x3', 3), "
    "('skip_connect', 1), ('dil_conv_5x5', 4), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
  )
  x = jnp.zeros((2, 32, 32, 3))
  shapes = jax.eval_shape(
    lambda k: net.init(k, x, jnp.asarray(genotype), jnp.zeros(16, jnp.int32), train=False),
    jax.random.key(0),
  )['params']
  count = _supernet_child_count(shapes, genotype)
  assert count == _closed_form_child_count(genotype, 16, 8)
  assert 200_000 < count < 2_000_000  # a DARTS search-size child (C=16), not a typo-sized one


@pytest.mark.parametrize(
  ('layers', 'channels'),
  [
    (8, [16, 16, 32, 32, 32, 64, 64, 64]),  # aw_nas's NB301 supernet: reductions at 2 and 5
    (20, [16] * 6 + [32] * 7 + [64] * 7),  # the DARTS evaluation network: 6 and 13
  ],
)
def test_cell_layout_and_channels_follow_num_layers(layers, channels):
  """Which cells reduce and each cell's width, read from the parameter shapes: a reduce cell
  holds the stride-2 op set, and a cell's preprocessing outputs its width."""
  net = NB301Supernet(channels=16, num_layers=layers, num_blocks=1)
  x = jnp.zeros((1, 32, 32, 3))
  genotype = jnp.asarray(nb301.sample(jax.random.key(0), 1)[0])
  shapes = jax.eval_shape(
    lambda k: net.init(k, x, genotype, jnp.zeros(16, jnp.int32), train=False), jax.random.key(0)
  )['params']
  reduces = [any(k.startswith('s2_') for k in shapes[f'cell_{i}']) for i in range(layers)]
  assert reduces == [_reduces(i, layers) for i in range(layers)]
  assert [i for i, r in enumerate(reduces) if r] == list(nb301.reduction_layers(layers))
  assert [shapes[f'pre_{i}_1']['kernel'].shape[-1] for i in range(layers)] == channels
  widths = [16 * 2 ** sum(_reduces(j, layers) for j in range(i + 1)) for i in range(layers)]
  assert widths == channels


def test_reduction_layers_rejects_no_layers():
  with pytest.raises(ValueError, match='num_layers=0'):
    nb301.reduction_layers(0)


def test_one_compile_serves_every_genotype():
  net = NB301Supernet(channels=C, num_layers=LAYERS, num_blocks=nb301.NUM_CANDIDATES)
  genotypes = nb301.sample(jax.random.key(5), 20)
  x = jax.random.normal(jax.random.key(1), (4, IMAGE, IMAGE, 3))
  params = jax.jit(lambda k: net.init(k, x, genotypes[0], jnp.zeros(16, jnp.int32), train=False))(
    jax.random.key(0)
  )['params']
  traces = []

  @jax.jit
  def step(params, genotype):
    traces.append(1)
    assignment = binding.vanilla_assignment(genotype)

    def loss(p):
      return jnp.mean(net.apply({'params': p}, x, genotype, assignment, train=False) ** 2)

    return jax.value_and_grad(loss)(params)

  losses = []
  for g in genotypes:
    value, grads = step(params, g)
    losses.append(float(value))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(grads))
  assert len(traces) == 1
  assert len({round(v, 6) for v in losses}) > 15  # the genotype really changes the network
  # Vanilla: a chosen edge's gradient lands in its candidate's block only.
  g = np.asarray(genotypes[0])
  _, grads = step(params, genotypes[0])
  used = set(np.asarray(binding.vanilla_assignment(genotypes[0]))[:8].tolist())
  sep = np.asarray(grads['cell_0']['s1_sep3_dw1'])
  touched = {b for b in range(nb301.NUM_CANDIDATES) if np.abs(sep[b]).max() > 0}
  sep3_blocks = {
    int(binding.vanilla_assignment(genotypes[0])[e]) for e in range(8) if g[0, e, 0] == 3
  }
  assert touched == sep3_blocks and touched <= used


@pytest.mark.parametrize('op', [0, 2, 3, 6])  # max pool, FactorizedReduce, sep 3x3, dil 5x5
def test_mixed_edge_equals_selected_edge_for_one_hot(op):
  shapes = darts_ops.param_shapes(3, 2)
  keys = jax.random.split(jax.random.key(0), len(shapes))
  w = {
    k: jax.random.normal(key, (3, *s)) * 0.3
    for key, (k, s) in zip(keys, shapes.items(), strict=True)
  }
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  one_hot = jnp.array([0.0, 1.0, 0.0])

  @jax.jit
  def check(x, w, m):
    mixed = darts_ops.edge_mix(2, jnp.int32(op), x, w, m)
    single = darts_ops.edge(2, jnp.int32(op), x, jax.tree.map(lambda a: a[1], w))
    # d/d mix[k] = <g, op(x; block k)> for g = 1: the GATE's signal.
    dmix = jax.grad(lambda m: jnp.sum(darts_ops.edge_mix(2, jnp.int32(op), x, w, m)))(m)
    per_block = jnp.stack(
      [
        jnp.sum(darts_ops.edge(2, jnp.int32(op), x, jax.tree.map(lambda a, k=k: a[k], w)))
        for k in range(3)
      ]
    )
    return mixed, single, dmix, per_block

  mixed, single, dmix, per_block = check(x, w, one_hot)
  np.testing.assert_allclose(mixed, single, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dmix, per_block, rtol=1e-4, atol=1e-4)


def _swap_node_pairs(genotype: np.ndarray, cell: int, node: int) -> np.ndarray:
  out = genotype.copy()
  out[cell, [2 * node, 2 * node + 1]] = genotype[cell, [2 * node + 1, 2 * node]]
  return out


def test_isomorphic_genotypes_get_matching_gate_distributions():
  config = nb301_config.get_config('smoke')
  config.close.gate_embed_norm = 'layer'  # the official embedder starts almost constant
  supernet = supernet_lib.build_supernet(config, num_classes=10)
  params = jax.jit(lambda k: supernet.init(k, (8, 8, 3)))(jax.random.key(0))
  logits = jax.jit(lambda p, g: supernet.gate_logits(p, g, None, train=False))
  for seed in range(3):
    g = np.asarray(nb301.sample(jax.random.key(10 + seed), 1))[0]
    swapped = _swap_node_pairs(_swap_node_pairs(g, 0, seed % 4), 1, (seed + 1) % 4)
    a, b = np.asarray(logits(params, g)), np.asarray(logits(params, swapped))
    perm = np.arange(16)
    for cell, node in ((0, seed % 4), (1, (seed + 1) % 4)):
      e = 8 * cell + 2 * node
      perm[[e, e + 1]] = perm[[e + 1, e]]
    np.testing.assert_allclose(a[perm], b, rtol=1e-5, atol=1e-6)
    other = g.copy()
    other[0, 7, 0] = (g[0, 7, 0] + 1) % 7  # a different genotype: different distributions
    assert np.abs(np.asarray(logits(params, other)) - a).max() > 1e-5


def test_space_binding():
  space = spaces.get('nb301')
  g = nb301.parse(
    "Genotype(normal=[('sep_conv_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 0), "
    "('dil_conv_3x3', 2), ('avg_pool_3x3', 1), ('dil_conv_5x5', 3), ('skip_connect', 2), "
    "('sep_conv_5x5', 4)], normal_concat=[2, 3, 4, 5], reduce=[('skip_connect', 0), "
    "('sep_conv_5x5', 1), ('skip_connect', 2), ('dil_conv_3x3', 1), ('max_pool_3x3', 3), "
    "('skip_connect', 1), ('dil_conv_5x5', 4), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
  )
  weighted = np.asarray(space.weighted_positions(jnp.asarray(g)))
  expected = [1, 0, 0, 1, 0, 1, 0, 1] + [1, 1, 0, 1, 0, 1, 1, 0]  # reduce skips from inputs: FR
  assert weighted.astype(int).tolist() == expected
  blocks = np.asarray(space.vanilla_assignment(jnp.asarray(g)))
  assert blocks.tolist()[:8] == [0, 1, 2, 4, 6, 8, 11, 13]  # (0,2),(1,2),(0,3),(2,3),...
  edge_ops, senders, receivers = space.graph.edges(jnp.asarray(g))
  assert np.asarray(edge_ops).min() >= 1  # no `none` in the DARTS space: every edge is live
  assert np.asarray(senders)[8] == 6 and np.asarray(receivers)[8] == 8  # reduce cell: +6
  codes = set(
    np.asarray(jax.jit(jax.vmap(space.arch_code))(nb301.sample(jax.random.key(0), 200))).tolist()
  )
  assert len(codes) == 200
  archs, truth, source = space.load_ground_truth('nb301_surrogate')
  assert archs.shape == (1218, 2, 8, 2) and source == 'nb301_surrogate'
  with pytest.raises(ValueError, match="ground_truth='nb999'"):
    space.check_ground_truth('nb999')


def test_wit_copy_switch_keeps_every_genotypes_evaluation_output():
  """As on NB201: WIT=copy splits a block into two identical halves with half the parent's
  probability each, so the evaluation output of every genotype is unchanged by the switch."""
  config = nb301_config.get_config('smoke')
  config.close.wit = 'copy'
  config.close.gate_embed_norm = 'layer'  # a gate whose draws differ across genotypes
  full = supernet_lib.build_supernet(config, num_classes=10)
  params = jax.jit(lambda k: full.init(k, (8, 8, 3)))(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  genotypes = nb301.sample(jax.random.key(2), 6)
  key = jax.random.key(123)

  def outputs(num_blocks, p):
    sn = supernet_lib.build_supernet(config, num_classes=10, num_blocks=num_blocks)
    run = jax.jit(
      lambda p, gs: jax.lax.map(
        lambda g: sn.apply(p, x, g, evaluate.arch_key(key, g, sn.space), train=False), gs
      )
    )
    return np.asarray(run(p, genotypes))

  tx = optim.make_optimizer(config.optim)
  two = {**params, 'net': surgery.slice_blocks(params['net'], 2)}
  state = TrainState(step=jnp.zeros((), jnp.int32), params=two, opt_state=tx.init(two))
  grown = surgery.advance(state, tx, params, 3, lambda b: b - 1, 'copy', 3).params
  assert grown['net']['cell_2']['s2_fr_a'].shape[0] == 3  # the stride-2 set grew too
  np.testing.assert_allclose(outputs(3, grown), outputs(2, two), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('stride, op', [(1, 3), (2, 2), (2, 6)])  # sep 3x3, FR, dil 5x5
def test_edge_gradients_equal_plain_autodiff(stride, op):
  """The recompute-VJP switch changes how the gradient is computed, not its value."""
  shapes = darts_ops.param_shapes(4, stride)
  keys = jax.random.split(jax.random.key(3), len(shapes))
  w = {
    k: jax.random.normal(key, (2, *s)) * 0.3
    for key, (k, s) in zip(keys, shapes.items(), strict=True)
  }
  x = jax.random.normal(jax.random.key(4), (2, 8, 8, 4))
  m = jnp.array([0.3, 0.7])

  def via_edges(x, w, m):
    one = darts_ops.edge(stride, jnp.int32(op), x, jax.tree.map(lambda a: a[1], w))
    mixed = darts_ops.edge_mix(stride, jnp.int32(op), x, w, m)
    return jnp.sum(jnp.sin(one)) + jnp.sum(jnp.cos(mixed))

  def plain(x, w, m):
    branch = darts_ops.branches(stride)[op]
    one = branch(x, jax.tree.map(lambda a: a[1], w))
    mixed = sum(m[k] * branch(x, jax.tree.map(lambda a, k=k: a[k], w)) for k in range(2))
    return jnp.sum(jnp.sin(one)) + jnp.sum(jnp.cos(mixed))

  got = jax.jit(jax.grad(via_edges, (0, 1, 2)))(x, w, m)
  want = jax.jit(jax.grad(plain, (0, 1, 2)))(x, w, m)
  for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-4)


def test_pair_kl_reads_the_op_of_each_chosen_edge():
  """On NB-301 a position's op is the first entry of its (op, input) pair."""
  config = nb301_config.get_config('smoke')
  config.close.gate_embed_norm = 'layer'
  supernet = supernet_lib.build_supernet(config, num_classes=10)
  params = jax.jit(lambda k: supernet.init(k, (8, 8, 3)))(jax.random.key(0))
  a = np.array(nb301.sample(jax.random.key(7), 1))[0]
  a[:, :, 0] = nb301.OPS.index('sep_conv_3x3')  # every chosen edge a 3x3 separable conv
  b = a.copy()
  b[0, 7, 1] = 0 if a[0, 7, 1] != 0 else 1  # another input for node 5's second edge
  if b[0, 7, 1] == b[0, 6, 1]:
    b[0, 7, 1] = 2
  sep3 = nb301.OPS.index('sep_conv_3x3')
  assert gate_stats.pair_kl(supernet, params, a, a, sep3) == pytest.approx(0.0, abs=1e-9)
  assert gate_stats.pair_kl(supernet, params, a, b, sep3) > 0.0
  with pytest.raises(ValueError, match='share no weighted position with op 0'):
    gate_stats.pair_kl(supernet, params, a, b, nb301.OPS.index('max_pool_3x3'))


def test_intermediate_node_embeddings_are_trained_for_darts_fixed_for_nb201():
  """aw_nas's DARTS embedder (`GCNFlowArchEmbedder`, `other_node_zero=False`) trains one
  zero-initialised embedding per cell group for the intermediate nodes; NB201's keeps them at a
  fixed zero (`requires_grad=False`).

  An intermediate node has no residual, so after l flow layers a node's state depends on initial
  embeddings exactly l hops upstream; the longest path from an intermediate node is 3 hops
  (2 -> 3 -> 4 -> 5), so with the official 4 layers (64 each) the embedding's gradient is exactly
  zero, as in aw_nas, and with 3 layers it is not.
  """
  genotype = nb301.parse(  # both cells have the chain 2 -> 3 -> 4 -> 5
    "Genotype(normal=[('sep_conv_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 0), "
    "('dil_conv_3x3', 2), ('avg_pool_3x3', 1), ('dil_conv_5x5', 3), ('skip_connect', 2), "
    "('sep_conv_5x5', 4)], normal_concat=[2, 3, 4, 5], reduce=[('skip_connect', 0), "
    "('sep_conv_5x5', 1), ('skip_connect', 2), ('dil_conv_3x3', 1), ('max_pool_3x3', 3), "
    "('skip_connect', 1), ('dil_conv_5x5', 4), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
  )
  official = spaces.get('nb301').graph
  assert official.gcn_dims == (64,) * 4

  def other_node_grad(graph):
    gate = gate_lib.Gate(num_blocks=3, graph=graph)
    params = gate.init(jax.random.key(0), genotype, train=False)['params']
    other = params['embedder']['other_node']
    assert other.shape == (2, 32) and not np.any(np.asarray(other))
    loss = lambda p: jnp.sum(gate.apply({'params': p}, genotype, train=False) ** 2)
    return np.abs(np.asarray(jax.grad(loss)(params)['embedder']['other_node'])).sum(axis=1)

  assert np.all(other_node_grad(official) == 0.0)
  shallow = dataclasses.replace(official, gcn_dims=(64,) * 3)
  assert np.all(other_node_grad(shallow) > 0)  # both cell groups' embeddings learn
  nb201_gate = gate_lib.Gate(num_blocks=3)
  nb201_params = nb201_gate.init(jax.random.key(0), jnp.ones(6, jnp.int32), train=False)
  assert set(nb201_params['params']['embedder']) == {
    'input_node',
    'node_in',
    'op_embedding',
    *(f'flow_{i}' for i in range(5)),
  }
