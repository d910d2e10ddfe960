"""Vanilla vs CLOSE vs CLOSE-S on any space with the same budget and seed: table and plot.

  python experiments/compare_methods.py --workdir=/tmp/compare            # NB201, smoke budget
  python experiments/compare_methods.py --config=configs/nb301.py --workdir=/tmp/compare301
  python experiments/compare_methods.py --workdir=/tmp/compare --variant= \
      --epochs=1000 --eval-epochs=200,400,600,800,1000                    # the paper's budget

Each method trains in WORKDIR/<method> (resumable like any run), ranks at every evaluation epoch
(rankings.jsonl), and the script prints Kendall's tau and P@top-5% at the end and saves
WORKDIR/ranking_vs_epoch.png (needs matplotlib: pip install -e '.[plot]').
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from close_jax import train  # noqa: E402

METHODS = ('vanilla', 'close', 'close_s')


def _read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _plot(histories: dict[str, list[dict]], path: str) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for method, rows in histories.items():
    epochs = [r['epoch'] for r in rows]
    axes[0].plot(epochs, [r['kendall_tau'] for r in rows], marker='o', label=method)
    axes[1].plot(
      epochs,
      [r['precision_at_top'].get('0.05', float('nan')) for r in rows],
      marker='o',
      label=method,
    )
  axes[0].set(xlabel='epoch', ylabel="Kendall's tau", title='Ranking correlation')
  axes[1].set(xlabel='epoch', ylabel='P@top-5%', title='Precision at the top 5%')
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def load_config_module(path: str):
  """The config file as a module (its `get_config(arg)`), as `--config=FILE` loads it."""
  if not os.path.isfile(path):
    raise SystemExit(f'error: config file {path!r} does not exist')
  spec = importlib.util.spec_from_file_location('experiment_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--config', default='configs/nb201.py', help='config file (any space)')
  parser.add_argument('--variant', default='smoke', help="config variant ('' = paper setting)")
  parser.add_argument('--epochs', type=int, default=None)
  parser.add_argument('--eval-epochs', default=None, help='comma-separated epochs to rank at')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--methods', default=','.join(METHODS))
  args = parser.parse_args()

  config_module = load_config_module(args.config)
  histories = {}
  for method in args.methods.split(','):
    config = config_module.get_config(args.variant or None)
    config.method, config.seed = method, args.seed
    if args.epochs:
      config.num_epochs = args.epochs
    if args.eval_epochs:
      config.eval.eval_epochs = tuple(int(e) for e in args.eval_epochs.split(','))
    else:
      config.eval.eval_epochs = tuple(sorted({*config.close.cl_schedule[1:], config.num_epochs}))
    config.eval.at_end = False
    workdir = os.path.join(args.workdir, method)
    print(f'=== {method} -> {workdir}', flush=True)
    train.train_and_evaluate(config, workdir)
    histories[method] = _read_jsonl(os.path.join(workdir, 'rankings.jsonl'))

  print(f'\n{"method":<10} {"epoch":>6} {"kendall_tau":>12} {"P@top5%":>9}')
  for method, rows in histories.items():
    last = rows[-1]
    p5 = last['precision_at_top'].get('0.05', float('nan'))
    print(f'{method:<10} {last["epoch"]:>6} {last["kendall_tau"]:>12.4f} {p5:>9.4f}')
  plot_path = os.path.join(args.workdir, 'ranking_vs_epoch.png')
  _plot(histories, plot_path)
  print(f'plot: {plot_path}')


if __name__ == '__main__':
  main()
