"""CARS-style continuous evolution, independent of where the fitness comes from.

A generation is a population (best first) with its fitness and parameter counts. `step` makes
as many children as the population (mutation / crossover / fresh sample), scores parents and
children together (the supernet has trained since the parents were scored, so their old scores
are stale) and keeps the survivors. Every random choice of iteration i derives from
(seed, i): the children from the stream (seed, i, 0), the selection's draws from (seed, i, 1), so a
generation is a function of the previous one and the fitness and a resumed search needs only the
last population (and its iteration number).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from close_jax.search import operators, selection
from close_jax.spaces.base import Space

FitnessFn = Callable[[np.ndarray], np.ndarray]
ParamsFn = Callable[[np.ndarray], int]


@dataclasses.dataclass(frozen=True)
class Settings:
  population_size: int = 100
  mutation_prob: float = 0.25
  crossover_prob: float = 0.25  # fresh samples: the rest (0.5)
  gene_mutation_rate: float = 0.2  # 'genes' operators only
  operators: str = 'cars'
  selection: str = 'nsga'
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Generation:
  iteration: int
  population: np.ndarray  # int32 (P, *arch_shape), best fitness first
  fitness: np.ndarray  # (P,) the fitness they were selected on
  params: np.ndarray | None  # (P,) the size objective's counts (None: the space has none)
  evaluations: int  # candidates scored so far (initial population + every child)


class Evolution:
  """`count_params`: the size objective (default: `Space.standalone_params`)."""

  def __init__(self, space: Space, settings: Settings, count_params: ParamsFn | None = None):
    self.space = space
    self.settings = settings
    self.count_params = count_params or space.standalone_params

  def _rng(self, iteration: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([self.settings.seed, iteration, stream])

  def params(self, archs: np.ndarray) -> np.ndarray | None:
    if self.count_params is None:
      return None
    return np.array([self.count_params(a) for a in archs], np.int64)

  def _keys(self, archs: np.ndarray) -> set[str]:
    key = self.space.canonical_key or self.space.to_str
    return {key(a) for a in archs}

  def initial(self, fitness_fn: FitnessFn) -> Generation:
    """A population of distinct architectures from the space's sampler, scored."""
    s = self.settings
    archs = operators.offspring(
      self.space, np.zeros((1, *self.space.arch_shape), np.int32), s.population_size,
      self._rng(0), (0.0, 0.0), s.gene_mutation_rate, set(), operators=s.operators,
    )  # fmt: skip
    return self._survivors(0, archs, fitness_fn(archs), len(archs))

  def step(self, generation: Generation, fitness_fn: FitnessFn) -> Generation:
    s = self.settings
    i = generation.iteration + 1
    children = operators.offspring(
      self.space, generation.population, s.population_size, self._rng(i),
      (s.mutation_prob, s.crossover_prob), s.gene_mutation_rate,
      self._keys(generation.population), operators=s.operators,
    )  # fmt: skip
    union = np.concatenate([generation.population, children])
    return self._survivors(i, union, fitness_fn(union), generation.evaluations + len(children))

  def _survivors(self, i: int, archs, fitness, evaluations: int) -> Generation:
    params = self.params(archs)
    fitness = np.asarray(fitness, np.float64)
    s = self.settings
    kept = selection.select(fitness, params, s.population_size, s.selection, self._rng(i, 1))
    return Generation(
      iteration=i,
      population=np.asarray(archs[kept], np.int32),
      fitness=fitness[kept],
      params=None if params is None else params[kept],
      evaluations=evaluations,
    )
