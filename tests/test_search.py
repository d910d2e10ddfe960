"""The evolution's parts without a supernet: operators, selection, lookup, the oracle search."""

import dataclasses

import numpy as np
import pytest

from close_jax import spaces
from close_jax.search import baselines, evolution, lookup, operators, selection
from close_jax.search import config as search_config
from close_jax.spaces import nb201, nb301


@pytest.fixture(scope='module')
def nb201_truth():
  space = spaces.get('nb201')
  return space, lookup.load(space, 'cifar10_test_200ep')


def test_nb301_operators_keep_genotypes_valid_and_move_whole_nodes():
  space = spaces.get('nb301')
  rng = np.random.default_rng(0)
  parents = operators.sample(space, rng, 64)
  others = operators.sample(space, rng, 64)
  mutated = operators.mutate(space, parents, rng, rate=0.2)
  crossed = operators.crossover(space, parents, others, rng)
  for child in np.concatenate([mutated, crossed]):
    nb301.validate(child)  # raises on a node with equal inputs or an input out of range
  g_parent, g_other = operators.genes(space, parents), operators.genes(space, others)
  g_mut, g_cross = operators.genes(space, mutated), operators.genes(space, crossed)
  assert g_parent.shape == (64, 8, 4)  # 2 cells x 4 nodes, each node's two (op, input) pairs
  changed = np.any(g_mut != g_parent, axis=-1)
  assert changed.any(axis=1).all()  # every mutated child differs in at least one node
  from_parent = np.all(g_cross == g_parent, -1)
  from_other = np.all(g_cross == g_other, -1)
  assert (from_parent | from_other).all()  # every node of a crossed child is one parent's node


def test_cars_mutation_changes_one_input_or_one_op_of_one_darts_node():
  space = spaces.get('nb301')
  rng = np.random.default_rng(3)
  parents = operators.sample(space, rng, 600)
  children = operators.mutate_one(space, parents, rng)
  kinds = set()
  for parent, child in zip(parents, children, strict=True):
    nb301.validate(child)
    diff = np.argwhere(parent != child)
    assert len(diff) == 1  # exactly one element: one op or one input of one edge of one cell
    cell, edge, field = diff[0]
    kinds.add((int(cell), int(field)))
    if field == 0:
      assert child[cell, edge, 0] != parent[cell, edge, 0]
    else:
      node = 2 + edge // 2
      assert edge >= 2  # node 2's inputs are always {0, 1}: nothing to move
      new, other = child[cell, edge, 1], child[cell, edge ^ 1, 1]
      assert 0 <= new < node and new != other and new != parent[cell, edge, 1]
  assert kinds == {(0, 0), (0, 1), (1, 0), (1, 1)}  # ops and inputs, in both cells


def test_cars_mutation_changes_one_nb201_edge_to_another_op():
  space = spaces.get('nb201')
  rng = np.random.default_rng(4)
  parents = rng.integers(0, nb201.NUM_OPS, (500, nb201.NUM_EDGES)).astype(np.int32)
  children = operators.mutate_one(space, parents, rng)
  changed = parents != children
  assert (changed.sum(1) == 1).all()
  assert set(np.flatnonzero(changed.any(0))) == set(range(nb201.NUM_EDGES))
  # The new op is uniform over the four others: each (old, new) pair of differing ops occurs.
  pairs = {
    (int(p[c]), int(q[c])) for p, q, c in zip(parents, children, changed.argmax(1), strict=True)
  }
  assert pairs == {(a, b) for a in range(5) for b in range(5) if a != b}


def test_mutation_of_a_space_without_its_own_changes_one_gene():
  space = spaces.get('nds_resnet')
  assert space.mutate is None and space.crossover_groups is None
  rng = np.random.default_rng(8)
  parents = operators.sample(space, rng, 200)
  children = operators.mutate_one(space, parents, rng)
  changed = np.any(operators.genes(space, parents) != operators.genes(space, children), -1)
  assert (changed.sum(1) == 1).all()


