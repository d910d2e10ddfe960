"""The training loop: epochs of jitted steps, metrics, checkpoints, resume, final ranking."""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from close_jax import config_check, evaluate, optim
from close_jax.checkpoint import Checkpointer
from close_jax.data import load_dataset
from close_jax.metric_writer import MetricWriter
from close_jax.supernet import build_supernet
from close_jax.train_step import TraceCounter, TrainState, epoch_plan, make_train_step


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def enable_compilation_cache(path: str) -> None:
  """The persistent XLA cache cuts a rerun's compile 2-3x (measured); empty path disables it."""
  if path:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(path))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  path = os.path.join(workdir, 'config.json')
  with open(path + '.tmp', 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(path + '.tmp', path)


def _format_eta(seconds: float) -> str:
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the supernet in `workdir`, then ranks; returns the last summary."""
  config_check.validate(config)
  enable_compilation_cache(config.compilation_cache_dir)
  os.makedirs(workdir, exist_ok=True)
  dataset = load_dataset(config.data)
  if config.batch_size > dataset.num_train:
    raise ValueError(
      f'config.batch_size={config.batch_size} exceeds the {dataset.num_train} training images'
    )
  steps_per_epoch = dataset.num_train // config.batch_size
  supernet = build_supernet(config, dataset.num_classes)
  tx = optim.make_optimizer(config.optim, steps_per_epoch)
  key = jax.random.key(config.seed, impl=config.prng_impl)
  init_key, plan_key, step_key = (jax.random.fold_in(key, i) for i in range(3))

  def init_state() -> TrainState:
    params = supernet.init(init_key, dataset.image_shape)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  start_epoch = ckpt.latest_epoch()
  if start_epoch is None:
    if config.mode == 'evaluate':
      raise FileNotFoundError(
        f'config.mode=evaluate needs a checkpoint in {ckpt.directory}; none was found (train first)'
      )
    start_epoch, state = 0, jax.jit(init_state)()
  else:
    ckpt.restore_meta(start_epoch)
    state = ckpt.restore_state(start_epoch, jax.eval_shape(init_state))
    _log(f'restored checkpoint of epoch {start_epoch} from {ckpt.directory}')

  if config.mode == 'evaluate':
    result = _rank(config, supernet, state, dataset, workdir, start_epoch)
    ckpt.close()
    return result

  _write_config(config, workdir)
  writer.truncate_from_epoch(start_epoch)
  counter = TraceCounter()
  train_step = make_train_step(
    supernet,
    tx,
    mean=dataset.mean,
    std=dataset.std,
    crop_padding=config.data.crop_padding,
    hflip=config.data.hflip,
    plateau_metric=config.optim.plateau_metric,
    counter=counter,
  )
  images, labels = jax.device_put(dataset.train_images), jax.device_put(dataset.train_labels)
  _log(
    f'training {config.method} supernet: {steps_per_epoch} steps/epoch x batch '
    f'{config.batch_size}, epochs {start_epoch}..{config.num_epochs}'
  )
  record: dict = {}
  for epoch in range(start_epoch, config.num_epochs):
    epoch_start = time.perf_counter()
    batches, archs = epoch_plan(
      plan_key, epoch, dataset.num_train, steps_per_epoch, config.batch_size
    )
    step_metrics = []
    for i in range(steps_per_epoch):
      state, metrics = train_step(state, images, labels, batches[i], archs[i], step_key)
      step_metrics.append(metrics)
    step_metrics = jax.device_get(step_metrics)
    seconds = time.perf_counter() - epoch_start
    record = {name: float(np.mean([m[name] for m in step_metrics])) for name in step_metrics[0]}
    if not math.isfinite(record['loss']):
      raise FloatingPointError(f'non-finite training loss {record["loss"]} in epoch {epoch}')
    record.update(
      epoch=epoch,
      step=int(state.step),
      seconds=round(seconds, 3),
      lr=float(optim.learning_rate(state.opt_state, config.optim.learning_rate)),
      images_per_s=round(steps_per_epoch * config.batch_size / seconds, 2),
      train_step_compiles=counter.count,
    )
    writer.write(record)
    eta = _format_eta(seconds * (config.num_epochs - epoch - 1))
    _log(
      f'epoch {epoch + 1}/{config.num_epochs}  loss {record["loss"]:.4f}  '
      f'acc {record["accuracy"]:.4f}  lr {record["lr"]:.4g}  '
      f'{record["images_per_s"]:.1f} img/s  compiles {counter.count}  ETA {eta}'
    )
    done = epoch + 1
    if done % config.checkpoint_every_epochs == 0 or done == config.num_epochs:
      ckpt.save(done, state, {'epoch': done, 'method': config.method})
  result = record
  if config.eval.at_end:
    result = _rank(config, supernet, state, dataset, workdir, config.num_epochs)
  ckpt.close()
  return result


def _rank(config, supernet, state, dataset, workdir, epoch) -> dict:
  counter = TraceCounter()
  result = evaluate.rank(config, supernet, state.params, dataset, workdir, epoch, counter, _log)
  _log(
    f'ranking at epoch {epoch}: '
    + json.dumps(
      {k: result[k] for k in ('kendall_tau', 'spearman_rho', 'precision_at_top', 'num_archs')}
    )
  )
  return result
