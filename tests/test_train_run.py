"""Training a tiny vanilla NB201 supernet in-process: one compile for every architecture, the
metrics, checkpoints and ranking files it writes, resume, evaluate mode, and how a run survives
corrupt, missing or outdated checkpoints (uses conftest's `full_run`)."""

import csv
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import counted_train_step
from helpers import assert_same_state, final_state, read_jsonl, tiny_config

from close_jax import evaluate, optim, train
from close_jax.checkpoint import CheckpointError
from close_jax.data import load_dataset
from close_jax.spaces import nb201
from close_jax.supernet import build_supernet


def test_one_compile_serves_every_architecture():
  config = tiny_config()
  dataset = load_dataset(config.data)
  supernet = build_supernet(config, dataset.num_classes)
  tx = optim.make_optimizer(config.optim)
  params = supernet.init(jax.random.key(0, impl='rbg'), dataset.image_shape)
  state, step, counter, images, labels = counted_train_step(supernet, tx, params, dataset)
  archs = nb201.sample(jax.random.key(3), 12)
  assert len({tuple(a) for a in np.asarray(archs)}) > 8
  key = jax.random.key(1, impl='rbg')
  before = jax.tree.map(np.asarray, state.params)
  for i in range(len(archs)):
    state, metrics = step(state, images, labels, (jnp.arange(32) + i)[None], archs[i], key)
  assert counter.count == 1
  assert int(state.step) == len(archs)
  assert np.isfinite(float(metrics['loss']))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(changed))


def test_training_writes_metrics_and_lowers_the_loss(full_run):
  workdir, config, _ = full_run
  records = read_jsonl(workdir)
  assert [r['epoch'] for r in records] == list(range(config.num_epochs))
  for r in records:
    assert {'epoch', 'loss', 'accuracy', 'lr', 'images_per_s', 'train_step_traces'} <= set(r)
    assert r['train_step_traces'] == 1 and r['train_step_executables'] == 1
    assert r['lr'] == pytest.approx(config.optim.learning_rate)
  assert np.mean([r['loss'] for r in records[-2:]]) < records[0]['loss'] - 0.1
  assert records[-1]['step'] == config.num_epochs * 8
  # keep_checkpoints=3 with a checkpoint every epoch: only the last three epochs are kept.
  assert config.keep_checkpoints == 3 and config.checkpoint_every_epochs == 1
  kept = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert kept == [config.num_epochs - 2, config.num_epochs - 1, config.num_epochs]


def test_ranking_outputs(full_run):
  workdir, config, result = full_run
  with open(os.path.join(workdir, 'ranking.json')) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(result))
  assert saved['num_archs'] == config.eval.num_archs
  assert saved['epoch'] == config.num_epochs
  assert saved['ground_truth'] == 'cifar10_test_200ep'
  assert set(saved['precision_at_top']) == {'0.1', '0.5'}  # smaller ratios select no arch of 12
  with open(os.path.join(workdir, 'ranking.csv')) as f:
    rows = f.read().strip().splitlines()
  assert rows[0] == 'arch,supernet_score,ground_truth,flops,params'
  assert len(rows) == 1 + config.eval.num_archs
  arch, score, truth, flops, params = rows[1].split(',')
  nb201.parse(arch)
  assert 0.0 <= float(score) <= 1.0 and 40.0 < float(truth) < 100.0
  assert int(flops) > 0 and int(params) > 0  # exact values: tests/test_analysis_complexity.py


def test_resume_equals_uninterrupted(full_run, tmp_path):
  workdir_full, config, _ = full_run
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_config(num_epochs=3, **{'eval.at_end': False}), workdir)
  train.train_and_evaluate(tiny_config(**{'eval.at_end': False}), workdir)  # resumes at 3
  a, b = final_state(workdir_full, config), final_state(workdir, config)
  assert int(a.step) == 48
  assert_same_state(a, b)
  assert [r['epoch'] for r in read_jsonl(workdir)] == list(range(6))


def test_evaluate_mode_restores_latest_checkpoint(full_run, tmp_path):
  workdir, config, result = full_run
  recorded = read_jsonl(workdir, 'rankings.jsonl')
  evaluated = train.train_and_evaluate(tiny_config(mode='evaluate'), workdir)
  assert evaluated['epoch'] == config.num_epochs
  assert evaluated['kendall_tau'] == pytest.approx(result['kendall_tau'])
  # The training recorded this epoch's ranking already: evaluate mode adds no second record.
  assert (
    read_jsonl(workdir, 'rankings.jsonl')
    == recorded
    == [{'epoch': config.num_epochs, 'when': 'epoch', 'num_blocks': 6, **_summary(result)}]
  )


def _summary(result):
  return {k: result[k] for k in ('kendall_tau', 'spearman_rho', 'precision_at_top', 'num_archs')}


