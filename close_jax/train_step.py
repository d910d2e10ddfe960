"""The jitted supernet train step and the per-epoch sampling plan.

The architecture is an argument (a traced int array), never a closure or a static argument, so
one compiled step serves every architecture. Data lives on the device and is gathered and
augmented inside the step: the host only sends indices.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from close_jax import optim
from close_jax.data import augment
from close_jax.spaces import nb201
from close_jax.supernet import Supernet


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; exactly what a checkpoint holds."""

  step: jax.Array
  params: Any
  opt_state: Any


class TraceCounter:
  """Counts how often a function body is traced, i.e. how often it was (re)compiled."""

  def __init__(self):
    self.count = 0


def make_train_step(
  supernet: Supernet,
  tx: optax.GradientTransformationExtraArgs,
  *,
  mean,
  std,
  crop_padding: int,
  hflip: bool,
  plateau_metric: str,
  counter: TraceCounter | None = None,
):
  """Returns jitted `train_step(state, images, labels, batch_idx, ops, key) -> (state, metrics)`.

  `key` is the run's step key; the step folds in `state.step`, so the randomness of step t is
  fixed by (seed, t) alone and a resumed run replays exactly.
  """
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)

  def train_step(state: TrainState, images, labels, batch_idx, ops, key):
    if counter is not None:
      counter.count += 1
    key = jax.random.fold_in(key, state.step)
    aug_key, net_key = jax.random.split(key)
    x = augment.train_transform(images[batch_idx], aug_key, mean, std, crop_padding, hflip)
    y = labels[batch_idx]

    def loss_fn(params):
      logits = supernet.apply(params, x, ops, net_key, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    value = optim.plateau_value(plateau_metric, loss, accuracy)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=value)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'accuracy': accuracy, 'grad_norm': optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(train_step, donate_argnums=0)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def epoch_plan(key: jax.Array, epoch, num_train: int, steps: int, batch_size: int):
  """Batch indices (steps, batch) and one uniformly sampled architecture per step (steps, 6).

  Derived from (key, epoch) only, so resuming at an epoch boundary reproduces the plan.
  """
  perm_key, arch_key = jax.random.split(jax.random.fold_in(key, epoch))
  perm = jax.random.permutation(perm_key, num_train)[: steps * batch_size]
  return perm.reshape(steps, batch_size), nb201.sample(arch_key, steps)
