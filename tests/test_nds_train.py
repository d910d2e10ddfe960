"""NDS end to end: the smoke configs through the CLI as they are (two switches, one compile per
level, the interval maps in the checkpoints, ranking files without ground truth, since none is
shipped), a ranking of the same checkpoint against a release-format fixture, WIT from the split
block, resume across a switch, and one-line errors."""

import csv
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import _CACHE
from helpers import assert_same_state, final_state, read_jsonl

from close_jax import curriculum, intervals, spaces, train
from close_jax.checkpoint import Checkpointer
from close_jax.spaces import nds, nds_space
from configs import nds_resnet as nds_config
from configs import nds_resnexta as resnexta_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fixture_csv(path, space_name, n=16):
  """A ground-truth file the test writes itself (the NDS release is not available offline)."""
  space = spaces.get(space_name)
  archs = np.asarray(space.sample(jax.random.key(0), 200)).reshape(200, -1)
  archs = np.unique(archs, axis=0)[:n].reshape(-1, *space.arch_shape)
  accuracy = np.random.default_rng(0).uniform(80, 95, len(archs))
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['arch', 'accuracy'])
    writer.writerows(
      [space.to_str(a), f'{acc:.2f}'] for a, acc in zip(archs, accuracy, strict=True)
    )
  return str(path)


def fixture_json(path, space_name, n=16):
  """The same in the NDS release layout (each list starts with the stem's entry)."""
  space = spaces.get(space_name)
  family = nds_space.SPACE_FAMILIES[space_name]
  archs = np.asarray(space.sample(jax.random.key(1), n))
  models = []
  for arch, error in zip(archs, np.random.default_rng(1).uniform(4, 12, n), strict=True):
    values = nds.values_of(family, arch)
    net = {d: [values[d][0], *values[d]] for d in nds.DECISIONS}
    models.append({'net': net, 'min_test_top1': float(error)})
  with open(path, 'w') as f:
    json.dump(models, f)
  return str(path)


def _cli(config, workdir, overrides):
  flags = [f'--config.{k}={v}' for k, v in overrides.items()]
  cmd = [sys.executable, '-m', 'close_jax.main', f'--config={config}', *flags]
  return subprocess.run(
    [*cmd, f'--workdir={workdir}'], cwd=REPO, capture_output=True, text=True, timeout=600
  )


def _smoke_out_of_the_box(config, workdir):
  """The smoke config as a new user runs it (only the suite's XLA cache is set)."""
  out = _cli(config, workdir, {'compilation_cache_dir': _CACHE})
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout + out.stderr


def _ranking_files(workdir):
  with open(os.path.join(workdir, 'ranking.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'ranking.csv'), newline='') as f:
    reader = csv.DictReader(f)
    return summary, reader.fieldnames, list(reader)


def _assert_ranked_without_ground_truth(workdir, space_name):
  summary, header, rows = _ranking_files(workdir)
  assert summary['ground_truth'] is None and 'kendall_tau' not in summary
  assert summary['num_archs'] == 8 and header == ['arch', 'supernet_score']  # no costs in NDS
  space = spaces.get(space_name)
  assert len({space.to_str(space.parse(r['arch'])) for r in rows}) == 8  # distinct, round trip
  best = max(rows, key=lambda r: float(r['supernet_score']))
  assert summary['best_arch'] == best['arch']
  return rows


@pytest.fixture(scope='module')
def resnet_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('nds') / 'run')
  return workdir, _smoke_out_of_the_box('configs/nds_resnet.py:smoke', workdir)


def test_smoke_cli_trains_two_switches_and_ranks(resnet_run):
  workdir, log = resnet_run
  records = read_jsonl(workdir)
  assert [r['num_blocks'] for r in records] == [1, 1, 2, 2, 3]
  assert [r['train_step_traces'] for r in records] == [1, 1, 2, 2, 3]
  assert [r['train_step_executables'] for r in records] == [1, 1, 2, 2, 3]
  assert 'positions -> blocks [0, 1, 1]' in log and 'positions -> blocks [0, 1, 2]' in log
  _assert_ranked_without_ground_truth(workdir, 'nds_resnet_smoke')


def test_checkpoints_record_the_interval_map(resnet_run):
  workdir = resnet_run[0]
  ckpt = Checkpointer(workdir)
  maps = [ckpt.restore_meta(e)['interval_map'] for e in (4, 5)]  # 2 blocks, then 3
  ckpt.close()
  assert maps == [intervals.position_map(3, n).tolist() for n in (2, 3)] == [[0, 1, 1], [0, 1, 2]]


def test_resume_across_a_switch_equals_uninterrupted(resnet_run, tmp_path):
  """From the epoch-4 checkpoint: the switch to 3 blocks (block 2 from block 1, which it split),
  the SRT and epoch 5 redone give the same params and optimizer state."""
  workdir, _ = resnet_run
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, 'checkpoints', '5'))
  config = nds_config.get_config('smoke')
  train.train_and_evaluate(config, resumed)
  assert_same_state(final_state(workdir, config), final_state(resumed, config))
  assert [r['num_blocks'] for r in read_jsonl(resumed)] == [1, 1, 2, 2, 3]


