"""The evolution inside supernet training: what `train.run_training` calls as its `hook`.

Why a hook and not a loop of its own: the search is supernet training (curriculum, surgery,
SRT, checkpoints, data parallel) with two changes, the architectures it trains on and a scoring
step every few epochs; reusing the trainer keeps one code path for both.

State: the current generation, written to WORKDIR/search/population.jsonl (one JSON line per
iteration, the population in the space's string form) before the epoch's checkpoint. A resumed
run drops the lines after its checkpoint's epoch and continues from the last one left, so it
equals an uninterrupted run.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np

from close_jax import evaluate
from close_jax.metric_writer import MetricWriter
from close_jax.search import config as search_config
from close_jax.search import evolution, lookup, selection
from close_jax.search.evolution import Generation
from close_jax.supernet import Supernet

POPULATION_FILE = 'population.jsonl'


def settings(config: ml_collections.ConfigDict) -> evolution.Settings:
  s = config.search
  return evolution.Settings(
    population_size=s.population_size,
    mutation_prob=s.mutation_prob,
    crossover_prob=s.crossover_prob,
    gene_mutation_rate=s.gene_mutation_rate,
    operators=s.operators,
    selection=s.selection,
    seed=config.seed,
  )


class SearchHook:
  def __init__(self, config: ml_collections.ConfigDict, workdir: str, log=print):
    self.config = config
    self.directory = os.path.join(workdir, 'search')
    self.log = log
    self.generation: Generation | None = None
    self.fitness_fn = None  # the last supernet's, for the baselines after training
    self.truth: lookup.GroundTruth | None = None

  # -- the trainer's protocol -------------------------------------------------------------

  def start(self, run, start_epoch: int) -> None:
    self.run = run
    self.space = run.space
    self.evolution = evolution.Evolution(
      run.space, settings(self.config), search_config.size_counter(self.config)
    )
    x, y = run.scorers.batches()  # the ranking split, shared with the run's rankings
    batches = self.config.search.fitness_batches
    self.x, self.y = (x[:batches], y[:batches]) if batches else (x, y)
    self.truth = lookup.load(run.space, self.config.eval.ground_truth)
    os.makedirs(self.directory, exist_ok=True)
    self.records = MetricWriter(self.directory, jax.process_index() == 0, POPULATION_FILE)
    self.records.truncate_from_epoch(start_epoch + 1)
    kept = [r for r in self.records.read() if r['epoch'] <= start_epoch]
    if kept:
      self.generation = self._from_record(kept[-1])
      self.log(
        f'search: restored iteration {self.generation.iteration} (epoch {kept[-1]["epoch"]}, '
        f'{self.generation.evaluations} evaluations) from {self.records.path}'
      )

  def pool(self, epoch: int) -> np.ndarray | None:
    return None if self.generation is None else self.generation.population

  def end_of_epoch(self, done: int, supernet: Supernet, params) -> dict:
    self.fitness_fn = self.make_fitness(supernet, params)
    if not self.due(done):
      return {}
    start = time.perf_counter()
    if self.generation is None:
      self.generation = self.evolution.initial(self.fitness_fn)
    else:
      self.generation = self.evolution.step(self.generation, self.fitness_fn)
    record = self._record(done, time.perf_counter() - start)
    self.records.write(record)
    g = self.generation
    found = record.get('best_true_accuracy')
    self.log(
      f'search iteration {g.iteration} at epoch {done}: best fitness {g.fitness[0]:.4f} '
      f'{self.space.to_str(g.population[0])}'
      + (f'  (true {found:.2f}, top {record["best_top_percent"]:.2f}%)' if found else '')
      + f'  front {len(record["front"])}  evaluations {g.evaluations}  '
      f'{record["seconds"]:.1f}s'
    )
    return {
      'search_iteration': g.iteration,
      'search_best_fitness': float(g.fitness[0]),
      'search_evaluations': g.evaluations,
    }

  # -- the rest --------------------------------------------------------------------------

  def due(self, done: int) -> bool:
    """Iteration 0 (the first population) right after the warm-up, then every
    `epochs_per_iteration` epochs, and always at the last epoch."""
    s = self.config.search
    if done < s.warmup_epochs:
      return False
    return (done - s.warmup_epochs) % s.epochs_per_iteration == 0 or done == self.config.num_epochs

  def make_fitness(self, supernet: Supernet, params):
    """Fitness = the supernet's accuracy on the held-out (ranking) split, scored by the run's
    ranking scorers (`evaluate.Scorers`): one compiled program per curriculum level, shared
    with the run's rankings, fixed-size chunks."""
    scorer = self.run.scorers.get(supernet)  # the rankings' compiled scorer of this level
    chunk = self.config.eval.arch_chunk * self.run.mesh.size

    def fitness(archs: np.ndarray) -> np.ndarray:
      return evaluate.score_architectures(
        scorer, params, self.x, self.y, archs, chunk, self.run.eval_key, log=None
      )

    return fitness

  def _record(self, epoch: int, seconds: float) -> dict:
    g = self.generation
    to_str = self.space.to_str
    key = self.space.canonical_key or to_str
    params = None if g.params is None else g.params.tolist()
    # Without parameter counts the front of (fitness) alone is the best architecture.
    front = [0] if g.params is None else selection.first_front(g.fitness, g.params).tolist()
    record = {
      'epoch': epoch,
      'iteration': g.iteration,
      'evaluations': g.evaluations,
      'seconds': round(seconds, 3),
      'population': [to_str(a) for a in g.population],
      'fitness': [round(float(f), 6) for f in g.fitness],
      'params': params,
      'front': front,
      'best_arch': to_str(g.population[0]),
      'best_fitness': float(g.fitness[0]),
    }
    found = self.truth.lookup(key(g.population[0])) if self.truth else None
    if found:
      record.update(
        best_true_accuracy=found['true_accuracy'], best_top_percent=found['top_percent']
      )
    return record

  def _from_record(self, record: dict) -> Generation:
    population = np.stack([self.space.parse(s) for s in record['population']]).astype(np.int32)
    params = record.get('params')
    return Generation(
      iteration=int(record['iteration']),
      population=population,
      fitness=np.asarray(record['fitness'], np.float64),
      params=None if params is None else np.asarray(params, np.int64),
      evaluations=int(record['evaluations']),
    )


def read_records(workdir: str) -> list[dict]:
  """The search's iterations, in order (WORKDIR/search/population.jsonl)."""
  return MetricWriter(os.path.join(workdir, 'search'), filename=POPULATION_FILE).read()
