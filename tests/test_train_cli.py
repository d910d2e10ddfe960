"""The CLI and the config checks: bad values and files are one line before anything is written,
a run resumes with `--workdir` alone, overrides apply to a saved config, and a config.json of an
earlier close_jax gets the later keys."""

import json
import os
import subprocess
import sys

import ml_collections
import pytest
from helpers import REPO, read_jsonl, tiny_config

from close_jax import config_check, train


@pytest.mark.parametrize(
  'override, message',
  [
    ({'method': 'gates'}, "config.method='gates'"),
    ({'method': 'close', 'close.cl_schedule': (0, 5, 3)}, 'config.close.cl_schedule'),
    ({'close.wit': 'avg'}, "config.close.wit='avg'"),
    ({'eval.eval_epochs': (99,)}, 'config.eval.eval_epochs'),
    ({'model.channels': 0}, 'config.model.channels=0'),
    ({'optim.plateau_metric': 'val'}, "config.optim.plateau_metric='val'"),
    ({'batch_size': 1000}, 'exceeds the 256 training images'),
    ({'eval.ground_truth': 'cifar11'}, "config.eval.ground_truth='cifar11'"),
    ({'train_sampler': 'some'}, "config.train_sampler='some'"),
    ({'close.gate_embed_norm': 'batch'}, "config.close.gate_embed_norm='batch'"),
    ({'close.gate_temperature': 0.0}, 'config.close.gate_temperature=0.0'),
    ({'eval.gate_samples': 0}, 'config.eval.gate_samples=0'),
    ({'eval.batch_size': 65}, 'config.eval.batch_size=65 exceeds the 64 ranking images'),
    ({'method': 'close', 'budget_epochs': 1}, 'budget_epochs=1 is too short for config.close'),
    ({'eval.curve_num_archs': -1}, 'config.eval.curve_num_archs=-1'),
    ({'eval.gate_assignment': 'argmax'}, "config.eval.gate_assignment='argmax'"),
    (
      {'method': 'close', 'close.gate': 'random', 'eval.gate_assignment': 'mode'},
      "config.eval.gate_assignment='mode' with config.close.gate='random'",
    ),
    (
      {'eval.curve_num_archs': 5, 'eval.at_end': False, 'eval.eval_epochs': (3,)},
      'config.eval.curve_num_archs=5 with config.eval.at_end=False',
    ),
  ],
)
def test_bad_configs_fail_before_training(override, message, tmp_path):
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=message.replace('(', r'\(')):
    train.train_and_evaluate(tiny_config(**override), workdir)
  assert not os.path.exists(workdir)  # nothing written, not even the directory


def test_a_bad_ground_truth_csv_fails_before_training(tmp_path):
  bad = tmp_path / 'gt.csv'
  bad.write_text('arch,accuracy\n|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|foo~2|,90\n')
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=r"row 1 \(line 2\): unknown op 'foo'"):
    train.train_and_evaluate(tiny_config(**{'eval.ground_truth': str(bad)}), workdir)
  assert not os.path.exists(workdir)


def _run_cli(*flags: str) -> subprocess.CompletedProcess:
  cmd = [sys.executable, '-m', 'close_jax.main', *flags]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_cli_rejects_unknown_override(tmp_path):
  out = _run_cli(
    f'--workdir={tmp_path}', '--config=configs/nb201.py:smoke', '--config.eval.batchsize=1'
  )
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
    "error: unknown config key 'config.eval.batchsize': 'config.eval' has no 'batchsize'; "
    "did you mean 'config.eval.batch_size'?"
  ]


@pytest.mark.parametrize(
  'flag, message',
  [
    ('--config=configs/nb999.py', "error: config file 'configs/nb999.py' does not exist"),
    (
      '--config=configs/nb201.py:huge',
      'error: unknown variant \'huge\' of configs/nb201.py: expected nothing or "smoke"',
    ),
  ],
)
def test_cli_bad_config_file_is_one_line(flag, message, tmp_path):
  out = _run_cli(f'--workdir={tmp_path / "w"}', flag)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [message]
  assert not os.path.exists(tmp_path / 'w')


@pytest.mark.parametrize(
  'mode, message',
  [
    (
      'serch',
      "error: config.mode='serch' is not supported: expected one of "
      "('train', 'evaluate', 'search')",
    ),
    (
      'search',
      "error: config.mode='search' needs the search settings (config.search): use a search "
      'config such as configs/darts_search.py or configs/nb201_search.py',
    ),
  ],
)
def test_cli_reports_bad_value_in_one_line(tmp_path, mode, message):
  out = _run_cli(
    f'--workdir={tmp_path}', '--config=configs/nb201.py:smoke', f'--config.mode={mode}'
  )
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [message]
  assert not os.listdir(tmp_path)  # nothing written


def test_cli_resumes_with_workdir_alone(tmp_path):
  """A run started from a config file continues with `--workdir` alone (config.json)."""
  config = tiny_config(num_epochs=2, **{'eval.at_end': False})
  train.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / 'config.json').read_text())
  saved['num_epochs'] = 3
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  out = _run_cli(f'--workdir={tmp_path}')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'restored checkpoint of epoch 2' in out.stdout
  assert [r['epoch'] for r in read_jsonl(str(tmp_path))] == [0, 1, 2]
  # Overrides apply to the saved config too: rank the checkpoint, train nothing.
  out = _run_cli(f'--workdir={tmp_path}', '--config.mode', 'evaluate')
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads((tmp_path / 'ranking.json').read_text())['epoch'] == 3
  assert [r['epoch'] for r in read_jsonl(str(tmp_path))] == [0, 1, 2]
  # A shape-defining change is refused, naming the value, before anything is written.
  before = (tmp_path / 'metrics.jsonl').read_text()
  out = _run_cli(f'--workdir={tmp_path}', '--config.model.channels=8', '--config.num_epochs=5')
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
    f'error: config.model.channels=8 differs from 4 of the run in {tmp_path} (its checkpoints '
    'have that shape): keep the value or use a new --workdir'
  ]
  assert (tmp_path / 'metrics.jsonl').read_text() == before


def test_older_saved_config_gets_the_later_keys():
  """A config.json written before the GATE options and samplers existed still loads and runs."""
  config = tiny_config()
  saved = json.loads(config.to_json())
  del saved['train_sampler'], saved['close']['gate_embed_norm'], saved['eval']['gate_samples']
  old = config_check.fill_later_keys(ml_collections.ConfigDict(saved))
  assert old.train_sampler == 'valid' and old.close.gate_embed_norm == 'none'
  assert old.eval.gate_samples == 1
  config_check.validate(old)
