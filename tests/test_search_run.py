"""The search end to end: the NB201 smoke search through the CLI (CLOSE curriculum underneath),
its outputs checked against independent computations, and a resume mid-iteration."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import _CACHE
from helpers import assert_same_state, final_state, read_jsonl

from close_jax import spaces
from close_jax.final import param_count
from close_jax.search import hook, lookup
from close_jax.search import run as search_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_config():
  path = os.path.join(REPO, 'configs', 'nb201_search.py')
  spec = importlib.util.spec_from_file_location('_nb201_search_test', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config('smoke')
  config.compilation_cache_dir = _CACHE
  return config


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('search'))
  cmd = [
    sys.executable, '-m', 'close_jax.main', '--config=configs/nb201_search.py:smoke',
    f'--workdir={workdir}', f'--config.compilation_cache_dir={_CACHE}',
  ]  # fmt: skip
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, out.stdout


def _search_file(workdir, name):
  with open(os.path.join(workdir, 'search', name)) as f:
    return json.load(f) if name.endswith('.json') else f.read()


def test_iterations_follow_the_schedule(cli_run):
  workdir, stdout = cli_run
  config = smoke_config()
  records = hook.read_records(workdir)
  # Warm-up 2 epochs, then an iteration every 2 epochs: populations at epochs 2, 4, 6.
  assert [r['epoch'] for r in records] == [2, 4, 6]
  assert [r['iteration'] for r in records] == [0, 1, 2]
  size = config.search.population_size
  assert [r['evaluations'] for r in records] == [size, 2 * size, 3 * size]
  space = spaces.get('nb201')
  for r in records:
    keys = {space.canonical_key(space.parse(a)) for a in r['population']}
    assert len(keys) == size  # distinct architectures
    assert r['fitness'] == sorted(r['fitness'], reverse=True)
    assert r['params'] == [param_count.nb201_num_params(space.parse(a)) for a in r['population']]
  metrics = read_jsonl(workdir)
  assert [m['epoch'] for m in metrics if 'search_iteration' in m] == [1, 3, 5]
  assert [m['num_blocks'] for m in metrics] == [1, 1, 1, 2, 2, 2]  # CLOSE underneath
  assert 'search iteration 2 at epoch 6' in stdout and 'search done: chosen' in stdout


def test_outputs_agree_with_the_last_population_and_the_ground_truth(cli_run):
  workdir, _ = cli_run
  last = hook.read_records(workdir)[-1]
  summary = _search_file(workdir, 'summary.json')
  chosen = summary['chosen']
  assert chosen['arch'] == last['population'][0] == last['best_arch']
  assert _search_file(workdir, 'chosen.genotype').splitlines()[0] == chosen['arch']
  space = spaces.get('nb201')
  archs, truth, _ = space.load_ground_truth('cifar10_test_200ep')
  keys = [space.canonical_key(a) for a in archs]
  true = truth[keys.index(space.canonical_key(space.parse(chosen['arch'])))]
  assert chosen['true_accuracy'] == pytest.approx(true)
  assert chosen['top_percent'] == pytest.approx(100 * np.mean(truth > true), abs=1e-4)
  front = _search_file(workdir, 'front.json')
  fit = np.array([e['fitness'] for e in front])
  par = np.array([e['params'] for e in front])
  for i in range(len(front)):  # nobody on the front dominates anybody else on it
    better = (fit >= fit[i]) & (par <= par[i]) & ((fit > fit[i]) | (par < par[i]))
    assert not better.any()
  random = summary['random_search']
  assert random['evaluations'] == last['evaluations']
  assert space.parse(random['arch']).shape == (6,)
  with open(os.path.join(workdir, 'search', 'fronts.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_resume_mid_iteration_without_ground_truth_equals_uninterrupted(cli_run, tmp_path):
  """Checkpoint 6 lost after the iteration at epoch 6 was written: the run restores epoch 5,
  drops that iteration, retrains epoch 6 on the population of epoch 4 and scores it again. It
  resumes with `eval.ground_truth='none'` (the search needs none): everything equals the
  uninterrupted run but the true accuracies, which the redone iteration and the summary lack."""
  workdir, _ = cli_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  shutil.rmtree(os.path.join(copy, 'checkpoints', '6'))
  for name in ('summary.json', 'front.json', 'chosen.genotype', 'fronts.png'):
    os.remove(os.path.join(copy, 'search', name))
  config = smoke_config()
  config.eval.ground_truth = 'none'
  search_run.run(config, copy)

  truth_keys = ('best_true_accuracy', 'best_top_percent', 'true_accuracy', 'top_percent')

  def without_truth(record):
    return {k: v for k, v in record.items() if k not in (*truth_keys, 'seconds')}

  records, resumed = hook.read_records(workdir), hook.read_records(copy)
  assert [without_truth(r) for r in resumed] == [without_truth(r) for r in records]
  assert resumed[:-1] == records[:-1] and 'best_true_accuracy' in records[-1]
  assert not set(truth_keys) & set(resumed[-1])
  summary, original = _search_file(copy, 'summary.json'), _search_file(workdir, 'summary.json')
  assert summary['ground_truth'] is None and original['ground_truth'] == 'cifar10_test_200ep'
  for part in ('chosen', 'random_search'):
    assert 'true_accuracy' in original[part] and not set(truth_keys) & set(summary[part])
    assert summary[part] == without_truth(original[part])
  assert summary['evaluations'] == original['evaluations']
  assert _search_file(copy, 'front.json') == [
    without_truth(e) for e in _search_file(workdir, 'front.json')
  ]
  assert_same_state(final_state(workdir, config), final_state(copy, config))


def test_search_truth_lookup_matches_the_run(cli_run):
  workdir, _ = cli_run
  space = spaces.get('nb201')
  truth = lookup.load(space, 'cifar10_test_200ep')
  for r in hook.read_records(workdir):
    found = truth.lookup(space.canonical_key(space.parse(r['best_arch'])))
    assert r['best_true_accuracy'] == found['true_accuracy']