def test_a_checkpoint_with_the_earlier_optimizer_state_is_a_one_line_error(full_run, tmp_path):
  """Checkpoints written before the plateau controller left the step (their meta lacks
  `optimizer_state`) are refused with one line, not moved aside as corrupt."""
  workdir, config, _ = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  for root, _, files in os.walk(os.path.join(copy, 'checkpoints')):
    for name in files:
      path = os.path.join(root, name)
      try:
        with open(path) as f:
          meta = json.load(f)
      except (UnicodeDecodeError, json.JSONDecodeError):
        continue
      if isinstance(meta, dict) and meta.pop('optimizer_state', None):
        with open(path, 'w') as f:
          json.dump(meta, f)
  with pytest.raises(ValueError, match='per-step plateau controller of an earlier') as info:
    train.train_and_evaluate(tiny_config(num_epochs=7), copy)
  assert '\n' not in str(info.value) and 'new --workdir' in str(info.value)
  assert not os.path.exists(os.path.join(copy, 'corrupt_checkpoints'))


def test_a_ranking_lost_after_the_last_checkpoint_is_redone(full_run, tmp_path):
  """Killed between the final checkpoint and the final ranking: the rerun ranks, trains nothing."""
  workdir, config, result = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  os.remove(os.path.join(copy, 'ranking.json'))
  os.remove(os.path.join(copy, 'rankings.jsonl'))
  again = train.train_and_evaluate(tiny_config(), copy)
  assert again['kendall_tau'] == pytest.approx(result['kendall_tau'])
  assert [r['epoch'] for r in read_jsonl(copy, 'rankings.jsonl')] == [config.num_epochs]
  assert read_jsonl(copy) == read_jsonl(workdir)  # no epoch was retrained


def test_evaluate_without_checkpoint_fails(tmp_path):
  with pytest.raises(FileNotFoundError, match='needs a checkpoint'):
    train.train_and_evaluate(tiny_config(mode='evaluate'), str(tmp_path))


def _garble(workdir, epoch):
  for root, _, files in os.walk(os.path.join(workdir, 'checkpoints', str(epoch), 'state')):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')


def test_a_corrupt_checkpoint_falls_back_to_the_newest_that_restores(full_run, tmp_path, capsys):
  workdir, config, _ = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  _garble(copy, config.num_epochs)
  train.train_and_evaluate(tiny_config(), copy)  # resumes from epoch 5 and redoes epoch 6
  out = capsys.readouterr().out
  aside = os.path.join(copy, 'corrupt_checkpoints', str(config.num_epochs))
  assert f'checkpoint of epoch {config.num_epochs} does not restore: moved to {aside}' in out
  assert f'restored checkpoint of epoch {config.num_epochs - 1}' in out
  assert os.path.isdir(aside)  # kept for inspection
  assert_same_state(final_state(workdir, config), final_state(copy, config))
  assert [r['epoch'] for r in read_jsonl(copy)] == list(range(config.num_epochs))


def test_no_restorable_checkpoint_is_a_one_line_error(full_run, tmp_path):
  workdir, config, _ = full_run
  copy = str(tmp_path / 'w')
  shutil.copytree(workdir, copy)
  for epoch in os.listdir(os.path.join(copy, 'checkpoints')):
    _garble(copy, epoch)
  with pytest.raises(CheckpointError, match='no checkpoint in .* restores') as info:
    train.train_and_evaluate(tiny_config(mode='evaluate'), copy)
  assert '\n' not in str(info.value)


def test_a_vanilla_run_starts_at_chance_and_learns(full_run):
  """Properties any compiler setting keeps (no float trajectory of one XLA build is pinned): the
  first epoch's mean loss is near ln(10), the loss of a fresh 10-class classifier, and training
  lowers it (the CLOSE run's twin: tests/test_train_curriculum.py)."""
  losses = [r['loss'] for r in read_jsonl(full_run[0])]
  assert all(np.isfinite(losses))
  assert abs(losses[0] - np.log(10)) < 0.1, losses
  assert losses[-1] < losses[0] - 0.1, losses
  assert -1.0 <= full_run[2]['kendall_tau'] <= 1.0


def _ranking_csv(workdir) -> dict[str, str]:
  with open(os.path.join(workdir, 'ranking.csv')) as f:
    return {row['arch']: row['supernet_score'] for row in csv.DictReader(f)}


def test_curve_rankings_score_a_subset_and_the_final_ranking_all(tmp_path):
  """eval.curve_num_archs: the ranking after epoch 3 scores 5 of the 12 architectures, the final
  one (and evaluate mode) all 12; the subset's scores are the full ranking's for those rows."""
  config = tiny_config(**{'eval.eval_epochs': (3,), 'eval.curve_num_archs': 5})
  workdir = str(tmp_path)
  result = train.train_and_evaluate(config, workdir)
  ranked = [(r['epoch'], r['num_archs']) for r in read_jsonl(workdir, 'rankings.jsonl')]
  assert ranked == [(3, 5), (config.num_epochs, 12)] and result['num_archs'] == 12
  evaluated = train.train_and_evaluate(
    tiny_config(mode='evaluate', **{'eval.curve_num_archs': 5}), workdir
  )
  assert evaluated['num_archs'] == 12
  full = _ranking_csv(workdir)
  run = train.Run(config, workdir)
  state = final_state(workdir, config)
  evaluate.rank(
    config,
    run.supernet(6),
    state.params,
    run.dataset,
    workdir,
    6,
    run.eval_key,
    log=lambda *_: None,
    scorers=run.scorers,
    subset=5,
  )
  subset = _ranking_csv(workdir)
  assert len(subset) == 5 and subset == {arch: full[arch] for arch in subset}
