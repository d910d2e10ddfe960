"""Survivor selection: CARS's two-sided non-dominated fronts, the one-sided fronts, or top-k.

Why fronts: CARS keeps architectures that are best for their size, not only the most accurate
ones. Its selection (pNSGA-III as aw_nas's `CARS_NSGA` codes it) sorts twice, on (accuracy,
fewer parameters) and on (accuracy, more parameters), and keeps the union of both sorts' fronts
stage by stage: accurate large models survive as well as small ones, so the population does not
drift toward small networks (a supernet's early scores favour small, fast-converging ones).
The sorting is pymoo's.
"""

from __future__ import annotations

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

# 'nsga': CARS's selection (aw_nas `CARS_NSGA`); 'nsga_small': the fronts of (accuracy, fewer
# parameters) only, the partial front by accuracy (close_jax's earlier selection); 'topk'.
SELECTIONS = ('nsga', 'nsga_small', 'topk')


def fronts(fitness: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
  """Indices of each non-dominated front, best first, for maximised fitness and minimised
  `params` (pass -params to maximise them)."""
  objectives = np.stack([-np.asarray(fitness, np.float64), np.asarray(params, np.float64)], 1)
  return [np.asarray(f) for f in NonDominatedSorting().do(objectives)]


def first_front(fitness: np.ndarray, params: np.ndarray) -> np.ndarray:
  """The non-dominated architectures of (accuracy, fewer parameters), best fitness first."""
  front = fronts(fitness, params)[0]
  return front[np.argsort(-np.asarray(fitness)[front], kind='stable')]


def cars_nsga(
  fitness: np.ndarray, params: np.ndarray, num: int, rng: np.random.Generator
) -> np.ndarray:
  """CARS's survivors (unordered): stage s adds the union of front s of both sorts; the first
  stage whose new members do not all fit gives a uniformly random subset of them."""
  params = np.asarray(params, np.float64)
  sorts = (fronts(fitness, params), fronts(fitness, -params))
  selected = np.zeros(len(params), bool)
  stage = 0
  while selected.sum() < num:
    union = np.unique(np.concatenate([f[stage] for f in sorts if len(f) > stage]))
    new = union[~selected[union]]
    room = num - int(selected.sum())
    if len(new) > room:
      new = rng.choice(new, room, replace=False)
    selected[new] = True
    stage += 1
  return np.flatnonzero(selected)


def select(
  fitness: np.ndarray,
  params: np.ndarray | None,
  num: int,
  method: str,
  rng: np.random.Generator | None = None,
) -> np.ndarray:
  """Indices of the `num` survivors, best first by fitness (ties: the earlier index).

  'nsga' is CARS's selection and draws a partial front's members with `rng` (required; the
  evolution derives it from the seed and the iteration, so a resumed search replays it).
  'nsga_small' fills the survivors with the fronts of (accuracy, fewer parameters) and takes the
  partial front's most accurate members. 'topk' keeps the most accurate.
  """
  fitness = np.asarray(fitness, np.float64)
  if not 0 < num <= len(fitness):
    raise ValueError(f'cannot select {num} survivors from {len(fitness)} candidates')
  if method not in SELECTIONS:
    raise ValueError(f'config.search.selection={method!r} is not supported: expected {SELECTIONS}')
  by_fitness = np.argsort(-fitness, kind='stable')
  if method == 'topk':
    return by_fitness[:num]
  if params is None:
    raise ValueError(
      f'selection {method!r} needs parameter counts: this space has none (use "topk")'
    )
  if method == 'nsga':
    if rng is None:
      raise ValueError('selection "nsga" needs a numpy Generator (rng) for its partial front')
    kept_arr = cars_nsga(fitness, params, num, rng)
  else:
    kept: list[int] = []
    for front in fronts(fitness, params):
      room = num - len(kept)
      kept.extend(front[np.argsort(-fitness[front], kind='stable')][:room].tolist())
      if len(kept) == num:
        break
    kept_arr = np.asarray(kept)
  return kept_arr[np.argsort(-fitness[kept_arr], kind='stable')]
