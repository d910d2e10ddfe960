"""Vanilla vs CLOSE vs CLOSE-S on any space with the same budget and seed: table and plot.

  python experiments/compare_methods.py --workdir=/tmp/compare            # NB201, smoke budget
  python experiments/compare_methods.py --config=configs/nb301.py --workdir=/tmp/compare301
  python experiments/compare_methods.py --workdir=/tmp/compare --variant= \
      --epochs=1000 --eval-epochs=200,400,600,800,1000                    # the paper's budget

Each method trains in WORKDIR/<method> (resumable like any run), ranks at every evaluation epoch
(rankings.jsonl), and the script prints Kendall's tau and P@top-5% at the end and saves
WORKDIR/ranking_vs_epoch.png (close_jax.analysis.switch_quality: curves with the switches marked)
and, where the space writes architecture costs, WORKDIR/rank_difference_by_flops.png
(close_jax.analysis.complexity).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from close_jax import (
  train,  # noqa: E402
  xla_flags,  # noqa: E402
)
from close_jax.analysis import complexity, switch_quality, workdir_files  # noqa: E402
from close_jax.benchmarks import ranking_set  # noqa: E402

METHODS = ('vanilla', 'close', 'close_s')


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
  parser.add_argument(
    '--ground-truth', default=None, help="eval.ground_truth (default: the config's)"
  )
  args = parser.parse_args()

  config_module = load_config_module(args.config)
  histories = {}
  for method in args.methods.split(','):
    config = config_module.get_config(args.variant or None)
    config.method, config.seed = method, args.seed
    if args.ground_truth:
      config.eval.ground_truth = args.ground_truth
    if config.eval.ground_truth == ranking_set.NONE:
      raise SystemExit(
        f"error: {args.config} ranks without ground truth (eval.ground_truth='none'): the "
        'comparison is of ranking quality; pass --ground-truth=<table or file>'
      )
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
    histories[method] = switch_quality.analyse(workdir)

  print(f'\n{"method":<10} {"epoch":>6} {"kendall_tau":>12} {"P@top5%":>9}')
  for method, series in histories.items():
    epoch, tau, p5 = series['epoch'][-1], series['kendall_tau'][-1], series['precision'][-1]
    print(f'{method:<10} {epoch:>6.0f} {tau:>12.4f} {p5:>9.4f}')
  quality = switch_quality.plot(histories, os.path.join(args.workdir, 'ranking_vs_epoch.png'))
  print(f'plot: {quality}')
  workdirs = {m: os.path.join(args.workdir, m) for m in histories}
  if all('flops' in workdir_files.read_ranking_csv(w) for w in workdirs.values()):
    by_flops = {m: complexity.analyse(w) for m, w in workdirs.items()}
    path = complexity.plot(by_flops, os.path.join(args.workdir, 'rank_difference_by_flops.png'))
    print(f'plot: {path}')


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
