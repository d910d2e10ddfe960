"""Survivor selection: the non-dominated fronts of (accuracy, parameters), or top-k by accuracy.

Why fronts: CARS keeps architectures that are best for their size, not only the most accurate
ones; a supernet's early scores favour small, fast-converging networks, and keeping the whole
front stops the population collapsing onto them. The sorting is pymoo's.
"""

from __future__ import annotations

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

SELECTIONS = ('nsga', 'topk')


def fronts(fitness: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
  """Indices of each non-dominated front, best first, for maximised fitness and minimised
  parameters."""
  objectives = np.stack([-np.asarray(fitness, np.float64), np.asarray(params, np.float64)], 1)
  return [np.asarray(f) for f in NonDominatedSorting().do(objectives)]


def first_front(fitness: np.ndarray, params: np.ndarray) -> np.ndarray:
  """The non-dominated architectures, sorted by fitness (best first)."""
  front = fronts(fitness, params)[0]
  return front[np.argsort(-np.asarray(fitness)[front], kind='stable')]


def select(fitness: np.ndarray, params: np.ndarray | None, num: int, method: str) -> np.ndarray:
  """Indices of the `num` survivors, best first by fitness.

  'nsga' fills the survivors front by front; the front that does not fit whole gives its most
  accurate members (CARS's pNSGA-III instead favours the slow-growing ones there; with a
  population of 100 that tie-break moves a handful of members). 'topk' keeps the most accurate.
  Ties in fitness keep the earlier index, so the selection is deterministic.
  """
  fitness = np.asarray(fitness, np.float64)
  if not 0 < num <= len(fitness):
    raise ValueError(f'cannot select {num} survivors from {len(fitness)} candidates')
  by_fitness = np.argsort(-fitness, kind='stable')
  if method == 'topk':
    return by_fitness[:num]
  if method != 'nsga':
    raise ValueError(f'config.search.selection={method!r} is not supported: expected {SELECTIONS}')
  if params is None:
    raise ValueError('selection "nsga" needs parameter counts: this space has none (use "topk")')
  kept: list[int] = []
  for front in fronts(fitness, params):
    room = num - len(kept)
    kept.extend(front[np.argsort(-fitness[front], kind='stable')][:room].tolist())
    if len(kept) == num:
      break
  kept_arr = np.asarray(kept)
  return kept_arr[np.argsort(-fitness[kept_arr], kind='stable')]
