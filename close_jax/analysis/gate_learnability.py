"""Can the GATE learn an architecture-dependent assignment? A synthetic task that says yes or no.

The supernet's weights are frozen at a random initialisation with two blocks per cell, block 0
keeping only its 3x3 convolutions and block 1 only its 1x1 ones (`specialise_blocks`); the rule to
learn, "3x3 convolutions on block 0, 1x1 on block 1", depends on the architecture, and no
constant assignment follows it on more than about half of the live convolutions. Two ways to
learn it:
- `supervised_agreement` fits the GATE to the rule directly: can its embedder and MLP represent
  and learn an architecture-dependent assignment at all?
- `run` trains it as CLOSE does, through the trainer's path (`Supernet.apply` and
  `Supernet.gate_objective`, so `close.gate_mix`, `close.gate_optimizer` and
  `close.gate_center_logits` apply as in training): the student network's blocks come from the
  GATE, and the loss is the error against the teacher's logits (the same network on the rule's
  blocks); only the GATE's parameters change. A GATE that learns must
  agree with the rule on most live convolutions of unseen architectures, spread its
  distributions (> 0) and beat the random blocks of `gate=random` on the teacher loss.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from close_jax import gate_stats, optim, surgery
from close_jax.spaces import nb201, nb201_space
from close_jax.supernet import Supernet, build_supernet

C3 = 3  # nor_conv_3x3
NUM_BLOCKS = 2


def specialise_blocks(net_params: dict) -> dict:
  """Block 0 keeps only its 3x3 convolutions and block 1 only its 1x1 ones (the others are
  zeroed: an affine-free BN of a zero convolution is zero, so that edge computes nothing)."""

  def zero(path, leaf):
    name = str(getattr(path[-1], 'key', ''))
    if name == 'conv1x1':
      return leaf.at[0].set(0.0)
    if name == 'conv3x3':
      return leaf.at[1].set(0.0)
    return leaf

  return jax.tree_util.tree_map_with_path(zero, net_params)


def teacher_blocks(ops: jax.Array) -> jax.Array:
  """The rule to learn: block 0 for nor_conv_3x3 edges, block 1 for everything else."""
  return jnp.where(ops == C3, 0, 1).astype(jnp.int32)


def agreement(probs: jax.Array, archs: jax.Array) -> jax.Array:
  """Fraction of the live convolutions of `archs` whose most likely block follows the rule."""
  conv = nb201_space.weighted_positions(archs)
  hits = (jnp.argmax(probs, axis=-1) == teacher_blocks(archs)) & conv
  return jnp.sum(hits) / jnp.maximum(conv.sum(), 1)


@dataclasses.dataclass
class Result:
  agreement: float  # fraction of live convs (held-out archs) whose argmax block follows the rule
  spread: float  # gate_stats spread on the held-out archs
  entropy: float
  loss_gate: float  # teacher MSE with the GATE's argmax assignment, held-out archs
  loss_random: float  # the same with uniformly random blocks (gate=random)
  loss_teacher: float  # 0 up to float error: the rule itself
  agreement_before: float
  spread_before: float


def _config(base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(base.to_dict())
  config.method = 'close'
  config.close.gate = 'node'
  config.close.cl_schedule = (0, 1)  # K = 2
  config.model.dropout = 0.0
  return config


def relative_error(logits: jax.Array, target: jax.Array) -> jax.Array:
  """Squared error relative to the target's energy: O(1) whatever the random network's scale."""
  target = jax.lax.stop_gradient(target)
  return jnp.mean((logits - target) ** 2) / (jnp.mean(target**2) + 1e-12)


def relative_errors(logits: jax.Array, target: jax.Array) -> jax.Array:
  """`relative_error` per image, (batch,): their mean is `relative_error`."""
  target = jax.lax.stop_gradient(target)
  return jnp.mean((logits - target) ** 2, axis=-1) / (jnp.mean(target**2) + 1e-12)


def _frozen_net_loss(supernet: Supernet, net_params, x, ops, assignment, target):
  logits = supernet.forward({'net': net_params}, x, ops, assignment, None, train=False)
  return relative_error(logits, target)


def run(
  base_config: ml_collections.ConfigDict,
  *,
  steps: int = 300,
  seed: int = 0,
  batch: int = 16,
  image_size: int = 8,
  eval_archs: int = 64,
) -> Result:
  """Trains the GATE of `base_config` (its `model`, `close.gate_*` and `optim` settings) on the
  task for `steps` steps, one fresh random architecture per step; returns held-out figures."""
  config = _config(base_config)
  supernet = build_supernet(config, num_classes=10, num_blocks=NUM_BLOCKS)
  key = jax.random.key(seed)
  init_key, data_key, train_key, eval_key = jax.random.split(key, 4)
  image_shape = (image_size, image_size, 3)
  params = jax.jit(lambda k: supernet.init(k, image_shape))(init_key)
  net = specialise_blocks(surgery.slice_blocks(params['net'], NUM_BLOCKS))
  x = jax.random.normal(data_key, (batch, *image_shape))
  tx = optim.from_config(config)

  def target(ops):
    return supernet.forward({'net': net}, x, ops, teacher_blocks(ops), None, train=False)

  def step(carry, inputs):
    gate, opt_state = carry
    step_key, index = inputs
    arch_key, noise_key = jax.random.split(step_key)
    ops = nb201.sample(arch_key, 1)[0]
    goal = jax.lax.stop_gradient(target(ops))

    def loss_fn(gate):  # the trainer's path: supernet.apply, then supernet.gate_objective
      params = {'net': net, 'gate': gate}
      logits = supernet.apply(params, x, ops, noise_key, train=True, step=index)
      per_example = relative_errors(logits, goal)
      loss = jnp.mean(per_example)
      return supernet.gate_objective(loss, per_example, params, ops, noise_key), loss

    (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(gate)
    updates, opt_state = tx.update({'gate': grads}, opt_state, {'gate': gate})
    gate = optax.apply_updates(gate, updates['gate'])
    return (gate, opt_state), loss

  @jax.jit
  def train(gate, key):
    carry = (gate, tx.init({'gate': gate}))
    inputs = (jax.random.split(key, steps), jnp.arange(steps))
    (gate, _), _ = jax.lax.scan(step, carry, inputs)
    return gate

  probe = jnp.asarray(nb201_space.probe_archs(eval_archs, seed + 1))
  evaluate = jax.jit(lambda gate: _evaluate(supernet, net, gate, x, probe, target, eval_key))
  before = jax.device_get(evaluate(params['gate']))
  trained = train(params['gate'], train_key)
  after = jax.device_get(evaluate(trained))
  return Result(
    agreement=float(after['agreement']),
    spread=float(after['spread']),
    entropy=float(after['entropy']),
    loss_gate=float(after['loss_gate']),
    loss_random=float(after['loss_random']),
    loss_teacher=float(after['loss_teacher']),
    agreement_before=float(before['agreement']),
    spread_before=float(before['spread']),
  )


def _evaluate(supernet, net, gate, x, probe, target, key) -> dict:
  params = {'net': net, 'gate': gate}
  probs = gate_stats.block_probs(supernet, params, probe)
  stats = gate_stats.summarise(probs, probe, supernet.space)
  chosen = jnp.argmax(probs, axis=-1)
  random_blocks = jax.random.randint(key, probe.shape, 0, NUM_BLOCKS, jnp.int32)

  def losses(ops, picked, random):
    goal = target(ops)
    return (
      _frozen_net_loss(supernet, net, x, ops, picked, goal),
      _frozen_net_loss(supernet, net, x, ops, random, goal),
      _frozen_net_loss(supernet, net, x, ops, teacher_blocks(ops), goal),
    )

  gate_loss, random_loss, teacher_loss = jax.lax.map(
    lambda a: losses(*a), (probe, chosen.astype(jnp.int32), random_blocks)
  )
  return {
    'agreement': agreement(probs, probe),
    'spread': stats['gate_spread'],
    'entropy': stats['gate_entropy'],
    'loss_gate': jnp.mean(gate_loss),
    'loss_random': jnp.mean(random_loss),
    'loss_teacher': jnp.mean(teacher_loss),
  }


def supervised_agreement(
  base_config: ml_collections.ConfigDict,
  *,
  steps: int = 1000,
  seed: int = 0,
  archs_per_step: int = 8,
  learning_rate: float = 0.05,
) -> tuple[float, float]:
  """(agreement, spread) after fitting the GATE to the rule directly (cross-entropy on the rule's
  block for every live convolution; SGD with momentum 0.9, no weight decay).

  This isolates the GATE module from the noisy straight-through signal: can its embedder and
  MLP represent and learn an assignment that depends on the architecture at all?
  """
  config = _config(base_config)
  supernet = build_supernet(config, num_classes=10, num_blocks=NUM_BLOCKS)
  init_key, train_key = jax.random.split(jax.random.key(seed))
  gate0 = jax.jit(lambda k: supernet.init(k, (8, 8, 3)))(init_key)['gate']
  tx = optax.sgd(learning_rate, momentum=0.9)

  def loss(gate, ops):
    logits = supernet.gate_logits({'gate': gate}, ops, None, train=False)
    conv = nb201_space.weighted_positions(ops).astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, teacher_blocks(ops))
    return jnp.sum(ce * conv) / jnp.maximum(conv.sum(), 1.0)

  def step(carry, key):
    gate, opt_state = carry
    archs = nb201.sample(key, archs_per_step)
    grads = jax.grad(lambda g: jnp.mean(jax.vmap(lambda a: loss(g, a))(archs)))(gate)
    updates, opt_state = tx.update(grads, opt_state, gate)
    return (optax.apply_updates(gate, updates), opt_state), None

  @jax.jit
  def fit_and_score(gate, key, probe):
    (gate, _), _ = jax.lax.scan(step, (gate, tx.init(gate)), jax.random.split(key, steps))
    probs = gate_stats.block_probs(supernet, {'gate': gate}, probe)
    spread = gate_stats.summarise(probs, probe, supernet.space)['gate_spread']
    return agreement(probs, probe), spread

  probe = jnp.asarray(nb201_space.probe_archs(64, seed + 1))
  agree, spread = fit_and_score(gate0, train_key, probe)
  return float(agree), float(spread)


def constant_result(base_config: ml_collections.ConfigDict, seed: int = 0) -> Result:
  """The figures of the best constant gate (every edge on block 0 or on block 1, whichever
  agrees more): what a collapsed GATE achieves at most, for tests to check they can fail."""
  probe = nb201_space.probe_archs(64, seed + 1)
  conv = np.asarray(nb201_space.weighted_positions(jnp.asarray(probe)))
  share3 = float(np.sum(conv & (probe == C3)) / conv.sum())
  return Result(
    agreement=max(share3, 1 - share3),
    spread=0.0,
    entropy=0.0,
    loss_gate=float('nan'),
    loss_random=float('nan'),
    loss_teacher=0.0,
    agreement_before=max(share3, 1 - share3),
    spread_before=0.0,
  )