def test_cars_crossover_takes_each_darts_node_from_one_parent_in_both_cells():
  space = spaces.get('nb301')
  rng = np.random.default_rng(5)
  first, second = operators.sample(space, rng, 300), operators.sample(space, rng, 300)
  children = operators.crossover_groups(space, first, second, rng)
  g1, g2, gc = (operators.genes(space, a).reshape(300, 2, 4, 4) for a in (first, second, children))
  for child in children:
    nb301.validate(child)
  # Nodes whose genes differ between the parents in both cells show where each cell took them.
  from_first = np.all(gc == g1, -1)
  from_second = np.all(gc == g2, -1)
  assert (from_first | from_second).all()
  clear = np.all(g1 != g2, -1).all(1)  # (300, 4): the parents differ at node j in both cells
  assert clear.sum() > 100
  np.testing.assert_array_equal(from_first[:, 0][clear], from_first[:, 1][clear])
  assert 0.35 < from_first[:, 0][clear].mean() < 0.65  # one fair coin per node


def test_nb201_cars_offspring_are_mutations_or_samples_half_and_half(monkeypatch):
  space = spaces.get('nb201')
  calls = {'mutated': 0, 'crossed': 0}
  mutate_one, crossover = operators.mutate_one, operators.crossover

  def count_mutations(space_, parents, rng):
    calls['mutated'] += len(parents)
    return mutate_one(space_, parents, rng)

  def count_crossovers(space_, first, second, rng):
    calls['crossed'] += len(first)
    return crossover(space_, first, second, rng)

  monkeypatch.setattr(operators, 'mutate_one', count_mutations)
  monkeypatch.setattr(operators, 'crossover', count_crossovers)
  monkeypatch.setattr(operators, 'crossover_groups', count_crossovers)
  rng = np.random.default_rng(6)
  population = operators.sample(space, rng, 50)
  operators.offspring(space, population, 400, rng, (0.25, 0.25), 0.2, set())
  assert calls['crossed'] == 0 and 150 < calls['mutated'] < 260  # 0.5 of 400 and any redraws
  operators.offspring(space, population, 400, rng, (0.25, 0.25), 0.2, set(), operators='genes')
  assert calls['crossed'] > 50  # the earlier operators do cross NB201 cells


def test_offspring_are_new_and_distinct():
  space = spaces.get('nb201')
  rng = np.random.default_rng(1)
  population = operators.sample(space, rng, 10)
  seen = {nb201.canonical_key(a) for a in population}
  before = set(seen)
  children = operators.offspring(space, population, 30, rng, (0.25, 0.25), 0.2, seen)
  keys = [nb201.canonical_key(c) for c in children]
  assert children.shape == (30, 6) and children.dtype == np.int32
  assert len(set(keys)) == 30 and not set(keys) & before  # no copy of a parent, no twins
  assert seen == before | set(keys)


def _brute_force_fronts(fitness, params):
  """Front rank of every point by peeling, written independently of pymoo."""
  rank = np.full(len(fitness), -1)
  level = 0
  while (rank < 0).any():
    left = np.flatnonzero(rank < 0)
    for i in left:
      dominated = any(
        fitness[j] >= fitness[i]
        and params[j] <= params[i]
        and (fitness[j] > fitness[i] or params[j] < params[i])
        for j in left
      )
      if not dominated:
        rank[i] = level
    level += 1
  return rank


def test_nsga_small_selection_fills_fronts_in_order_against_brute_force():
  rng = np.random.default_rng(2)
  fitness = np.round(rng.random(40), 2)
  params = rng.integers(1, 15, 40)
  rank = _brute_force_fronts(fitness, params)
  kept = selection.select(fitness, params, 17, 'nsga_small')
  assert len(set(kept.tolist())) == 17
  worst_kept = rank[kept].max()
  assert (rank[kept] <= worst_kept).all()
  assert set(np.flatnonzero(rank < worst_kept)) <= set(kept.tolist())  # better fronts whole
  partial = np.flatnonzero(rank == worst_kept)
  taken = np.intersect1d(partial, kept)
  dropped = np.setdiff1d(partial, kept)
  if len(dropped):
    assert fitness[taken].min() >= fitness[dropped].max()  # the partial front by accuracy
  assert (np.diff(fitness[kept]) <= 0).all()  # best first
  front = selection.first_front(fitness, params)
  assert set(front.tolist()) == set(np.flatnonzero(rank == 0))


