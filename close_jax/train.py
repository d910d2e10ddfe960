"""The supernet trainer: a run's objects built once, then epochs of one compiled step per level.

`run_training` is a short sequence of named steps: restore or initialise the state, then per
epoch the curriculum switch, SRT, the epoch's steps, its record, its checkpoint and its ranking.
The config is prepared once (`prepare`: later keys, budget, validation) and the objects it names
(space, curriculum, optimizer, data, compiled scorers) are built once (`Run`) and passed down.
What a program does once at its start (XLA flags, distributed initialisation, the compilation
cache) is `close_jax.main`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from typing import NoReturn

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from close_jax import (
  config_check,
  gate_stats,
  optim,
  surgery,
  xla_flags,
)
from close_jax.checkpoint import Checkpointer
from close_jax.metric_writer import write_atomic
from close_jax.supernet import Supernet
from close_jax.supernet_run import Prepared, Run, prepare  # noqa: F401 (the trainer's API)
from close_jax.train_step import TrainState, make_epoch_plan


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


@dataclasses.dataclass
class Result:
  """What `run_training` returns: the final train state (replicated on the mesh), the last
  ranking's summary (ranking.json's content; None when the run ranked nothing) and the last
  trained epoch's metrics record (None when this process trained no epoch)."""

  state: TrainState
  ranking: dict | None
  metrics: dict | None


def train_and_evaluate(config: ml_collections.ConfigDict | Prepared, workdir: str) -> dict | None:
  """Trains (or resumes) the supernet in `workdir`, then ranks; returns the last ranking's
  summary (None when the config ranks nothing)."""
  return run_training(config, workdir).ranking


def run_training(config: ml_collections.ConfigDict | Prepared, workdir: str, hook=None) -> Result:
  """Trains (or resumes) the supernet in `workdir` and ranks it as the config asks.

  `hook` (an architecture search, `close_jax.search`) steers training without a loop of its own:
  `hook.start(run, start_epoch)` once (it restores its own state for a resumed run),
  `hook.pool(epoch)` the architectures to train on this epoch (None: the space's sampler), and
  `hook.end_of_epoch(done, supernet, params)` after each epoch, before its checkpoint, returning
  fields for the epoch's metrics record.
  """
  run = Run(config, workdir)  # loads and checks the data: nothing is written before it passes
  try:
    return _train(run, hook)
  finally:
    run.close()


@dataclasses.dataclass
class _Position:
  """Where training stands: epochs done, curriculum level, state and the last epoch's mean
  plateau metric (SRT's best value)."""

  epoch: int
  level: int
  state: TrainState
  plateau_value: float


@dataclasses.dataclass(frozen=True)
class _Inputs:
  """What every epoch of a training reads: the sharded training split, the epoch plan and the
  GATE probe architectures."""

  images: jax.Array
  labels: jax.Array
  plan: object
  probe: jax.Array | None


def _inputs(run: Run) -> _Inputs:
  config = run.config
  sample = functools.partial(run.space.sample, which=config.train_sampler)
  plan = make_epoch_plan(run.mesh, run.shard_size, run.steps_per_epoch, run.local_batch, sample)
  probe = None
  if config.eval.gate_probe_archs:
    probe = run.place(jnp.asarray(run.space.probe_archs(config.eval.gate_probe_archs, 0)))
  return _Inputs(*run.device_data(), plan, probe)


class _Level:
  """What one curriculum level compiles: its supernet, train step and GATE diagnostics."""

  def __init__(self, run: Run, level: int, probe: jax.Array | None):
    self.supernet = run.supernet(run.curriculum.block_counts[level])
    self.step = run.train_step(self.supernet)
    self.gate_probe = _GateProbe(self.supernet, probe)


def _train(run: Run, hook) -> Result:
  config = run.config
  with _checkpointer(run) as ckpt:
    position = _restore_or_init(run, ckpt)
    if config.mode == 'evaluate':
      return _evaluate(run, position)
    _start_outputs(run, position.epoch)
    if hook is not None:
      hook.start(run, position.epoch)
    inputs = _inputs(run)
    level = _Level(run, position.level, inputs.probe)
    ranking = _redo_lost_ranking(run, level, position)
    record = None
    for epoch in range(position.epoch, config.num_epochs):
      level, at_switch = _switch(run, level, position, epoch, inputs.probe)
      _srt(run, position, epoch)
      record = _train_epoch(run, inputs, level, position, epoch, hook, at_switch)
      _checkpoint(run, ckpt, level, position)
      ranking = _rank_if_due(run, level, position) or ranking
    return Result(position.state, ranking, record)


