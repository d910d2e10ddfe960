"""Final training (`config.mode == 'final'`): one standalone network of a chosen genotype trained
from scratch, tested every epoch, checkpointed and resumable like the supernets.

  python -m close_jax.main --config=configs/darts_final_cifar10.py --workdir=runs/darts_v2

Outputs in the workdir: `summary.json` (parameter counts, written and printed before the first
epoch; final and best test accuracy added at the end), `metrics.jsonl` (one record per epoch),
`config.json` and `checkpoints/<epoch>/`. A rerun of the same command resumes from the newest
checkpoint that restores and replays exactly what an uninterrupted run would have done: the data
order, augmentation, dropout and drop-path draws are fixed by (seed, epoch, step).
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from close_jax import parallel, xla_flags
from close_jax.checkpoint import Checkpointer, CheckpointError
from close_jax.final import checks, genotypes, networks
from close_jax.final import data as final_data
from close_jax.final.step import FinalState, cosine, make_eval_step, make_optimizer, make_train_step
from close_jax.metric_writer import MetricWriter, write_atomic
from close_jax.train_step import TraceCounter


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def _write_json(path: str, value: dict) -> None:
  if jax.process_index() == 0:
    write_atomic(path, lambda f: json.dump(value, f, indent=2, sort_keys=True))


def _eta(seconds: float) -> str:
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


class _Setup:
  """Everything a run builds before it writes anything: genotype, data, network, optimizer."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    checks.validate(config)
    self.config = config
    space, self.network = networks.lookup(config.model.network)
    self.arch = genotypes.resolve(config.genotype, space.name)
    self.genotype = space.to_str(self.arch)
    xla_flags.use_compilation_cache(config.compilation_cache_dir)
    self.mesh = parallel.make_mesh(config.num_devices)
    for key in ('batch_size', 'eval_batch_size'):
      if config[key] % self.mesh.size:
        raise ValueError(
          f'config.{key}={config[key]} must be a multiple of the {self.mesh.size} devices'
        )
    self.data = final_data.load(
      config.data, config.batch_size, config.eval_batch_size, config.seed, workdir
    )
    self.model = networks.build(config.model, self.arch, self.data.num_classes)
    try:
      self.num_params, self.num_params_aux = networks.param_counts(self.model, self.data.image_size)
    except ValueError as e:
      size = self.data.image_size
      raise ValueError(f'{size}x{size} images with config.model.auxiliary=True: {e}') from None
    self.steps = len(self.data.train)
    self.schedule = cosine(config.optim, self.steps, config.num_epochs)
    self.tx = make_optimizer(config.optim, self.schedule)
    key = jax.random.key(config.seed, impl=config.prng_impl)
    self.init_key, self.step_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    self.replicated = parallel.replicated(self.mesh)

  def initial_state(self) -> FinalState:
    variables = networks.init(self.model, self.init_key, self.data.image_size)
    params = variables['params']
    return FinalState(
      jnp.zeros((), jnp.int32), params, variables.get('batch_stats', {}), self.tx.init(params)
    )

  def summary(self) -> dict:
    m = self.config.model
    return {
      'network': m.network,
      'genotype': self.genotype,
      'num_params': self.num_params,
      'num_params_aux': self.num_params_aux,
      'param_size_mb': self.num_params / 1e6,
      **{key: m[key] for key in self.network.shape_keys},
      'auxiliary': bool(m.auxiliary) and self.network.auxiliary_head,
      'num_classes': self.data.num_classes,
      'image_size': self.data.image_size,
      'num_train': self.data.num_train,
      'num_test': self.data.num_test,
      'num_epochs': self.config.num_epochs,
    }

  def to_global(self, local: np.ndarray) -> jax.Array:
    return jax.make_array_from_process_local_data(parallel.row_sharded(self.mesh), local)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the configured network in `workdir`; returns the final summary."""
  setup = _Setup(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  saved_path = os.path.join(workdir, 'config.json')
  if ckpt.latest_epoch() is not None and os.path.exists(saved_path):
    with open(saved_path) as f:
      saved = json.load(f)
    try:
      meta = ckpt.restore_meta(ckpt.latest_epoch())
    except CheckpointError:  # restore_newest below moves it aside and tries an older one
      meta = {}
    checks.check_resumable(saved, config, setup.genotype, meta.get('genotype'))
  _write_json(
    saved_path,
    {**json.loads(config.to_json_best_effort()), xla_flags.RECORDED_KEY: xla_flags.in_effect()},
  )
  summary = setup.summary()
  _write_json(os.path.join(workdir, 'summary.json'), summary)
  aux = 'with' if summary['auxiliary'] else 'no'
  _log(
    f'{config.model.network} {setup.genotype}\n'
    f'num_params {setup.num_params:,} (param size {setup.num_params / 1e6:.6f} MB, without the '
    f'auxiliary head), num_params_aux {setup.num_params_aux:,} ({aux} auxiliary head)'
  )

  def abstract_of(meta: dict):
    if meta.get('genotype', setup.genotype) != setup.genotype:
      raise ValueError(f'checkpoint of epoch {meta.get("epoch")} holds another genotype')
    return jax.eval_shape(setup.initial_state)

  restored = ckpt.restore_newest(abstract_of, setup.replicated, _log)
  if restored is None:
    start_epoch = 0
    state = jax.jit(setup.initial_state, out_shardings=setup.replicated)()
  else:
    start_epoch, _, state = restored
    _log(f'restored checkpoint of epoch {start_epoch} from {ckpt.directory}')
  writer.truncate_from_epoch(start_epoch)

  data = setup.data
  train_counter, eval_counter = TraceCounter(), TraceCounter()
  common = dict(mean=data.mean, std=data.std, mesh=setup.mesh)
  train_step = build_train_step(setup, config, train_counter)
  eval_step = make_eval_step(setup.model, counter=eval_counter, **common)
  epochs = config.num_epochs
  _log(
    f'training {setup.steps} steps/epoch x batch {config.batch_size} on {setup.mesh.size} '
    f'device(s), epochs {start_epoch}..{epochs}, testing on {data.num_test} images each epoch'
  )
  drop_max = float(config.model.drop_path_prob) if setup.network.drop_path else 0.0
  for epoch in range(start_epoch, epochs):
    drop_prob = np.float32(drop_max * epoch / epochs)  # DARTS: linear from 0 over the epochs
    lr = float(setup.schedule(epoch * setup.steps))
    start = time.perf_counter()
    step_metrics = []
    for images, labels, _ in data.train.epoch(epoch):
      state, metrics = train_step(
        state, setup.to_global(images), setup.to_global(labels), setup.step_key, drop_prob
      )
      step_metrics.append(metrics)
    step_metrics = jax.device_get(step_metrics)
    train_seconds = time.perf_counter() - start
    record = {k: float(np.mean([m[k] for m in step_metrics])) for k in step_metrics[0]}
    if not math.isfinite(record['loss']):
      bad = next(i for i, m in enumerate(step_metrics) if not math.isfinite(float(m['loss'])))
      raise FloatingPointError(
        f'non-finite training loss at step {epoch * setup.steps + bad + 1} (epoch {epoch}, step '
        f'{bad + 1} of {setup.steps}): training stopped, no checkpoint of this epoch written'
      )
    record.update(_test(setup, eval_step, state))
    seconds = time.perf_counter() - start
    done = epoch + 1
    record.update(
      epoch=epoch,
      step=int(state.step),
      lr=lr,
      drop_path_prob=float(drop_prob),
      seconds=round(seconds, 3),
      train_seconds=round(train_seconds, 3),
      images_per_s=round(setup.steps * config.batch_size / train_seconds, 2),
      train_step_traces=train_counter.count,
      eval_step_compiles=eval_counter.count,
    )
    writer.write(record)
    _log(
      f'epoch {done}/{epochs}  loss {record["loss"]:.4f}  acc {record["accuracy"]:.4f}  '
      f'test acc {record["test_accuracy"]:.2f}%  lr {lr:.4g}  drop path {drop_prob:.3f}  '
      f'{record["images_per_s"]:.1f} img/s  compiles {train_counter.count}+{eval_counter.count}  '
      f'ETA {_eta(seconds * (epochs - done))}'
    )
    if done % config.checkpoint_every_epochs == 0 or done == epochs:
      ckpt.save(done, state, {'epoch': done, 'genotype': setup.genotype})
  ckpt.close()
  records = writer.read() if writer.enabled else []
  if records:
    best = max(records, key=lambda r: r['test_accuracy'])
    summary.update(
      epochs_done=records[-1]['epoch'] + 1,
      final_test_accuracy=records[-1]['test_accuracy'],
      best_test_accuracy=best['test_accuracy'],
      best_epoch=best['epoch'] + 1,
    )
    _write_json(os.path.join(workdir, 'summary.json'), summary)
  return summary


def _test(setup: _Setup, eval_step, state) -> dict:
  """Top-1 (and top-5) accuracy in percent and mean loss on the whole test split."""
  start = time.perf_counter()
  sums = []
  for images, labels, valid in setup.data.test.epoch(0):
    sums.append(
      eval_step(state, setup.to_global(images), setup.to_global(labels), setup.to_global(valid))
    )
  sums = jax.device_get(sums)
  total = {k: float(np.sum([s[k] for s in sums])) for k in sums[0]}
  out = {
    'test_accuracy': 100.0 * total['correct'] / total['count'],
    'test_loss': total['loss'] / total['count'],
    'test_seconds': round(time.perf_counter() - start, 3),
  }
  if setup.data.num_classes > 5:
    out['test_top5_accuracy'] = 100.0 * total['correct_top5'] / total['count']
  return out


def build_train_step(setup, config: ml_collections.ConfigDict, counter: TraceCounter):
  """The jitted train step of a final-training setup (the trainer's and the benchmark's)."""
  data = setup.data
  return make_train_step(
    setup.model,
    setup.tx,
    mean=data.mean,
    std=data.std,
    mesh=setup.mesh,
    host_augmented=data.host_augmented,
    crop_padding=int(config.data.crop_padding),
    hflip=bool(config.data.hflip),
    cutout_length=int(config.data.cutout_length),
    label_smoothing=float(config.optim.label_smoothing),
    aux_weight=float(config.model.auxiliary_weight),
    counter=counter,
  )