@pytest.mark.parametrize('seed', range(4))
def test_cars_selection_keeps_whole_stages_of_both_sorts_against_brute_force(seed):
  """A candidate's stage is its better front in the two sorts (fewer / more parameters): every
  stage before the last kept one survives whole, nothing after it survives."""
  rng = np.random.default_rng(seed)
  fitness = np.round(rng.random(50), 2)
  params = rng.integers(1, 12, 50)
  stage = np.minimum(_brute_force_fronts(fitness, params), _brute_force_fronts(fitness, -params))
  kept = selection.select(fitness, params, 19, 'nsga', np.random.default_rng(0))
  assert len(set(kept.tolist())) == 19
  last = stage[kept].max()
  assert set(np.flatnonzero(stage < last)) <= set(kept.tolist())
  assert (stage[kept] <= last).all()
  assert (np.diff(fitness[kept]) <= 0).all()  # best first


def test_cars_selection_keeps_an_accurate_large_model():
  # B (0.85, 100 params) is dominated for size by A and M, so the one-sided fronts rank it
  # third; against more parameters nothing dominates it, so CARS keeps it at stage 0.
  names = ['A', 'S1', 'M', 'S2', 'C', 'B']
  fitness = np.array([0.90, 0.70, 0.88, 0.60, 0.65, 0.85])
  params = np.array([50, 1, 60, 2, 3, 100])
  old = {names[i] for i in selection.select(fitness, params, 4, 'nsga_small')}
  assert old == {'A', 'S1', 'M', 'C'}
  for seed in range(5):
    new = {
      names[i] for i in selection.select(fitness, params, 4, 'nsga', np.random.default_rng(seed))
    }
    assert {'A', 'S1', 'B'} <= new


