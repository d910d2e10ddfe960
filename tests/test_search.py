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


def test_nsga_selection_fills_fronts_in_order_against_brute_force():
  rng = np.random.default_rng(2)
  fitness = np.round(rng.random(40), 2)
  params = rng.integers(1, 15, 40)
  rank = _brute_force_fronts(fitness, params)
  kept = selection.select(fitness, params, 17, 'nsga')
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


def test_topk_selection_and_bad_method():
  fitness = np.array([0.1, 0.5, 0.3, 0.5])
  np.testing.assert_array_equal(selection.select(fitness, None, 3, 'topk'), [1, 3, 2])
  with pytest.raises(ValueError, match="selection='pareto'"):
    selection.select(fitness, None, 2, 'pareto')
  with pytest.raises(ValueError, match='needs parameter counts'):
    selection.select(fitness, None, 2, 'nsga')


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


def _search_config(**overrides):
  import importlib.util

  spec = importlib.util.spec_from_file_location('nb201_search_cfg', 'configs/nb201_search.py')
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
    ({'space': 'nds_resnet'}, "'nsga' needs parameter counts, which space 'nds_resnet'"),
  ],
)
def test_bad_search_settings_are_one_line_errors(overrides, message):
  with pytest.raises(ValueError, match=message) as info:
    search_config.validate(_search_config(**overrides))
  assert '\n' not in str(info.value)
