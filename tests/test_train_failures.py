"""Failures during training: a non-finite loss stops the run before the poisoned state is
checkpointed, and a failed write (disk full) names the path, keeps the previous files and is
survived by a rerun."""

import os
import re

import pytest
from helpers import read_jsonl, tiny_config

from close_jax import train
from close_jax.checkpoint import Checkpointer
from close_jax.spaces import nb201


def test_a_non_finite_loss_stops_before_checkpointing_the_poisoned_state(tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_config(num_epochs=2, **{'eval.at_end': False}), workdir)
  blow_up = {'optim.learning_rate': 1e30, 'optim.grad_clip_norm': 0.0, 'eval.at_end': False}
  with pytest.raises(FloatingPointError) as info:
    train.train_and_evaluate(tiny_config(num_epochs=4, **blow_up), workdir)
  message = str(info.value)
  match = re.fullmatch(
    r'non-finite training loss (nan|inf) at step (\d+) \(epoch 2, step (\d) of 8\), '
    r'architecture (\S+): training stopped, no checkpoint of this epoch written',
    message,
  )
  assert match, message
  assert int(match.group(2)) == 16 + int(match.group(3))
  nb201.parse(match.group(4))  # a real architecture string
  ckpt = Checkpointer(workdir)
  assert ckpt.latest_epoch() == 2  # the last good state stays the latest
  ckpt.close()
  assert [r['epoch'] for r in read_jsonl(workdir)] == [0, 1]


def test_a_failed_write_names_the_path_and_keeps_the_previous_files(tmp_path, monkeypatch):
  """Disk full (simulated: a root test process ignores read-only modes) at epoch 3's metrics
  line: a one-line error naming the file, no temporary left, the first three lines intact; the
  rerun resumes and finishes."""
  from close_jax import metric_writer

  workdir = str(tmp_path)
  config = tiny_config(num_epochs=5, **{'eval.at_end': False})
  real_replace = os.replace
  calls = {'n': 0}

  def full_disk(src, dst):
    if dst.endswith('metrics.jsonl'):
      calls['n'] += 1
      if calls['n'] == 4:
        raise OSError(28, 'No space left on device')
    return real_replace(src, dst)

  monkeypatch.setattr(metric_writer.os, 'replace', full_disk)
  with pytest.raises(metric_writer.WriteError) as info:
    train.train_and_evaluate(config, workdir)
  path = os.path.join(workdir, 'metrics.jsonl')
  assert str(info.value) == (
    f'cannot write {path}: No space left on device; the previous file is intact'
  )
  assert [r['epoch'] for r in read_jsonl(workdir)] == [0, 1, 2]
  assert not os.path.exists(path + '.tmp')
  monkeypatch.setattr(metric_writer.os, 'replace', real_replace)
  train.train_and_evaluate(config, workdir)
  assert [r['epoch'] for r in read_jsonl(workdir)] == [0, 1, 2, 3, 4]
