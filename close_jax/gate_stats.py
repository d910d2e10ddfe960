"""GATE diagnostics: does the gate depend on the architecture, or is it one constant distribution?

CLOSE is more than random sharing only if the GATE gives different architectures (and different
edges) different block distributions. Two numbers say whether it does, on a fixed probe set of
architectures and over the positions whose assignment matters (`Space.weighted_positions`;
on NB201 the live convolutions, as other ops have no weights): the mean entropy of the block
distributions, and their spread, the standard deviation of each block's probability across the
probed (architecture, position) pairs averaged over blocks.
A constant gate has spread 0 whatever its entropy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from close_jax.spaces.base import Space
from close_jax.supernet import Supernet


def has_gate(supernet: Supernet) -> bool:
  """Whether the supernet has a learned gate whose distribution can differ across edges."""
  return supernet.gate is not None and supernet.num_blocks >= 2


def block_probs(supernet: Supernet, params: dict, archs: jax.Array) -> jax.Array:
  """The evaluation GATE's block distributions, (num_archs, P, L): softmax of the logits."""
  logits = jax.vmap(lambda arch: supernet.gate_logits(params, arch, None, train=False))(archs)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def summarise(probs: jax.Array, archs: jax.Array, space: Space) -> dict:
  """Entropy (nats), spread and marginal of `probs` (n, P, L) over the weighted positions."""
  mask = space.weighted_positions(archs).astype(probs.dtype)  # (n, P)
  count = jnp.maximum(mask.sum(), 1.0)
  entropy = -jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-30)), axis=-1)
  marginal = jnp.sum(probs * mask[..., None], axis=(0, 1)) / count
  variance = jnp.sum(mask[..., None] * (probs - marginal) ** 2, axis=(0, 1)) / count
  return {
    'gate_entropy': jnp.sum(entropy * mask) / count,
    'gate_spread': jnp.mean(jnp.sqrt(variance)),
    'gate_marginal': marginal,
  }


def make_gate_stats(supernet: Supernet):
  """Jitted `stats(params, archs) -> {'gate_entropy', 'gate_spread', 'gate_marginal'}`.

  One compilation per curriculum level (the number of blocks is a shape).
  """
  return jax.jit(
    lambda params, archs: summarise(block_probs(supernet, params, archs), archs, supernet.space)
  )


def to_record(stats: dict, prefix: str = '') -> dict:
  """Host floats (and the marginal as a list) for metrics.jsonl."""
  stats = jax.device_get(stats)
  return {
    f'{prefix}gate_entropy': round(float(stats['gate_entropy']), 6),
    f'{prefix}gate_spread': float(f'{float(stats["gate_spread"]):.6g}'),
    f'{prefix}gate_marginal': [round(float(p), 5) for p in stats['gate_marginal']],
  }


def pair_kl(supernet: Supernet, params: dict, a, b, op: int) -> float:
  """Sum over the positions that are weighted in both `a` and `b` and hold op `op` in both of
  KL(p_a(e) || p_b(e)): how differently the GATE assigns blocks to the two architectures'
  operations of that kind (the paper's similarity measure, over 3x3 convolutions, in section 3.1
  of its appendix). 0 for a constant gate; raises when there is no such position."""
  space = supernet.space
  archs = jnp.asarray(np.stack([a, b]), jnp.int32)
  probs = np.asarray(block_probs(supernet, params, archs), np.float64)
  probs = probs / probs.sum(-1, keepdims=True)  # float32 rows sum to 1 +- 1e-7: KL could be < 0
  weighted = np.asarray(space.weighted_positions(archs))
  ops = np.asarray(space.position_ops(archs))
  both = weighted[0] & weighted[1] & (ops[0] == op) & (ops[1] == op)
  if not both.any():
    raise ValueError(f'architectures {a!r} and {b!r} share no weighted position with op {op}')
  p, q = np.maximum(probs[0][both], 1e-30), np.maximum(probs[1][both], 1e-30)
  return float(np.sum(p * (np.log(p) - np.log(q))))
