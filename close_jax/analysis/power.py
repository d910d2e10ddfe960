"""How many supernet seeds a ranking-quality comparison needs, and what it can resolve.

Why: a study that compares two supernet methods by Kendall's tau sees two kinds of noise. The
supernet's own training randomness moves one run's tau (the earlier Fashion-MNIST study measured
a seed-to-seed standard deviation of 0.02 to 0.09), and the finite set of ground-truth cells moves
every arm's tau. Pairing removes most of the second (both arms rank the same cells, so the study
reports paired differences), which leaves, per seed, d_s = tau_a,s - tau_b,s. With n seeds the
95% interval of the mean difference is the t interval  mean(d) +- t_{0.975, n-1} sd(d) / sqrt(n);
`seeds_needed` inverts it for a target half-width, `detectable_difference` is the true difference
that the study finds (interval excluding zero) with a given probability, from the noncentral t
distribution (integrated here: scipy's `nct` fails at 1 degree of freedom). For the
cells, `cell_half_width` estimates the same half-width over the ground-truth cells (a jackknife
over cells of the paired tau difference) and scales it to other cell counts.
"""

from __future__ import annotations

import numpy as np
import scipy.integrate
import scipy.optimize
import scipy.stats

from close_jax import ranking


def _check_confidence(confidence: float) -> None:
  if not 0 < confidence < 1:
    raise ValueError(f'confidence={confidence}: expected a probability in (0, 1)')


def _check_sd(sd: float) -> None:
  if not np.isfinite(sd) or sd < 0:
    raise ValueError(f'sd={sd}: expected a finite standard deviation >= 0')


def half_width(sd: float, n: int, confidence: float = 0.95) -> float:
  """Half-width of the t interval of a mean of `n` paired differences with standard deviation
  `sd`."""
  _check_sd(sd)
  _check_confidence(confidence)
  if n < 2:
    raise ValueError(f'n={n}: a t interval needs at least 2 seeds')
  return float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))


def paired_interval(a, b, confidence: float = 0.95) -> dict:
  """The mean of a - b (paired by position, e.g. per-seed taus of two arms), its standard
  deviation over pairs (ddof 1) and the t interval."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 1 or a.shape != b.shape:
    raise ValueError(f'paired values of shapes {a.shape} and {b.shape}: expected equal 1-D shapes')
  if len(a) < 2:
    raise ValueError(f'{len(a)} pairs: a t interval needs at least 2 seeds')
  d = a - b
  sd = float(np.std(d, ddof=1))
  h = half_width(sd, len(d), confidence)
  mean = float(np.mean(d))
  return {'mean': mean, 'sd': sd, 'n': len(d), 'half_width': h, 'ci': [mean - h, mean + h]}


def seeds_needed(sd: float, target: float = 0.05, confidence: float = 0.95) -> int:
  """Smallest n >= 2 whose t interval half-width with standard deviation `sd` is <= `target`."""
  _check_sd(sd)
  if not target > 0:
    raise ValueError(f'target={target}: expected a half-width > 0')
  if sd == 0:
    return 2
  n = max(2, int(np.ceil((scipy.stats.norm.ppf(0.5 + confidence / 2) * sd / target) ** 2)))
  while half_width(sd, n, confidence) > target:  # t > z: the normal guess is a lower bound
    n += 1
  return n


def power(delta: float, sd: float, n: int, confidence: float = 0.95) -> float:
  """Probability that the two-sided t interval of n paired differences (true mean `delta`,
  standard deviation `sd`, normal) excludes zero."""
  _check_sd(sd)
  if n < 2:
    raise ValueError(f'n={n}: a t interval needs at least 2 seeds')
  if sd == 0:
    return 1.0 if delta else 0.0
  crit = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)
  nc = abs(delta) * np.sqrt(n) / sd
  df = n - 1

  def excluded(v):  # the noncentral t, written out: T = (Z + nc) / sqrt(V / df), V ~ chi2(df)
    s = crit * np.sqrt(v / df)
    return (scipy.stats.norm.sf(s - nc) + scipy.stats.norm.cdf(-s - nc)) * scipy.stats.chi2.pdf(
      v, df
    )

  return float(min(1.0, scipy.integrate.quad(excluded, 0, np.inf, limit=200)[0]))


def detectable_difference(
  sd: float, n: int, confidence: float = 0.95, probability: float = 0.8
) -> float:
  """The smallest true difference found (interval excluding zero) with `probability` by n seeds."""
  _check_confidence(probability)
  alpha_rate = power(0.0, sd, n, confidence)
  if probability <= alpha_rate:
    return 0.0
  if sd == 0:
    return 0.0
  high = sd
  while power(high, sd, n, confidence) < probability:
    high *= 2
  return float(
    scipy.optimize.brentq(lambda d: power(d, sd, n, confidence) - probability, 0.0, high)
  )


def seed_statement(a, b, target: float = 0.05, confidence: float = 0.95) -> dict:
  """The power statement of one paired comparison from per-seed values of two arms: the interval
  now, seeds for +-`target`, and the difference detectable with 80% probability at this n."""
  out = paired_interval(a, b, confidence)
  out['seeds_for_target'] = seeds_needed(out['sd'], target, confidence)
  out['detectable_80'] = detectable_difference(out['sd'], out['n'], confidence)
  out['target'] = target
  return out


def jackknife_tau_difference(scores_a, scores_b, truth) -> tuple[float, float]:
  """(tau_a - tau_b, its jackknife standard error over cells): the cells' share of the noise.
  `scores_a`/`scores_b`: (cells,) or (seeds, cells); an arm's tau is then its mean over seeds."""
  sa, sb = np.atleast_2d(np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64))
  t = np.asarray(truth, np.float64)
  if t.ndim != 1 or sa.shape[1:] != t.shape or sb.shape[1:] != t.shape or sa.ndim != 2:
    raise ValueError(
      f'scores of shapes {sa.shape}, {sb.shape} and truth {t.shape}: expected (seeds, cells) '
      'and (cells,)'
    )
  if len(t) < 3:
    raise ValueError(f'{len(t)} cells: a jackknife needs at least 3')

  def tau(scores, idx):
    return np.mean([ranking.ranking_metrics(s[idx], t[idx], ())['kendall_tau'] for s in scores])

  n = len(t)
  full = tau(sa, np.arange(n)) - tau(sb, np.arange(n))
  leave = np.array(
    [tau(sa, k) - tau(sb, k) for k in (np.delete(np.arange(n), i) for i in range(n))]
  )
  se = float(np.sqrt((n - 1) / n * np.sum((leave - leave.mean()) ** 2)))
  return float(full), se


def cell_half_width(se: float, num_cells: int, new_cells: int, confidence: float = 0.95) -> float:
  """Normal half-width over cells, a standard error `se` measured on `num_cells` scaled to
  `new_cells` (a U-statistic's standard error falls as 1/sqrt(cells))."""
  _check_sd(se)
  _check_confidence(confidence)
  if num_cells < 1 or new_cells < 1:
    raise ValueError(f'cell counts {num_cells}, {new_cells}: expected >= 1')
  z = scipy.stats.norm.ppf(0.5 + confidence / 2)
  return float(z * se * np.sqrt(num_cells / new_cells))
