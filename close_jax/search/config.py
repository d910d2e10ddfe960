"""The `config.search` group: CARS's schedule and population settings, shared by search configs.

Why a function and not a config file: the search runs on any space's supernet config, so each
`configs/*_search.py` is that config plus this group (`search_config`); the defaults live here
once.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from close_jax import budget
from close_jax.search import operators, selection

SEARCH_EPOCHS = 400  # the CLOSE paper's search length
SIZE_OBJECTIVES = ('standalone', 'supernet')


def search_config(base_path: str, arg: str | None) -> ml_collections.ConfigDict:
  """The supernet config file `base_path` (`get_config(arg)`) made a search: its epoch-valued
  settings scaled to the 400 search epochs by `close_jax.budget` (the CLOSE switches keep their
  proportions of the run), the search group, and no ranking at the end (the fitness is the
  evaluation; opt in with `eval.at_end`). `:smoke`: 6 epochs, 2 of warm-up, an iteration every
  2 epochs, population 6, one fitness batch."""
  spec = importlib.util.spec_from_file_location(f'_close_jax_base_{os.getpid()}', base_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  if not arg:
    config.budget_epochs = SEARCH_EPOCHS
    budget.scale_to_budget(config)
    config.budget_epochs = 0
  add_search_group(config)
  config.eval.at_end = False
  if arg == 'smoke':
    config.num_epochs = 6
    config.eval.eval_epochs = ()
    config.search.warmup_epochs = 2
    config.search.epochs_per_iteration = 2
    config.search.population_size = 6
    config.search.fitness_batches = 1
  return config


def add_search_group(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds `config.search` with the CLOSE paper's CARS setting and sets `mode='search'`."""
  config.mode = 'search'
  search = config.search = ml_collections.ConfigDict()
  # 400 epochs in all: 100 of warm-up on the space's sampler, then an evolution iteration every
  # 5 epochs while the supernet trains on the population (60 iterations).
  search.warmup_epochs = 100
  search.epochs_per_iteration = 5
  search.population_size = 100
  # Each child: mutation, crossover or a fresh sample with these probabilities (and the rest),
  # as CARS's `_sample_one` in aw_nas.
  search.mutation_prob = 0.25
  search.crossover_prob = 0.25
  # 'cars': a mutation changes one element (DARTS: one input or one op of one node of one cell;
  # NB201: one edge's op), a crossover takes each DARTS node from one parent in both cells, and
  # NB201 (no crossover in aw_nas) mutates instead (0.5 / 0.5). 'genes': close_jax's earlier
  # operators (each gene redrawn at gene_mutation_rate; uniform crossover over genes).
  search.operators = 'cars'
  search.gene_mutation_rate = 0.2  # 'genes' only: a mutated child redraws each gene at this rate
  # 'nsga': CARS's selection (fronts of accuracy against fewer and against more parameters);
  # 'nsga_small': fronts against fewer parameters only; 'topk': accuracy only.
  search.selection = 'nsga'
  # The second objective: parameters of the 'standalone' network (DARTS 20 cells x 36 channels,
  # NB201 C=16 N=5) or of the network at the supernet's size ('supernet': model.channels and
  # depth, what aw_nas's CARS counts).
  search.size_objective = 'standalone'
  search.fitness_batches = 0  # ranking-split batches per fitness evaluation (0: all)
  # After the search: random search with as many fitness evaluations, with the final supernet.
  search.random_baseline = True
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ValueError for the first bad search setting."""
  s = config.search
  if not 1 <= s.warmup_epochs < config.num_epochs:
    raise ValueError(
      f'config.search.warmup_epochs={s.warmup_epochs} must be in 1..num_epochs-1 '
      f'(num_epochs={config.num_epochs}): the population is first scored after the warm-up'
    )
  for name in ('epochs_per_iteration', 'population_size'):
    if s[name] < 1:
      raise ValueError(f'config.search.{name}={s[name]!r}: expected an integer >= 1')
  if s.population_size < 2:
    raise ValueError(f'config.search.population_size={s.population_size}: expected >= 2')
  probs = (s.mutation_prob, s.crossover_prob)
  if min(probs) < 0 or sum(probs) > 1:
    raise ValueError(
      f'config.search.mutation_prob={s.mutation_prob}, crossover_prob={s.crossover_prob}: '
      'expected probabilities >= 0 summing to at most 1 (the rest is fresh sampling)'
    )
  if not 0 <= s.gene_mutation_rate <= 1:
    raise ValueError(f'config.search.gene_mutation_rate={s.gene_mutation_rate}: expected 0..1')
  if s.operators not in operators.OPERATORS:
    raise ValueError(
      f'config.search.operators={s.operators!r} is not supported: expected one of '
      f'{operators.OPERATORS}'
    )
  if s.size_objective not in SIZE_OBJECTIVES:
    raise ValueError(
      f'config.search.size_objective={s.size_objective!r} is not supported: expected one of '
      f'{SIZE_OBJECTIVES}'
    )
  if s.selection not in selection.SELECTIONS:
    raise ValueError(
      f'config.search.selection={s.selection!r} is not supported: expected one of '
      f'{selection.SELECTIONS}'
    )
  if s.fitness_batches < 0:
    raise ValueError(f'config.search.fitness_batches={s.fitness_batches}: expected >= 0')
  if s.selection != 'topk' and size_counter(config) is None:
    raise ValueError(
      f'config.search.selection={s.selection!r} needs parameter counts '
      f'(size_objective={s.size_objective!r}), which space {config.space!r} does not define: '
      "use config.search.selection='topk'"
    )


def size_counter(config: ml_collections.ConfigDict):
  """`arch -> parameters` of `config.search.size_objective` for `config.space` (None: the space
  defines no such count)."""
  from close_jax import spaces

  space = spaces.get(config.space)
  if config.search.size_objective == 'standalone':
    return space.standalone_params
  if space.search_params is None:
    return None
  model = config.model
  return lambda arch: space.search_params(arch, model)
