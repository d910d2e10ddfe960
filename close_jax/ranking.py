"""Ranking-quality metrics for supernet scores against ground-truth accuracies.

Supernet evaluation is judged by how well its scores order architectures, not by their absolute
values, so everything here is rank-based: Kendall's tau-b, Spearman's rho and precision at the top.
"""

from collections.abc import Sequence

import numpy as np

DEFAULT_TOP_RATIOS = (0.005, 0.01, 0.05, 0.1, 0.5)


def _as_pair(scores: object, truth: object) -> tuple[np.ndarray, np.ndarray]:
  """Validates inputs up front, since scipy quietly returns NaN for many of these problems."""
  s = np.asarray(scores, dtype=np.float64)
  t = np.asarray(truth, dtype=np.float64)
  if s.ndim != 1 or t.ndim != 1:
    raise ValueError(f'scores and truth must be 1-D: got shapes {s.shape} and {t.shape}')
  if len(s) != len(t):
    raise ValueError(f'scores and truth differ in length: {len(s)} vs {len(t)}')
  if len(s) < 2:
    raise ValueError(f'need at least 2 architectures to rank, got {len(s)}')
  for name, arr in (('scores', s), ('truth', t)):
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
      raise ValueError(f'{name} has non-finite value {arr[bad[0]]} at position {bad[0]}')
  return s, t


def _precision(s: np.ndarray, t: np.ndarray, k: int) -> float:
  # Stable sort on the negation: among equal values the lower index ranks higher, so results are
  # deterministic and independent of the sort algorithm.
  top_s = np.argsort(-s, kind='stable')[:k]
  top_t = np.argsort(-t, kind='stable')[:k]
  return float(np.intersect1d(top_s, top_t).size / k)


def _num_top(n: int, ratio: float) -> int:
  if not 0 < ratio <= 1:
    raise ValueError(f'top ratio {ratio} must be in (0, 1]')
  # int(), i.e. floor, as in the reference NAS ranking code, so numbers are comparable.
  return int(n * ratio)


def precision_at_top(scores: object, truth: object, ratio: float) -> float:
  """Fraction of the true top-k that the scores also put in their top-k, k = int(N * ratio).

  Ties are broken by position (lower index first) in both rankings.
  """
  s, t = _as_pair(scores, truth)
  k = _num_top(len(s), ratio)
  if k == 0:
    raise ValueError(f'top ratio {ratio} selects no architecture out of N={len(s)}')
  return _precision(s, t, k)


def ranking_metrics(
  scores: object, truth: object, ratios: Sequence[float] = DEFAULT_TOP_RATIOS
) -> dict:
  """Kendall tau-b, Spearman rho and precision at each top ratio, as plain Python numbers.

  Ratios too small to select any architecture for this N are left out instead of failing, so the
  same defaults work for small user ground-truth sets. Constant inputs give NaN correlations (as
  scipy does), since there is no order to compare.

  Returns:
    {'kendall_tau': float, 'spearman_rho': float, 'precision_at_top': {str(ratio): float},
     'num_archs': int}
  """
  import scipy.stats  # here, not at the top: it adds ~0.6 s to the start of every command

  s, t = _as_pair(scores, truth)
  precision = {}
  for ratio in ratios:
    k = _num_top(len(s), ratio)
    if k > 0:
      precision[str(ratio)] = _precision(s, t, k)
  return {
    'kendall_tau': float(scipy.stats.kendalltau(s, t).statistic),
    'spearman_rho': float(scipy.stats.spearmanr(s, t).statistic),
    'precision_at_top': precision,
    'num_archs': len(s),
  }