def test_cars_selection_samples_a_partial_stage_at_random():
  # Stage 0 = {0 (most accurate), 1 (smallest), 3 (largest, nearly as accurate)}; stage 1 adds
  # 2 and the accuracy-size chain 4..9 (each dominated by 0 for size and by 3 for largeness):
  # seven new members, room for two, so each should be drawn 2/7 of the time.
  fitness = np.array([0.99, 0.1, 0.2, 0.98, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
  params = np.array([50, 1, 1000, 2000, 60, 70, 80, 90, 100, 110])
  counts = np.zeros(len(fitness))
  for seed in range(300):
    kept = selection.select(fitness, params, 5, 'nsga', np.random.default_rng(seed))
    assert {0, 1, 3} <= set(kept.tolist())
    counts[kept] += 1
  share = counts[[2, 4, 5, 6, 7, 8, 9]] / 300
  assert ((share > 0.17) & (share < 0.41)).all(), share  # by accuracy: 8 and 9 always
  with pytest.raises(ValueError, match='needs a numpy Generator'):
    selection.select(fitness, params, 5, 'nsga')


def test_topk_selection_and_bad_method():
  fitness = np.array([0.1, 0.5, 0.3, 0.5])
  np.testing.assert_array_equal(selection.select(fitness, None, 3, 'topk'), [1, 3, 2])
  with pytest.raises(ValueError, match="selection='pareto'"):
    selection.select(fitness, None, 2, 'pareto')
  with pytest.raises(ValueError, match='needs parameter counts'):
    selection.select(fitness, None, 2, 'nsga', np.random.default_rng(0))


def test_lookup_matches_isomorphs_and_counts_better_cells(nb201_truth):
  space, truth = nb201_truth
  archs, acc, _ = space.load_ground_truth('cifar10_test_200ep')
  i = 123
  found = truth.lookup(space.canonical_key(archs[i]))
  assert found['true_accuracy'] == pytest.approx(acc[i])
  assert found['top_percent'] == pytest.approx(100 * np.mean(acc > acc[i]), abs=1e-4)
  # An isomorph (the dead edge 0->1 of a cell whose node 1 feeds nothing changed) maps to
  # the same class as its representative.
  cell = nb201.parse('|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|')
  twin = cell.copy()
  twin[0] = nb201.OPS.index('nor_conv_1x1')
  assert truth.lookup(nb201.canonical_key(twin)) == truth.lookup(nb201.canonical_key(cell))


def test_oracle_evolution_beats_random_search_with_the_same_evaluations(nb201_truth):
  """The search loop itself, with the ground truth as fitness: over 3 seeds, the found cell is
  in a better top percentile than random search's with as many evaluations."""
  space, truth = nb201_truth
  fitness = lookup.oracle(space, truth)
  evolved, random = [], []
  for seed in range(3):
    evo = evolution.Evolution(space, evolution.Settings(population_size=20, seed=seed))
    generation = evo.initial(fitness)
    best = [generation.fitness[0]]
    for _ in range(8):
      generation = evo.step(generation, fitness)
      best.append(generation.fitness[0])
    assert np.all(np.diff(best) >= 0)  # a fixed fitness never loses its best (elitism)
    assert generation.evaluations == 20 + 8 * 20
    evolved.append(truth.lookup(space.canonical_key(generation.population[0]))['top_percent'])
    archs, _ = baselines.top_k(space, fitness, generation.evaluations, 1, seed)
    random.append(truth.lookup(space.canonical_key(archs[0]))['top_percent'])
  assert np.mean(evolved) < np.mean(random), (evolved, random)


def test_generation_is_a_function_of_the_previous_one(nb201_truth):
  space, truth = nb201_truth
  fitness = lookup.oracle(space, truth)
  evo = evolution.Evolution(space, evolution.Settings(population_size=8, seed=5))
  g1 = evo.step(evo.initial(fitness), fitness)
  # A resumed search holds only the population (its fitness is rescored): same next step.
  restored = dataclasses.replace(g1, fitness=np.zeros_like(g1.fitness))
  a, b = evo.step(g1, fitness), evo.step(restored, fitness)
  np.testing.assert_array_equal(a.population, b.population)


def _search_config(path='configs/nb201_search.py', **overrides):
  import importlib.util

  spec = importlib.util.spec_from_file_location('search_cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config('smoke')
  for dotted, value in overrides.items():
    node = config
    *groups, name = dotted.split('.')
    for g in groups:
      node = node[g]
    node[name] = value
  return config


@pytest.mark.parametrize(
  'overrides, message',
  [
    ({'search.warmup_epochs': 6}, 'config.search.warmup_epochs=6 must be in 1..num_epochs-1'),
    ({'search.mutation_prob': 0.8}, 'mutation_prob=0.8, crossover_prob=0.25'),
    ({'search.selection': 'best'}, "config.search.selection='best' is not supported"),
    ({'search.population_size': 1}, 'population_size=1: expected >= 2'),
    ({'space': 'nds_resnet'}, "selection='nsga' needs parameter counts .* space 'nds_resnet'"),
    ({'search.operators': 'one'}, "config.search.operators='one' is not supported"),
    ({'search.size_objective': 'flops'}, "config.search.size_objective='flops' is not supported"),
  ],
)
def test_bad_search_settings_are_one_line_errors(overrides, message):
  with pytest.raises(ValueError, match=message) as info:
    search_config.validate(_search_config(**overrides))
  assert '\n' not in str(info.value)


def test_size_objective_counts_the_standalone_or_the_supernet_sized_network():
  from close_jax.final import param_count

  space = spaces.get('nb301')
  archs = operators.sample(space, np.random.default_rng(7), 20)
  config = _search_config('configs/darts_search.py')
  assert config.search.size_objective == 'standalone'
  standalone = evolution.Evolution(space, evolution.Settings(), search_config.size_counter(config))
  expected = [param_count.darts_num_params(a, 36, 20, 10, False) for a in archs]
  np.testing.assert_array_equal(standalone.params(archs), expected)
  config.search.size_objective = 'supernet'
  supernet = evolution.Evolution(space, evolution.Settings(), search_config.size_counter(config))
  c, layers = config.model.channels, config.model.num_layers
  expected = [param_count.darts_num_params(a, c, layers, 10, False) for a in archs]
  np.testing.assert_array_equal(supernet.params(archs), expected)
