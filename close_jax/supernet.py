"""Binds a space's network to a weight-sharing method: which block each position uses.

The network (models/) only knows "position e uses block b" (or "mix the L blocks with weights
m_e"); this module decides b from the method and the architecture, for any space of the
`spaces.base` interface (positions are NB201's 6 edges):
- vanilla: every candidate edge owns a block (`Space.vanilla_assignment`: NB201 edge e on block
  e, DARTS the chosen edge's candidate);
- close_s: 1 shared block (stage 1), then vanilla (stage 2);
- close on an interval space (NDS): the interval curriculum's position -> block map of level L
  (`close_jax.intervals`), the same for every architecture;
- close: L blocks picked per edge by the GATE (Gumbel-softmax, straight-through) in training and
  by one seeded categorical draw per architecture in evaluation; `gate=random` and `gate=arch` are
  the ablations. A cell with a single block needs no gate at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from close_jax import curriculum, intervals, spaces
from close_jax.dtypes import DTYPES
from close_jax.models import gate as gate_lib


@dataclasses.dataclass(frozen=True)
class Supernet:
  """A pure-functional supernet at one curriculum level (`num_blocks` blocks per cell)."""

  network: Any  # the space's flax network (`Space.build_network`)
  method: str
  gate_kind: str  # 'node' | 'arch' | 'random' (used by method='close' only)
  max_blocks: int  # K: the GATE always has K outputs; the first `num_blocks` are kept
  space: spaces.Space
  gate_embed_norm: str = 'none'  # see models.gate.FlowEmbedder.norm
  gate_temperature: float = gate_lib.GUMBEL_TEMPERATURE
  interval_criterion: str = 'pre'  # interval spaces only: see close_jax.intervals
  # How the GATE's training gradient is formed (`gate_lib.GATE_MIXES`, close.gate_mix) and the
  # soft mixture's anneal (close.gate_final_temperature, close.gate_anneal_steps).
  gate_mix: str = 'straight_through'
  gate_final_temperature: float = 0.5
  gate_anneal_steps: int = 0
  gate_center_logits: bool = False  # close.gate_center_logits: see gate_lib.centre_logits
  # eval.gate_assignment: 'sample' (official: one draw per edge from the GATE's distribution)
  # or 'mode' (its most likely block: a deterministic ranking, beyond aw_nas).
  eval_assignment: str = 'sample'

  @property
  def num_blocks(self) -> int:
    return self.network.num_blocks

  @property
  def gate(self) -> gate_lib.Gate | None:
    if self.method != 'close' or self.gate_kind == 'random' or self.space.interval_curriculum:
      return None
    return gate_lib.Gate(
      self.max_blocks,
      kind=self.gate_kind,
      embed_norm=self.gate_embed_norm,
      graph=self.space.graph,
    )

  @property
  def num_positions(self) -> int:
    return self.space.num_positions

  def interval_map(self) -> list[int] | None:
    """The position -> block map of this level in an interval space (checkpoints record it)."""
    if self.method != 'close' or not self.space.interval_curriculum:
      return None
    return intervals.position_map(
      self.num_positions, self.num_blocks, self.interval_criterion
    ).tolist()

  def init(self, key: jax.Array, image_shape: tuple[int, ...]) -> dict:
    net_key, gate_key = jax.random.split(key)
    x = jnp.zeros((2, *image_shape), jnp.float32)
    arch = jnp.zeros(self.space.arch_shape, jnp.int32)
    zeros = jnp.zeros((self.num_positions,), jnp.int32)
    params = {'net': self.network.init(net_key, x, arch, zeros, train=False)['params']}
    if self.gate is not None:
      params['gate'] = self.gate.init(gate_key, arch, train=False)['params']
    return params

  def gate_logits(self, params: dict, arch: jax.Array, key: jax.Array | None, train: bool):
    """The GATE's logits over the active blocks, (positions, L)."""
    rngs = {'dropout': key} if train else {}
    logits = self.gate.apply({'params': params['gate']}, arch, train=train, rngs=rngs)
    logits = logits[:, : self.num_blocks]
    if self.gate_center_logits:
      logits = gate_lib.centre_logits(logits, self.space.weighted_positions(arch[None])[0])
    return logits

  @property
  def _reinforce(self) -> bool:
    return self.gate_mix == 'reinforce' and self.gate is not None and self.num_blocks >= 2

  def _reinforce_draws(self, params: dict, arch, gate_key):
    """The GATE's logits and two independent block draws from them, (2, P)."""
    noise_key, dropout_key = jax.random.split(gate_key)
    logits = self.gate_logits(params, arch, dropout_key, train=True)
    keys = jax.random.split(noise_key)
    return logits, jnp.stack([gate_lib.gumbel_max(logits, k) for k in keys])

  def gate_objective(self, loss, per_example_loss, params: dict, arch, key):
    """The training objective: `loss`, plus with `gate_mix='reinforce'` a term whose gradient
    is the GATE's score-function estimate (it adds 0 to the value's gradient for the network).

    `apply` ran the two halves of the batch on two independent block draws; each half's mean
    loss is the baseline of the other's draw (a leave-one-out baseline: unbiased, because the
    other draw is independent, and it removes what the architecture and the weights alone
    contribute to the loss). `key` is the one given to `apply`."""
    if not self._reinforce:
      return loss
    gate_key, _ = jax.random.split(key)
    logits, blocks = self._reinforce_draws(params, arch, gate_key)
    half = per_example_loss.shape[0] // 2
    first = jnp.mean(per_example_loss[:half])
    second = jnp.mean(per_example_loss[half:])
    weights = self.space.weighted_positions(arch[None])[0].astype(jnp.float32)
    score = gate_lib.score_function_surrogate(logits, blocks[0], first - second, weights)
    score += gate_lib.score_function_surrogate(logits, blocks[1], second - first, weights)
    return loss + 0.5 * score

  def assign(self, params: dict, arch: jax.Array, key: jax.Array | None, train: bool, step=None):
    """Block per position: int (P,) to run one block, or the mix weights (P, L) in training
    (straight-through one-hot, or the annealed soft mixture at training step `step`)."""
    positions = self.num_positions
    if self.method != 'close':
      if self.num_blocks == 1:
        return jnp.zeros((positions,), jnp.int32)
      return self.space.vanilla_assignment(arch)
    if self.num_blocks == 1:  # softmax over one block: no gate gradient, so skip the gate
      return jnp.zeros((positions,), jnp.int32)
    if self.space.interval_curriculum:  # a constant of the level: one compile per level anyway
      return jnp.asarray(self.interval_map(), jnp.int32)
    noise_key, dropout_key = jax.random.split(key)
    if self.gate_kind == 'random':
      return jax.random.randint(noise_key, (positions,), 0, self.num_blocks, jnp.int32)
    logits = self.gate_logits(params, arch, dropout_key, train)
    if train and self.gate_mix == 'soft_annealed':
      if step is None:
        raise ValueError("gate_mix='soft_annealed' needs the training step to anneal (step=)")
      return gate_lib.soft_annealed_gumbel(
        logits,
        noise_key,
        step,
        self.gate_temperature,
        self.gate_final_temperature,
        self.gate_anneal_steps,
      )
    if train:
      return gate_lib.straight_through_gumbel(logits, noise_key, self.gate_temperature)
    if self.eval_assignment == 'mode':
      return jnp.argmax(logits, -1).astype(jnp.int32)
    return gate_lib.sample_blocks(logits, noise_key)

  def shape_key(self, arch) -> Hashable | None:
    """The static shape a train step needs for one architecture (a host array), or None when
    one executable serves every architecture (`Space.shape_keyer`; every space but NDS under a
    non-`mask` `model.nds_strategy`). The trainer passes it to the step as a static argument."""
    keyer = self._shape_keyer()
    return keyer(arch) if keyer is not None else None

  def shape_keys(self, archs: jax.Array) -> list:
    """`shape_key` of every architecture of an epoch's plan (replicated (steps, ...)); fetched
    to the host once per epoch, and only when a key can be other than None."""
    keyer = self._shape_keyer()
    if keyer is None:
      return [None] * archs.shape[0]
    host = np.asarray(archs.addressable_data(0))  # this process's replica
    return [keyer(arch) for arch in host]

  def _shape_keyer(self):
    if self.space.shape_keyer is None:
      return None
    return self.space.shape_keyer(self.network)

  def forward(
    self, params: dict, x, arch, assignment, key: jax.Array | None, train: bool, shape_key=None
  ):
    rngs = {'dropout': key} if train else {}
    network = self.network
    if shape_key is not None:
      network = self.space.specialise(network, shape_key)
    return network.apply({'params': params['net']}, x, arch, assignment, train=train, rngs=rngs)

  def apply(
    self, params: dict, x, arch, key: jax.Array | None, train: bool, shape_key=None, step=None
  ) -> jax.Array:
    """Logits for one architecture. In training `key` drives dropout and the gate's noise; in
    evaluation it is the architecture's fixed gate seed (unused by methods without a gate).
    `step` (the training step) drives `gate_mix='soft_annealed'`'s temperature."""
    gate_key, net_key = jax.random.split(key) if key is not None else (None, None)
    if train and self._reinforce:  # two halves of the batch, two independent block draws
      _, blocks = self._reinforce_draws(params, arch, gate_key)
      half = x.shape[0] // 2
      keys = jax.random.split(net_key)
      return jnp.concatenate(
        [
          self.forward(params, x[:half], arch, blocks[0], keys[0], train, shape_key),
          self.forward(params, x[half:], arch, blocks[1], keys[1], train, shape_key),
        ]
      )
    assignment = self.assign(params, arch, gate_key, train, step)
    return self.forward(params, x, arch, assignment, net_key, train, shape_key)