def test_wit_sum_adds_the_split_blocks_weights(resnet_run):
  """Block 2 of every stage, created at epoch 4 by splitting block 1's interval, starts as its
  fresh draw + block 1 at epoch 4 (official `+=` from the split parent, not from block x-1)."""
  workdir, _ = resnet_run
  config = nds_config.get_config('smoke')
  assert curriculum.from_config(config).parent(2) == 1
  run = train.Run(config, workdir)
  ckpt = Checkpointer(workdir)
  before = ckpt.restore_state(4, jax.eval_shape(lambda: run.initial_state(2)))
  ckpt.close()
  fresh = run.fresh_params()['net']
  grown = train.surgery.grow_blocks(before.params['net'], fresh, 3, lambda b: 1, 'sum')
  for stage in range(3):
    for name, leaf in grown[f'cell_stage{stage}'].items():
      want = (
        fresh[f'cell_stage{stage}'][name][2] + before.params['net'][f'cell_stage{stage}'][name][1]
      )
      np.testing.assert_allclose(leaf[2], want, rtol=1e-6)


def test_resnexta_smoke_out_of_the_box_then_against_a_release_json(tmp_path):
  workdir = str(tmp_path / 'run')
  _smoke_out_of_the_box('configs/nds_resnexta.py:smoke', workdir)
  assert [r['num_blocks'] for r in read_jsonl(workdir)] == [1, 1, 2, 2, 3]
  _assert_ranked_without_ground_truth(workdir, 'nds_resnexta_smoke')
  # The same checkpoint against a ground truth in the NDS release layout (`mode=evaluate`, in
  # this process: the CLI's path from flags to `train_and_evaluate` is tested above and below).
  truth = fixture_json(tmp_path / 'ResNeXt-A.json', 'nds_resnexta_smoke')
  config = resnexta_config.get_config('smoke')
  config.compilation_cache_dir = ''  # conftest's cache
  config.eval.ground_truth, config.mode = truth, 'evaluate'
  train.train_and_evaluate(config, workdir)
  summary, header, rows_gt = _ranking_files(workdir)
  assert summary['ground_truth'] == truth and -1.0 <= summary['kendall_tau'] <= 1.0
  assert summary['num_archs'] == 8 and header == ['arch', 'supernet_score', 'ground_truth']
  space = spaces.get('nds_resnexta_smoke')
  archs, accuracy, _ = space.load_ground_truth(truth)
  by_arch = dict(zip((space.to_str(a) for a in archs), accuracy, strict=True))
  assert all(float(r['ground_truth']) == pytest.approx(by_arch[r['arch']]) for r in rows_gt)


