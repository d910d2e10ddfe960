"""What a ranking scores and against what: a ground truth (a shipped table or a user file), or none.

A new search space or new data has no ground truth, and the supernet's ranking is still what a
researcher wants from it: the architectures ordered by supernet score. `eval.ground_truth='none'`
ranks without one. The ranked set is then every architecture of the space when the space can list
them (`Space.all_archs`, NB201's 6466 isomorphism classes, in the order of the shipped table, so
`eval.num_archs` picks the same seeded subset with or without ground truth), else `eval.num_archs`
distinct architectures (by `Space.canonical_key`) drawn with the space's own training sampler and
`eval.seed`. Nothing needs a correlation: the evaluator writes scores (and costs) only.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from close_jax.spaces.base import Space

NONE = 'none'  # config.eval.ground_truth: rank without ground truth
_DRAW_ROUNDS = 20  # sampling rounds before a too-small space is reported


@dataclasses.dataclass(frozen=True)
class RankingSet:
  archs: np.ndarray  # int32 (N, *arch_shape)
  truth: np.ndarray | None  # float64 (N,) true accuracies; None without ground truth
  source: str | None  # the ground truth's name or absolute path; None without one


def select_subset(num_total: int, num_archs: int, seed: int) -> np.ndarray:
  """A seeded random subset (sorted) of `num_archs` positions; all positions when 0 or too many."""
  if num_archs <= 0 or num_archs >= num_total:
    return np.arange(num_total)
  return np.sort(np.random.default_rng(seed).choice(num_total, num_archs, replace=False))


def sample_distinct(space: Space, num: int, seed: int) -> np.ndarray:
  """`num` architectures of `space`, distinct by its canonical key, in order of first draw.

  The key is threefry whatever `config.prng_impl` says, so the set depends on `seed` alone.
  """
  key_of = space.canonical_key or space.to_str
  key = jax.random.key(seed, impl='threefry2x32')
  per_round = max(num, 64)
  found: dict[str, np.ndarray] = {}
  for i in range(_DRAW_ROUNDS):
    draws = np.asarray(space.sample(jax.random.fold_in(key, i), per_round, space.samplers[0]))
    for arch in draws:
      found.setdefault(key_of(arch), arch)
      if len(found) == num:
        return np.stack(list(found.values())).astype(np.int32)
  raise ValueError(
    f'config.eval.num_archs={num}: {_DRAW_ROUNDS * per_round} draws found only {len(found)} '
    f'distinct architectures of {space.name}; expected at most that many'
  )


def load(space: Space, source: str, num_archs: int, seed: int) -> RankingSet:
  """The architectures a ranking scores, with their true accuracies where `source` gives them.

  Raises a one-line ValueError for a ground truth that is given but unusable, and for `'none'`
  on a space that cannot list its architectures when `num_archs` does not say how many to draw.
  """
  if source == NONE:
    if space.all_archs is not None:
      archs = np.asarray(space.all_archs())
      return RankingSet(archs[select_subset(len(archs), num_archs, seed)], None, None)
    if num_archs <= 0:
      raise ValueError(
        f"config.eval.num_archs={num_archs} with config.eval.ground_truth='none': the "
        f'{space.name} space cannot be listed in full; expected how many architectures to '
        'sample (> 0)'
      )
    return RankingSet(sample_distinct(space, num_archs, seed), None, None)
  archs, truth, description = space.load_ground_truth(source)
  keep = select_subset(len(archs), num_archs, seed)
  return RankingSet(np.asarray(archs)[keep], np.asarray(truth)[keep], description)


def check(space: Space, eval_cfg) -> None:
  """Before any training: the ranked set of `config.eval` is built in full (a user file parsed
  and validated, the no-ground-truth draws made), so a bad value never costs a training run."""
  if eval_cfg.ground_truth == NONE:
    load(space, NONE, eval_cfg.num_archs, eval_cfg.seed)
  else:
    space.check_ground_truth(eval_cfg.ground_truth)
