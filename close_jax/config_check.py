"""Rejects impossible or contradictory configs before any data is read or anything compiles."""

from __future__ import annotations

import ml_collections

from close_jax import budget, curriculum, gate_optim, spaces, surgery
from close_jax.benchmarks import ranking_set
from close_jax.dtypes import DTYPES
from close_jax.models import gate as gate_lib

METHODS = ('vanilla', 'close', 'close_s')
GATES = ('node', 'arch', 'random')
GATE_NORMS = ('none', 'layer')
GATE_ASSIGNMENTS = ('sample', 'mode')  # eval.gate_assignment
MODES = ('train', 'evaluate', 'search')  # 'final' configs go to close_jax.final
DATASETS = ('cifar10', 'synthetic', 'npz', 'idx')
PLATEAU_METRICS = ('train_accuracy', 'train_loss')
PRNG_IMPLS = ('rbg', 'unsafe_rbg', 'threefry2x32')


# Keys added after runs were already saved with config.json: a resumed (or analysed) older run
# gets the value that reproduces what close_jax did before the key existed, which is why these
# live here and are not read from the configs (whose defaults may move on). Where that value
# differs from today's config default, the comment says so. `train_sampler` is not here: an
# older run gets its space's `Space.default_sampler` (for NB201 'valid', the official sampler).
LATER_KEYS = {
  'space': 'nb201',  # the only space before the interface existed
  'close.gate_embed_norm': 'none',
  'close.gate_temperature': 5.0,
  'close.gate_weight_decay': -1.0,
  'close.gate_lr_multiplier': 1.0,
  'close.gate_head_reset': 'none',
  'close.gate_optimizer': 'sgd',
  'close.gate_learning_rate': 1e-3,
  'close.gate_mix': 'straight_through',
  'close.gate_final_temperature': 0.5,
  'close.gate_anneal_steps': 0,
  'close.gate_center_logits': False,
  'eval.gate_samples': 1,
  'eval.gate_assignment': 'sample',
  'eval.gate_probe_archs': 64,  # diagnostics only: an older run gains them when resumed
  'eval.at_switches': False,
  'eval.curve_num_archs': 0,
  'budget_epochs': 0,
  'budget_scaling': 'epochs',  # differs from the configs' 'steps': the only scaling then
  'budget_reference_steps_per_epoch': 78,  # read only by budget_scaling='steps'
  'optim.plateau_patience_steps': 0,
  # Read only by data.name='idx', which an older run cannot have: filled so that overrides and
  # the checks see every key.
  'data.idx_dir': '/usr/share/datasets/fashion-mnist',
  'data.idx_train_size': 50000,
  'data.idx_rank_size': 0,
  'data.image_size': 0,  # images as stored, the only choice then
  'tensorboard': True,  # a new output beside the old ones: an older run gains it when resumed
}


