"""Binds a search-space network to a weight-sharing method: which block each edge uses.

The network itself (models/) only knows "edge e uses block b"; this module decides b. With the
vanilla supernet every edge of every cell owns its weights, i.e. 6 blocks with edge e on block e.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from close_jax.models.nb201_supernet import EDGES, NB201Supernet

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Supernet:
  """A pure-functional supernet: `init` makes a params pytree, `apply` runs one architecture."""

  network: NB201Supernet

  def init(self, key: jax.Array, image_shape: tuple[int, ...]) -> dict:
    x = jnp.zeros((2, *image_shape), jnp.float32)
    ops = jnp.zeros((len(EDGES),), jnp.int32)
    return self.network.init(key, x, ops, self.assignment(ops), train=False)['params']

  def assignment(self, ops: jax.Array) -> jax.Array:
    del ops  # vanilla sharing does not depend on the architecture
    return jnp.arange(len(EDGES), dtype=jnp.int32)

  def apply(
    self, params: dict, x: jax.Array, ops: jax.Array, key: jax.Array | None, train: bool
  ) -> jax.Array:
    rngs = {'dropout': key} if train else {}
    return self.network.apply(
      {'params': params}, x, ops, self.assignment(ops), train=train, rngs=rngs
    )


def build_supernet(config: ml_collections.ConfigDict, num_classes: int) -> Supernet:
  network = NB201Supernet(
    channels=config.model.channels,
    cells_per_stage=config.model.cells_per_stage,
    num_blocks=len(EDGES),
    num_classes=num_classes,
    dropout=config.model.dropout,
    dtype=DTYPES[config.model.dtype],
  )
  return Supernet(network)
