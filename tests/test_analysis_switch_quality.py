"""Ranking quality around the switches: the plotted tau / P@top series and switch epochs of
hand-written workdirs, against the records themselves."""

import json
import os

import numpy as np

from close_jax.analysis import switch_quality
from configs import nb201 as nb201_config


def _ranking(epoch, when, tau, p5=None):
  top = {'0.1': 0.5} if p5 is None else {'0.05': p5, '0.1': 0.5}
  return {'epoch': epoch, 'when': when, 'kendall_tau': tau, 'precision_at_top': top}


def _workdir(path, rankings, blocks_per_epoch, config=None):
  os.makedirs(path)
  with open(os.path.join(path, 'rankings.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rankings)
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    for epoch, blocks in enumerate(blocks_per_epoch):
      f.write(json.dumps({'epoch': epoch, 'num_blocks': blocks, 'loss': 1.0}) + '\n')
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write((config or nb201_config.get_config('smoke')).to_json())
  return path


def test_series_switches_and_png(tmp_path):
  # Written out of order: after_switch before before_switch, the final ranking first.
  close = [
    _ranking(6, 'epoch', 0.61, 0.4),
    _ranking(2, 'after_switch', 0.2, 0.0),
    _ranking(2, 'before_switch', 0.3, 0.25),
    _ranking(2, 'epoch', 0.3, 0.25),
    _ranking(4, 'before_switch', 0.5, 0.5),
    _ranking(4, 'after_switch', 0.45),  # too few archs for a top-5% set: NaN
  ]
  a = _workdir(str(tmp_path / 'sum'), close, [1, 1, 2, 2, 3, 3])
  b = _workdir(str(tmp_path / 'none'), [_ranking(3, 'epoch', 0.1, 0.2)], [1, 2, 2, 2])
  out = str(tmp_path / 'quality.png')
  results = switch_quality.main(['--workdirs', a, b, '--labels', 'sum', 'none', '--out', out])
  r = results['sum']
  np.testing.assert_array_equal(r['epoch'], [2, 2, 2, 4, 4, 6])
  np.testing.assert_array_equal(r['kendall_tau'], [0.3, 0.3, 0.2, 0.5, 0.45, 0.61])
  np.testing.assert_array_equal(r['precision'], [0.25, 0.25, 0.0, 0.5, np.nan, 0.4])
  assert list(r['when']) == ['epoch', 'before_switch', 'after_switch'] * 1 + [
    'before_switch',
    'after_switch',
    'epoch',
  ]
  assert r['switches'] == [2, 4]
  assert results['none']['switches'] == [1]
  np.testing.assert_array_equal(results['none']['kendall_tau'], [0.1])
  assert os.path.getsize(out) > 1000


def test_switches_from_the_config_before_any_epoch_is_logged(tmp_path):
  config = nb201_config.get_config('smoke')  # switches at 3 and 6, CLOSE-S at 5
  path = _workdir(str(tmp_path / 'run'), [_ranking(0, 'epoch', 0.0, 0.0)], [], config)
  os.remove(os.path.join(path, 'metrics.jsonl'))
  assert switch_quality.analyse(path)['switches'] == [3, 6]
  config.method = 'close_s'
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config.to_json())
  assert switch_quality.analyse(path)['switches'] == [5]
