"""The power tool against closed forms (scipy's t interval) and simulations of the study."""

import numpy as np
import pytest
import scipy.stats

from close_jax.analysis import power


def test_paired_interval_is_scipys_t_interval():
  a = np.array([0.31, 0.28, 0.35, 0.30, 0.27])
  b = np.array([0.25, 0.27, 0.29, 0.22, 0.26])
  out = power.paired_interval(a, b)
  d = a - b
  low, high = scipy.stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy.stats.sem(d))
  assert out['mean'] == pytest.approx(d.mean())
  assert out['ci'] == pytest.approx([low, high])
  assert out['half_width'] == pytest.approx((high - low) / 2)
  with pytest.raises(ValueError, match=r'shapes \(5,\) and \(4,\)'):
    power.paired_interval(a, b[:4])
  with pytest.raises(ValueError, match='1 pairs'):
    power.paired_interval(a[:1], b[:1])


def test_seeds_needed_is_the_smallest_n_whose_interval_fits():
  for sd in (0.02, 0.037, 0.088):
    n = power.seeds_needed(sd, 0.05)

    def hw(k, sd=sd):
      low, high = scipy.stats.t.interval(0.95, k - 1, scale=sd / np.sqrt(k))
      return (high - low) / 2

    assert hw(n) <= 0.05 and (n == 2 or hw(n - 1) > 0.05)
  assert power.seeds_needed(0.088, 0.05) > power.seeds_needed(0.037, 0.05)
  with pytest.raises(ValueError, match='target=0: expected a half-width > 0'):
    power.seeds_needed(0.1, 0)
  with pytest.raises(ValueError, match='sd=-1'):
    power.seeds_needed(-1)


def _simulated_power(delta, sd, n, trials=20000, seed=0):
  """Fraction of simulated studies whose 95% t interval excludes zero."""
  d = np.random.default_rng(seed).normal(delta, sd, size=(trials, n))
  low, high = scipy.stats.t.interval(
    0.95, n - 1, loc=d.mean(1), scale=d.std(1, ddof=1) / np.sqrt(n)
  )
  return np.mean((low > 0) | (high < 0))


@pytest.mark.parametrize('delta, sd, n', [(0.05, 0.04, 5), (0.03, 0.05, 12), (0.0, 0.05, 6)])
def test_power_matches_a_simulation(delta, sd, n):
  assert power.power(delta, sd, n) == pytest.approx(_simulated_power(delta, sd, n), abs=0.012)


def test_detectable_difference_is_found_with_80_percent():
  sd, n = 0.04, 6
  d80 = power.detectable_difference(sd, n)
  assert _simulated_power(d80, sd, n) == pytest.approx(0.8, abs=0.012)
  # the textbook approximation (t_crit + t_power) sd / sqrt(n) is close
  approx = (scipy.stats.t.ppf(0.975, n - 1) + scipy.stats.t.ppf(0.8, n - 1)) * sd / np.sqrt(n)
  assert d80 == pytest.approx(approx, rel=0.05)
  assert power.detectable_difference(sd, 4 * n) < d80 / 1.8  # ~1/sqrt(n)


def test_cell_jackknife_predicts_the_spread_over_cell_samples():
  """A population of cells, two scorers; the difference of taus over many independent samples of
  60 cells spreads as the jackknife standard error of one sample says, and 1/sqrt(cells) scales
  it to 240 cells."""
  rng = np.random.default_rng(0)
  truth = rng.normal(size=6000)
  a = truth + rng.normal(scale=0.8, size=truth.size)
  b = truth + rng.normal(scale=1.2, size=truth.size)

  def diffs(num, reps):
    out = []
    for _ in range(reps):
      idx = rng.choice(truth.size, num, replace=False)
      out.append(
        scipy.stats.kendalltau(a[idx], truth[idx]).statistic
        - scipy.stats.kendalltau(b[idx], truth[idx]).statistic
      )
    return np.std(out)

  ses = []
  for _ in range(20):
    idx = rng.choice(truth.size, 60, replace=False)
    point, se = power.jackknife_tau_difference(a[idx], b[idx], truth[idx])
    ses.append(se)
  assert np.mean(ses) == pytest.approx(diffs(60, 400), rel=0.2)
  predicted = power.cell_half_width(np.mean(ses), 60, 240) / scipy.stats.norm.ppf(0.975)
  assert predicted == pytest.approx(diffs(240, 200), rel=0.25)
