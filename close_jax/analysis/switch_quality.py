"""Ranking quality around each curriculum switch (CLOSE paper, Figs. A4/A5): Kendall's tau and
P@top-5% against epoch, the switches marked, several workdirs overlaid.

  python -m close_jax.analysis.switch_quality --workdirs runs/wit_sum runs/wit_copy --out q.png

The CLOSE paper argues that a switch (a new block and its weight inheritance) costs little ranking
quality and that quality recovers within a few epochs; these curves show it. Points come from
rankings.jsonl (`eval.eval_epochs`, `eval.at_switches`, the final ranking); at a switch epoch
the ranking just before and just after the switch share the x position, in that order, so the
drop shows as a vertical step. Switch epochs are where metrics.jsonl's `num_blocks` changes
(falling back to the config's schedule when no epoch has been logged).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from close_jax.analysis import plotting, workdir_files

WHEN_ORDER = {'epoch': 0, 'before_switch': 1, 'after_switch': 2}


def quality_series(records: list[dict], top: str = '0.05') -> dict[str, np.ndarray]:
  """x (epochs trained), tau, P@top and `when` of the rankings in plotting order; P@top is NaN
  where the ranked set is too small for a top-`top` set."""
  ordered = sorted(records, key=lambda r: (r['epoch'], WHEN_ORDER[r.get('when', 'epoch')]))
  return {
    'epoch': np.array([r['epoch'] for r in ordered], np.float64),
    'kendall_tau': np.array([r['kendall_tau'] for r in ordered], np.float64),
    'precision': np.array([r['precision_at_top'].get(top, np.nan) for r in ordered], np.float64),
    'when': np.array([r.get('when', 'epoch') for r in ordered]),
  }


def switch_epochs(metrics: list[dict], config=None) -> list[int]:
  """Epochs at whose start the number of blocks changed (metrics.jsonl), else the schedule's."""
  if metrics:
    blocks = {r['epoch']: r['num_blocks'] for r in metrics}
    return [e for e in sorted(blocks) if e - 1 in blocks and blocks[e] != blocks[e - 1]]
  if config is None:
    return []
  if config.method == 'close':
    return sorted({int(e) for e in config.close.cl_schedule if e > 0})
  if config.method == 'close_s':
    return [int(config.close.close_s_switch_epoch)]
  return []


def analyse(workdir: str, top: str = '0.05') -> dict:
  """The plotted numbers of one workdir: its series and switch epochs."""
  records = workdir_files.read_jsonl(os.path.join(workdir, 'rankings.jsonl'))
  if not records:
    raise ValueError(f'{os.path.join(workdir, "rankings.jsonl")} has no rankings')
  records = [r for r in records if 'kendall_tau' in r]  # a later evaluation may have one
  if not records:
    raise workdir_files.NoGroundTruth(
      os.path.join(workdir, 'rankings.jsonl'),
      'the curves need rankings during training with eval.ground_truth set',
    )
  metrics = workdir_files.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  config = workdir_files.read_config(workdir) if not metrics else None
  return {**quality_series(records, top), 'switches': switch_epochs(metrics, config), 'top': top}


def plot(results: dict[str, dict], path: str) -> str:
  plt = plotting.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  top = next(iter(results.values()))['top']
  for i, (name, result) in enumerate(results.items()):
    colour = f'C{i}'
    axes[0].plot(result['epoch'], result['kendall_tau'], marker='o', color=colour, label=name)
    axes[1].plot(result['epoch'], result['precision'], marker='o', color=colour, label=name)
    for ax in axes:
      for epoch in result['switches']:
        ax.axvline(epoch, color=colour, linestyle=':', alpha=0.6)
  percent = f'{float(top) * 100:g}%'
  axes[0].set(xlabel='epoch', ylabel="Kendall's tau", title='Ranking correlation (: switches)')
  axes[1].set(xlabel='epoch', ylabel=f'P@top-{percent}', title=f'Precision at the top {percent}')
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
  return plotting.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdirs', nargs='+', required=True)
  parser.add_argument('--labels', nargs='*', help='one per workdir (default: directory names)')
  parser.add_argument('--top', default='0.05', help='P@top ratio as in ranking.json')
  parser.add_argument('--out', required=True, help='PNG to write')
  args = parser.parse_args(argv)
  labels = args.labels or [os.path.basename(os.path.normpath(w)) for w in args.workdirs]
  if len(labels) != len(args.workdirs):
    parser.error('--labels needs one label per workdir')
  results = workdir_files.analysable(
    lambda w: analyse(w, args.top), dict(zip(labels, args.workdirs, strict=True))
  )
  for label, r in results.items():
    print(
      f'{label}: switches at {r["switches"]}; last tau {r["kendall_tau"][-1]:.4f}, '
      f'P@top-{args.top} {r["precision"][-1]:.4f}'
    )
  print(f'plot: {plot(results, args.out)}')
  return results


if __name__ == '__main__':
  main()
