"""kill -9 at seeded random moments: restarted until done, the run equals an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import _CACHE
from helpers import assert_same_state, final_state, read_jsonl, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILLS = 5
FLAGS = {  # a CLOSE run with two switches, an SRT, rankings during and after training
  'method': 'close',
  'num_epochs': 6,
  'close.cl_schedule': '(0,2,4)',
  'close.lr_restart_epochs': '(4,)',
  'eval.eval_epochs': '(3,)',
  'eval.at_switches': 'True',
  'data.synthetic_num_train': 256,
  'data.synthetic_num_rank': 64,
  'batch_size': 32,
  'eval.num_archs': 12,
  'eval.batch_size': 32,
  'compilation_cache_dir': _CACHE,
}


def _start(workdir):
  cmd = [sys.executable, '-m', 'close_jax.main', '--config=configs/nb201.py:smoke']
  cmd += [f'--config.{k}={v}' for k, v in FLAGS.items()] + [f'--workdir={workdir}']
  return subprocess.Popen(
    cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
  )


def _finish(proc, timeout=300):
  _, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, err[-3000:]


def _epochs_done(workdir) -> int:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for _ in f)


def _wait(proc, done) -> float:
  start = time.perf_counter()
  while proc.poll() is None and not done():
    time.sleep(0.02)
  return time.perf_counter() - start


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
  """Kills are placed by progress, not by wall time: each restart is killed either during its
  start-up (imports, checks, restore, compile cache loads) when its seeded target epoch is already
  done, or after the target epoch ends, a seeded fraction (0-0.8) of the time the uninterrupted
  run still needed from there, scaled by the restart's own pace, so the kill lands in steps,
  checkpoint writes, the switches (epochs 2 and 4), the SRT or the rankings around them however
  fast the machine is and whatever runs beside it. A run that still finishes first is not a kill;
  all but one must land."""
  reference = str(tmp_path / 'reference')
  proc = _start(reference)
  startup = _wait(proc, lambda: os.path.exists(os.path.join(reference, 'config.json')))
  done_at = [_wait(proc, lambda e=e: _epochs_done(reference) >= e) for e in range(1, 7)]
  done_at = np.cumsum(done_at)  # seconds after start-up at which each epoch was recorded
  run_seconds = done_at[-1] + _wait(proc, lambda: False)
  _finish(proc)
  workdir = str(tmp_path / 'killed')
  kills = 0
  rng = np.random.default_rng(0)
  for target in sorted(rng.integers(0, 5, KILLS).tolist()):  # epochs done before each kill
    already = _epochs_done(workdir)
    started = time.perf_counter()
    proc = _start(workdir)
    if target <= already:
      time.sleep(rng.uniform(0.2, 1.0) * startup)
    else:
      _wait(proc, lambda target=target: _epochs_done(workdir) >= target)
      # This restart's pace against the reference's over the same work (start-up, then the
      # epochs from `already` to `target`): the two run under whatever else the machine does
      # at the time, and the restart finds the reference's compiles in the persistent cache.
      same_work = startup + done_at[target - 1] - (done_at[already - 1] if already else 0.0)
      pace = (time.perf_counter() - started) / same_work
      time.sleep(rng.uniform(0.0, 0.8) * pace * (run_seconds - done_at[target - 1]))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.wait()
  assert kills >= KILLS - 1, f'only {kills} of {KILLS} kills landed before the run finished'
  _finish(_start(workdir))
  config = tiny_config(**{'method': 'close', 'close.cl_schedule': (0, 2, 4)})
  assert_same_state(final_state(reference, config), final_state(workdir, config))
  assert [r['epoch'] for r in read_jsonl(workdir)] == list(range(6))  # no duplicate or gap
  for name in ('metrics.jsonl', 'rankings.jsonl'):
    ref, got = read_jsonl(reference, name), read_jsonl(workdir, name)
    drop = ('seconds', 'images_per_s', 'train_step_traces', 'train_step_executables')
    assert [{k: v for k, v in r.items() if k not in drop} for r in got] == [
      {k: v for k, v in r.items() if k not in drop} for r in ref
    ]
  with open(os.path.join(reference, 'ranking.json')) as f:
    ref = json.load(f)
  with open(os.path.join(workdir, 'ranking.json')) as f:
    got = json.load(f)
  for key in ('kendall_tau', 'spearman_rho', 'precision_at_top', 'num_archs', 'epoch'):
    assert got[key] == ref[key]
  with (
    open(os.path.join(reference, 'ranking.csv')) as a,
    open(os.path.join(workdir, 'ranking.csv')) as b,
  ):
    assert a.read() == b.read()
