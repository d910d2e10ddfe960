"""The standalone network a final-training config names, built for one resolved genotype, and
its parameter counts read off the initialised shapes (`jax.eval_shape`: nothing is computed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from close_jax.final.darts_network import DartsNetwork, genotype_tuple
from close_jax.final.nb201_network import NB201Network

NETWORKS = {'darts_cifar': 'nb301', 'darts_imagenet': 'nb301', 'nb201': 'nb201'}
AUX_HEAD = 'auxiliary_head'


def space_of(network: str) -> str:
  if network not in NETWORKS:
    raise ValueError(f'config.model.network={network!r}: expected one of {", ".join(NETWORKS)}')
  return NETWORKS[network]


def build(model_cfg, arch: np.ndarray, num_classes: int):
  """The flax module; its call is `(x, drop_prob, train) -> (logits, aux_logits or None)`."""
  if model_cfg.network == 'nb201':
    return NB201Network(
      tuple(int(v) for v in arch),
      channels=int(model_cfg.channels),
      cells_per_stage=int(model_cfg.cells_per_stage),
      num_classes=num_classes,
      dtype=model_cfg.dtype,
    )
  return DartsNetwork(
    genotype_tuple(arch),
    channels=int(model_cfg.channels),
    layers=int(model_cfg.layers),
    num_classes=num_classes,
    auxiliary=bool(model_cfg.auxiliary),
    imagenet=model_cfg.network == 'darts_imagenet',
    dropout=float(model_cfg.dropout),
    dtype=model_cfg.dtype,
  )


def init(model, key: jax.Array, image_size: int) -> dict:
  """{'params', 'batch_stats'} of a fresh network (the auxiliary head's included)."""
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return model.init({'params': key}, x, 0.0, train=False)


def param_counts(model, image_size: int) -> tuple[int, int]:
  """(parameters without the auxiliary head, as DARTS logs `param size`; all parameters)."""
  shapes = jax.eval_shape(lambda: init(model, jax.random.key(0), image_size))['params']
  total = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
  aux = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes.get(AUX_HEAD, {})))
  return total - aux, total
