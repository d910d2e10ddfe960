"""Rejects impossible or contradictory configs before any data is read or anything compiles."""

from __future__ import annotations

import ml_collections

from close_jax import curriculum, surgery
from close_jax.spaces import base as spaces

METHODS = ('vanilla', 'close', 'close_s')
GATES = ('node', 'arch', 'random')
GATE_NORMS = ('none', 'layer')
MODES = ('train', 'evaluate', 'search')  # 'final' configs go to close_jax.final
DATASETS = ('cifar10', 'synthetic', 'npz', 'idx')
DTYPES = ('float32', 'bfloat16')
PLATEAU_METRICS = ('train_accuracy', 'train_loss')
PRNG_IMPLS = ('rbg', 'unsafe_rbg', 'threefry2x32')


# Keys added after runs were already saved with config.json: a resumed older run gets these
# defaults (the official behaviour; for `train_sampler` that differs from what it trained with).
LATER_KEYS = {
  'train_sampler': 'valid',
  'close.gate_embed_norm': 'none',
  'close.gate_temperature': 5.0,
  'close.gate_weight_decay': -1.0,
  'close.gate_lr_multiplier': 1.0,
  'eval.gate_samples': 1,
  'eval.gate_probe_archs': 64,
  'eval.at_switches': False,
  'budget_epochs': 0,
  'data.idx_dir': '/usr/share/datasets/fashion-mnist',
  'data.idx_train_size': 50000,
  'data.idx_rank_size': 0,
  'data.image_size': 0,
  'tensorboard': True,
}


def fill_later_keys(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the `LATER_KEYS` a config (e.g. an older run's config.json) lacks, in place."""
  with config.unlocked():
    for dotted, default in LATER_KEYS.items():
      group, _, name = dotted.rpartition('.')
      node = config[group] if group else config
      if name not in node:
        node[name] = default
  return config


_choice = spaces.check_choice


def _positive(name: str, value, allow_zero: bool = False) -> None:
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    bound = '>= 0' if allow_zero else '> 0'
    raise ValueError(f'config.{name}={value!r} is invalid: expected a number {bound}')


def _get(config: ml_collections.ConfigDict, dotted: str):
  for key in dotted.split('.'):
    config = config[key]
  return config


def validate(
  config: ml_collections.ConfigDict,
) -> tuple[spaces.Space, curriculum.Curriculum]:
  """Raises ValueError with a one-line message naming the first bad value; returns the space
  and the curriculum it resolved, so a caller need not resolve them again."""
  space = spaces.get(config.space)  # raises on an unknown space
  _choice('method', config.method, METHODS)
  _choice('mode', config.mode, MODES)
  if config.mode == 'search' and 'search' not in config:
    raise ValueError(
      "config.mode='search' needs the search settings (config.search): use a search config "
      'such as configs/darts_search.py or configs/nb201_search.py'
    )
  _choice('train_sampler', config.train_sampler, space.samplers)
  _choice('close.gate', config.close.gate, GATES)
  _choice('close.wit', config.close.wit, surgery.WIT_MODES)
  _choice('close.gate_embed_norm', config.close.gate_embed_norm, GATE_NORMS)
  _positive('close.gate_temperature', config.close.gate_temperature)
  _positive('close.gate_lr_multiplier', config.close.gate_lr_multiplier)
  _positive('eval.gate_samples', config.eval.gate_samples)
  _positive('eval.gate_probe_archs', config.eval.gate_probe_archs, allow_zero=True)
  schedule = curriculum.from_config(config, space)  # raises on a malformed schedule
  for epoch in config.eval.eval_epochs:
    if not 0 < epoch <= config.num_epochs:
      raise ValueError(
        f'config.eval.eval_epochs={tuple(config.eval.eval_epochs)!r}: expected '
        f'epochs in 1..num_epochs={config.num_epochs}'
      )
  _choice('prng_impl', config.prng_impl, PRNG_IMPLS)
  _choice('tensorboard', config.tensorboard, (True, False))
  _choice('data.name', config.data.name, DATASETS)
  _choice('model.dtype', config.model.dtype, DTYPES)
  _choice('optim.plateau_metric', config.optim.plateau_metric, PLATEAU_METRICS)
  for name in ('model.cells_per_stage', 'model.num_layers', 'model.channels', 'model.stem_width'):
    if name.split('.')[1] in config.model:  # the space's size settings
      _positive(name, _get(config, name))
  for name in (
    'batch_size',
    'num_epochs',
    'checkpoint_every_epochs',
    'keep_checkpoints',
    'eval.batch_size',
    'eval.arch_chunk',
    'optim.learning_rate',
    'optim.plateau_patience',
  ):
    _positive(name, _get(config, name))
  for name in (
    'optim.momentum',
    'optim.weight_decay',
    'optim.grad_clip_norm',
    'eval.num_archs',
    'data.crop_padding',
    'num_devices',
  ):
    _positive(name, _get(config, name), allow_zero=True)
  if not 0.0 <= config.model.dropout < 1.0:
    raise ValueError(f'config.model.dropout={config.model.dropout!r}: expected 0 <= p < 1')
  if not 0.0 < config.optim.plateau_factor < 1.0:
    raise ValueError(
      f'config.optim.plateau_factor={config.optim.plateau_factor!r}: expected 0 < factor < 1'
    )
  if config.data.name == 'npz' and not config.data.npz_path:
    raise ValueError("config.data.name='npz' needs config.data.npz_path (a .npz file)")
  if config.data.name == 'cifar10' and not 0 < config.data.cifar_train_size < 50000:
    raise ValueError(
      f'config.data.cifar_train_size={config.data.cifar_train_size!r}: expected 0 < n < 50000 '
      '(the rest of the 50000 train images is the ranking split)'
    )
  dist = config.distributed
  _positive('distributed.num_processes', dist.num_processes, allow_zero=True)
  if dist.process_id < -1 or (dist.num_processes and dist.process_id >= dist.num_processes):
    raise ValueError(
      f'config.distributed.process_id={dist.process_id!r}: expected -1 (auto) or 0 <= id < '
      f'num_processes={dist.num_processes}'
    )
  if space.check_model is not None:
    space.check_model(config.model)
  space.check_ground_truth(config.eval.ground_truth)
  if config.mode == 'search':
    from close_jax.search import config as search_config  # pymoo only when searching

    search_config.validate(config)
  return space, schedule


# Values that decide the shapes (or the meaning) of a run's checkpoints: a resume must keep them.
SHAPE_KEYS = (
  'space',
  'method',
  'model.channels',
  'model.stem_width',
  'model.cells_per_stage',
  'model.num_layers',
  'close.cl_schedule',
  'close.interval_criterion',
  'close.gate',
  'data.name',
  'data.image_size',
)


def check_resumable(saved: dict, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume the run saved in `workdir` (its config.json, as a dict) under a config
  that changes a shape-defining value, naming the first one."""
  for dotted in SHAPE_KEYS:
    old, new = saved, config
    for part in dotted.split('.'):
      old = old.get(part) if isinstance(old, dict) else None
      new = new.get(part) if new is not None and part in new else None
    if isinstance(old, list):
      old = tuple(old)
    if isinstance(new, list):
      new = tuple(new)
    if old is not None and new is not None and old != new:
      raise ValueError(
        f'config.{dotted}={new!r} differs from {old!r} of the run in {workdir} (its checkpoints '
        f'have that shape): keep the value or use a new --workdir'
      )
