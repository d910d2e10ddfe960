"""The supernet optimizer: PyTorch-SGD semantics plus torch's ReduceLROnPlateau, in optax.

Everything that changes the step size lives in the optax state (momentum, and the plateau
controller's scale, best value and bad-epoch count), so a checkpoint of (params, opt_state)
resumes with the right learning rate, and SRT (a learning-rate restart) is a fresh `tx.init`
whose plateau controller remembers the value reached before the restart (`restart`).

The controller acts once per epoch on the epoch's mean metric, which the trainer already has on
the host: the per-step program only multiplies the update by the current scale (no conditional,
so no device-to-host copy and stream sync per step on XLA:GPU), and `end_of_epoch` steps the
controller between epochs, as the official code steps its scheduler between epochs.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from close_jax import gate_optim, surgery

# torch.optim.lr_scheduler.ReduceLROnPlateau defaults kept by the official code (aw_nas): mode
# 'min', relative threshold 1e-4, no cooldown, min_lr 0, and a reduction smaller than eps skipped.
THRESHOLD = 1e-4
EPS = 1e-8
# Recorded in every checkpoint's meta: the layout of `PlateauState` in opt_state. Checkpoints
# without it hold optax's per-step `reduce_on_plateau` state instead (an earlier close_jax).
STATE_FORMAT = 'epoch_plateau_v1'


class PlateauState(NamedTuple):
  """The plateau controller: the learning rate is `base_lr * scale`."""

  scale: jax.Array  # float32 ()
  best_value: jax.Array  # float32 (): the lowest epoch mean so far (+inf at the start)
  num_bad_epochs: jax.Array  # int32 (): epochs since the best one


def scale_by_plateau() -> optax.GradientTransformation:
  """Multiplies the update by the controller's scale; the state changes in `end_of_epoch` only."""

  def init(params) -> PlateauState:
    del params
    return PlateauState(
      scale=jnp.ones((), jnp.float32),
      best_value=jnp.full((), jnp.inf, jnp.float32),
      num_bad_epochs=jnp.zeros((), jnp.int32),
    )

  def update(updates, state: PlateauState, params=None):
    del params
    return jax.tree.map(lambda u: (u * state.scale).astype(u.dtype), updates), state

  return optax.GradientTransformation(init, update)


def _is_gate(params) -> dict:
  return {name: jax.tree.map(lambda _, g=name == 'gate': g, sub) for name, sub in params.items()}


def _not_gate(params) -> dict:
  return jax.tree.map(lambda g: not g, _is_gate(params))


def make_optimizer(
  cfg: ml_collections.ConfigDict,
  gate_weight_decay: float = -1.0,
  gate_lr_multiplier: float = 1.0,
  gate_head_reset: str = 'none',
  gate_optimizer: str = 'sgd',
  gate_learning_rate: float = 1e-3,
) -> optax.GradientTransformation:
  """clip -> weight decay added to the gradient (before momentum, as torch.optim.SGD) -> SGD ->
  the plateau controller's scale (its last element; `end_of_epoch` steps it).

  Scaling the final update is exactly a learning-rate change for SGD with momentum in PyTorch's
  form. `gate_weight_decay` (>= 0) and `gate_lr_multiplier` give the GATE's parameters their
  own decay and rate (close_jax options; the official code trains the GATE with the
  supernet's). `gate_optimizer='adam'` trains the GATE with AdamW instead
  (`close_jax.gate_optim`). `gate_head_reset='official'` adds `surgery.gate_head_freeze` (aw_nas's
  GATE output layer, outside the optimizer from a curriculum switch to the next SRT).
  """
  decay = [optax.add_decayed_weights(cfg.weight_decay)]
  if gate_weight_decay >= 0:  # the GATE (params['gate']) gets its own weight decay
    decay = [
      optax.add_decayed_weights(cfg.weight_decay, mask=_not_gate),
      optax.add_decayed_weights(gate_weight_decay, mask=_is_gate),
    ]
  rescale = []
  if gate_lr_multiplier != 1.0:  # after SGD: a learning rate of its own, as a torch param group
    rescale = [optax.masked(optax.scale(gate_lr_multiplier), _is_gate)]
  # 0 turns clipping off (the NDS configs): clip_by_global_norm(0) would zero every gradient. An
  # infinite bound keeps the chain's structure, so checkpoints restore under either setting.
  clip = cfg.grad_clip_norm if cfg.grad_clip_norm > 0 else float('inf')
  update = [*decay, optax.sgd(cfg.learning_rate, momentum=cfg.momentum or None), *rescale]
  if gate_optimizer != 'sgd':  # the GATE on its own optimizer (close_jax.gate_optim)
    update = [gate_optim.split_update(cfg, gate_optimizer, gate_learning_rate, gate_weight_decay)]
  return optax.chain(
    optax.clip_by_global_norm(clip),
    *update,
    *([surgery.gate_head_freeze()] if gate_head_reset == 'official' else []),
    scale_by_plateau(),
  )