def fill_later_keys(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the `LATER_KEYS` a config (e.g. an older run's config.json) lacks, in place, and its
  space's default training sampler when it names none."""
  with config.unlocked():
    for dotted, default in LATER_KEYS.items():
      group, _, name = dotted.rpartition('.')
      node = config[group] if group else config
      if name not in node:
        node[name] = default
    if 'train_sampler' not in config:
      config.train_sampler = spaces.get(config.space).default_sampler
  return config


_choice = spaces.check_choice


_positive = spaces.check_positive


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
  _choice('close.gate_head_reset', config.close.gate_head_reset, surgery.GATE_HEAD_RESETS)
  _positive('close.gate_temperature', config.close.gate_temperature)
  _positive('close.gate_lr_multiplier', config.close.gate_lr_multiplier)
  _check_gate_training(config)
  _positive('eval.gate_samples', config.eval.gate_samples)
  _choice('eval.gate_assignment', config.eval.gate_assignment, GATE_ASSIGNMENTS)
  mode = config.eval.gate_assignment == 'mode'
  if mode and config.method == 'close' and config.close.gate == 'random':
    raise ValueError(
      "config.eval.gate_assignment='mode' with config.close.gate='random': expected a learned "
      "GATE (close.gate='node' or 'arch'); a random assignment has no most likely block"
    )
  _positive('eval.gate_probe_archs', config.eval.gate_probe_archs, allow_zero=True)
  schedule = curriculum.from_config(config, space)  # raises on a malformed schedule
  for epoch in config.eval.eval_epochs:
    if not 0 < epoch <= config.num_epochs:
      raise ValueError(
        f'config.eval.eval_epochs={tuple(config.eval.eval_epochs)!r}: expected '
        f'epochs in 1..num_epochs={config.num_epochs}'
      )
  final_ranking = config.eval.at_end or config.num_epochs in config.eval.eval_epochs
  if config.eval.curve_num_archs and config.mode == 'train' and not final_ranking:
    raise ValueError(
      f'config.eval.curve_num_archs={config.eval.curve_num_archs} with config.eval.at_end=False '
      'and num_epochs not in eval.eval_epochs: expected a final ranking (it scores the whole '
      'set; without one the run would end on a subset)'
    )
  _choice('prng_impl', config.prng_impl, PRNG_IMPLS)
  _choice('tensorboard', config.tensorboard, (True, False))
  _choice('data.name', config.data.name, DATASETS)
  _choice('model.dtype', config.model.dtype, tuple(DTYPES))
  _choice('optim.plateau_metric', config.optim.plateau_metric, PLATEAU_METRICS)
  _choice('budget_scaling', config.budget_scaling, budget.SCALINGS)
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
    'eval.curve_num_archs',
    'data.crop_padding',
    'num_devices',
    'optim.plateau_patience_steps',
    'budget_reference_steps_per_epoch',
  ):
    _positive(name, _get(config, name), allow_zero=True)
  if 'dropout' in config.model and not 0.0 <= config.model.dropout < 1.0:  # a space's own key
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
  ranking_set.check(space, config.eval)
  if config.mode == 'search':
    from close_jax.search import config as search_config  # pymoo only when searching

    search_config.validate(config)
  return space, schedule


def _check_gate_training(config: ml_collections.ConfigDict) -> None:
  """The GATE's optimizer and gradient options (`close.gate_optimizer`, `close.gate_mix`)."""
  close = config.close
  _choice('close.gate_optimizer', close.gate_optimizer, gate_optim.GATE_OPTIMIZERS)
  _positive('close.gate_learning_rate', close.gate_learning_rate)
  if close.gate_optimizer == 'adam' and close.gate_lr_multiplier != 1.0:
    raise ValueError(
      f'config.close.gate_lr_multiplier={close.gate_lr_multiplier!r} applies to '
      "gate_optimizer='sgd' only: set close.gate_learning_rate for 'adam'"
    )
  _choice('close.gate_mix', close.gate_mix, gate_lib.GATE_MIXES)
  _positive('close.gate_final_temperature', close.gate_final_temperature)
  _positive('close.gate_anneal_steps', close.gate_anneal_steps, allow_zero=True)
  if close.gate_mix == 'soft_annealed' and close.gate_anneal_steps < 1:
    raise ValueError(
      f'config.close.gate_anneal_steps={close.gate_anneal_steps!r}: '
      "gate_mix='soft_annealed' needs a number of training steps >= 1 to anneal over"
    )
  if close.gate_mix == 'reinforce' and config.batch_size < 2:
    raise ValueError(
      f"config.batch_size={config.batch_size!r}: gate_mix='reinforce' needs >= 2 images "
      '(two halves, two block draws)'
    )
  _choice('close.gate_center_logits', close.gate_center_logits, (False, True))


# Values that decide the shapes (or the meaning) of a run's checkpoints, in every space: a resume
# must keep them. The model keys that size a space's network are its `Space.shape_model_keys`.
SHAPE_KEYS = (
  'space',
  'method',
  'close.cl_schedule',
  'close.interval_criterion',
  'close.gate',
  'close.gate_head_reset',  # adds an optimizer state (the freeze flag) to the checkpoints
  'close.gate_optimizer',  # the optimizer state's structure
  'close.gate_learning_rate',
  'close.gate_mix',
  'close.gate_final_temperature',
  'close.gate_anneal_steps',
  'close.gate_center_logits',
  'data.name',
  'data.image_size',
)


def shape_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """`SHAPE_KEYS` and the `model.` keys of the config's space that a resume must keep."""
  space = spaces.get(config.space)
  return SHAPE_KEYS + tuple(f'model.{key}' for key in space.shape_model_keys)


def check_resumable(saved: dict, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume the run saved in `workdir` (its config.json, as a dict) under a config
  that changes a shape-defining value, naming the first one."""
  for dotted in shape_keys(config):
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
