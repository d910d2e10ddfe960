"""The benchmark scripts keep their output contract (last line: one JSON object) on a tiny net."""

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from close_jax import spaces
from close_jax.spaces import nb201

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'experiments'))
from bench_common import archs_digest  # noqa: E402
from bench_profile import XLA_FAMILIES, family, self_times  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--channels', '2', '--cells', '1']


def _last_json(script: str, *args: str) -> dict:
  return _run_json(script, *args)[0]


def _run_json(script: str, *args: str) -> tuple[dict, str]:
  """The script's last line as JSON, and everything it printed."""
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, 'experiments', script), *args],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=REPO,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


def test_bench_reference_contract():
  """The JSON line of a CLOSENet run without the reference: its rate is the median of the two
  rounds it printed, five architectures trained on one compiled step, in the sampler's order."""
  result, printed = _run_json(
    'bench_reference.py',
    *TINY,
    *('--image-size', '8', '--batch', '8', '--rounds', '2', '--steps', '2', '--warmup', '1'),
    *('--space', 'nb201', '--method', 'close', '--blocks', '2', '--no-reference'),
  )
  assert result['space'] == 'nb201' and result['blocks'] == 2
  assert {'batch', 'close_jax_images_per_s', 'reference_images_per_s', 'ratio'} <= set(result)
  assert result['batch'] == 8
  rounds = [
    float(line.split('close_jax ')[1].split(' images/s')[0])
    for line in printed.splitlines()
    if line.startswith('round ')
  ]
  assert len(rounds) == 2 and min(rounds) > 0
  # The median of two rounds is their mean; the printed rates are rounded to 0.1.
  assert result['close_jax_images_per_s'] == pytest.approx(np.median(rounds), abs=0.051)
  assert result['reference_images_per_s'] is None and result['ratio'] is None
  assert result['distinct_archs'] >= 4
  assert result['train_step_traces'] == 1  # five architectures, one program
  assert result['peak_rss_mb'] > 0
  assert result['reference_archs'] is None
  archs = spaces.get('nb201').sample(jax.random.key(1), 4096, 'valid')[:5]  # the first 5 draws
  assert result['close_jax_archs'] == archs_digest(nb201.to_str(a) for a in np.asarray(archs))


def test_bench_reference_xautodl_contract():
  """The vanilla step beside xautodl's: both sides trained the same architectures in order."""
  pytest.importorskip('torch')
  pytest.importorskip('xautodl')
  result = _last_json(
    'bench_reference.py',
    *TINY,
    *('--image-size', '8', '--batch', '8', '--rounds', '2', '--steps', '2', '--warmup', '1'),
  )
  assert result['close_jax_archs'] == result['reference_archs']
  assert result['ratio'] == pytest.approx(
    result['close_jax_images_per_s'] / result['reference_images_per_s'], rel=0.01
  )


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
  assert result['archs'] == 5 and result['images'] == 64
  assert result['archs_per_s'] > 0
  # The CPU projection is the measured rate scaled to all 6466 cells on 10000 images.
  # archs_per_s is rounded to 0.001 in the JSON, the projection to 0.1: allow both roundings.
  rate = result['archs_per_s']
  projected = 6466 * (10000 / 64) / rate
  slack = 6466 * (10000 / 64) * 0.0005 / (rate * (rate - 0.0005)) + 0.051
  assert abs(result['cpu_projected_6466_s'] - projected) <= slack, (result, projected)
  assert result['evaluator_compiles'] == 1  # 5 architectures in 3 padded calls, one program
  assert result['mean_forward_mflops_per_image'] > 0
  assert result['rounds'] == 1 and result['reference_archs'] is None and result['ratio'] is None
  first5 = archs_digest(nb201.to_str(a) for a in nb201.deiso_representatives()[:5])
  assert result['close_jax_archs'] == first5


def test_bench_ranking_reference_contract():
  """Both sides score the first 5 classes, in order, in two alternating rounds."""
  pytest.importorskip('torch')
  pytest.importorskip('xautodl')
  result = _last_json(
    'bench_ranking.py',
    *TINY,
    *('--archs', '5', '--images', '64', '--batch', '32', '--chunk', '2', '--rounds', '2'),
    '--reference',
  )
  first5 = archs_digest(nb201.to_str(a) for a in nb201.deiso_representatives()[:5])
  assert result['close_jax_archs'] == result['reference_archs'] == first5
  assert result['ratio'] == pytest.approx(
    result['archs_per_s'] / result['reference_archs_per_s'], rel=0.01
  )
  assert result['evaluator_compiles'] == 1 and result['torch_threads'] >= 1


def test_bench_official_refuses_a_missing_checkout_in_one_line():
  """Through the script's own entry: exit status 2 and a message, no traceback."""
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, 'experiments', 'bench_official.py')],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert '--aw-nas-src is required' in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.parametrize(
  ('args', 'message'),
  [
    (['--aw-nas-src', '/nonexistent'], "--aw-nas-src='/nonexistent' has no examples/research"),
    (['--levels', '0,6', '--no-reference'], "--levels='0,6': NB201 CLOSENet levels are 1..5"),
    (['--levels', 'x', '--no-reference'], "--levels='x': expected comma-separated integers"),
    (['--batch', '0', '--no-reference'], '--batch=0: expected >= 1'),
  ],
)
def test_bench_official_rejects_bad_input(args, message, monkeypatch, capsys):
  """Each bad flag is one line naming the value, exit 2, before any work (in this process: the
  entry's exit status is checked above)."""
  code, err = _official_refusal(args, monkeypatch, capsys)
  assert code == 2 and message in err, err


