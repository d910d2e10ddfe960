"""Where a found architecture stands in a space's ground truth (NB201: every cell is known).

The ground truth lists one architecture per canonical class (NB201: the 6466 isomorphism
classes with their mean accuracy), so a found architecture is matched by its canonical key.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from close_jax.benchmarks import ranking_set
from close_jax.spaces.base import Space


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  accuracy: dict[str, float]  # canonical key -> true accuracy
  sorted_accuracy: np.ndarray  # ascending
  source: str

  def lookup(self, key: str) -> dict | None:
    """{'true_accuracy', 'top_percent'}: the share (%) of the ground truth strictly better than
    the architecture (0 = the best there is); None if the architecture is not listed."""
    if key not in self.accuracy:
      return None
    acc = self.accuracy[key]
    better = len(self.sorted_accuracy) - np.searchsorted(self.sorted_accuracy, acc, side='right')
    return {
      'true_accuracy': acc,
      'top_percent': round(100.0 * better / len(self.sorted_accuracy), 4),
    }


def load(space: Space, source: str) -> GroundTruth | None:
  """The ground truth `source` by canonical key; None for `'none'` (a search needs none: its
  records and summary then carry no true accuracies)."""
  if source == ranking_set.NONE:
    return None
  archs, truth, description = space.load_ground_truth(source)
  key = space.canonical_key or space.to_str
  accuracy: dict[str, list[float]] = {}
  for arch, acc in zip(archs, truth, strict=True):
    accuracy.setdefault(key(arch), []).append(float(acc))
  mean = {k: float(np.mean(v)) for k, v in accuracy.items()}  # NB-301's repeated genotypes
  return GroundTruth(mean, np.sort(np.fromiter(mean.values(), np.float64)), description)


def oracle(space: Space, truth: GroundTruth):
  """A fitness function that reads the ground truth (tests the search loop without a supernet);
  an architecture missing from it scores -inf."""
  key = space.canonical_key or space.to_str

  def fitness(archs: np.ndarray) -> np.ndarray:
    return np.array([truth.accuracy.get(key(a), -np.inf) for a in archs], np.float64)

  return fitness
