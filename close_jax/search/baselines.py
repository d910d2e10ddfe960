"""Baselines for the evolution: random search and top-k of a sampled set, on any space.

Both draw distinct architectures (by the space's canonical key) from the space's training
sampler, as the evolution's fresh samples are, so that "the same number of fitness evaluations"
means the same number of distinct candidates scored.
"""

from __future__ import annotations

import numpy as np

from close_jax.search import operators
from close_jax.search.evolution import FitnessFn
from close_jax.spaces.base import Space


def sample_distinct(space: Space, num: int, seed: int) -> np.ndarray:
  """`num` distinct architectures (fewer only if the sampler keeps repeating itself)."""
  rng = np.random.default_rng([seed, 0xBA5E])
  placeholder = np.zeros((1, *space.arch_shape), np.int32)
  return operators.offspring(space, placeholder, num, rng, (0.0, 0.0), 0.0, set())


def top_k(
  space: Space, fitness_fn: FitnessFn, num_evals: int, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """The `k` best of `num_evals` sampled architectures: (archs (k, ...), fitness (k,)), best
  first. Random search is `k` = 1."""
  if not 0 < k <= num_evals:
    raise ValueError(f'top-k search: k={k} must be in 1..num_evals={num_evals}')
  archs = sample_distinct(space, num_evals, seed)
  fitness = np.asarray(fitness_fn(archs), np.float64)
  best = np.argsort(-fitness, kind='stable')[:k]
  return archs[best], fitness[best]
