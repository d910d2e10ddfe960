"""Ranking without ground truth (`eval.ground_truth='none'`): the scores a run with ground truth
gets for the same architectures, ranking files without correlations, the ranked sets, and
one-line errors for a ground truth that is given but wrong."""

import csv
import json
import os
import re

import jax
import numpy as np
import pytest
from helpers import tiny_config

from close_jax import config_check, spaces, train
from close_jax.analysis import complexity, switch_quality
from close_jax.benchmarks import ranking_set
from close_jax.spaces import nb201

CORRELATIONS = ('kendall_tau', 'spearman_rho', 'precision_at_top')


def _ranking(workdir):
  with open(os.path.join(workdir, 'ranking.csv'), newline='') as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  with open(os.path.join(workdir, 'ranking.json')) as f:
    return reader.fieldnames, rows, json.load(f)


def test_nb201_scores_without_ground_truth_equal_those_with_it(tmp_path, capsys):
  """Train and rank with 'none', rank the same checkpoint against the shipped table
  (`mode=evaluate`), then again with 'none': the same architectures get the same scores; only
  the ground-truth column and the correlations come and go."""
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(num_epochs=1, **{'eval.ground_truth': 'none'}), workdir)
  header, rows, summary = _ranking(workdir)
  assert '"ground_truth": null' in capsys.readouterr().out  # the progress line says so
  # The analyses that compare with true accuracies say why they cannot, in one line.
  with pytest.raises(SystemExit, match='no workdir has ground truth'):
    switch_quality.main(['--workdirs', workdir, '--out', str(tmp_path / 'q.png')])
  assert 'skipped run: ' in capsys.readouterr().out
  train.train_and_evaluate(tiny_config(num_epochs=1, mode='evaluate'), workdir)
  header_gt, rows_gt, summary_gt = _ranking(workdir)

  assert header == ['arch', 'supernet_score', 'flops', 'params']
  assert header_gt == ['arch', 'supernet_score', 'ground_truth', 'flops', 'params']
  assert len(rows) == 12
  for row, row_gt in zip(rows, rows_gt, strict=True):
    assert row == {k: v for k, v in row_gt.items() if k != 'ground_truth'}
  assert summary['ground_truth'] is None and not set(CORRELATIONS) & set(summary)
  assert summary_gt['ground_truth'] == 'cifar10_test_200ep' and set(CORRELATIONS) <= set(summary_gt)
  scores = [float(r['supernet_score']) for r in rows]
  assert summary['best_arch'] == rows[int(np.argmax(scores))]['arch'] == summary_gt['best_arch']
  assert summary['best_score'] == pytest.approx(max(scores), abs=1e-6)

  train.train_and_evaluate(
    tiny_config(num_epochs=1, mode='evaluate', **{'eval.ground_truth': 'none'}), workdir
  )
  assert _ranking(workdir)[1] == rows
  with pytest.raises(ValueError, match=r'ranking.csv has no ground truth \(the run ranked with'):
    complexity.analyse(workdir)


def test_nb201_ranks_every_class_or_the_ground_truths_subset():
  space = spaces.get('nb201')
  every = ranking_set.load(space, 'none', 0, 123)
  assert every.truth is None and every.source is None
  np.testing.assert_array_equal(every.archs, nb201.deiso_representatives())
  subset = ranking_set.load(space, 'none', 12, 123)
  np.testing.assert_array_equal(
    subset.archs, ranking_set.load(space, 'cifar10_test_200ep', 12, 123).archs
  )


def test_sampled_set_is_distinct_and_depends_on_the_seed_alone():
  space = spaces.get('nds_resnexta_smoke')
  archs = ranking_set.load(space, 'none', 40, 5).archs
  assert archs.shape == (40, *space.arch_shape) and archs.dtype == np.int32
  assert len({space.to_str(a) for a in archs}) == 40
  default = jax.config.jax_default_prng_impl
  try:
    jax.config.update('jax_default_prng_impl', 'rbg')
    np.testing.assert_array_equal(ranking_set.load(space, 'none', 40, 5).archs, archs)
  finally:
    jax.config.update('jax_default_prng_impl', default)
  assert not np.array_equal(ranking_set.load(space, 'none', 40, 6).archs, archs)


def test_errors_before_any_work(tmp_path):
  resnet = spaces.get('nds_resnet_smoke')  # (3 depths x 2 widths) ** 3 stages = 216 archs
  with pytest.raises(ValueError, match=r'num_archs=0 .* cannot be listed in full; expected'):
    ranking_set.load(resnet, 'none', 0, 0)
  with pytest.raises(ValueError, match=r'found only 216 distinct architectures'):
    ranking_set.load(resnet, 'none', 300, 0)
  missing = str(tmp_path / 'missing.csv')
  for value in (missing, 'None', ''):
    config = tiny_config(**{'eval.ground_truth': value})
    with pytest.raises(
      ValueError, match=re.escape(f'ground_truth={value!r}: expected') + ".*'none'"
    ):
      config_check.validate(config)
  bad = tmp_path / 'bad.csv'
  bad.write_text('arch,accuracy\nnot-an-arch,90\n')
  with pytest.raises(ValueError, match=r'bad.csv., row 1 \(line 2\)') as error:
    config_check.validate(tiny_config(**{'eval.ground_truth': str(bad)}))
  assert '\n' not in str(error.value)
