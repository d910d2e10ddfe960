"""Ranking evaluation: score architectures with the shared weights, compare with ground truth
(when there is one: `eval.ground_truth='none'` writes the scores alone).

Protocol (CLOSE / aw_nas): every architecture sees the same ranking images in the same order, batch
norm uses the batch statistics, dropout is off, and the score is the mean top-1 accuracy. Scoring is
one compiled program: a `lax.map` over a chunk of architectures of a `lax.scan` over the resident
batches, so ranking 6466 cells is a few hundred device calls and one compilation. Architectures
are split over the devices of the mesh (each device holds every ranking image and scores its own
architectures), so devices never exchange activations and N devices score N times as many
architectures per call.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from close_jax import parallel, ranking
from close_jax.benchmarks import ranking_set
from close_jax.data import augment
from close_jax.metric_writer import write_atomic
from close_jax.spaces.base import Space
from close_jax.supernet import Supernet


def ranking_batches(
  images: np.ndarray, labels: np.ndarray, batch_size: int, mean, std, mesh: Mesh | None = None
):
  """The ranking split, normalised once and laid out as (num_batches, batch, ...), replicated on
  every device of `mesh` (default: the first device), as the scorer reads it.

  A ragged tail would get different batch-norm statistics and a second compiled shape, so it is
  dropped; `eval.batch_size` defaults to a divisor of the 10000 CIFAR ranking images.
  """
  num_batches = len(images) // batch_size
  if num_batches == 0:
    raise ValueError(
      f'config.eval.batch_size={batch_size} exceeds the {len(images)} ranking images'
    )
  n = num_batches * batch_size

  def prepare(images, labels):
    x = augment.test_transform(images, jnp.asarray(mean), jnp.asarray(std))
    x = x.reshape(num_batches, batch_size, *x.shape[1:])
    return x, labels.astype(jnp.int32).reshape(num_batches, batch_size)

  replicated = parallel.replicated(mesh or parallel.make_mesh(1))
  return jax.jit(prepare, out_shardings=replicated)(images[:n], labels[:n])


def arch_key(key: jax.Array, arch: jax.Array, space: Space) -> jax.Array:
  """A fixed key per architecture (its code in `space`), independent of which subset is ranked."""
  return jax.random.fold_in(key, space.arch_code(arch))


def draw_keys(key: jax.Array, arch: jax.Array, num: int, space: Space) -> jax.Array:
  """The `num` evaluation-gate keys of one architecture, (num,): draw 0 is the official single
  draw (`arch_key`), draw m > 0 folds m into it. Independent of the chunk and the subset."""
  base = arch_key(key, arch, space)
  rest = jax.vmap(lambda m: jax.random.fold_in(base, m))(jnp.arange(1, num))
  return jnp.concatenate([base[None], rest])


def gate_draws(supernet: Supernet, requested: int) -> int:
  """Draws worth making: several only where the evaluation assignment is random."""
  random = supernet.method == 'close' and supernet.num_blocks > 1
  return requested if random and supernet.eval_assignment == 'sample' else 1


def make_scorer(supernet: Supernet, mesh: Mesh | None = None, counter=None, gate_samples: int = 1):
  """Jitted `score(params, x, y, ops_chunk, key) -> accuracy per architecture` (chunk,).

  `ops_chunk` is split over the devices of `mesh` (default: the first device); its length must
  be a multiple of their number. The block assignment is drawn once per architecture
  (evaluation GATE with the architecture's fixed key) and reused for every batch, as the
  official code does; with `gate_samples` = M > 1 the score is the mean accuracy over M seeded
  draws (`draw_keys`), run one after the other in the same program. The scores come back
  replicated.

  Its loops are `lax.map`/`lax.scan` of static trip count (architectures, batches, and draws
  when M > 1): XLA:GPU runs a loop of known trip count without reading its condition back to
  the host (openxla/xla `WhileThunk`), and with `model.edge_impl=dense` the program has no
  conditional, so a call costs no host round trip per batch or architecture.
  """
  mesh = mesh or parallel.make_mesh(1)
  draws = gate_draws(supernet, gate_samples)

  def score_local(params, x, y, ops_chunk, key):
    def one_arch(arch):
      def one_draw(draw_key):
        assignment = supernet.assign(params, arch, draw_key, train=False)

        def one_batch(correct, batch):
          logits = supernet.forward(params, batch[0], arch, assignment, None, train=False)
          return correct + jnp.sum(jnp.argmax(logits, -1) == batch[1]), None

        correct, _ = jax.lax.scan(one_batch, jnp.zeros((), jnp.int32), (x, y))
        return correct / y.size

      if draws == 1:
        return one_draw(arch_key(key, arch, supernet.space))
      return jnp.mean(jax.lax.map(one_draw, draw_keys(key, arch, draws, supernet.space)))

    return jax.lax.map(one_arch, ops_chunk)

  def score(params, x, y, ops_chunk, key):
    if counter is not None:
      counter.count += 1
    specs = (P(), P(), P(), P(parallel.DATA), P())
    local = jax.shard_map(
      score_local, mesh=mesh, in_specs=specs, out_specs=P(parallel.DATA), check_vma=False
    )
    return local(params, x, y, ops_chunk, key)

  return jax.jit(score, out_shardings=parallel.replicated(mesh))


class Scorers:
  """The compiled scorers of one run (one per curriculum level) and its ranking split.

  Every ranking of a run (after an epoch, around a curriculum switch, in evaluate mode) and the
  architecture search's fitness score through the same object, so a level's scorer is traced
  and compiled once however often it ranks, and the ranking split is normalised and placed on
  the devices once. Levels are told apart by `Supernet.num_blocks`: the object serves the
  supernets of one config. `counter` (a `train_step.TraceCounter`) counts the traces.
  """

  def __init__(self, dataset, eval_config: ml_collections.ConfigDict, mesh: Mesh, counter=None):
    self.mesh = mesh
    self.counter = counter
    self._dataset = dataset
    self._batch_size = eval_config.batch_size
    self._gate_samples = eval_config.gate_samples
    self._batches = None
    self._compiled: dict[int, object] = {}

  def batches(self) -> tuple[jax.Array, jax.Array]:
    """The ranking split as `ranking_batches` lays it out, built at the first use."""
    if self._batches is None:
      data = self._dataset
      self._batches = ranking_batches(
        data.rank_images, data.rank_labels, self._batch_size, data.mean, data.std, self.mesh
      )
    return self._batches

  def get(self, supernet: Supernet):
    """The jitted scorer (`make_scorer`) of `supernet`'s level."""
    scorer = self._compiled.get(supernet.num_blocks)
    if scorer is None:
      scorer = make_scorer(supernet, self.mesh, self.counter, self._gate_samples)
      if self.counter is not None:
        self.counter.functions.append(scorer)
      self._compiled[supernet.num_blocks] = scorer
    return scorer


def _progress_bar(total: int, log) -> tqdm.tqdm:
  """A bar on an interactive terminal (process 0 only), where it reads better than periodic ETA
  lines; disabled otherwise, so logs and captured output keep their plain lines."""
  shown = log is not None and jax.process_index() == 0 and sys.stderr.isatty()
  return tqdm.tqdm(total=total, desc='ranking', unit='arch', disable=not shown, leave=False)


def score_architectures(
  score_fn, params, x, y, archs: np.ndarray, chunk: int, key: jax.Array, log=print
) -> np.ndarray:
  """Scores `archs` (N, ...) in fixed-size chunks (the last one padded) so nothing recompiles.

  `chunk` is the number of architectures per call over all devices.
  """
  scores = np.zeros(len(archs), np.float64)
  start_time = time.perf_counter()
  with _progress_bar(len(archs), log) as bar:
    for start in range(0, len(archs), chunk):
      part = archs[start : start + chunk]
      padded = np.concatenate([part, np.repeat(part[:1], chunk - len(part), axis=0)])
      chunk_scores = np.asarray(score_fn(params, x, y, padded, key))
      scores[start : start + len(part)] = chunk_scores[: len(part)]  # drop the padding
      bar.update(len(part))
      done = start + len(part)
      elapsed = time.perf_counter() - start_time
      periodic = bar.disable and (start // chunk) % 25 == 0
      if log is not None and (done == len(archs) or periodic):
        rate = done / max(elapsed, 1e-9)
        log(
          f'ranking {done}/{len(archs)} archs  {rate:.2f} archs/s  '
          f'ETA {(len(archs) - done) / max(rate, 1e-9):.0f}s'
        )
  return scores


def ranking_result(ranked: ranking_set.RankingSet, scores: np.ndarray, to_str) -> dict:
  """The quality part of ranking.json: the correlations against the ground truth or, without
  one, none at all (`ground_truth` is null: there is nothing to correlate with); either way the
  number ranked and the best architecture by supernet score."""
  result = {} if ranked.truth is None else ranking.ranking_metrics(scores, ranked.truth)
  best = int(np.argmax(scores))
  result.update(
    num_archs=len(scores),
    ground_truth=ranked.source,
    best_arch=to_str(ranked.archs[best]),
    best_score=float(scores[best]),
  )
  return result


def summary(result: dict) -> dict:
  """The fields of a ranking that the progress line and rankings.jsonl keep."""
  if result.get('ground_truth') is None:
    keys = ('num_archs', 'ground_truth', 'best_score', 'best_arch')
  else:
    keys = ('kendall_tau', 'spearman_rho', 'precision_at_top', 'num_archs')
  return {k: result[k] for k in keys}


def write_ranking(
  workdir: str, result: dict, archs: np.ndarray, scores, truth, to_str, costs=None
) -> None:
  """WORKDIR/ranking.json (summary) and WORKDIR/ranking.csv (one row per architecture: `arch`,
  `supernet_score`, `ground_truth` unless `truth` is None, and with `costs` = (flops, params) of
  each architecture two more columns)."""
  extra = list(zip(*costs, strict=True)) if costs is not None else [()] * len(archs)
  truth_column = [()] * len(archs) if truth is None else [(f'{t:.6f}',) for t in truth]

  def write_csv(f):
    w = csv.writer(f)
    w.writerow(
      [
        'arch',
        'supernet_score',
        *(('ground_truth',) if truth is not None else ()),
        *(('flops', 'params') if costs is not None else ()),
      ]
    )
    for arch, s, t, c in zip(archs, scores, truth_column, extra, strict=True):
      w.writerow([to_str(arch), f'{s:.6f}', *t, *(int(v) for v in c)])

  write_atomic(os.path.join(workdir, 'ranking.csv'), write_csv)
  write_atomic(
    os.path.join(workdir, 'ranking.json'), lambda f: json.dump(result, f, indent=2, sort_keys=True)
  )


def rank(
  config: ml_collections.ConfigDict,
  supernet: Supernet,
  params,
  dataset,
  workdir: str,
  epoch: int,
  key: jax.Array,
  mesh: Mesh | None = None,
  counter=None,
  log=print,
  scorers: Scorers | None = None,
  subset: int = 0,
) -> dict:
  """Scores the configured architecture set (`ranking_set.load`: a ground truth's, or without
  one the space's own), or with `subset` > 0 a seeded subset (`eval.seed`) of that many of it,
  writes ranking.json/.csv, returns the summary.

  With a mesh of D devices each call scores `eval.arch_chunk` architectures per device.
  `scorers`: the run's compiled scorers and ranking split (default: built for this call alone).
  """
  if scorers is None:
    scorers = Scorers(dataset, config.eval, mesh or parallel.make_mesh(1), counter)
  mesh = scorers.mesh
  ranked = ranking_set.load(
    supernet.space, config.eval.ground_truth, config.eval.num_archs, config.eval.seed
  )
  if subset:
    keep = ranking_set.select_subset(len(ranked.archs), subset, config.eval.seed)
    truth = None if ranked.truth is None else ranked.truth[keep]
    ranked = dataclasses.replace(ranked, archs=ranked.archs[keep], truth=truth)
  archs = ranked.archs
  x, y = scorers.batches()
  start = time.perf_counter()
  scores = score_architectures(
    scorers.get(supernet),
    params,
    x,
    y,
    archs,
    config.eval.arch_chunk * mesh.size,
    key,
    log,
  )
  seconds = time.perf_counter() - start
  result = ranking_result(ranked, scores, supernet.space.to_str)
  result.update(
    num_blocks=supernet.num_blocks,
    epoch=int(epoch),
    num_images=int(y.size),
    gate_samples=gate_draws(supernet, config.eval.gate_samples),
    gate_assignment=supernet.eval_assignment,
    seconds=round(seconds, 3),
    archs_per_s=round(len(archs) / seconds, 4),
  )
  if jax.process_index() == 0:
    costs = None
    if supernet.space.costs is not None:  # closed form: no trace or compile per architecture
      image_shape = dataset.rank_images.shape[1:]
      costs = supernet.space.costs(config.model, image_shape, dataset.num_classes, archs)
    write_ranking(workdir, result, archs, scores, ranked.truth, supernet.space.to_str, costs)
  return result
