"""Variation operators of the evolution, for any space through its interface.

`OPERATORS`: 'cars' (default) are CARS's operators as aw_nas runs them: a mutation changes
exactly one element of the architecture to a different valid value (`Space.mutate`), a crossover
takes whole genes from either parent with one coin per `Space.crossover_groups` group, and a
space without a crossover (NB201) makes mutations instead. 'genes' are close_jax's earlier
operators: a mutation redraws each gene with probability `gene_mutation_rate` from a fresh
sample, a crossover is uniform over genes, on every space.

Why genes: an architecture is an int array whose entries are not always free (a DARTS node's two
inputs must differ), so the crossover never writes single entries; it exchanges whole genes
(`Space.num_genes` rows of the flattened array), which the space guarantees recombine into valid
architectures.
"""

from __future__ import annotations

import jax
import numpy as np

from close_jax.spaces.base import Space

OPERATORS = ('cars', 'genes')


def genes(space: Space, archs: np.ndarray) -> np.ndarray:
  """(n, num_genes, gene_size) view of (n, *arch_shape)."""
  count = space.num_genes or int(np.prod(space.arch_shape))
  return np.asarray(archs).reshape(len(archs), count, -1)


def sample(space: Space, rng: np.random.Generator, num: int) -> np.ndarray:
  """`num` architectures from the space's training sampler, seeded by `rng`."""
  key = jax.random.key(int(rng.integers(2**31)))
  return np.array(space.sample(key, num, space.samplers[0]), np.int32)


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


def mutate_one(space: Space, parents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """CARS's mutation: each child is its parent with one element changed (`Space.mutate`). A
  space without `mutate` takes one gene, drawn among those where a fresh sample differs from the
  parent (so a decision with a single choice is never picked), from that sample; a parent equal
  to 20 fresh samples stays as it is."""
  if space.mutate is not None:
    return np.stack([space.mutate(p, rng) for p in np.asarray(parents)]).astype(np.int32)
  g = genes(space, parents).copy()
  pending = np.arange(len(g))
  for _ in range(20):
    fresh = genes(space, sample(space, rng, len(pending)))
    differs = np.any(fresh != g[pending], axis=-1)  # (pending, num_genes)
    done = differs.any(1)
    # A uniform choice among the differing genes: the largest random key where they differ.
    which = np.argmax(np.where(differs, rng.random(differs.shape), -1.0), axis=1)
    rows = pending[done]
    g[rows, which[done]] = fresh[done, which[done]]
    pending = pending[~done]
    if not len(pending):
      break
  return g.reshape(parents.shape)


def crossover_groups(space: Space, first: np.ndarray, second: np.ndarray, rng) -> np.ndarray:
  """CARS's crossover: one coin per `Space.crossover_groups` group, so genes of a group come from
  the same parent (DARTS: node j of the normal and the reduce cell)."""
  groups = np.asarray(space.crossover_groups)
  a, b = genes(space, first), genes(space, second)
  take_b = (rng.random((len(a), groups.max() + 1)) < 0.5)[:, groups]
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
  operators: str = 'cars',
) -> np.ndarray:
  """`num` children, each by mutation, crossover or a fresh sample with probabilities
  (probs[0], probs[1], rest) (CARS: 0.25, 0.25, 0.5; with 'cars' operators a space without a
  crossover makes a mutation instead, 0.5 / 0.5 as aw_nas on NB201). A child whose canonical form
  is in `seen` (or already made) is drawn again, up to `max_tries` rounds, so that a population
  does not fill with copies of one architecture; `seen` is updated with the children."""
  if operators not in OPERATORS:
    raise ValueError(
      f'config.search.operators={operators!r} is not supported: expected {OPERATORS}'
    )
  cars = operators == 'cars'
  if cars and space.crossover_groups is None:
    probs = (probs[0] + probs[1], 0.0)
  key = space.canonical_key or space.to_str
  children: list[np.ndarray] = []
  for _ in range(max_tries):
    need = num - len(children)
    if need == 0:
      break
    kind = rng.choice(3, size=need, p=(probs[0], probs[1], 1.0 - probs[0] - probs[1]))
    candidates = sample(space, rng, need)
    m, c = np.flatnonzero(kind == 0), np.flatnonzero(kind == 1)
    if len(m):
      parents = _pick(population, rng, len(m))
      candidates[m] = mutate_one(space, parents, rng) if cars else mutate(space, parents, rng, rate)
    if len(c):
      cross = crossover_groups if cars and space.crossover_groups is not None else crossover
      candidates[c] = cross(
        space, _pick(population, rng, len(c)), _pick(population, rng, len(c)), rng
      )
    for child in candidates:
      name = key(child)
      if name not in seen:
        seen.add(name)
        children.append(child)
  if len(children) < num:  # a tiny space ran out of new architectures: allow repeats
    children.extend(sample(space, rng, num - len(children)))
  return np.stack(children).astype(np.int32)
