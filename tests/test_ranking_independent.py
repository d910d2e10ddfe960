"""The ranking outputs recomputed without `evaluate.py` or `ranking.py`: scores by a plain loop
over the ranking batches, the summary from the CSV by plain pair counts and rank loops, each row's
ground truth from the shipped table."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import final_state

from close_jax.data import load_dataset
from close_jax.spaces import nb201
from close_jax.supernet import build_supernet

SHIPPED = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  'close_jax',
  'benchmarks',
  'data',
  'nb201_cifar10_gt.csv',
)


def _kendall_tau_b(x, y) -> float:
  """(concordant - discordant) / sqrt((n0 - ties in x) (n0 - ties in y)), over all pairs."""
  concordant = discordant = ties_x = ties_y = 0
  n = len(x)
  for i in range(n):
    for j in range(i + 1, n):
      dx, dy = x[i] - x[j], y[i] - y[j]
      ties_x += dx == 0
      ties_y += dy == 0
      if dx * dy > 0:
        concordant += 1
      elif dx * dy < 0:
        discordant += 1
  pairs = n * (n - 1) // 2
  return (concordant - discordant) / ((pairs - ties_x) * (pairs - ties_y)) ** 0.5


def _average_ranks(x) -> list[float]:
  """1-based ranks, tied values sharing the mean of the ranks they span."""
  return [1 + sum(v < x[i] for v in x) + (sum(v == x[i] for v in x) - 1) / 2 for i in range(len(x))]


def _pearson(a, b) -> float:
  ma, mb = sum(a) / len(a), sum(b) / len(b)
  cov = sum((u - ma) * (v - mb) for u, v in zip(a, b, strict=True))
  return cov / (sum((u - ma) ** 2 for u in a) * sum((v - mb) ** 2 for v in b)) ** 0.5


def _top(values, k) -> set[int]:
  """The k largest, ties to the earlier row (the documented order of `ranking.py`)."""
  return {i for _, i in sorted((-v, i) for i, v in enumerate(values))[:k]}


def test_the_independent_formulas_on_a_hand_count():
  # x = (1, 2, 2, 3), y = (1, 3, 2, 2): pairs 01, 02, 03 concordant, 13 discordant, 12 tied in
  # x, 23 tied in y: (3 - 1) / sqrt(5 x 5).
  assert _kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)
  assert _average_ranks([10, 30, 20, 20]) == [1.0, 4.0, 2.5, 2.5]
  assert _top([0.5, 0.9, 0.9, 0.1], 2) == {1, 2}
  assert _top([0.5, 0.9, 0.9, 0.1], 1) == {1}


def _rows(workdir):
  with open(os.path.join(workdir, 'ranking.csv'), newline='') as f:
    return list(csv.DictReader(f))


def test_scores_equal_a_plain_loop_over_the_ranking_batches(full_run):  # noqa: F811
  workdir, config, _ = full_run
  rows = _rows(workdir)
  params = final_state(workdir, config).params
  data = load_dataset(config.data)
  supernet = build_supernet(config, data.num_classes)
  b = config.eval.batch_size
  n = len(data.rank_images) // b * b
  x = (data.rank_images[:n].astype(np.float32) - data.mean) / data.std
  apply = jax.jit(lambda p, x, ops: supernet.apply(p, x, ops, None, train=False))
  for row in rows[:4]:
    ops = jnp.asarray(nb201.parse(row['arch']))
    correct = 0
    for start in range(0, n, b):  # BN uses each batch's statistics, as the scorer does
      logits = np.asarray(apply(params, jnp.asarray(x[start : start + b]), ops))
      correct += int(np.sum(logits.argmax(-1) == data.rank_labels[start : start + b]))
    assert float(row['supernet_score']) == pytest.approx(correct / n, abs=1e-6)


def test_summary_and_ground_truth_recomputed_from_the_csv(full_run):  # noqa: F811
  workdir, config, _ = full_run
  rows = _rows(workdir)
  with open(os.path.join(workdir, 'ranking.json')) as f:
    summary = json.load(f)
  scores = np.array([float(r['supernet_score']) for r in rows])
  truth = np.array([float(r['ground_truth']) for r in rows])
  assert summary['num_archs'] == len(rows) == config.eval.num_archs
  assert summary['kendall_tau'] == pytest.approx(_kendall_tau_b(scores, truth))
  rho = _pearson(_average_ranks(list(scores)), _average_ranks(list(truth)))
  assert summary['spearman_rho'] == pytest.approx(rho)
  for ratio, value in summary['precision_at_top'].items():
    k = int(len(rows) * float(ratio))
    assert value == pytest.approx(len(_top(scores, k) & _top(truth, k)) / k)
  # Ground truth = the mean of cifar10_test_200ep over the cell's isomorphism class.
  by_class: dict[str, list[float]] = {}
  with open(SHIPPED, newline='') as f:
    for r in csv.DictReader(f):
      by_class.setdefault(nb201.canonical_key(nb201.parse(r['arch'])), []).append(
        float(r['cifar10_test_200ep'])
      )
  for row in rows:
    expected = np.mean(by_class[nb201.canonical_key(nb201.parse(row['arch']))])
    assert float(row['ground_truth']) == pytest.approx(expected, abs=1e-6)
