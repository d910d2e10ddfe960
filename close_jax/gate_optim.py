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

from typing import NamedTuple

import ml_collections
import optax

GATE_OPTIMIZERS = ('sgd', 'adam')


class SplitState(NamedTuple):
  supernet: optax.OptState
  gate: optax.OptState


def split_update(
  cfg: ml_collections.ConfigDict,
  gate_optimizer: str,
  learning_rate: float,
  weight_decay: float,
) -> optax.GradientTransformation:
  """The supernet's SGD (`cfg`: PyTorch semantics, decay added before momentum) on every
  parameter but the GATE's; AdamW(`learning_rate`, decoupled `weight_decay`, none when < 0) on
  `params['gate']`. Gradients arrive clipped as the official code clips them (one global norm
  over all parameters); Adam does not care about their scale.

  Both states cover the whole parameter tree (each optimizer's output is kept only on its own
  part), so the state holds plain parameter-shaped trees: `optax.tree_map_params`, and with it
  the curriculum's carry of the optimizer state at a switch, sees every one of them.
  """
  if gate_optimizer not in GATE_OPTIMIZERS[1:]:
    raise ValueError(f'gate_optimizer={gate_optimizer!r}: expected one of {GATE_OPTIMIZERS[1:]}')
  supernet = optax.chain(
    optax.add_decayed_weights(cfg.weight_decay),
    optax.sgd(cfg.learning_rate, momentum=cfg.momentum or None),
  )
  gate = optax.adamw(learning_rate, weight_decay=max(weight_decay, 0.0))

  def init(params):
    return SplitState(supernet.init(params), gate.init(params))

  def update(updates, state, params=None):
    net_updates, net_state = supernet.update(updates, state.supernet, params)
    gate_updates, gate_state = gate.update(updates, state.gate, params)
    return {**net_updates, 'gate': gate_updates['gate']}, SplitState(net_state, gate_state)

  return optax.GradientTransformation(init, update)