def _evaluate(run: Run, position: _Position) -> Result:
  """`mode=evaluate`: ranks the restored state; recorded in rankings.jsonl unless the training
  run recorded the ranking of that epoch already."""
  epoch, rankings = position.epoch, run.rankings
  supernet = run.supernet(run.curriculum.block_counts[position.level])
  ranking = rankings.rank(
    supernet, position.state.params, epoch, record=not rankings.recorded(epoch)
  )
  return Result(position.state, ranking, None)


@contextlib.contextmanager
def _checkpointer(run: Run):
  """The run's Checkpointer, opened after every check passed (it creates the workdir)."""
  directory = os.path.join(os.path.abspath(run.workdir), 'checkpoints')
  if run.config.mode == 'evaluate' and not _has_checkpoints(directory):
    _no_checkpoint(directory)
  os.makedirs(run.workdir, exist_ok=True)
  ckpt = Checkpointer(run.workdir, run.config.keep_checkpoints)
  try:
    yield ckpt
  finally:
    ckpt.close()


def _has_checkpoints(directory: str) -> bool:
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _no_checkpoint(directory: str) -> NoReturn:
  raise FileNotFoundError(
    f'config.mode=evaluate needs a checkpoint in {directory}; none was found (train first)'
  )


def _restore_or_init(run: Run, ckpt: Checkpointer) -> _Position:
  """The newest checkpoint that restores, checked against the config; else a fresh state."""
  config, curriculum = run.config, run.curriculum
  saved_path = os.path.join(run.workdir, 'config.json')
  if ckpt.latest_epoch() is not None and os.path.exists(saved_path):
    with open(saved_path) as f:
      config_check.check_resumable(json.load(f), config, run.workdir)

  def abstract_of(meta: dict):
    level = int(meta.get('level', 0))
    where = f'checkpoint of epoch {meta.get("epoch")} in {ckpt.directory}'
    if meta.get('method', config.method) != config.method or level >= curriculum.num_levels:
      raise ValueError(
        f'{where} is a {meta.get("method")!r} run at level {level}: it does not match '
        f'config.method={config.method!r} with {curriculum.num_levels} levels'
      )
    if meta.get('optimizer_state') != optim.STATE_FORMAT:
      raise ValueError(
        f'{where} holds the per-step plateau controller of an earlier close_jax, not '
        f'{optim.STATE_FORMAT!r}: it cannot be restored, train again in a new --workdir'
      )
    return jax.eval_shape(functools.partial(run.initial_state, curriculum.block_counts[level]))

  restored = ckpt.restore_newest(abstract_of, run.replicated, _log)
  if restored is None:
    if config.mode == 'evaluate':
      _no_checkpoint(ckpt.directory)
    return _Position(0, 0, run.initial_state(curriculum.block_counts[0]), float('inf'))
  epoch, meta, state = restored
  level = int(meta.get('level', 0))
  _log(f'restored checkpoint of epoch {epoch} (level {level}) from {ckpt.directory}')
  interval_map = meta.get('interval_map')
  if (
    interval_map is not None
    and interval_map != run.supernet(curriculum.block_counts[level]).interval_map()
  ):
    raise ValueError(
      f'checkpoint of epoch {epoch} in {ckpt.directory} has the position -> block map '
      f"{interval_map}, not the one config.close gives at level {level}: keep the run's config"
    )
  return _Position(epoch, level, state, float(meta.get('plateau_value', float('inf'))))


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """WORKDIR/config.json: the run's config and the XLA flags it ran with (process 0)."""
  if jax.process_index() != 0:
    return
  saved = json.loads(config.to_json_best_effort())
  saved[xla_flags.RECORDED_KEY] = xla_flags.in_effect()
  write_atomic(
    os.path.join(workdir, 'config.json'), lambda f: json.dump(saved, f, indent=2, sort_keys=True)
  )


