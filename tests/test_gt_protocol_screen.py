"""The standalone-protocol screen: resumable runs, contrast and seed sd against numpy, bad input."""

import json

import helpers
import numpy as np
import pytest

from close_jax.benchmarks import nb201_gt_trainer
from close_jax.data import idx


@pytest.fixture(scope='module')
def screen():
  return helpers.load_experiment('gt_protocol_screen')


def _accuracy(arch, seed, protocol):
  """Made up: the cell's conv count matters more with more cells per stage; seeds add noise."""
  code = nb201_gt_trainer.cell_code(arch)
  noise = np.random.default_rng(code * 10 + seed).normal()
  return 80 + protocol.cells_per_stage * float(np.sum(np.asarray(arch) >= 2)) + noise


class FakeTrainer:
  calls = 0

  def __init__(self, protocol, *_):
    self.protocol = protocol

  def accuracy(self, arch, seed):
    FakeTrainer.calls += 1
    return _accuracy(arch, seed, self.protocol)


@pytest.fixture
def fake(monkeypatch):
  FakeTrainer.calls = 0
  monkeypatch.setattr(nb201_gt_trainer, 'StandaloneTrainer', FakeTrainer)
  monkeypatch.setattr(idx, 'load_idx', lambda *a: None)
  monkeypatch.setattr(idx, 'load_idx_arrays', lambda *a: {'test_images': 0, 'test_labels': 0})
  return FakeTrainer


def test_screen_summarises_resumes_and_rejects_bad_input(screen, fake, tmp_path):
  argv = [f'--workdir={tmp_path}', '--protocol=n1:epochs=2', '--protocol=n3:cells_per_stage=3']
  out = screen.main(argv)
  assert fake.calls == 12  # 3 cells x 2 seeds x 2 protocols
  for name, per_stage in (('n1', 1), ('n3', 3)):
    protocol = nb201_gt_trainer.Protocol(cells_per_stage=per_stage)
    acc = np.array(
      [
        [_accuracy(screen.nb201.parse(c), s, protocol) for s in (0, 1)]
        for c in screen.DEFAULT_CELLS
      ]
    ).round(4)
    means = acc.mean(1)
    seed_sd = np.sqrt(np.mean([np.var(a, ddof=1) for a in acc]))
    assert out[name]['seed_sd'] == pytest.approx(seed_sd)
    assert out[name]['contrast'] == pytest.approx(means.max() - means.min())
  assert out['n3']['cells_per_stage'] == 3 and out['n1']['epochs'] == 2
  assert out['n3']['contrast'] > out['n1']['contrast']
  # a kill tore the last line: resuming trains only that run again
  lines = (tmp_path / 'screen_runs.jsonl').read_text().splitlines()
  (tmp_path / 'screen_runs.jsonl').write_text('\n'.join(lines[:-1]) + '\n' + lines[-1][:20])
  fake.calls = 0
  again = screen.main(argv)
  assert fake.calls == 1
  for name in out:
    assert again[name]['cell_means'] == out[name]['cell_means']
    assert again[name]['seed_sd'] == pytest.approx(out[name]['seed_sd'])
  assert json.loads((tmp_path / 'screen.json').read_text())['n1']['seed_sd'] == pytest.approx(
    out['n1']['seed_sd']
  )
  with pytest.raises(SystemExit, match=r"--protocol 'x:depth=2': expected NAME:KEY=INT"):
    screen.main([f'--workdir={tmp_path}', '--protocol=x:depth=2'])
  with pytest.raises(SystemExit, match=r"--cell '\|foo\|': 1 node groups"):
    screen.main([f'--workdir={tmp_path}', '--protocol=x:epochs=1', '--cell=|foo|'])
  with pytest.raises(SystemExit, match='--seeds=1: expected >= 2'):
    screen.main([f'--workdir={tmp_path}', '--protocol=x:epochs=1', '--seeds=1'])
