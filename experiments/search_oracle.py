r"""The search loop against random search on NB201 with the ground truth as fitness (no supernet).

  python experiments/search_oracle.py --seeds 5 --budgets 10x5 20x8 50x10 --out DIR

For each budget (population x iterations), operators ('cars': CARS's one-element mutation and
no NB201 crossover, as aw_nas; 'genes': close_jax's earlier gene-rate mutation and uniform
crossover), selection ('nsga': CARS's two-sided fronts; 'nsga_small': fronts against fewer
parameters only; 'topk') and seed: the evolution's fittest cell after the last
iteration and random search's best of as many distinct cells, both looked up in the 6466-class
ground truth (CIFAR-10, 200 epochs); `top %` = the share of classes strictly better (0 = the
best cell). This isolates the search loop: with a supernet the fitness is the supernet's noisy
estimate instead. Prints a table and writes DIR/search_oracle.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from close_jax import spaces, xla_flags
from close_jax.search import baselines, evolution, lookup


def run(
  budgets: list[tuple[int, int]], seeds: int, operators: list[str], selections: list[str]
) -> list[dict]:
  space = spaces.get('nb201')
  truth = lookup.load(space, 'cifar10_test_200ep')
  fitness = lookup.oracle(space, truth)
  rows = []
  combos = [(b, o, m) for b in budgets for o in operators for m in selections]
  for (population, iterations), ops, method in combos:
    evolved, random = [], []
    for seed in range(seeds):
      evo = evolution.Evolution(
        space,
        evolution.Settings(population_size=population, operators=ops, selection=method, seed=seed),
      )
      generation = evo.initial(fitness)
      for _ in range(iterations):
        generation = evo.step(generation, fitness)
      best = space.canonical_key(generation.population[0])
      evolved.append(truth.lookup(best)['top_percent'])
      archs, _ = baselines.top_k(space, fitness, generation.evaluations, 1, seed)
      random.append(truth.lookup(space.canonical_key(archs[0]))['top_percent'])
    rows.append(
      {
        'population': population,
        'iterations': iterations,
        'evaluations': generation.evaluations,
        'operators': ops,
        'selection': method,
        'seeds': seeds,
        'evolution_top_percent': evolved,
        'random_top_percent': random,
        'evolution_mean': float(np.mean(evolved)),
        'random_mean': float(np.mean(random)),
      }
    )
    r = rows[-1]
    print(
      f'| {population}x{iterations} | {r["evaluations"]} | {ops} | {method} | '
      f'{r["evolution_mean"]:.3f} | {r["random_mean"]:.3f} |',
      flush=True,
    )
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument('--budgets', nargs='+', default=['10x5', '20x8', '50x10'])
  parser.add_argument('--operators', nargs='+', default=['cars', 'genes'])
  parser.add_argument('--selections', nargs='+', default=['nsga', 'nsga_small', 'topk'])
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  budgets = []
  for b in args.budgets:
    try:
      p, i = (int(v) for v in b.split('x'))
    except ValueError:
      parser.error(f'--budgets {b!r}: expected POPULATIONxITERATIONS, e.g. 20x8')
    budgets.append((p, i))
  print(
    '| population x iterations | evaluations | operators | selection | evolution top % '
    '| random top % |'
  )
  print('|---|---|---|---|---|---|')
  start = time.perf_counter()
  rows = run(budgets, args.seeds, args.operators, args.selections)
  print(f'{time.perf_counter() - start:.1f}s')
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'search_oracle.json'), 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
