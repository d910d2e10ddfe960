"""Data parallelism: mesh setup in-process, then 8 fake devices and 2 processes (subprocesses)."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax import config_check, parallel
from close_jax.spaces import nb201
from close_jax.train_step import make_epoch_plan
from configs import nb201 as nb201_config

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'parallel_worker.py')


def _env(devices: int) -> dict:
  env = dict(os.environ)
  flags = env.get('XLA_FLAGS', '')  # the suite's (tests/conftest.py), then the device count
  env['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={devices}'.strip()
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_shard_rows_drops_the_ragged_tail_and_gather_reads_local_rows():
  mesh = parallel.make_mesh(1)
  table = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
  sharded = parallel.shard_rows(table, mesh)
  assert sharded.shape == (7, 2)
  index = jnp.asarray([[6, 0, 3]])
  np.testing.assert_array_equal(parallel.gather_rows(mesh, sharded, index), table[[6, 0, 3]])


def test_mesh_rejects_more_devices_than_exist():
  with pytest.raises(ValueError, match=r'config.num_devices=99 exceeds the 1 available'):
    parallel.make_mesh(99)


def test_epoch_plan_walks_each_shard_once_and_is_reproducible():
  mesh = parallel.make_mesh(1)
  plan = make_epoch_plan(mesh, shard_size=40, steps=4, local_batch=10, sample=nb201.sample)
  key = jax.random.key(0, impl='rbg')
  batches, archs = plan(key, 3)
  assert batches.shape == (4, 1, 10) and archs.shape == (4, 6)
  assert sorted(np.asarray(batches).ravel().tolist()) == list(range(40))
  again, _ = plan(key, 3)
  other, _ = plan(key, 4)
  np.testing.assert_array_equal(batches, again)
  assert not np.array_equal(batches, other)


@pytest.mark.parametrize(
  ('field', 'value', 'message'),
  [
    ('num_devices', -1, r'config.num_devices=-1 is invalid'),
    ('distributed.process_id', 2, r'config.distributed.process_id=2: expected -1 \(auto\) or 0'),
  ],
)
def test_config_check_rejects_bad_parallel_settings(field, value, message):
  config = nb201_config.get_config('smoke')
  config.distributed.num_processes = 2
  group, _, name = field.rpartition('.')
  (config[group] if group else config)[name] = value
  with pytest.raises(ValueError, match=message):
    config_check.validate(config)


def test_eight_devices_match_one_device_with_the_same_global_batch(tmp_path):
  out = tmp_path / 'eq.json'
  proc = subprocess.run(
    [sys.executable, WORKER, 'equivalence', str(out)],
    env=_env(8),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  for method in ('close',):
    assert result[f'{method}_8_param_devices'] == 8  # really replicated over 8 devices
    assert result[f'{method}_1_param_devices'] == 1
    assert result[f'{method}_param_change'] > 1e-3  # the steps did move the parameters
    assert result[f'{method}_param_diff'] < 1e-5
    assert result[f'{method}_opt_diff'] < 1e-5
    assert result[f'{method}_loss_diff'] < 1e-5
    assert result[f'{method}_score_diff'] == 0.0  # ranking split over devices: same scores
    assert result[f'{method}_compiles'] == [1, 1]


def test_two_processes_train_like_one_process(tmp_path):
  """Two processes of one device each against one process of two devices, all three started at
  once: the pair spends much of its time waiting on each other's collectives."""
  port = _free_port()
  workdir = tmp_path / 'multi'
  cmd = [sys.executable, WORKER, 'train', str(workdir)]
  procs = [
    subprocess.Popen(
      [*cmd, str(tmp_path / f'p{i}.npz'), str(i), '2', str(port)],
      env=_env(1),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  single = subprocess.Popen(
    [*cmd[:3], str(tmp_path / 'single'), str(tmp_path / 's.npz')],
    env=_env(2),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  logs = [p.communicate(timeout=600)[0] for p in (*procs, single)]
  for p, log in zip((*procs, single), logs, strict=True):
    assert p.returncode == 0, log[-3000:]
  assert 'on 2 device(s) in 2 process(es)' in logs[0]
  p0, p1, s = (np.load(tmp_path / f'{n}.npz') for n in ('p0', 'p1', 's'))
  assert int(p0['__process_count']) == 2 and int(s['__process_count']) == 1
  params = [k for k in p0.files if not k.startswith('__')]
  assert len(params) > 10
  for k in params:
    np.testing.assert_array_equal(p0[k], p1[k])  # both processes hold the same parameters
    np.testing.assert_allclose(p0[k], s[k], rtol=1e-5, atol=1e-6)
  assert float(p0['__kendall_tau']) == pytest.approx(float(s['__kendall_tau']))
  # Only process 0 writes metrics: one line per epoch, no duplicates.
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(line)['epoch'] for line in lines] == [0, 1]
