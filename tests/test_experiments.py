"""The benchmark scripts keep their output contract (last line: one JSON object) on a tiny net."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--channels', '2', '--cells', '1']


def _last_json(script: str, *args: str) -> dict:
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, 'experiments', script), *args],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=REPO,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
  ('space', 'method', 'blocks'),
  [('nb201', 'close', '2'), ('nds_resnexta_smoke', 'close', '3')],  # vanilla: the same step
)
def test_bench_reference_contract(space, method, blocks):
  result = _last_json(
    'bench_reference.py',
    *TINY,
    *('--image-size', '8', '--batch', '8', '--rounds', '2', '--steps', '2', '--warmup', '1'),
    *('--space', space, '--method', method, '--blocks', blocks, '--no-reference'),
  )
  assert result['space'] == space and result['blocks'] == int(blocks)
  assert {'batch', 'close_jax_images_per_s', 'reference_images_per_s', 'ratio'} <= set(result)
  assert result['batch'] == 8
  assert result['close_jax_images_per_s'] > 0
  assert result['reference_images_per_s'] is None and result['ratio'] is None
  assert result['distinct_archs'] >= 4
  assert result['train_step_compiles'] == 1  # five architectures, one program
  assert result['peak_rss_mb'] > 0


def test_bench_reference_rejects_impossible_blocks():
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, 'experiments', 'bench_reference.py'), '--blocks', '3'],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  assert '--blocks=3: the vanilla nb201 supernet has 6 blocks' in proc.stderr


def test_bench_ranking_contract():
  result = _last_json(
    'bench_ranking.py', *TINY, '--archs', '5', '--images', '64', '--batch', '32', '--chunk', '2'
  )
  assert result['archs'] == 5
  assert result['archs_per_s'] > 0
  assert result['evaluator_compiles'] == 1  # 5 architectures in 3 padded calls, one program
  assert result['mean_forward_mflops_per_image'] > 0


def test_bench_accelerator_contract():
  """The accelerator sweep on CPU at toy size: one JSON line per variant with its figures, then
  the summary table; the command-buffer variant is skipped off GPU."""
  out = subprocess.run(
    [
      sys.executable,
      'experiments/bench_accelerator.py',
      *('--impls=dense', '--methods=close', '--dtypes=float32', '--batches=8'),
      *('--channels=4', '--cells=1', '--image-size=8', '--steps=2'),
      *('--rank-archs=2', '--rank-images=64', '--rank-batch=32', '--rank-chunk=2'),
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]
  assert len(rows) == 1
  row = rows[0]
  assert (row['variant'], row['edge_impl'], row['method'], row['batch']) == (
    'dense',
    'dense',
    'close',
    8,
  )
  assert row['images_per_s'] > 0 and row['archs_per_s'] > 0 and row['loss_finite']
  assert row['compile_s'] >= 0 and row['rank_compile_s'] > 0
  assert row['step_ms'] == pytest.approx(1000 * 8 / row['images_per_s'], rel=0.01)
  assert row['xla_flags'] == out.stdout.split("XLA_FLAGS='")[1].split("'")[0]
  assert 'switch_cmdbuf: skipped' in out.stdout and out.stdout.rstrip().endswith(
    f'{row["archs_per_s"]:>8.2f}'
  )
