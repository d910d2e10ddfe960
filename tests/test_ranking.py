"""Tests for the ranking-quality metrics."""

import numpy as np
import pytest
import scipy.stats

from close_jax import ranking


def test_matches_scipy_on_random_data():
  rng = np.random.default_rng(0)
  truth = rng.normal(size=500)
  scores = truth + rng.normal(scale=1.0, size=500)
  scores[:50] = np.round(scores[:50])  # Some ties, which tau-b handles specially.
  m = ranking.ranking_metrics(scores, truth)
  assert m['kendall_tau'] == pytest.approx(scipy.stats.kendalltau(scores, truth).statistic)
  assert m['spearman_rho'] == pytest.approx(scipy.stats.spearmanr(scores, truth).statistic)
  assert m['num_archs'] == 500
  assert set(m['precision_at_top']) == {'0.005', '0.01', '0.05', '0.1', '0.5'}
  for name, value in m['precision_at_top'].items():
    k = int(500 * float(name))
    expected = (
      len(set(np.argsort(-scores, kind='stable')[:k]) & set(np.argsort(-truth, kind='stable')[:k]))
      / k
    )
    assert value == pytest.approx(expected)


def test_perfect_and_reversed_orders():
  truth = np.linspace(80, 94, 20)
  perfect = ranking.ranking_metrics(truth * 2 - 5, truth)
  assert perfect['kendall_tau'] == pytest.approx(1.0)
  assert perfect['spearman_rho'] == pytest.approx(1.0)
  assert all(v == 1.0 for v in perfect['precision_at_top'].values())
  reverse = ranking.ranking_metrics(-truth, truth)
  assert reverse['kendall_tau'] == pytest.approx(-1.0)
  assert reverse['spearman_rho'] == pytest.approx(-1.0)
  assert reverse['precision_at_top']['0.5'] == 0.0


def test_returns_plain_python_numbers():
  m = ranking.ranking_metrics([1, 2, 3, 4], [1, 3, 2, 4])
  assert type(m['kendall_tau']) is float and type(m['spearman_rho']) is float
  assert type(m['num_archs']) is int
  assert all(type(v) is float for v in m['precision_at_top'].values())


def test_precision_at_top_hand_example():
  truth = np.arange(10.0)  # True top-2: {9, 8}.
  scores = truth.copy()
  scores[0], scores[8] = 100.0, -1.0  # Predicted top-2: {0, 9}; overlap {9}.
  assert ranking.precision_at_top(scores, truth, 0.2) == 0.5
  assert ranking.precision_at_top(scores, truth, 0.3) == pytest.approx(2 / 3)  # {0,9,7} vs {9,8,7}
  assert ranking.precision_at_top(scores, truth, 1.0) == 1.0


def test_precision_ties_break_by_index():
  truth = np.arange(10.0)[::-1]  # True top-2: {0, 1}.
  assert ranking.precision_at_top(np.zeros(10), truth, 0.2) == 1.0  # Constant: picks {0, 1}.
  assert ranking.precision_at_top(np.zeros(10), -truth, 0.2) == 0.0  # vs true top {9, 8}.


def test_small_ratios_are_skipped_or_rejected():
  m = ranking.ranking_metrics(np.arange(10.0), np.arange(10.0))
  assert set(m['precision_at_top']) == {'0.1', '0.5'}
  with pytest.raises(ValueError, match=r'0\.05.*N=10'):
    ranking.precision_at_top(np.arange(10.0), np.arange(10.0), 0.05)
  for ratio in (0.0, -0.1, 1.5):
    with pytest.raises(ValueError, match='must be in'):
      ranking.precision_at_top(np.arange(10.0), np.arange(10.0), ratio)


@pytest.mark.parametrize(
  'scores, truth, fragment',
  [
    ([1, 2, 3], [1, 2], 'differ in length: 3 vs 2'),
    ([1], [1], 'at least 2'),
    ([1, np.nan, 3], [1, 2, 3], 'scores has non-finite value nan at position 1'),
    ([1, 2, 3], [1, 2, np.inf], 'truth has non-finite value inf at position 2'),
    ([[1, 2], [3, 4]], [[1, 2], [3, 4]], '1-D'),
  ],
)
def test_invalid_inputs(scores, truth, fragment):
  with pytest.raises(ValueError) as info:
    ranking.ranking_metrics(scores, truth)
  assert fragment in str(info.value)
  with pytest.raises(ValueError):
    ranking.precision_at_top(scores, truth, 0.5)


def test_score_architectures_pads_the_last_chunk_and_drops_the_padding():
  from close_jax import evaluate

  calls = []

  def score_fn(params, x, y, ops, key):  # the score of an arch is its first op id
    calls.append(len(ops))
    return np.asarray(ops)[:, 0].astype(np.float64)

  archs = np.arange(7 * 6).reshape(7, 6) % 5
  scores = evaluate.score_architectures(score_fn, None, None, None, archs, 3, None, log=None)
  assert calls == [3, 3, 3]  # 7 archs: the last call padded to the same shape
  np.testing.assert_array_equal(scores, archs[:, 0])