def _start_outputs(run: Run, start_epoch: int) -> None:
  """config.json, and the records a resumed run will write again dropped (no duplicates)."""
  config = run.config
  _write_config(config, run.workdir)
  run.metrics.truncate_from_epoch(start_epoch)
  run.rankings.drop_to_redo(start_epoch)
  curriculum = run.curriculum
  _log(
    f'training {config.method} supernet: {run.steps_per_epoch} steps/epoch x batch '
    f'{config.batch_size} on {run.mesh.size} device(s) in {jax.process_count()} process(es), '
    f'epochs {start_epoch}..{config.num_epochs}, blocks per cell {curriculum.block_counts} '
    f'from epochs {curriculum.start_epochs}'
  )


def _ranking_due(config: ml_collections.ConfigDict, done: int) -> bool:
  return done in config.eval.eval_epochs or (done == config.num_epochs and config.eval.at_end)


def _redo_lost_ranking(run: Run, level: _Level, position: _Position) -> dict | None:
  """The previous process stopped between the checkpoint of this epoch and its ranking."""
  epoch = position.epoch
  if epoch and _ranking_due(run.config, epoch) and not run.rankings.recorded(epoch):
    return run.rankings.rank(level.supernet, position.state.params, epoch)
  return None


def _switch(run: Run, level: _Level, position: _Position, epoch: int, probe) -> tuple:
  """A curriculum switch at `epoch` (surgery to the next level's blocks), ranked around it
  with `eval.at_switches`; returns the level and the GATE diagnostics right after it."""
  curriculum, at_switches = run.curriculum, run.config.eval.at_switches
  new = curriculum.level_at(epoch)
  if new == position.level:
    return level, {}
  state = position.state
  if at_switches:
    run.rankings.rank(level.supernet, state.params, epoch, 'before_switch')
  old_blocks = level.supernet.num_blocks
  state = surgery.advance(
    state,
    run.tx,
    run.fresh_params(),
    curriculum.block_counts[new],
    curriculum.parent,
    curriculum.wit,
    curriculum.max_blocks,
  )
  position.state, position.level = run.place(state), new
  level = _Level(run, new, probe)
  at_switch = level.gate_probe.record(position.state.params, 'switch_')
  interval_map = level.supernet.interval_map()
  _log(
    f'epoch {epoch}: sharing extent reduced, {old_blocks} -> {level.supernet.num_blocks} '
    f'blocks per cell (WIT {curriculum.wit})'
    + _gate_text(at_switch, 'switch_')
    + (f'  positions -> blocks {interval_map}' if interval_map else '')
  )
  if at_switches:
    run.rankings.rank(level.supernet, position.state.params, epoch, 'after_switch')
  return level, at_switch


def _srt(run: Run, position: _Position, epoch: int) -> None:
  """SRT: fresh optimizer state, the plateau controller's best value the last epoch's mean."""
  if epoch not in run.curriculum.lr_restart_epochs:
    return
  state = position.state
  opt_state = optim.restart(run.tx, state.params, position.plateau_value)
  position.state = run.place(state.replace(opt_state=opt_state))
  metric = 'loss' if run.config.optim.plateau_metric == 'train_loss' else 'error'
  _log(
    f'epoch {epoch}: SRT, optimizer state reset, plateau controller best value '
    f"{position.plateau_value:.4g} (the previous epoch's mean training {metric})"
  )


