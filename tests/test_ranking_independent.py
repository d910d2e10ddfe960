"""The ranking outputs recomputed without `evaluate.py`: scores by a plain loop over the ranking
batches, the summary from the CSV with scipy, each row's ground truth from the shipped table."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from test_train import _final_state, full_run, tiny_config  # noqa: F401  (fixture)

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


def _rows(workdir):
  with open(os.path.join(workdir, 'ranking.csv'), newline='') as f:
    return list(csv.DictReader(f))


def test_scores_equal_a_plain_loop_over_the_ranking_batches(full_run):  # noqa: F811
  workdir, config, _ = full_run
  rows = _rows(workdir)
  params = _final_state(workdir, config).params
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
  assert summary['kendall_tau'] == pytest.approx(scipy.stats.kendalltau(scores, truth).statistic)
  assert summary['spearman_rho'] == pytest.approx(scipy.stats.spearmanr(scores, truth).statistic)
  for ratio, value in summary['precision_at_top'].items():
    k = int(len(rows) * float(ratio))
    top_pred = set(np.argsort(-scores, kind='stable')[:k])
    top_true = set(np.argsort(-truth, kind='stable')[:k])
    assert value == pytest.approx(len(top_pred & top_true) / k)
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
