"""kill -9 at seeded random moments: restarted until done, the run equals an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from conftest import _CACHE
from helpers import assert_same_state, final_state, read_jsonl, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILLS = 2  # seeded targets: after epochs 2 and 4, the two switches (epoch 4: SRT too)
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


class _Cli:
  """One CLI run of FLAGS; the lines it prints (epochs, ranking progress, switches, SRT) are
  collected as they come, so a test can place a kill by the run's own progress."""

  def __init__(self, workdir):
    cmd = [sys.executable, '-m', 'close_jax.main', '--config=configs/nb201.py:smoke']
    cmd += [f'--config.{k}={v}' for k, v in FLAGS.items()] + [f'--workdir={workdir}']
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}  # each line as it is printed
    self.proc = subprocess.Popen(
      cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    self.lines, self.errors = [], []
    self._readers = [
      threading.Thread(target=lambda f=f, out=out: out.extend(f), daemon=True)
      for f, out in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))
    ]
    for reader in self._readers:
      reader.start()

  def wait_until(self, done) -> float:
    """Seconds until `done()` holds or the run ends."""
    start = time.perf_counter()
    while self.proc.poll() is None and not done():
      time.sleep(0.01)
    return time.perf_counter() - start

  def finish(self, timeout=300):
    self.proc.wait(timeout=timeout)
    for reader in self._readers:
      reader.join()
    assert self.proc.returncode == 0, ''.join(self.errors)[-3000:]


def _epochs_done(workdir) -> int:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for _ in f)


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
  """Kills are placed by the run's progress, never by a clock estimate of what is left: each
  restart is killed during its start-up (imports, checks, restore, compile cache loads) when its
  seeded target epoch is already done; otherwise once the target epoch is recorded, a seeded
  0-3 further lines of its output (ranking progress, switches, SRT, the next epoch) and a seeded
  0-0.3 s later, so kills land in compiles, steps, checkpoint writes, the switches (epochs 2 and
  4), the SRT and the rankings around them, however fast the machine is and whatever runs beside
  it. Every target leaves at least five lines of output to come, so a kill that finds the run
  finished fails the test (one is tolerated)."""
  reference = str(tmp_path / 'reference')
  run = _Cli(reference)
  startup = run.wait_until(lambda: os.path.exists(os.path.join(reference, 'config.json')))
  run.finish()
  workdir = str(tmp_path / 'killed')
  kills = 0
  rng = np.random.default_rng(9)
  for target in sorted(rng.integers(0, 5, KILLS).tolist()):  # epochs done before each kill
    already = _epochs_done(workdir)
    run = _Cli(workdir)
    if target <= already:
      time.sleep(rng.uniform(0.2, 1.0) * startup)
    else:
      run.wait_until(lambda target=target: _epochs_done(workdir) >= target)
      seen, more = len(run.lines), int(rng.integers(0, 4))
      run.wait_until(lambda run=run, seen=seen, more=more: len(run.lines) >= seen + more)
      time.sleep(rng.uniform(0.0, 0.3))
    if run.proc.poll() is None:
      run.proc.send_signal(signal.SIGKILL)
      kills += 1
    run.proc.wait()
  assert kills >= KILLS - 1, f'only {kills} of {KILLS} kills landed before the run finished'
  _Cli(workdir).finish()
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
