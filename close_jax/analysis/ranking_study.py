"""Statistics of a ranking-quality study: bootstrap intervals, paired differences, baselines.

Why bootstrap over architectures: with a few dozen ground-truth cells, Kendall's tau of one
supernet moves by +-0.1 with the choice of cells alone, more than the differences between methods
that the paper reports. Resampling the cells (with replacement, the same resample for every arm)
gives each arm's interval and, paired, the interval of the difference between two arms; the spread
over supernet seeds is reported beside it, since the cells' resampling does not capture it.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from close_jax import ranking
from close_jax.spaces import nb201, nb201_costs

TOP_RATIOS = (0.05, 0.1, 0.25)


def sample_cells(num: int, seed: int) -> np.ndarray:
  """`num` distinct non-isomorphic NB201 cells, uniform over the 6466 classes, int32 (num, 6)."""
  table = nb201.deiso_representatives()
  if not 0 < num <= len(table):
    raise ValueError(f'num_archs={num}: expected 1..{len(table)} (NB201 isomorphism classes)')
  picked = np.random.default_rng(seed).choice(len(table), num, replace=False)
  return np.asarray(table[np.sort(picked)], np.int32)


def cell_costs(
  archs: np.ndarray, channels: int, cells_per_stage: int, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
  """(parameters, multiply-adds) of the convolutions in the cells of each arch, live edges only:
  the trivial baselines. The skeleton (stem, reductions, head) is the same for every cell, so it
  is left out; it shifts both by a constant, which no rank statistic sees."""
  flops, params = nb201_costs.cell_costs(
    nb201.live_ops(np.asarray(archs)), channels, cells_per_stage, (image_size, image_size)
  )
  return params, flops


def metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
  """Kendall's tau-b, Spearman's rho and P@top-K (K = each of TOP_RATIOS)."""
  out = ranking.ranking_metrics(scores, truth, TOP_RATIOS)
  result = {'kendall_tau': out['kendall_tau'], 'spearman_rho': out['spearman_rho']}
  for ratio in TOP_RATIOS:
    result[f'p_at_top_{ratio:g}'] = out['precision_at_top'].get(str(ratio), float('nan'))
  return result


def _nan_safe(values: list[float]) -> np.ndarray:
  return np.asarray(values, np.float64)


def bootstrap(
  arms: dict[str, list[np.ndarray]],
  truth: np.ndarray,
  num: int = 1000,
  seed: int = 0,
  pairs: tuple[tuple[str, str], ...] = (),
) -> dict:
  """Per arm (a list of score vectors, one per seed, all over the cells of `truth`): each metric
  on the full set (mean and std over seeds) with a 95% interval of the seed-mean from `num`
  resamples of the cells; per pair (a, b): the paired difference a - b of the seed-means."""
  truth = np.asarray(truth, np.float64)
  rng = np.random.default_rng(seed)
  samples = [rng.integers(0, len(truth), len(truth)) for _ in range(num)]

  def seed_mean(scores_list, idx):
    values = [metrics(np.asarray(s)[idx], truth[idx]) for s in scores_list]
    return {k: float(np.mean([v[k] for v in values])) for k in values[0]}

  full = np.arange(len(truth))
  resampled = {name: [] for name in arms}
  for idx in samples:
    if np.unique(truth[idx]).size < 2:  # a degenerate resample ranks nothing
      continue
    for name, scores_list in arms.items():
      resampled[name].append(seed_mean(scores_list, idx))
  summary = {}
  for name, scores_list in arms.items():
    per_seed = [metrics(np.asarray(s), truth) for s in scores_list]
    summary[name] = {}
    for key in per_seed[0]:
      boot = _nan_safe([r[key] for r in resampled[name]])
      summary[name][key] = {
        'mean': float(np.mean([p[key] for p in per_seed])),
        'seed_std': float(np.std([p[key] for p in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0,
        'per_seed': [p[key] for p in per_seed],
        'ci95': [float(np.nanpercentile(boot, 2.5)), float(np.nanpercentile(boot, 97.5))],
      }
  differences = {}
  for a, b in pairs:
    key_set = summary[a].keys()
    differences[f'{a} - {b}'] = {}
    for key in key_set:
      diff = _nan_safe(
        [ra[key] - rb[key] for ra, rb in zip(resampled[a], resampled[b], strict=True)]
      )
      point = seed_mean(arms[a], full)[key] - seed_mean(arms[b], full)[key]
      differences[f'{a} - {b}'][key] = {
        'mean': float(point),
        'ci95': [float(np.nanpercentile(diff, 2.5)), float(np.nanpercentile(diff, 97.5))],
        'p_not_above_zero': float(np.mean(diff <= 0)),
      }
  kept = len(next(iter(resampled.values())))
  return {'arms': summary, 'differences': differences, 'num_resamples': kept}


def noise_ceiling(first: np.ndarray, second: np.ndarray, num: int = 1000, seed: int = 0) -> dict:
  """Kendall's tau between two standalone trainings of the same cells, with its interval: no
  supernet can be expected to rank better than the ground truth agrees with itself."""
  first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
  tau = float(scipy.stats.kendalltau(first, second).statistic)
  rng = np.random.default_rng(seed)
  boot = []
  for _ in range(num):
    idx = rng.integers(0, len(first), len(first))
    if np.unique(first[idx]).size > 1 and np.unique(second[idx]).size > 1:
      boot.append(scipy.stats.kendalltau(first[idx], second[idx]).statistic)
  return {
    'kendall_tau': tau,
    'ci95': [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
    'num_cells': len(first),
  }


def perfect_ranker_tau(reliability: float, mean_of: int) -> float:
  """Kendall's tau between the cells' true means and the mean of `mean_of` seeds whose single
  runs have `reliability` (Spearman-Brown for the mean, then Greiner's relation)."""
  mean = mean_of * reliability / (1 + (mean_of - 1) * reliability)
  return float(2 / np.pi * np.arcsin(np.sqrt(mean)))


def seed_variance(
  first: np.ndarray,
  second: np.ndarray,
  *more: np.ndarray,
  target_tau: float = 0.7,
  mean_of: int | None = None,
) -> dict:
  """Why two standalone seeds agree as they do, and what it would take to agree at `target_tau`.

  A pilot's tau only says a budget falls short; the one-way random-effects split of the accuracies
  (cell effect + seed noise) says why: `seed_sd` is one run's noise around its cell's mean,
  `between_sd` the spread of the cells' true means. For normal cell effects and noise, two seeds
  correlate at the reliability r = between^2 / (between^2 + seed^2), and Kendall's tau is
  (2 / pi) arcsin(r) (Greiner's relation), so a target tau needs between_sd / seed_sd >=
  sqrt(r* / (1 - r*)) with r* = sin(pi tau / 2): 2.85 for tau 0.7. The mean of `mean_of` seeds,
  which the supernets rank against, has reliability k r / (1 + (k - 1) r) (Spearman-Brown, k =
  `mean_of`): `perfect_ranker_tau` is the tau a ranker that knew every cell's true mean would
  reach against it; it defaults to the number of accuracy arrays passed, one per training seed.
  A third seed can buy what a better budget would, and every array in `more` (after the first
  two) sharpens the split.
  """
  runs = _seed_runs(first, second, *more)
  mean_of = len(runs) if mean_of is None else mean_of
  if not 0 < target_tau < 1:
    raise ValueError(f'target_tau={target_tau}: expected a value in (0, 1)')
  if mean_of < 1:
    raise ValueError(
      f'mean_of={mean_of}: expected the number of standalone seeds in the mean (>= 1)'
    )
  within, between = _variance_split(runs)
  reliability = between / (between + within) if between + within > 0 else 0.0
  needed = np.sin(np.pi * target_tau / 2)
  simulated = _simulate(runs, within, between, mean_of)
  return {
    'seed_sd': float(np.sqrt(within)),
    'between_sd': float(np.sqrt(between)),
    'reliability': reliability,
    'predicted_tau': float(2 / np.pi * np.arcsin(reliability)),
    'perfect_ranker_tau': perfect_ranker_tau(reliability, mean_of),
    'simulated_tau': simulated['seed_tau'],
    'simulated_perfect_ranker_tau': simulated['perfect_ranker_tau'],
    'target_tau': target_tau,
    'needed_ratio': float(np.sqrt(needed / (1 - needed))),
    'ratio': float(np.sqrt(between / within)) if within > 0 else float('inf'),
    'num_cells': runs.shape[1],
    'mean_of': mean_of,
    'seeds': len(runs),
  }


def _seed_runs(*seeds: np.ndarray) -> np.ndarray:
  """(seeds, cells) accuracies, checked: at least two seeds of the same >= 3 cells."""
  arrays = [np.asarray(s, np.float64) for s in seeds]
  shapes = [a.shape for a in arrays]
  if len(set(shapes)) != 1 or arrays[0].ndim != 1 or len(arrays[0]) < 3:
    raise ValueError(
      f'accuracies of shapes {", ".join(map(str, shapes))}: expected equal 1-d arrays (one per '
      'seed) of at least 3 cells'
    )
  return np.stack(arrays)


def _variance_split(runs: np.ndarray) -> tuple[float, float]:
  """(within-cell variance, between-cell variance) of (k seeds, cells) accuracies: the one-way
  ANOVA's mean square within cells, and the spread of the k-seed means less the part of it that
  seed noise makes."""
  within = float(np.mean(np.var(runs, axis=0, ddof=1)))
  return within, max(float(np.var(runs.mean(axis=0), ddof=1)) - within / len(runs), 0.0)


def simulated_ceiling(
  first: np.ndarray,
  second: np.ndarray,
  *more: np.ndarray,
  mean_of: int | None = None,
  draws: int | None = None,
  seed: int = 0,
) -> dict:
  """`seed_variance`'s two taus simulated on the cells' own spread and the runs' own noise,
  instead of normal ones.

  Why: the normal-theory taus assume normal cell effects and normal seed noise. A few outlying
  cells (one weak cell far below the rest) inflate the between-cell sd without ordering the many
  close cells, and the prediction then overstates (NB201 at 3 cells per stage, 40 cells: 0.63
  predicted, 0.55 measured); one wayward run (a seed 25 points below its cell's other two)
  inflates the seed sd of every cell, and it then understates. Here the cells' true means are the
  observed means over all the accuracy arrays passed (one per training seed), scaled toward their
  average by the square root of that mean's reliability (so their spread matches the estimated
  true spread, whatever its shape), and each simulated run adds a deviation drawn from the
  measured runs' deviations from their cells' means (rescaled to the seed variance), so a
  wayward run recurs about as often as it happened: `seed_tau` is the mean tau between two
  simulated seeds, `perfect_ranker_tau` the mean tau between the true means and a simulated
  `mean_of`-seed mean (default: one seed per array passed). Seeded: the same accuracies in the
  same cell order give the same figures, in any seed order (other cell orders differ by the
  simulation's error, ~0.005 at 40 cells). `draws` defaults to 40000 / cells within [8, 200] (a
  tau over more cells varies less).
  """
  runs = _seed_runs(first, second, *more)
  mean_of = len(runs) if mean_of is None else mean_of
  return _simulate(runs, *_variance_split(runs), mean_of, draws, seed)


def _simulate(
  runs: np.ndarray,
  within: float,
  between: float,
  mean_of: int,
  draws: int | None = None,
  seed: int = 0,
) -> dict:
  """`simulated_ceiling` from `runs` (seeds, cells) and their `_variance_split` (`seed_variance`
  has one)."""
  if between == 0.0 or within == 0.0:
    value = 0.0 if between == 0.0 else 1.0
    return {'seed_tau': value, 'perfect_ranker_tau': value, 'draws': 0}
  seeds, means = len(runs), runs.mean(axis=0)
  shrink = np.sqrt(between / (between + within / seeds))
  truth = means.mean() + shrink * (means - means.mean())
  # Each run's distance from its cell's mean, rescaled to the seed variance (a residual of k runs
  # has (k - 1) / k of it): their mean square is `within` exactly. Sorted, so that neither the
  # seeds' nor the cells' order changes the pool.
  noise_pool = np.sort(((runs - means) * np.sqrt(seeds / (seeds - 1))).ravel())
  if draws is None:
    draws = int(np.clip(40000 // len(truth), 8, 200))
  rng = np.random.default_rng(seed)
  seed_taus, ranker_taus = [], []
  for _ in range(draws):
    noise = rng.choice(noise_pool, (2, len(truth)))
    seed_taus.append(scipy.stats.kendalltau(truth + noise[0], truth + noise[1]).statistic)
    mean_noise = rng.choice(noise_pool, (mean_of, len(truth))).mean(axis=0)
    ranker_taus.append(scipy.stats.kendalltau(truth, truth + mean_noise).statistic)
  return {
    'seed_tau': float(np.mean(seed_taus)),
    'perfect_ranker_tau': float(np.mean(ranker_taus)),
    'draws': draws,
  }


def noise_sources(scores: np.ndarray, truth: np.ndarray) -> dict:
  """Where a GATE supernet's tau spread comes from, given `scores` (E evaluation seeds, S training
  seeds, cells): the evaluation draws each architecture's block assignment from the GATE with
  its seed, so one checkpoint ranks differently per evaluation seed. The sd of tau against
  `truth` over evaluation seeds (per checkpoint, pooled) beside its sd over training seeds (per
  evaluation seed, pooled), and the mean Kendall's tau between the rankings of two evaluation
  seeds of one checkpoint and of two training seeds at one evaluation seed. When the draws'
  share is comparable to training's, more draws (`eval.gate_samples`) make the rankings
  steadier."""
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 3 or min(scores.shape[:2]) < 2:
    raise ValueError(
      f'scores of shape {scores.shape}: expected (evaluation seeds >= 2, training seeds >= 2, '
      'cells)'
    )
  tau = np.array([[metrics(s, truth)['kendall_tau'] for s in per_eval] for per_eval in scores])

  def pooled_sd(values: np.ndarray) -> float:  # rows are the groups, spread within each row
    return float(np.sqrt(np.mean(np.var(values, axis=1, ddof=1))))

  def mean_pair_tau(rankings: np.ndarray) -> float:
    n = len(rankings)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return float(
      np.mean([scipy.stats.kendalltau(rankings[i], rankings[j]).statistic for i, j in pairs])
    )

  num_eval, num_train = scores.shape[:2]
  return {
    'eval_seeds': num_eval,
    'train_seeds': num_train,
    'tau': tau.tolist(),
    'sd_over_eval_seeds': pooled_sd(tau.T),
    'sd_over_train_seeds': pooled_sd(tau),
    'agreement_eval_seeds': float(np.mean([mean_pair_tau(scores[:, t]) for t in range(num_train)])),
    'agreement_train_seeds': float(np.mean([mean_pair_tau(scores[e]) for e in range(num_eval)])),
  }
