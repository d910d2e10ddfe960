"""experiments/bench_final.py keeps its output contract (last line: one JSON object), smoke size."""

import json
import os
import subprocess
import sys

import pytest

from close_jax.final import genotypes
from close_jax.final.param_count import darts_num_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_final_contract():
  """The smoke config's own step (the same program as the smoke run's, so the shared cache
  usually holds it): one compilation, throughput, XLA's memory figures, the parameter counts."""
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, 'experiments', 'bench_final.py'),
      '--config=configs/darts_final_cifar10.py:smoke',
      *('--steps', '2', '--warmup', '1', '--cache-dir', os.path.join(REPO, '.jax_cache')),
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = json.loads(proc.stdout.strip().splitlines()[-1])
  arch = genotypes.published('DARTS_V2')
  assert (row['network'], row['channels'], row['layers'], row['batch']) == ('darts_cifar', 4, 3, 16)
  assert row['num_params'] == darts_num_params(arch, 4, 3, 10, False)
  assert row['num_params_aux'] == darts_num_params(arch, 4, 3, 10, True)
  assert row['train_step_traces'] == 1 and row['compile_s'] > 0 and row['loss_finite']
  assert row['images_per_s'] > 0
  assert row['step_ms'] == pytest.approx(1000 * 16 / row['images_per_s'], rel=0.01)
  parts = row['xla_argument_mb'] + row['xla_output_mb'] - row['xla_alias_mb'] + row['xla_temp_mb']
  assert row['xla_temp_mb'] > 0 and row['xla_peak_mb'] == pytest.approx(parts, abs=0.02)
  assert row['peak_rss_mb'] > 0 and row['device'] == 'cpu'
