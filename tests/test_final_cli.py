"""Final training end to end through the CLI (`config.mode == 'final'`): the DARTS and NB201 smoke
configs, a resume equal to an uninterrupted run, and bad inputs as one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from close_jax.final import genotypes, run
from close_jax.final.param_count import darts_num_params, nb201_num_params
from close_jax.spaces import nb201, nb301

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(REPO, '.jax_cache')  # conftest's: a rerun of the suite compiles nothing
TIMING = {'seconds', 'train_seconds', 'test_seconds', 'images_per_s'}


def _cli(*args):
  return subprocess.run(
    [sys.executable, '-m', 'close_jax.main', *args, f'--config.compilation_cache_dir={CACHE}'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )


def _read(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return [json.loads(line) for line in f] if name.endswith('.jsonl') else json.load(f)


def _state(workdir, epoch):
  return ocp.StandardCheckpointer().restore(
    os.path.join(workdir, 'checkpoints', str(epoch), 'state')
  )


def test_darts_smoke_then_resume_equals_uninterrupted(tmp_path):
  whole = str(tmp_path / 'whole')
  proc = _cli('--config=configs/darts_final_cifar10.py:smoke', f'--workdir={whole}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  arch = genotypes.published('DARTS_V2')
  summary = _read(whole, 'summary.json')
  assert summary['num_params'] == darts_num_params(arch, 4, 3, 10, auxiliary=False) == 2858
  assert summary['num_params_aux'] == darts_num_params(arch, 4, 3, 10, auxiliary=True)
  assert summary['genotype'] == nb301.to_str(arch) and summary['epochs_done'] == 2
  printed = proc.stdout.index('num_params 2,858 (param size 0.002858 MB')
  assert printed < proc.stdout.index('epoch 1/2')  # before the first epoch
  records = _read(whole, 'metrics.jsonl')
  assert [r['epoch'] for r in records] == [0, 1]
  assert [r['drop_path_prob'] for r in records] == pytest.approx([0.0, 0.1])  # 0.2 * e / 2
  assert [r['lr'] for r in records] == pytest.approx([0.05, 0.0255])  # cosine per epoch
  assert all(r['train_step_traces'] == 1 and r['eval_step_compiles'] == 1 for r in records)
  assert all(0 <= r['test_accuracy'] <= 100 and np.isfinite(r['loss']) for r in records)
  assert summary['final_test_accuracy'] == records[-1]['test_accuracy']

  # A run stopped after its first checkpoint: the second epoch's checkpoint never written, its
  # metrics line left behind (the restart drops it), then resumed from the workdir alone.
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(whole, resumed)
  shutil.rmtree(os.path.join(resumed, 'checkpoints', '2'))
  proc = _cli(f'--workdir={resumed}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'restored checkpoint of epoch 1' in proc.stdout
  again = _read(resumed, 'metrics.jsonl')
  strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING} for r in rs]
  assert strip(again) == strip(records)
  jax.tree.map(np.testing.assert_array_equal, _state(resumed, 2), _state(whole, 2))


def test_nb201_smoke_benchmark_network_and_protocol(tmp_path):
  workdir = str(tmp_path / 'nb201')
  proc = _cli('--config=configs/nb201_standalone.py:smoke', f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  cell = genotypes.published('NB201_RESNET')
  summary = _read(workdir, 'summary.json')
  assert summary['num_params'] == summary['num_params_aux'] == nb201_num_params(cell, 4, 1, 10)
  assert summary['genotype'] == nb201.to_str(cell) and not summary['auxiliary']
  records = _read(workdir, 'metrics.jsonl')
  assert [r['epoch'] for r in records] == [0, 1]
  # Cosine per step to 0 over 2 epochs of 4 steps: the second epoch starts at step 4 of 8.
  assert [r['lr'] for r in records] == pytest.approx([0.1, 0.05])
  assert all(r['drop_path_prob'] == 0 for r in records)
  state = _state(workdir, 2)
  assert int(state['step']) == 8
  bn = state['batch_stats']['cell_0']['edge0']['BatchNorm_0']  # running statistics were kept
  assert not np.allclose(bn['mean'], 0) and not np.allclose(bn['var'], 1)


def test_bad_genotype_name_is_one_line_through_the_cli(tmp_path):
  workdir = tmp_path / 'bad'
  proc = _cli(
    '--config=configs/darts_final_cifar10.py:smoke',
    f'--workdir={workdir}',
    '--config.genotype=DARTS_V3',
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().count('\n') == 0
  assert proc.stderr.startswith(
    "error: config.genotype='DARTS_V3': unknown genotype name; expected one of DARTS, DARTS_V1, "
    'DARTS_V2, PC_DARTS'
  )
  assert not workdir.exists()


def _smoke_config(path='configs/darts_final_cifar10.py'):
  import importlib.util

  spec = importlib.util.spec_from_file_location('_final_config', os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('smoke')


def test_bad_inputs_fail_before_anything_is_written(tmp_path):
  bad_pair = nb301.to_str(genotypes.published('PDARTS')).replace(
    "('dil_conv_5x5', 4)", "('conv_7x7', 4)"
  )
  malformed = tmp_path / 'malformed.txt'
  malformed.write_text('\n' + bad_pair + '\n')
  no_key = tmp_path / 'no_key.json'
  no_key.write_text('{"arch": "x"}')
  cases = [
    (
      'genotype',
      str(tmp_path / 'missing.txt'),
      r"config.genotype='.*missing.txt': no such genotype file",
    ),
    (
      'genotype',
      str(malformed),
      r"genotype file .*malformed.txt: unknown op 'conv_7x7' in normal in NB301 genotype",
    ),
    (
      'genotype',
      str(no_key),
      r"genotype file .*no_key.json: expected a JSON object with a string 'genotype'",
    ),
    (
      'genotype',
      "Genotype(normal=[('sep_conv_3x3', 0)]",
      r'config.genotype: malformed text in NB301 genotype',
    ),
    (
      'data.name',
      'imagenet',
      r"config.data.name='imagenet': expected one of cifar10, synthetic, npz, imagenet_folder",
    ),
    (
      'data.synthetic_image_size',
      16,
      r'16x16 images with config.model.auxiliary=True: .* needs 32x32 images',
    ),
    (
      'model.drop_path_prob',
      1.0,
      r'config.model.drop_path_prob=1.0: expected a number >= 0.0 and < 1.0',
    ),
    ('model.channels', 5, r'config.model.channels=5: expected an even number'),
    ('data.synthetic_channels', 1, r"config.data.name='synthetic': images with 1 channels"),
  ]
  for key, value, message in cases:
    config = _smoke_config()
    group, _, name = key.rpartition('.')
    (config[group] if group else config)[name] = value
    workdir = tmp_path / 'never'
    with pytest.raises(ValueError, match=message) as info:
      run.run(config, str(workdir))
    assert '\n' not in str(info.value)
    assert not workdir.exists()
  config = _smoke_config('configs/darts_final_imagenet.py')
  config.data.fake_imagenet_per_class = 0
  config.data.imagenet_dir = str(tmp_path / 'no_imagenet')
  with pytest.raises(
    ValueError,
    match=r"config.data.imagenet_dir='.*no_imagenet': expected a directory holding train/ and val/",
  ):
    run.run(config, str(tmp_path / 'never'))


def test_genotype_files_as_the_search_writes_them(tmp_path):
  text = nb301.to_str(genotypes.published('PC_DARTS'))
  (tmp_path / 'g.txt').write_text(f'\n\n  {text}\n# chosen at iteration 7\n')
  (tmp_path / 'g.json').write_text(json.dumps({'genotype': text, 'accuracy': 91.2}))
  for path in ('g.txt', 'g.json'):
    arch = genotypes.resolve(str(tmp_path / path), 'nb301')
    np.testing.assert_array_equal(arch, genotypes.published('PC_DARTS'))
  np.testing.assert_array_equal(genotypes.resolve(text, 'nb301'), genotypes.published('PC_DARTS'))
  cell = '|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|'
  (tmp_path / 'cell.txt').write_text(cell)
  np.testing.assert_array_equal(
    genotypes.resolve(str(tmp_path / 'cell.txt'), 'nb201'), nb201.parse(cell)
  )