def test_bad_nds_settings_are_one_line_before_anything_is_written(tmp_path):
  """Each bad setting is refused by the checks before any work, in one line, and the workdir is
  not created; the first goes through the CLI (exit status 2, one line `error: ...` on stderr),
  the others in this process (the CLI prints any such error the same way), which saves a Python
  and JAX start per case."""
  bad_row = tmp_path / 'bad.csv'
  bad_row.write_text('arch,accuracy\nds=[1,2,4] ws=[8,16,99] bot_muls=[1,1,1] num_gs=[1,1,1],90\n')
  out = _cli('configs/nds_resnexta.py:smoke', str(tmp_path / 'bad'), {'method': 'close_s'})
  assert out.returncode == 2, out.stderr[-2000:]
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), lines
  assert 'close_s is not defined for the interval space' in lines[0]
  assert not os.path.exists(tmp_path / 'bad')
  for bad, message in (
    ({'method': 'close', 'close.cl_schedule': (0, 1, 2, 3)}, 'expected at most 3 blocks'),
    ({'method': 'close', 'close.interval_criterion': 'min'}, "interval_criterion='min'"),
    ({'eval.ground_truth': ''}, "ground_truth='': expected 'none' (none is shipped"),
    ({'eval.ground_truth': str(bad_row)}, "bad.csv', row 1 (line 2)"),
    ({'model.nds_strategy': 'fast'}, "nds_strategy='fast' is not supported"),
    ({'model.nds_width_buckets': (4, 8)}, 'nds_width_buckets=(4, 8): expected increasing'),
  ):
    config = resnexta_config.get_config('smoke')
    for key, value in bad.items():
      group, _, name = key.rpartition('.')
      (config[group] if group else config)[name] = value
    with pytest.raises(ValueError) as info:
      train.train_and_evaluate(config, str(tmp_path / 'bad'))
    assert message in str(info.value) and '\n' not in str(info.value), str(info.value)
    assert not os.path.exists(tmp_path / 'bad')


def test_exact_strategy_trains_the_same_numbers_with_one_executable_per_architecture(tmp_path):
  """`exact` dispatches each step to an executable compiled for its architecture's sizes; the
  arithmetic is the masked step's, so an epoch ends at the same parameters."""
  truth = fixture_csv(tmp_path / 'truth.csv', 'nds_resnet_smoke')
  states, records = {}, {}
  for strategy in ('mask', 'exact'):
    config = nds_config.get_config('smoke')
    config.method, config.num_epochs = 'vanilla', 1
    config.compilation_cache_dir = ''  # conftest's cache
    config.eval.ground_truth, config.eval.at_end = truth, False  # training alone is compared
    config.model.nds_strategy = strategy
    workdir = str(tmp_path / strategy)
    train.train_and_evaluate(config, workdir)
    states[strategy], records[strategy] = final_state(workdir, config), read_jsonl(workdir)[-1]
  assert_same_state(states['mask'], states['exact'], rtol=1e-4, atol=1e-6)
  assert records['mask']['train_step_executables'] == 1
  assert records['mask']['num_blocks'] == 3  # vanilla: one block per position
  assert 1 < records['exact']['train_step_executables'] <= records['exact']['step'] == 4


def test_paper_configs():
  for module, space, counts in (
    (nds_config, 'nds_resnet', (9, 11, 13, 15, 17)),
    (resnexta_config, 'nds_resnexta', (9, 10, 11, 12, 13)),
  ):
    config = module.get_config()
    cur = curriculum.from_config(config)
    assert config.space == space and cur.block_counts == counts
    assert cur.start_epochs == (0, 200, 400, 600, 800) and cur.lr_restart_epochs == (400,)
    assert (config.batch_size, config.optim.weight_decay, config.optim.grad_clip_norm) == (
      128,
      5e-5,
      0.0,
    )
    assert spaces.get(space).num_positions == nds.FAMILIES[space].num_positions