def from_config(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`make_optimizer` with a run config's `optim` group and its `close.gate_*` keys."""
  close = config.close
  return make_optimizer(
    config.optim,
    close.gate_weight_decay,
    close.gate_lr_multiplier,
    close.gate_head_reset,
    gate_optimizer=close.gate_optimizer,
    gate_learning_rate=close.gate_learning_rate,
  )


def patience_epochs(cfg: ml_collections.ConfigDict, steps_per_epoch: int = 0) -> int:
  """The plateau patience in epochs of this run: `plateau_patience_steps` (> 0, set by
  `budget_scaling='steps'`, see `close_jax.budget`) rounded to whole epochs of `steps_per_epoch`
  steps, at least one; otherwise `plateau_patience`."""
  steps = cfg.get('plateau_patience_steps', 0)
  if steps <= 0:
    return int(cfg.plateau_patience)
  if steps_per_epoch <= 0:
    raise ValueError(
      f'optim.plateau_patience_steps={steps} needs the steps per epoch of the run '
      f'(got {steps_per_epoch})'
    )
  return max(1, int(round(steps / steps_per_epoch)))


def plateau_value(metric: str, loss: float, accuracy: float) -> float:
  """The epoch quantity the plateau controller minimises (training error for accuracy)."""
  return loss if metric == 'train_loss' else 1.0 - accuracy


def learning_rate(opt_state, base_lr: float) -> float:
  """The effective learning rate: the plateau controller is the chain's last element."""
  return base_lr * float(opt_state[-1].scale)


def end_of_epoch(opt_state, value: float, cfg: ml_collections.ConfigDict, steps_per_epoch: int = 0):
  """`torch.optim.lr_scheduler.ReduceLROnPlateau.step(value)` on the controller of `opt_state`.

  `value` is the epoch's mean plateau metric (`plateau_value`). As torch (mode 'min', relative
  threshold 1e-4): an epoch counts as bad unless `value < best * (1 - 1e-4)`; after more than
  `patience_epochs(cfg, steps_per_epoch)` bad epochs in a row the rate is multiplied by
  `cfg.plateau_factor` (unless that changes it by less than 1e-8) and the count restarts. The new
  rate applies from the next epoch on. Runs on the host; the returned controller holds numpy
  scalars, to be placed on the devices with the rest of the state. The best value is kept in
  float32 (the state is a JAX pytree), which moves the threshold by at most 6e-8 of the value.
  """
  state = jax.device_get(opt_state[-1])
  scale, best, bad = float(state.scale), float(state.best_value), int(state.num_bad_epochs)
  if value < best * (1.0 - THRESHOLD):
    best, bad = value, 0
  else:
    bad += 1
  if bad > patience_epochs(cfg, steps_per_epoch):
    old_lr = cfg.learning_rate * scale
    if old_lr - old_lr * cfg.plateau_factor > EPS:
      scale *= cfg.plateau_factor
    bad = 0
  controller = PlateauState(np.float32(scale), np.float32(best), np.int32(bad))
  return (*opt_state[:-1], controller)


def restart(tx: optax.GradientTransformation, params, previous_value: float):
  """SRT: fresh momentum and learning rate, the plateau controller's best value = `previous_value`.

  The official code (aw_nas `MepaEvaluator.switch`) builds a new SGD and a new ReduceLROnPlateau
  and immediately steps the scheduler with the previous epoch's mean training loss, so the
  restarted rate is reduced after `patience` + 1 epochs unless training beats the value it had
  reached at the decayed rate. `previous_value` is that epoch's mean of the plateau metric (+inf
  when there was no previous epoch).
  """
  state = tx.init(params)
  return (*state[:-1], state[-1]._replace(best_value=jnp.asarray(previous_value, jnp.float32)))
