"""The supernet optimizer: PyTorch-SGD semantics plus a per-epoch reduce-on-plateau, in optax.

Everything that changes the step size lives in the optax state (momentum, the plateau controller's
best value, patience counter and scale), so a checkpoint of (params, opt_state) resumes with the
right learning rate, and SRT (a learning-rate restart) is a fresh `tx.init` whose plateau
controller remembers the loss reached before the restart (`restart`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from close_jax import gate_optim, surgery


def _is_gate(params) -> dict:
  return {name: jax.tree.map(lambda _, g=name == 'gate': g, sub) for name, sub in params.items()}


def _not_gate(params) -> dict:
  return jax.tree.map(lambda g: not g, _is_gate(params))


def make_optimizer(
  cfg: ml_collections.ConfigDict,
  steps_per_epoch: int,
  gate_weight_decay: float = -1.0,
  gate_lr_multiplier: float = 1.0,
  gate_head_reset: str = 'none',
  gate_optimizer: str = 'sgd',
  gate_learning_rate: float = 1e-3,
) -> optax.GradientTransformationExtraArgs:
  """clip -> weight decay added to the gradient (before momentum, as torch.optim.SGD) -> SGD.

  The plateau controller (`optax.contrib.reduce_on_plateau`) averages the per-step value passed
  as `value=` over one epoch (`accumulation_size=steps_per_epoch`), then halves the scale after
  `plateau_patience` epochs without a relative improvement of 1e-4. Scaling the final update is
  exactly a learning-rate change for SGD with momentum in PyTorch's form. `gate_weight_decay`
  (>= 0) and `gate_lr_multiplier` give the GATE's parameters their own decay and rate (close_jax
  options; the official code trains the GATE with the supernet's). `gate_optimizer='adam'` trains
  the GATE with AdamW instead (`close_jax.gate_optim`). Two small differences
  from torch.optim.lr_scheduler.ReduceLROnPlateau: optax reduces after `patience` bad epochs
  (torch after `patience + 1`), and the new scale already applies to the epoch's last step.
  `gate_head_reset='official'` adds `surgery.gate_head_freeze` (aw_nas's GATE output layer,
  outside the optimizer from a curriculum switch to the next SRT).
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
    optax.contrib.reduce_on_plateau(
      factor=cfg.plateau_factor,
      patience=patience_epochs(cfg, steps_per_epoch),
      rtol=1e-4,
      accumulation_size=steps_per_epoch,
    ),
  )


def from_config(config: ml_collections.ConfigDict, steps_per_epoch: int):
  """`make_optimizer` with a run config's `optim` group and its `close.gate_*` keys."""
  close = config.close
  return make_optimizer(
    config.optim,
    steps_per_epoch,
    close.gate_weight_decay,
    close.gate_lr_multiplier,
    close.gate_head_reset,
    gate_optimizer=close.gate_optimizer,
    gate_learning_rate=close.gate_learning_rate,
  )


def patience_epochs(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """The plateau patience in epochs of this run: `plateau_patience_steps` (> 0, set by
  `budget_scaling='steps'`, see `close_jax.budget`) rounded to whole epochs of `steps_per_epoch`
  steps, at least one; otherwise `plateau_patience`."""
  steps = cfg.get('plateau_patience_steps', 0)
  if steps <= 0:
    return int(cfg.plateau_patience)
  return max(1, int(round(steps / steps_per_epoch)))


def plateau_value(metric: str, loss: jax.Array, accuracy: jax.Array) -> jax.Array:
  """The per-step quantity the plateau controller minimises (training error for accuracy)."""
  return loss if metric == 'train_loss' else 1.0 - accuracy


def learning_rate(opt_state, base_lr: float) -> jax.Array:
  """The effective learning rate: the plateau controller is the chain's last element."""
  return base_lr * opt_state[-1].scale


def restart(tx: optax.GradientTransformation, params, previous_value: float):
  """SRT: fresh momentum and learning rate, the plateau controller's best value = `previous_value`.

  The official code (aw_nas `MepaEvaluator.switch`) builds a new SGD and a new ReduceLROnPlateau
  and immediately steps the scheduler with the previous epoch's mean training loss, so the
  restarted rate is halved after `patience` epochs unless training beats the value it had reached
  at the decayed rate. `previous_value` is that epoch's mean of the plateau metric.
  """
  state = tx.init(params)
  plateau = state[-1]
  best = jnp.asarray(previous_value, plateau.best_value.dtype)
  return (*state[:-1], plateau._replace(best_value=best))
