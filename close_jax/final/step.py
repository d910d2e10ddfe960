"""The standalone network's optimizer and its jitted train and test steps.

Compiled once per run: everything that changes over the epochs is an argument (the drop-path
probability a traced scalar, the learning rate a function of the traced step count), never a
Python constant. The optimizer follows torch.optim.SGD as the DARTS and NAS-Bench-201 code use it:
gradient clipping on the raw gradient, weight decay added to it (every parameter, BN included),
then (Nesterov) momentum; the cosine schedule is stepped per epoch (DARTS) or per step (NB201).
"""

from __future__ import annotations

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from close_jax import parallel
from close_jax.data import augment
from close_jax.train_step import TraceCounter


@flax.struct.dataclass
class FinalState:
  """What a checkpoint holds."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def cosine(optim_cfg, steps_per_epoch: int, num_epochs: int):
  """lr(step): lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2, with t the epoch (`schedule`
  'epoch': constant within an epoch, T = epochs) or the step (T = all steps)."""
  high, low = float(optim_cfg.learning_rate), float(optim_cfg.min_learning_rate)
  per_epoch = optim_cfg.schedule == 'epoch'
  total = num_epochs if per_epoch else num_epochs * steps_per_epoch

  def schedule(count):
    t = count // steps_per_epoch if per_epoch else count
    frac = jnp.minimum(jnp.asarray(t, jnp.float32) / total, 1.0)
    return low + (high - low) * 0.5 * (1.0 + jnp.cos(math.pi * frac))

  return schedule


def make_optimizer(optim_cfg, schedule) -> optax.GradientTransformation:
  clip = optim_cfg.grad_clip_norm if optim_cfg.grad_clip_norm > 0 else float('inf')
  return optax.chain(
    optax.clip_by_global_norm(clip),
    optax.add_decayed_weights(optim_cfg.weight_decay),
    optax.sgd(schedule, momentum=optim_cfg.momentum or None, nesterov=bool(optim_cfg.nesterov)),
  )


def cutout(x: jax.Array, key: jax.Array, length: int) -> jax.Array:
  """DARTS `utils.Cutout` on normalised images: a length x length square (clipped at the border)
  around a uniform centre set to 0 in each image."""
  n, h, w, _ = x.shape
  ky, kx = jax.random.split(key)
  cy = jax.random.randint(ky, (n, 1), 0, h)
  cx = jax.random.randint(kx, (n, 1), 0, w)
  half = length // 2
  rows = jnp.arange(h)[None, :]
  cols = jnp.arange(w)[None, :]
  in_y = (rows >= jnp.clip(cy - half, 0, h)) & (rows < jnp.clip(cy + half, 0, h))
  in_x = (cols >= jnp.clip(cx - half, 0, w)) & (cols < jnp.clip(cx + half, 0, w))
  keep = ~(in_y[:, :, None] & in_x[:, None, :])
  return x * keep[..., None].astype(x.dtype)


def _cross_entropy(logits, labels, smoothing: float):
  onehot = jax.nn.one_hot(labels, logits.shape[-1])
  if smoothing:
    onehot = optax.smooth_labels(onehot, smoothing)
  return optax.softmax_cross_entropy(logits, onehot)


def make_train_step(
  model,
  tx,
  *,
  mean,
  std,
  host_augmented: bool,
  crop_padding: int,
  hflip: bool,
  cutout_length: int,
  label_smoothing: float,
  aux_weight: float,
  mesh: Mesh,
  counter: TraceCounter | None = None,
):
  """Jitted `step(state, images, labels, key, drop_prob) -> (state, metrics)`; `images` uint8,
  row-sharded over `mesh`. The step's randomness is `fold_in(key, state.step)`: (seed, step)."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)

  def step(state: FinalState, images, labels, key, drop_prob):
    if counter is not None:
      counter.count += 1
    aug_key, cut_key, dropout_key, path_key = jax.random.split(
      jax.random.fold_in(key, state.step), 4
    )
    if host_augmented:
      x = augment.normalize(images, mean, std)
    else:
      x = augment.train_transform(images, aug_key, mean, std, crop_padding, hflip)
    if cutout_length:
      x = cutout(x, cut_key, cutout_length)

    def loss_fn(params):
      (logits, aux), new_vars = model.apply(
        {'params': params, 'batch_stats': state.batch_stats},
        x,
        drop_prob,
        train=True,
        rngs={'dropout': dropout_key, 'drop_path': path_key},
        mutable=['batch_stats'],
      )
      loss = jnp.mean(_cross_entropy(logits, labels, label_smoothing))
      if aux is not None and aux_weight:
        loss = loss + aux_weight * jnp.mean(_cross_entropy(aux, labels, label_smoothing))
      return loss, (logits, new_vars['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    metrics = {
      'loss': loss,
      'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels),
      'grad_norm': optax.tree.norm(grads),
    }
    new = FinalState(
      state.step + 1, optax.apply_updates(state.params, updates), batch_stats, opt_state
    )
    return new, metrics

  jitted = jax.jit(step, donate_argnums=0, out_shardings=parallel.replicated(mesh))
  if counter is not None:
    counter.functions.append(jitted)
  return jitted


def make_eval_step(model, *, mean, std, mesh: Mesh, counter: TraceCounter | None = None):
  """Jitted `evaluate(state, images, labels, valid) -> sums` of correct top-1, top-5 and loss
  over the real rows (`valid`) of a batch, with the BN running statistics."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)

  def evaluate(state: FinalState, images, labels, valid):
    if counter is not None:
      counter.count += 1
    x = augment.normalize(images, mean, std)
    logits, _ = model.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, x, 0.0, train=False
    )
    weight = valid.astype(jnp.float32)
    k = min(5, logits.shape[-1])
    top_k = jax.lax.top_k(logits, k)[1]
    return {
      'correct': jnp.sum(weight * (top_k[:, 0] == labels)),
      'correct_top5': jnp.sum(weight * jnp.any(top_k == labels[:, None], axis=-1)),
      'loss': jnp.sum(weight * _cross_entropy(logits, labels, 0.0)),
      'count': jnp.sum(weight),
    }

  jitted = jax.jit(evaluate, out_shardings=parallel.replicated(mesh))
  if counter is not None:
    counter.functions.append(jitted)
  return jitted
