"""The GATE's own optimizer (`close.gate_optimizer`, a close_jax option beyond aw_nas).

In the official CLOSE code (aw_nas) the GATE is trained by the supernet's SGD, with its learning
rate and its coupled weight decay. Measured in close_jax, the GATE embedder's gradient is about
100x smaller than the pull of that decay, so the embedder decays towards zero and the GATE ends
as one distribution for every edge. Adam divides each coordinate's step by the running size of
its own gradient, so a small but consistent gradient moves the GATE as fast as a large one, and
AdamW's decoupled decay shrinks the weights by a fixed fraction per step instead of competing with
the gradient. `adam` puts `params['gate']` on AdamW and leaves every other parameter on the
supernet's SGD chain; the plateau controller after both still scales the whole update, so SRT and
the learning-rate halvings apply to the GATE as well.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

GATE_OPTIMIZERS = ('sgd', 'adam')


def param_labels(params) -> dict:
  """'gate' for every leaf of `params['gate']`, 'supernet' for the rest."""
  return {
    name: jax.tree.map(lambda _, label='gate' if name == 'gate' else 'supernet': label, sub)
    for name, sub in params.items()
  }


def split_update(
  supernet_update: optax.GradientTransformation,
  gate_optimizer: str,
  learning_rate: float,
  weight_decay: float,
) -> optax.GradientTransformation:
  """`supernet_update` on every parameter but the GATE's; AdamW(`learning_rate`, decoupled
  `weight_decay`, none when < 0) on the GATE's. Gradients arrive clipped as the official code
  clips them (one global norm over all parameters); Adam does not care about their scale."""
  if gate_optimizer not in GATE_OPTIMIZERS[1:]:
    raise ValueError(f'gate_optimizer={gate_optimizer!r}: expected one of {GATE_OPTIMIZERS[1:]}')
  gate = optax.adamw(learning_rate, weight_decay=max(weight_decay, 0.0))
  return optax.multi_transform({'supernet': supernet_update, 'gate': gate}, param_labels)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int):
  """The supernet optimizer of `config` (`optim.make_optimizer`) with its `close.gate_*` keys."""
  from close_jax import optim

  close = config.close
  return optim.make_optimizer(
    config.optim,
    steps_per_epoch,
    close.gate_weight_decay,
    close.gate_lr_multiplier,
    gate_optimizer=close.get('gate_optimizer', 'sgd'),
    gate_learning_rate=close.get('gate_learning_rate', 1e-3),
  )
