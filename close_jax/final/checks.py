"""Rejects a bad final-training config in one line, before any data is read or file written."""

from __future__ import annotations

from close_jax.dtypes import DTYPES
from close_jax.final import networks

SCHEDULES = ('epoch', 'step')
PRNG_IMPLS = ('rbg', 'unsafe_rbg', 'threefry2x32')
# Keys whose change makes a checkpoint another run's (refused on resume), besides the network's
# `shape_keys` (`model.channels`, `model.layers`, ...; see `identity_keys`).
IDENTITY_KEYS = ('model.network', 'model.auxiliary', 'data.name', 'data.image_size', 'seed')


def identity_keys(network: str) -> tuple[str, ...]:
  _, final = networks.lookup(network)
  return IDENTITY_KEYS[:1] + tuple(f'model.{k}' for k in final.shape_keys) + IDENTITY_KEYS[1:]


def _require(ok: bool, key: str, value, expected: str) -> None:
  if not ok:
    raise ValueError(f'config.{key}={value!r}: expected {expected}')


def _number(config, key: str, low: float, high: float | None = None, integer=False, low_open=False):
  node = config
  for part in key.split('.'):
    node = node[part]
  kind = int if integer else (int, float)
  ok = isinstance(node, kind) and not isinstance(node, bool)
  ok = ok and (node > low if low_open else node >= low) and (high is None or node < high)
  bound = f'{">" if low_open else ">="} {low}' + (f' and < {high}' if high is not None else '')
  _require(ok, key, node, f'{"an integer" if integer else "a number"} {bound}')


def _choice(value, key: str, choices) -> None:
  _require(value in choices, key, value, f'one of {", ".join(map(str, choices))}')


def validate(config) -> None:
  network = config.model.network
  _, final = networks.lookup(network)
  _choice(config.model.dtype, 'model.dtype', tuple(DTYPES))
  _choice(config.optim.schedule, 'optim.schedule', SCHEDULES)
  _choice(config.prng_impl, 'prng_impl', PRNG_IMPLS)
  for key in ('batch_size', 'eval_batch_size', 'num_epochs', 'checkpoint_every_epochs'):
    _number(config, key, 1, integer=True)
  _number(config, 'keep_checkpoints', 1, integer=True)
  _number(config, 'num_devices', 0, integer=True)
  for key in final.shape_keys:
    if key not in config.model:
      raise ValueError(f'config.model.{key} is missing: network {network!r} needs it')
    _number(config, f'model.{key}', 1, integer=True)
  if final.check_model is not None:
    final.check_model(config.model)
  _number(config, 'model.drop_path_prob', 0.0, 1.0)
  _number(config, 'model.dropout', 0.0, 1.0)
  _number(config, 'model.auxiliary_weight', 0.0)
  _number(config, 'optim.learning_rate', 0.0, low_open=True)
  _number(config, 'optim.min_learning_rate', 0.0)
  lr, low = config.optim.learning_rate, config.optim.min_learning_rate
  _require(low <= lr, 'optim.min_learning_rate', low, f'<= optim.learning_rate={lr}')
  _number(config, 'optim.momentum', 0.0, 1.0)
  _number(config, 'optim.weight_decay', 0.0)
  _number(config, 'optim.grad_clip_norm', 0.0)
  _number(config, 'optim.label_smoothing', 0.0, 1.0)
  for key in ('crop_padding', 'cutout_length', 'num_workers'):
    _number(config, f'data.{key}', 0, integer=True)
  folder_networks = [n for n, (_, f) in networks.available().items() if f.image_folder]
  if config.data.name == 'imagenet_folder':
    _require(
      final.image_folder, 'model.network', network, f'{_either(folder_networks)} for folders'
    )
    _number(config, 'data.image_size', 1, integer=True)
    _number(config, 'data.resize_size', config.data.image_size, integer=True)
    _number(config, 'data.min_crop_scale', 0.0, 1.0, low_open=True)
  else:
    others = [n for n in networks.available() if n not in folder_networks]
    _require(
      not final.image_folder, 'model.network', network, f'{_either(others, quote=False)} here'
    )


def _either(names: list[str], quote: bool = True) -> str:
  return ' or '.join(repr(n) if quote else n for n in names)


def check_resumable(saved: dict, config, genotype: str, saved_genotype: str | None) -> None:
  """A checkpoint belongs to the run of the same network, genotype and data."""
  for key in identity_keys(config.model.network):
    node_saved, node_new = saved, config
    for part in key.split('.'):
      node_saved = node_saved.get(part) if isinstance(node_saved, dict) else None
      node_new = node_new[part]
    if node_saved is not None and node_saved != node_new:
      raise ValueError(
        f'config.{key}={node_new!r} differs from {node_saved!r} of the run saved in this workdir: '
        'use a new --workdir or keep the saved value'
      )
  if saved_genotype is not None and saved_genotype != genotype:
    raise ValueError(
      f'config.genotype resolves to {genotype}, not to the genotype of the run saved in this '
      f'workdir ({saved_genotype}): use a new --workdir'
    )
