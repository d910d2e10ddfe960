"""Variation operators of the evolution, for any space through its interface.

Why genes: an architecture is an int array whose entries are not always free (a DARTS node's two
inputs must differ), so operators never write single entries; they exchange whole genes
(`Space.num_genes` rows of the flattened array), which the space guarantees recombine into valid
architectures. A mutation takes genes from a fresh sample of the space's own sampler, so it
draws from exactly the distribution the supernet was trained on.
"""

from __future__ import annotations

import jax
import numpy as np

from close_jax.spaces.base import Space


def genes(space: Space, archs: np.ndarray) -> np.ndarray:
  """(n, num_genes, gene_size) view of (n, *arch_shape)."""
  count = space.num_genes or int(np.prod(space.arch_shape))
  return np.asarray(archs).reshape(len(archs), count, -1)


def sample(space: Space, rng: np.random.Generator, num: int) -> np.ndarray:
  """`num` architectures from the space's training sampler, seeded by `rng`."""
  key = jax.random.key(int(rng.integers(2**31)))
  return np.asarray(space.sample(key, num, space.samplers[0]), np.int32)


def mutate(space: Space, parents: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
  """Each gene replaced with probability `rate` by the gene of a fresh sample; at least one gene
  per child, so a child is never its parent by construction."""
  g = genes(space, parents).copy()
  fresh = genes(space, sample(space, rng, len(parents)))
  n, count = g.shape[:2]
  hit = rng.random((n, count)) < rate
  hit[np.arange(n), rng.integers(count, size=n)] = True
  g[hit] = fresh[hit]
  return g.reshape(parents.shape)


def crossover(space: Space, first: np.ndarray, second: np.ndarray, rng) -> np.ndarray:
  """Uniform crossover: each gene from either parent with probability 1/2."""
  a, b = genes(space, first), genes(space, second)
  take_b = rng.random(a.shape[:2]) < 0.5
  return np.where(take_b[..., None], b, a).reshape(first.shape)


def _pick(population: np.ndarray, rng: np.random.Generator, num: int) -> np.ndarray:
  return population[rng.integers(len(population), size=num)]


def offspring(
  space: Space,
  population: np.ndarray,
  num: int,
  rng: np.random.Generator,
  probs: tuple[float, float],
  rate: float,
  seen: set[str],
  max_tries: int = 20,
) -> np.ndarray:
  """`num` children, each by mutation, crossover or a fresh sample with probabilities
  (probs[0], probs[1], rest) (CARS: 0.25, 0.25, 0.5). A child whose canonical form is in `seen`
  (or already made) is drawn again, up to `max_tries` rounds, so that a population does not
  fill with copies of one architecture; `seen` is updated with the children."""
  key = space.canonical_key or space.to_str
  children: list[np.ndarray] = []
  for _ in range(max_tries):
    need = num - len(children)
    if need == 0:
      break
    kind = rng.choice(3, size=need, p=(probs[0], probs[1], 1.0 - probs[0] - probs[1]))
    candidates = np.where(
      (kind == 0)[:, None],
      mutate(space, _pick(population, rng, need), rng, rate).reshape(need, -1),
      np.where(
        (kind == 1)[:, None],
        crossover(space, _pick(population, rng, need), _pick(population, rng, need), rng).reshape(
          need, -1
        ),
        sample(space, rng, need).reshape(need, -1),
      ),
    ).reshape(need, *space.arch_shape)
    for child in candidates:
      name = key(child)
      if name not in seen:
        seen.add(name)
        children.append(child)
  if len(children) < num:  # a tiny space ran out of new architectures: allow repeats
    children.extend(sample(space, rng, num - len(children)))
  return np.stack(children).astype(np.int32)
