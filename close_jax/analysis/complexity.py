"""Ranking difference by complexity (CLOSE paper, Fig. A1): which architectures a supernet over- or
under-rates, grouped by their FLOPs (or parameter count).

  python -m close_jax.analysis.complexity --workdirs runs/vanilla runs/close --out fig.png

A supernet with heavy weight sharing tends to favour small networks; CLOSE claims to reduce that
bias. Per architecture, the difference is (true rank - supernet rank), rank 1 the best: positive
means the supernet rates it better than its ground truth does. The ranked architectures are
sorted by complexity and split into equal-sized groups (ties broken by file order, so the groups
are reproducible), and each group's mean difference is plotted, one bar per workdir. The
complexities are the exact ones the evaluator wrote into ranking.csv (`Space.costs`).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import scipy.stats

from close_jax.analysis import plotting, workdir_files

NUM_GROUPS = 5
MEASURES = ('flops', 'params')


def rank_difference(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """(true rank - supernet rank) per architecture, rank 1 = highest; ties get their mean rank."""
  return scipy.stats.rankdata(-np.asarray(truth)) - scipy.stats.rankdata(-np.asarray(scores))


def group_means(
  complexity: np.ndarray, difference: np.ndarray, groups: int = NUM_GROUPS
) -> tuple[list[tuple[float, float]], np.ndarray, np.ndarray]:
  """(complexity range, mean difference, count) of each group, from the least complex."""
  if len(complexity) < groups:
    raise ValueError(f'{len(complexity)} architectures cannot make {groups} groups')
  order = np.argsort(np.asarray(complexity), kind='stable')
  parts = np.array_split(order, groups)
  bounds = [(float(complexity[p].min()), float(complexity[p].max())) for p in parts]
  means = np.array([float(np.mean(difference[p])) for p in parts])
  return bounds, means, np.array([len(p) for p in parts])


def analyse(workdir: str, by: str = 'flops', groups: int = NUM_GROUPS) -> dict:
  """The plotted numbers of one workdir: group bounds, mean differences and counts."""
  if by not in MEASURES:
    raise ValueError(f'by={by!r}: expected one of {MEASURES}')
  columns = workdir_files.read_ranking_csv(workdir)
  if by not in columns:
    raise ValueError(
      f'{os.path.join(workdir, "ranking.csv")} has no {by!r} column: its space defines no '
      'Space.costs, or the ranking predates them (rank again with --config.mode=evaluate)'
    )
  if 'ground_truth' not in columns:
    raise workdir_files.NoGroundTruth(
      os.path.join(workdir, 'ranking.csv'),
      'rank again with --config.mode=evaluate --config.eval.ground_truth=<table or file>',
    )
  difference = rank_difference(columns['supernet_score'], columns['ground_truth'])
  bounds, means, counts = group_means(columns[by], difference, groups)
  return {'bounds': bounds, 'means': means, 'counts': counts, 'by': by}


def _label(lo: float, hi: float) -> str:
  scale, unit = (1e6, 'M') if max(abs(lo), abs(hi)) >= 1e5 else (1e3, 'k')
  return f'{lo / scale:.3g}-{hi / scale:.3g}{unit}'


def plot(results: dict[str, dict], path: str) -> str:
  """Grouped bars, one colour per workdir; groups labelled by the first workdir's ranges."""
  plt = plotting.pyplot()
  fig, ax = plt.subplots(figsize=(8, 4))
  width = 0.8 / len(results)
  first = next(iter(results.values()))
  x = np.arange(len(first['means']))
  for i, (name, result) in enumerate(results.items()):
    ax.bar(x + (i - (len(results) - 1) / 2) * width, result['means'], width, label=name)
  ax.axhline(0.0, color='black', linewidth=0.8)
  ax.set_xticks(x, [_label(lo, hi) for lo, hi in first['bounds']])
  ax.set(
    xlabel=f'{first["by"]} group (low to high)',
    ylabel='mean of true rank - supernet rank',
    title='Ranking difference by complexity (> 0: the supernet overrates)',
  )
  ax.grid(axis='y', alpha=0.3)
  ax.legend()
  return plotting.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdirs', nargs='+', required=True)
  parser.add_argument('--labels', nargs='*', help='one per workdir (default: directory names)')
  parser.add_argument('--by', choices=MEASURES, default='flops')
  parser.add_argument('--groups', type=int, default=NUM_GROUPS)
  parser.add_argument('--out', required=True, help='PNG to write')
  args = parser.parse_args(argv)
  labels = args.labels or [os.path.basename(os.path.normpath(w)) for w in args.workdirs]
  if len(labels) != len(args.workdirs):
    parser.error('--labels needs one label per workdir')
  results = workdir_files.analysable(
    lambda w: analyse(w, args.by, args.groups), dict(zip(labels, args.workdirs, strict=True))
  )
  for label, result in results.items():
    means = ' '.join(f'{m:+.2f}' for m in result['means'])
    print(f'{label}: mean (true - supernet rank) per {args.by} group: {means}')
  print(f'plot: {plot(results, args.out)}')
  return results


if __name__ == '__main__':
  main()
