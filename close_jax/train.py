"""The training loop: epochs of jitted steps, metrics, checkpoints, resume, final ranking."""

from __future__ import annotations

import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from close_jax import (
  budget,
  config_check,
  evaluate,
  gate_stats,
  optim,
  parallel,
  spaces,
  surgery,
  xla_flags,
)
from close_jax import curriculum as curriculum_lib
from close_jax.checkpoint import Checkpointer
from close_jax.data import load_dataset
from close_jax.metric_writer import MetricWriter, write_atomic
from close_jax.supernet import Supernet, build_supernet
from close_jax.train_step import TraceCounter, TrainState, make_epoch_plan, make_train_step


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def enable_compilation_cache(path: str) -> None:
  """The persistent XLA cache cuts a rerun's compile 2-3x (measured); empty path disables it."""
  if path:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(path))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() != 0:
    return
  write_atomic(
    os.path.join(workdir, 'config.json'),
    lambda f: json.dump(
      {**json.loads(config.to_json_best_effort()), xla_flags.RECORDED_KEY: xla_flags.in_effect()},
      f,
      indent=2,
      sort_keys=True,
    ),
  )


def _format_eta(seconds: float) -> str:
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


class _Run:
  """What one training run builds once: mesh, data, curriculum, optimizer, keys, fresh params."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config = config
    self.mesh = parallel.make_mesh(config.num_devices)
    devices = self.mesh.size
    if config.batch_size % devices:
      raise ValueError(
        f'config.batch_size={config.batch_size} must be a multiple of the {devices} devices '
        '(every device trains an equal part of the global batch)'
      )
    self.dataset = load_dataset(config.data)
    if config.batch_size > self.dataset.num_train:
      raise ValueError(
        f'config.batch_size={config.batch_size} exceeds the '
        f'{self.dataset.num_train} training images'
      )
    if config.eval.batch_size > len(self.dataset.rank_images):
      raise ValueError(
        f'config.eval.batch_size={config.eval.batch_size} exceeds the '
        f'{len(self.dataset.rank_images)} ranking images'
      )
    self.space = spaces.get(config.space)
    self.curriculum = curriculum_lib.from_config(config)
    # One writer for every ranking of the run: one TensorBoard event file, not one per ranking.
    self.rankings = MetricWriter(
      workdir, jax.process_index() == 0, 'rankings.jsonl', config.tensorboard
    )
    self.local_batch = config.batch_size // devices
    self.shard_size = self.dataset.num_train // devices
    self.steps_per_epoch = self.shard_size // self.local_batch
    self.tx = optim.from_config(config, self.steps_per_epoch)
    key = jax.random.key(config.seed, impl=config.prng_impl)
    self.init_key, self.plan_key, self.step_key = (jax.random.fold_in(key, i) for i in range(3))
    self.eval_key = jax.random.key(config.eval.seed, impl=config.prng_impl)
    full = self.supernet(self.curriculum.max_blocks)
    self.replicated = parallel.replicated(self.mesh)
    self._fresh = jax.jit(
      lambda: full.init(self.init_key, self.dataset.image_shape), out_shardings=self.replicated
    )
    # Surgery and SRT run eagerly between segments; this puts their result back on the mesh
    # with the sharding the compiled step expects, so nothing recompiles for placement.
    self.place = jax.jit(lambda tree: tree, out_shardings=self.replicated)

  def supernet(self, num_blocks: int) -> Supernet:
    return build_supernet(self.config, self.dataset.num_classes, num_blocks)

  def fresh_params(self) -> dict:
    """The K-block initial draw; every level's new blocks take their own init from it."""
    return self._fresh()

  def initial_state(self, num_blocks: int) -> TrainState:
    params = surgery.initial_params(self.fresh_params(), num_blocks, self.curriculum)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params))
    return self.place(state)

  def train_step(self, supernet: Supernet, counter: TraceCounter):
    cfg = self.config
    return make_train_step(
      supernet,
      self.tx,
      mean=self.dataset.mean,
      std=self.dataset.std,
      crop_padding=cfg.data.crop_padding,
      hflip=cfg.data.hflip,
      plateau_metric=cfg.optim.plateau_metric,
      mesh=self.mesh,
      counter=counter,
    )

  def device_data(self) -> tuple[jax.Array, jax.Array]:
    """The training split, one shard of rows per device (each process places its own)."""
    data = self.dataset
    return (
      parallel.shard_rows(data.train_images, self.mesh),
      parallel.shard_rows(data.train_labels, self.mesh),
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the supernet in `workdir`, then ranks; returns the last summary."""
  return run_training(config, workdir)[1]


def run_training(
  config: ml_collections.ConfigDict, workdir: str, hook=None
) -> tuple[TrainState, dict]:
  """`train_and_evaluate`, also returning the final train state (replicated on the mesh).

  `hook` (an architecture search, `close_jax.search`) steers training without a loop of its own:
  `hook.start(run, start_epoch)` once (it restores its own state for a resumed run),
  `hook.pool(epoch)` the architectures to train on this epoch (None: the space's sampler), and
  `hook.end_of_epoch(done, supernet, params)` after each epoch, before its checkpoint, returning
  fields for the epoch's metrics record.
  """
  config_check.fill_later_keys(config)
  for change in budget.scale_to_budget(config):
    _log(f'budget_epochs={config.budget_epochs}: {change}')
  config_check.validate(config)
  parallel.initialize_distributed(config.distributed)
  enable_compilation_cache(config.compilation_cache_dir)
  run = _Run(config, workdir)  # loads and checks the data: nothing is written before it passes
  checkpoints = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if config.mode == 'evaluate' and not os.path.isdir(checkpoints):
    raise FileNotFoundError(
      f'config.mode=evaluate needs a checkpoint in {checkpoints}; none was found (train first)'
    )
  os.makedirs(workdir, exist_ok=True)
  curriculum = run.curriculum
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  writer = MetricWriter(workdir, jax.process_index() == 0, tensorboard=config.tensorboard)
  saved_path = os.path.join(workdir, 'config.json')
  if ckpt.latest_epoch() is not None and os.path.exists(saved_path):
    with open(saved_path) as f:
      config_check.check_resumable(json.load(f), config, workdir)

  def abstract_of(meta: dict):
    level = int(meta.get('level', 0))
    if meta.get('method', config.method) != config.method or level >= curriculum.num_levels:
      raise ValueError(
        f'checkpoint of epoch {meta.get("epoch")} in {ckpt.directory} is a '
        f'{meta.get("method")!r} run at level {level}: it does not match '
        f'config.method={config.method!r} with {curriculum.num_levels} levels'
      )
    return jax.eval_shape(functools.partial(run.initial_state, curriculum.block_counts[level]))

  restored = ckpt.restore_newest(abstract_of, run.replicated, _log)
  if restored is None:
    if config.mode == 'evaluate':
      raise FileNotFoundError(
        f'config.mode=evaluate needs a checkpoint in {ckpt.directory}; none was found (train first)'
      )
    start_epoch, level, plateau_value = 0, 0, float('inf')
    state = run.initial_state(curriculum.block_counts[0])
  else:
    start_epoch, meta, state = restored
    level = int(meta.get('level', 0))
    plateau_value = float(meta.get('plateau_value', float('inf')))
    _log(f'restored checkpoint of epoch {start_epoch} (level {level}) from {ckpt.directory}')
  supernet = run.supernet(curriculum.block_counts[level])
  saved_map = restored[1].get('interval_map') if restored else None
  if saved_map is not None and saved_map != supernet.interval_map():
    raise ValueError(
      f'checkpoint of epoch {start_epoch} in {ckpt.directory} has the position -> block map '
      f"{saved_map}, not the one config.close gives at level {level}: keep the run's config"
    )

  if config.mode == 'evaluate':
    result = _rank(run, supernet, state, workdir, start_epoch)
    ckpt.close()
    return state, result

  _write_config(config, workdir)
  writer.truncate_from_epoch(start_epoch)
  _drop_rankings_to_redo(workdir, start_epoch)
  counter = TraceCounter()
  train_step = run.train_step(supernet, counter)
  images, labels = run.device_data()
  steps = run.steps_per_epoch
  sample = functools.partial(run.space.sample, which=config.train_sampler)
  plan = make_epoch_plan(run.mesh, run.shard_size, steps, run.local_batch, sample)
  _log(
    f'training {config.method} supernet: {steps} steps/epoch x batch {config.batch_size} '
    f'on {run.mesh.size} device(s) in {jax.process_count()} process(es), '
    f'epochs {start_epoch}..{config.num_epochs}, blocks per cell {curriculum.block_counts} '
    f'from epochs {curriculum.start_epochs}'
  )
  if hook is not None:
    hook.start(run, start_epoch)
  probe = None
  if config.eval.gate_probe_archs:
    probe = run.place(jnp.asarray(run.space.probe_archs(config.eval.gate_probe_archs, 0)))
  gate_probe = _GateProbe(supernet, probe)
  record: dict = {}
  result: dict = {}
  ranked: dict[int, dict] = {}  # this process's rankings by epoch, reused before a switch
  due = start_epoch in config.eval.eval_epochs or (
    start_epoch == config.num_epochs and config.eval.at_end
  )
  if start_epoch and due and not _ranked_in_file(workdir, start_epoch):
    # The previous process stopped between the checkpoint of this epoch and its ranking.
    result = ranked[start_epoch] = _rank(run, supernet, state, workdir, start_epoch)
  for epoch in range(start_epoch, config.num_epochs):
    if curriculum.level_at(epoch) != level:
      old = curriculum.block_counts[level]
      if config.eval.at_switches:
        _rank(run, supernet, state, workdir, epoch, 'before_switch', ranked.get(epoch))
      level = curriculum.level_at(epoch)
      state = surgery.advance(
        state,
        run.tx,
        run.fresh_params(),
        curriculum.block_counts[level],
        curriculum.parent,
        curriculum.wit,
        curriculum.max_blocks,
      )
      state = run.place(state)
      supernet = run.supernet(curriculum.block_counts[level])
      train_step = run.train_step(supernet, counter)
      gate_probe = _GateProbe(supernet, probe)
      at_switch = gate_probe.record(state.params, 'switch_')
      interval_map = supernet.interval_map()
      _log(
        f'epoch {epoch}: sharing extent reduced, {old} -> {supernet.num_blocks} blocks per '
        f'cell (WIT {curriculum.wit})'
        + _gate_text(at_switch, 'switch_')
        + (f'  positions -> blocks {interval_map}' if interval_map else '')
      )
      if config.eval.at_switches:
        _rank(run, supernet, state, workdir, epoch, 'after_switch')
    else:
      at_switch = {}
    if epoch in curriculum.lr_restart_epochs:
      state = run.place(state.replace(opt_state=optim.restart(run.tx, state.params, plateau_value)))
      _log(
        f'epoch {epoch}: SRT, optimizer state reset, plateau controller best value '
        f"{plateau_value:.4g} (the previous epoch's mean training "
        f'{"loss" if config.optim.plateau_metric == "train_loss" else "error"})'
      )
    epoch_start = time.perf_counter()
    pool = hook.pool(epoch) if hook is not None else None
    batches, archs = plan(run.plan_key, epoch, None if pool is None else run.place(pool))
    shape_keys = supernet.shape_keys(archs)
    step_metrics = []
    for i in range(steps):
      state, metrics = train_step(
        state, images, labels, batches[i], archs[i], run.step_key, shape_key=shape_keys[i]
      )
      step_metrics.append(metrics)
    step_metrics = jax.device_get(step_metrics)
    seconds = time.perf_counter() - epoch_start
    record = {name: float(np.mean([m[name] for m in step_metrics])) for name in step_metrics[0]}
    plateau_value = float(
      optim.plateau_value(config.optim.plateau_metric, record['loss'], record['accuracy'])
    )
    if not math.isfinite(record['loss']):  # before any checkpoint of this poisoned state
      _raise_non_finite(step_metrics, archs, epoch, steps, run.space)
    record.update(
      epoch=epoch,
      step=int(state.step),
      seconds=round(seconds, 3),
      level=level,
      num_blocks=supernet.num_blocks,
      lr=float(optim.learning_rate(state.opt_state, config.optim.learning_rate)),
      images_per_s=round(steps * config.batch_size / seconds, 2),
      train_step_compiles=counter.count,
      train_step_executables=counter.executables,
    )
    record.update(at_switch)
    record.update(gate_probe.record(state.params))
    done = epoch + 1
    if hook is not None:
      record.update(hook.end_of_epoch(done, supernet, state.params))
    writer.write(record)
    eta = _format_eta(seconds * (config.num_epochs - epoch - 1))
    _log(
      f'epoch {epoch + 1}/{config.num_epochs}  loss {record["loss"]:.4f}  '
      f'acc {record["accuracy"]:.4f}  lr {record["lr"]:.4g}  blocks {supernet.num_blocks}  '
      f'{record["images_per_s"]:.1f} img/s  compiles {counter.count}  ETA {eta}'
      + _gate_text(record)
    )
    if done % config.checkpoint_every_epochs == 0 or done == config.num_epochs:
      ckpt.save(
        done,
        state,
        {
          'epoch': done,
          'method': config.method,
          'level': level,
          'num_blocks': supernet.num_blocks,
          'plateau_value': plateau_value,  # the SRT of a resumed run needs it
          **({'interval_map': m} if (m := supernet.interval_map()) else {}),
        },
      )
    if done in config.eval.eval_epochs or (done == config.num_epochs and config.eval.at_end):
      result = ranked[done] = _rank(run, supernet, state, workdir, done)
  ckpt.close()
  return state, result or record


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


def _ranked_in_file(workdir: str, epoch: int) -> bool:
  records = MetricWriter(workdir, filename='rankings.jsonl').read()
  return any(r['epoch'] == epoch and r.get('when', 'epoch') == 'epoch' for r in records)


def _drop_rankings_to_redo(workdir: str, start_epoch: int) -> None:
  """A resumed run ranks again after `start_epoch` and at a switch there: keep rankings.jsonl
  free of duplicates by dropping those records (an end-of-epoch ranking at `start_epoch` stays)."""
  rankings = MetricWriter(workdir, jax.process_index() == 0, 'rankings.jsonl')
  records = rankings.read()
  kept = [
    r
    for r in records
    if r['epoch'] < start_epoch or (r['epoch'] == start_epoch and r.get('when', 'epoch') == 'epoch')
  ]
  if rankings.enabled and len(kept) != len(records):
    lines = [json.dumps(r, sort_keys=True) + '\n' for r in kept]
    write_atomic(rankings.path, lambda f: f.writelines(lines))


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


def _rank(
  run: _Run,
  supernet: Supernet,
  state: TrainState,
  workdir: str,
  epoch: int,
  when: str = 'epoch',
  same_as: dict | None = None,
) -> dict:
  """Ranks after `epoch` epochs; `when` tells a switch's rankings (same epoch) apart. `same_as`:
  a ranking of this very state (made at the end of the epoch), recorded again without rescoring."""
  if same_as is not None:
    result = same_as
  else:
    result = evaluate.rank(
      run.config,
      supernet,
      state.params,
      run.dataset,
      workdir,
      epoch,
      run.eval_key,
      mesh=run.mesh,
      log=_log,
    )
  summary = evaluate.summary(result)
  where = f'epoch {epoch}' + ('' if when == 'epoch' else f' ({when.replace("_", " ")})')
  _log(f'ranking at {where}: ' + json.dumps(summary))
  run.rankings.write({'epoch': epoch, 'when': when, 'num_blocks': supernet.num_blocks, **summary})
  return result
