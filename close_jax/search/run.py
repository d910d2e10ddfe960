"""`mode=search`: CARS-style evolution with the supernet, then the outputs and the baseline.

  python -m close_jax.main --config=configs/darts_search.py --workdir=DIR

Writes to WORKDIR/search/: population.jsonl (every iteration), front.json (the final
non-dominated front), chosen.genotype (the fittest architecture in the space's string form, the
input of final training), summary.json (the choice, its ground-truth standing where the space's
ground truth lists it, and random search with as many fitness evaluations), fronts.png.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections

from close_jax import train
from close_jax.metric_writer import write_atomic
from close_jax.search import baselines, hook, plot


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def run(config: ml_collections.ConfigDict | train.Prepared, workdir: str) -> dict:
  # Filled, budget-scaled and validated once (`config_check.validate` checks the search group
  # too) before anything is read or written.
  prepared = train.prepare(config)
  config = prepared.config
  search = hook.SearchHook(config, workdir, _log)
  state = train.run_training(prepared, workdir, search).state
  return finish(config, workdir, search, state)


def _final_fitness(config, search: hook.SearchHook, state):
  """The last supernet's fitness; rebuilt when this process trained nothing (a finished run
  started again)."""
  if search.fitness_fn is not None:
    return search.fitness_fn
  run = search.run
  level = run.curriculum.level_at(config.num_epochs - 1)
  return search.make_fitness(run.supernet(run.curriculum.block_counts[level]), state.params)


def finish(config: ml_collections.ConfigDict, workdir: str, search: hook.SearchHook, state) -> dict:
  records = hook.read_records(workdir)
  if not records:
    raise ValueError(f'no search iteration in {search.records.path}: nothing to report')
  last = records[-1]
  space = search.space
  key = space.canonical_key or space.to_str

  def standing(arch) -> dict:
    """Its ground-truth accuracy and standing; nothing without ground truth or when unlisted."""
    found = search.truth.lookup(key(arch)) if search.truth is not None else None
    return found or {}

  def entry(i: int) -> dict:
    out = {'arch': last['population'][i], 'fitness': last['fitness'][i]}
    if last['params'] is not None:
      out['params'] = last['params'][i]
    return {**out, **standing(space.parse(last['population'][i]))}

  front = [entry(i) for i in last['front']]
  chosen = entry(0)
  summary = {
    'chosen': chosen,
    'iterations': last['iteration'],
    'evaluations': last['evaluations'],
    'selection': config.search.selection,
    'operators': config.search.operators,
    'size_objective': config.search.size_objective,
    'ground_truth': None if search.truth is None else search.truth.source,
  }
  if config.search.random_baseline:
    fitness_fn = _final_fitness(config, search, state)
    archs, fitness = baselines.top_k(space, fitness_fn, last['evaluations'], 1, config.seed)
    summary['random_search'] = {
      'arch': space.to_str(archs[0]),
      'fitness': float(fitness[0]),
      'evaluations': last['evaluations'],
      **standing(archs[0]),
    }
  if jax.process_index() == 0:
    directory = search.directory
    write_atomic(os.path.join(directory, 'front.json'), lambda f: json.dump(front, f, indent=2))
    write_atomic(
      os.path.join(directory, 'chosen.genotype'), lambda f: f.write(chosen['arch'] + '\n')
    )
    write_atomic(
      os.path.join(directory, 'summary.json'),
      lambda f: json.dump(summary, f, indent=2, sort_keys=True),
    )
    if last['params'] is not None:
      plot.plot_fronts(records, os.path.join(directory, 'fronts.png'), f'{space.name} search')
  _log(f'search done: chosen {chosen["arch"]} ' + json.dumps(_brief(summary)))
  return summary


def _brief(summary: dict) -> dict:
  keep = ('fitness', 'params', 'true_accuracy', 'top_percent')
  out = {'chosen': {k: v for k, v in summary['chosen'].items() if k in keep}}
  if 'random_search' in summary:
    out['random_search'] = {k: v for k, v in summary['random_search'].items() if k in keep}
  out['evaluations'] = summary['evaluations']
  return out
