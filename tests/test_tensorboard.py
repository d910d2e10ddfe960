"""TensorBoard scalars written by MetricWriter, read back from the event files' records (the
TFRecord framing and tensorboardX's Event protobuf; no TensorFlow or tensorboard needed)."""

import glob
import os
import struct

import pytest

from close_jax.metric_writer import MetricWriter

pytest.importorskip('tensorboardX')
from tensorboardX.proto import event_pb2  # noqa: E402


def read_scalars(logdir: str) -> tuple[dict[str, list[tuple[int, float]]], list[int]]:
  """({tag: [(step, value), ...]}, [steps of session-start markers]) over the event files, in
  file order. Record framing: uint64 length, uint32 crc, data, uint32 crc."""
  scalars, starts = {}, []
  for path in sorted(glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack('<Q', data[pos : pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      if event.HasField('session_log') and event.session_log.status == 1:  # START
        starts.append(event.step)
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars, starts


def test_records_round_trip(tmp_path):
  workdir = str(tmp_path)
  writer = MetricWriter(workdir, tensorboard=True)
  records = [
    {
      'epoch': e,
      'step': 8 * (e + 1),
      'loss': 2.0 - 0.25 * e,
      'accuracy': 0.1 * e,
      'lr': 0.05,
      'num_blocks': 1 + e // 2,
      'gate_marginal': [0.25 * e, 1 - 0.25 * e],
      'level': e // 2,
    }
    for e in range(4)
  ]
  for r in records:
    writer.write(r)
  rankings = MetricWriter(workdir, filename='rankings.jsonl', tensorboard=True)
  rankings.write(
    {
      'epoch': 2,
      'when': 'epoch',
      'num_blocks': 1,
      'kendall_tau': 0.5,
      'spearman_rho': 0.6,
      'precision_at_top': {'0.05': 0.25},
      'num_archs': 24,
    }
  )
  rankings.write(
    {
      'epoch': 2,
      'when': 'after_switch',
      'num_blocks': 2,
      'kendall_tau': 0.4,
      'spearman_rho': 0.5,
      'precision_at_top': {'0.05': 0.0},
      'num_archs': 24,
    }
  )
  scalars, _ = read_scalars(os.path.join(workdir, 'tensorboard'))
  for name in ('loss', 'accuracy', 'lr', 'num_blocks', 'level'):
    assert scalars[f'train/{name}'] == [(r['epoch'] + 1, pytest.approx(r[name])) for r in records]
  assert scalars['train/gate_marginal/1'] == [(e + 1, 1 - 0.25 * e) for e in range(4)]
  assert 'train/epoch' not in scalars and 'train/step' not in scalars
  assert scalars['ranking/kendall_tau'] == [(2, 0.5)]
  assert scalars['ranking/precision_at_top/0.05'] == [(2, 0.25)]
  assert scalars['ranking_after_switch/kendall_tau'] == [(2, pytest.approx(0.4))]
  assert scalars['ranking_after_switch/num_blocks'] == [(2, 2.0)]
  assert writer.read() == records  # the jsonl is unchanged by the events


def test_resume_marks_a_purge_and_off_switch(tmp_path):
  workdir = str(tmp_path)
  first = MetricWriter(workdir, tensorboard=True)
  for e in range(3):
    first.write({'epoch': e, 'loss': float(e)})
  first.close()
  resumed = MetricWriter(workdir, tensorboard=True)
  resumed.truncate_from_epoch(1)  # the checkpoint of epoch 1: epochs 1.. are trained again
  resumed.write({'epoch': 1, 'loss': 10.0})
  scalars, starts = read_scalars(os.path.join(workdir, 'tensorboard'))
  assert starts[-1] == 2  # TensorBoard drops the old steps >= 2 (epoch 1 onwards)
  assert scalars['train/loss'][-1] == (2, 10.0)
  off = str(tmp_path / 'off')
  os.makedirs(off)
  MetricWriter(off, tensorboard=False).write({'epoch': 0, 'loss': 1.0})
  MetricWriter(off, enabled=False, tensorboard=True).write({'epoch': 0, 'loss': 1.0})
  assert not os.path.exists(os.path.join(off, 'tensorboard'))