def _official_refusal(args, monkeypatch, capsys) -> tuple[int, str]:
  """bench_official's `main()` on `args` in this process, its benchmark replaced by a function
  that fails if reached: (exit status, stderr)."""
  import bench_official

  def no_work(*_):
    raise AssertionError('bad input reached the benchmark')

  monkeypatch.setattr(bench_official, 'bench_level', no_work)
  monkeypatch.setattr(sys, 'argv', ['bench_official.py', *args])
  with pytest.raises(SystemExit) as info:
    bench_official.main()
  return info.value.code, capsys.readouterr().err


def test_bench_official_needs_torch_for_the_reference(tmp_path, monkeypatch, capsys):
  """Without torch, naming a checkout is refused up front, not after close_jax compiled."""
  if importlib.util.find_spec('torch') is not None:
    pytest.skip('torch is installed')
  config = tmp_path / 'examples/research/close/nb201/node_cl-2468_lr-4_mlp-200x3_wit.yaml'
  config.parent.mkdir(parents=True)
  config.write_text('{}\n')
  code, err = _official_refusal(['--aw-nas-src', str(tmp_path)], monkeypatch, capsys)
  assert code == 2 and 'the aw_nas reference needs torch' in err, err


def test_bench_official_contract():
  """The official CLOSENet (aw_nas checkout in $CLOSE_JAX_AW_NAS_SRC) against close_jax's at L=2:
  the same architectures in the same order on both sides, and equal parameter counts once the
  blocks aw_nas allocates above L are left out."""
  pytest.importorskip('torch')
  src = os.environ.get('CLOSE_JAX_AW_NAS_SRC', '')
  if not os.path.isdir(os.path.join(src, 'aw_nas')):
    pytest.skip('set CLOSE_JAX_AW_NAS_SRC to an aw_nas checkout')
  result = _last_json(
    'bench_official.py',
    *TINY,
    *('--aw-nas-src', src, '--levels', '2', '--image-size', '8', '--batch', '4'),
    *('--rounds', '2', '--steps', '1', '--warmup', '1'),
  )
  (row,) = result['rows']
  assert row['level'] == 2 and row['steps_per_side'] == 3
  assert len(row['close_jax_rounds']) == len(row['reference_rounds']) == 2
  assert row['close_jax_archs'] == row['reference_archs']
  assert row['params_match'] and row['close_jax_params'] == row['aw_nas_params_active']
  assert row['aw_nas_params_active'] < row['aw_nas_params_all']  # blocks 3..5 allocated, unused
  assert row['train_step_traces'] == 1
  assert result['model']['num_blocks_K'] == 5 and result['model']['gate'] == 'node'
  assert set(result['stubbed_modules']) <= {'torchvision'}


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


def test_profile_self_times_subtract_nested_events():
  """An op's self time excludes the ops nested in it (a `cond` around its branch's thunks)."""
  ev = lambda name, start, end: SimpleNamespace(
    name=name, start_ns=start, end_ns=end, duration_ns=end - start
  )
  events = [
    ev('cond.1', 0, 100),
    ev('conv.2', 10, 40),
    ev('fusion.3', 40, 90),
    ev('add.4', 120, 130),
  ]
  events += [ev('cond.1', 200, 260), ev('fusion.3', 210, 250)]
  assert self_times(events) == {'cond.1': 20 + 20, 'conv.2': 30, 'fusion.3': 50 + 40, 'add.4': 10}
  assert family('wrapped_reduce-window', XLA_FAMILIES) == 'reduction'  # split BN statistics
  assert family('transpose_copy_fusion', XLA_FAMILIES) == 'layout'
  assert family('conv_general_dilated', XLA_FAMILIES) == 'convolution'


def test_bench_profile_contract():
  """close_jax's side alone on a tiny network: its convolutions are found in the trace."""
  result = _last_json(
    'bench_profile.py',
    *TINY,
    *('--image-size', '8', '--batch', '4', '--steps', '1', '--warmup', '1', '--no-reference'),
  )
  fams = result['close_jax_ms_per_step']
  assert set(fams) <= {f for f, _ in XLA_FAMILIES} | {'other'}
  assert fams['convolution'] > 0 and 'torch_ms_per_step' not in result


def test_bench_mix_backward_contract():
  """Both backwards of CLOSENet's one-hot mix give the network's and the GATE's gradients alike
  (the script checks them equal before timing) on a tiny supernet, one compile per side."""
  import bench_mix_backward

  argv = ['--channels', '2', '--cells-per-stage', '1', '--batch', '4', '--image-size', '8']
  rows = bench_mix_backward.main([*argv, '--levels', '3', '--rounds', '2', '--reps', '1'])
  assert [r['level'] for r in rows] == [3]
  assert all(len(v) == 2 for v in rows[0]['rounds'].values()) and rows[0]['speedup'] > 0


@pytest.mark.parametrize(
  ('args', 'message'),
  [
    (['--levels', '1,5'], "--levels='1,5': expected comma-separated integers >= 2"),
    (['--levels', 'x'], "--levels='x': expected comma-separated integers >= 2"),
    (['--batch', '0'], '--batch=0: expected >= 1'),
  ],
)
def test_bench_mix_backward_rejects_bad_input(args, message, capsys):
  import bench_mix_backward

  with pytest.raises(SystemExit) as exc:
    bench_mix_backward.parse_args(args)
  assert exc.value.code == 2 and message in capsys.readouterr().err


def test_bench_standalone_refuses_epoch_forms_with_conv_only():
  import bench_standalone

  with pytest.raises(SystemExit, match='--epoch-forms and --conv-only: expected at most one'):
    bench_standalone.main(['--epoch-forms', '--conv-only'])