def build_supernet(
  config: ml_collections.ConfigDict,
  num_classes: int,
  num_blocks: int | None = None,
  space: spaces.Space | None = None,
  max_blocks: int | None = None,
) -> Supernet:
  """The supernet with `num_blocks` blocks per cell (default: the curriculum's maximum K).
  `space` and `max_blocks`: the config's, when the caller has resolved them already."""
  space = space or spaces.get(config.space)
  max_blocks = max_blocks or curriculum.from_config(config, space).max_blocks
  network = space.build_network(
    config.model, num_classes, num_blocks or max_blocks, DTYPES[config.model.dtype]
  )
  return Supernet(
    network,
    config.method,
    config.close.gate,
    max_blocks,
    space,
    gate_embed_norm=config.close.get('gate_embed_norm', 'none'),
    gate_temperature=config.close.get('gate_temperature', gate_lib.GUMBEL_TEMPERATURE),
    interval_criterion=config.close.get('interval_criterion', 'pre'),
    gate_mix=config.close.get('gate_mix', 'straight_through'),
    gate_final_temperature=config.close.get('gate_final_temperature', 0.5),
    gate_anneal_steps=config.close.get('gate_anneal_steps', 0),
    gate_center_logits=config.close.get('gate_center_logits', False),
    # A network-only config (no eval group) evaluates as the official code does.
    eval_assignment=(config.get('eval') or {}).get('gate_assignment', 'sample'),
  )
