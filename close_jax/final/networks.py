"""The standalone network a final-training config names (`config.model.network`), found among the
registered spaces' `final_networks`, built for one resolved genotype, and its parameter counts
read off the initialised shapes (`jax.eval_shape`: nothing is computed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from close_jax import spaces

AUX_HEAD = 'auxiliary_head'


def available() -> dict[str, tuple[spaces.Space, spaces.FinalNetwork]]:
  """Every final network of the registered spaces: name -> (space, network), sorted by name."""
  found = {}
  for name in spaces.names():
    space = spaces.get(name)
    for network in space.final_networks:
      if network.name in found:
        raise ValueError(
          f'final network {network.name!r} is defined by spaces {found[network.name][0].name!r} '
          f'and {name!r}: network names must be unique'
        )
      found[network.name] = (space, network)
  return dict(sorted(found.items()))


def lookup(network: str) -> tuple[spaces.Space, spaces.FinalNetwork]:
  """(space, final network) of `config.model.network`; a one-line error lists the known ones,
  and names a space that has no final network when `network` is that space's name."""
  known = available()
  if network in known:
    return known[network]
  by_space: dict[str, list[str]] = {}
  for name, (space, _) in known.items():
    by_space.setdefault(space.name, []).append(name)
  if network in spaces.names():
    listed = ', '.join(f'{s} ({" or ".join(names)})' for s, names in sorted(by_space.items()))
    raise ValueError(
      f'config.model.network={network!r}: space {network!r} has no final network; the spaces '
      f'with one are {listed}'
    )
  raise ValueError(f'config.model.network={network!r}: expected one of {", ".join(known)}')


def build(model_cfg, arch: np.ndarray, num_classes: int):
  """The flax module; its call is `(x, drop_prob, train) -> (logits, aux_logits or None)`."""
  return lookup(model_cfg.network)[1].build(model_cfg, arch, num_classes)


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