def _train_epoch(
  run: Run, inputs: _Inputs, level: _Level, position: _Position, epoch: int, hook, at_switch
) -> dict:
  """The epoch's steps, then the plateau step and the epoch's record (metrics.jsonl)."""
  config, steps, counter = run.config, run.steps_per_epoch, run.train_counter
  start = time.perf_counter()
  pool = hook.pool(epoch) if hook is not None else None
  batches, archs = inputs.plan(run.plan_key, epoch, None if pool is None else run.place(pool))
  shape_keys = level.supernet.shape_keys(archs)
  lr = optim.learning_rate(position.state.opt_state, config.optim.learning_rate)
  state, step_metrics = position.state, []
  for i in range(steps):
    state, metrics = level.step(
      state,
      inputs.images,
      inputs.labels,
      batches[i],
      archs[i],
      run.step_key,
      shape_key=shape_keys[i],
    )
    step_metrics.append(metrics)
  step_metrics = jax.device_get(step_metrics)
  seconds = time.perf_counter() - start
  record = {name: float(np.mean([m[name] for m in step_metrics])) for name in step_metrics[0]}
  if not math.isfinite(record['loss']):  # before any checkpoint of this poisoned state
    _raise_non_finite(step_metrics, archs, epoch, steps, run.space)
  value = optim.plateau_value(config.optim.plateau_metric, record['loss'], record['accuracy'])
  opt_state = optim.end_of_epoch(state.opt_state, value, config.optim, run.steps_per_epoch)
  position.state = state.replace(opt_state=(*opt_state[:-1], run.place(opt_state[-1])))
  position.plateau_value, position.epoch = value, epoch + 1
  record.update(
    epoch=epoch,
    step=int(state.step),
    seconds=round(seconds, 3),
    level=position.level,
    num_blocks=level.supernet.num_blocks,
    lr=lr,
    images_per_s=round(steps * config.batch_size / seconds, 2),
    train_step_traces=counter.count,
    train_step_executables=counter.executables,
  )
  record.update(at_switch)
  record.update(level.gate_probe.record(state.params))
  if hook is not None:
    record.update(hook.end_of_epoch(epoch + 1, level.supernet, state.params))
  run.metrics.write(record)
  eta = _format_eta(seconds * (config.num_epochs - epoch - 1))
  _log(
    f'epoch {epoch + 1}/{config.num_epochs}  loss {record["loss"]:.4f}  '
    f'acc {record["accuracy"]:.4f}  lr {lr:.4g}  blocks {level.supernet.num_blocks}  '
    f'{record["images_per_s"]:.1f} img/s  compiles {counter.count}  ETA {eta}' + _gate_text(record)
  )
  return record


def _checkpoint(run: Run, ckpt: Checkpointer, level: _Level, position: _Position) -> None:
  done, config = position.epoch, run.config
  if done % config.checkpoint_every_epochs and done != config.num_epochs:
    return
  meta = {
    'epoch': done,
    'method': config.method,
    'level': position.level,
    'num_blocks': level.supernet.num_blocks,
    'plateau_value': position.plateau_value,  # the SRT of a resumed run needs it
    'optimizer_state': optim.STATE_FORMAT,
  }
  if interval_map := level.supernet.interval_map():
    meta['interval_map'] = interval_map
  ckpt.save(done, position.state, meta)


def _rank_if_due(run: Run, level: _Level, position: _Position) -> dict | None:
  if _ranking_due(run.config, position.epoch):
    return run.rankings.rank(level.supernet, position.state.params, position.epoch)
  return None


def _format_eta(seconds: float) -> str:
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


def _raise_non_finite(step_metrics, archs, epoch: int, steps: int, space) -> None:
  """Names the first step whose loss is not finite and its architecture. The losses are read
  once per epoch, not per step: a per-step read would stall the accelerator's queue; the last
  checkpoint (of an earlier epoch) stays the latest."""
  i = next(i for i, m in enumerate(step_metrics) if not math.isfinite(float(m['loss'])))
  arch = space.to_str(np.asarray(jax.device_get(archs[i])))
  raise FloatingPointError(
    f'non-finite training loss {float(step_metrics[i]["loss"])} at step {epoch * steps + i + 1} '
    f'(epoch {epoch}, step {i + 1} of {steps}), architecture {arch}: training stopped, no '
    f'checkpoint of this epoch written'
  )


class _GateProbe:
  """The GATE diagnostics of one curriculum level (nothing without a learned multi-block gate)."""

  def __init__(self, supernet: Supernet, probe: jax.Array | None):
    self.probe = probe
    self.stats = None
    if probe is not None and gate_stats.has_gate(supernet):
      self.stats = gate_stats.make_gate_stats(supernet)

  def record(self, params, prefix: str = '') -> dict:
    if self.stats is None:
      return {}
    return gate_stats.to_record(self.stats(params, self.probe), prefix)


def _gate_text(record: dict, prefix: str = '') -> str:
  if f'{prefix}gate_spread' not in record:
    return ''
  return (
    f'  gate entropy {record[f"{prefix}gate_entropy"]:.3f} '
    f'spread {record[f"{prefix}gate_spread"]:.3g}'
  )
