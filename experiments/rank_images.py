r"""How many held-out images does a supernet ranking need? Two disjoint halves against the whole.

  python experiments/rank_images.py --workdir=/tmp/rank_images --cells-per-stage=3 --epochs=30

Trains one supernet of the ranking-quality study's setting (`ranking_quality.supernet_config`:
Fashion-MNIST 16x16, NB201 C=8, 10000 training images; `--arm` of the study, `--epochs` with the
paper's schedule scaled), ranks `--num-archs` NB201 cells (a seeded subset, with NAS-Bench-201's
CIFAR-10 accuracies as the reference) on the 2 x `--half` held-out images after the training
images, then, in evaluate-mode copies of the run, on each half alone. Prints and writes
WORKDIR/rank_images.json: Kendall's tau between the two halves' rankings (how reliable a ranking
on `--half` images is), each ranking's tau against the CIFAR-10 accuracies, and the score spread.
Resumable: finished rankings are kept. A ranking's cost is proportional to its images, so the
smallest count whose halves agree is the one to rank on.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ranking_quality

import numpy as np  # noqa: E402
import ranking_quality as rq  # noqa: E402
from scipy import stats  # noqa: E402

from close_jax import train, xla_flags  # noqa: E402
from close_jax.metric_writer import write_atomic  # noqa: E402


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--cells-per-stage', type=int, default=3)
  p.add_argument('--epochs', type=int, default=30)
  p.add_argument('--arm', default='vanilla', help='an arm of experiments/ranking_quality.py')
  p.add_argument('--num-archs', type=int, default=200)
  p.add_argument('--half', type=int, default=2500, help='held-out images in each half')
  args = p.parse_args(argv)
  arms = rq.arms_of(rq.parse_args(['--workdir=unused']))
  if args.arm not in arms:
    raise SystemExit(f'error: --arm={args.arm!r}: expected one of {sorted(arms)}')
  for flag in ('cells_per_stage', 'epochs', 'num_archs', 'half'):
    if getattr(args, flag) < 1:
      raise SystemExit(f'error: --{flag.replace("_", "-")}={getattr(args, flag)}: expected >= 1')
  return args


def _config(args, **overrides):
  study = rq.parse_args([f'--workdir={args.workdir}', f'--cells-per-stage={args.cells_per_stage}'])
  study = rq.budget_args(study, args.epochs)
  config = rq.supernet_config(study, rq.arms_of(study)[args.arm], 0, '')
  config.data.idx_rank_size = 2 * args.half
  config.eval.ground_truth = 'cifar10_test_200ep'
  config.eval.num_archs = args.num_archs
  config.eval.at_switches, config.eval.eval_epochs, config.eval.curve_num_archs = False, (), 0
  for key, value in overrides.items():
    group, _, name = key.rpartition('.')
    (config[group] if group else config)[name] = value
  return config


def _ranking(workdir: str) -> tuple[dict, dict]:
  with open(os.path.join(workdir, 'ranking.csv'), newline='') as f:
    rows = list(csv.DictReader(f))
  scores = {r['arch']: float(r['supernet_score']) for r in rows}
  return scores, {r['arch']: float(r['ground_truth']) for r in rows}


def _ranked(workdir: str, config) -> dict:
  if not os.path.exists(os.path.join(workdir, 'ranking.csv')):
    train.train_and_evaluate(config, workdir)
  return _ranking(workdir)[0]


def main(argv=None) -> dict:
  args = parse_args(argv)
  whole = os.path.join(args.workdir, 'whole')
  scores = {'whole': _ranked(whole, _config(args))}
  train_size = _config(args).data.idx_train_size
  halves = {  # images [train_size, +half) and [train_size + half, +half)
    'first_half': {'data.idx_rank_size': args.half},
    'second_half': {'data.idx_train_size': train_size + args.half, 'data.idx_rank_size': args.half},
  }
  for name, overrides in halves.items():
    target = os.path.join(args.workdir, name)
    if not os.path.exists(os.path.join(target, 'ranking.csv')):
      rq.evaluate_copy(whole, target, _config(args, **overrides))
    scores[name] = _ranking(target)[0]
  truth = _ranking(whole)[1]
  cells = sorted(truth)

  def values(table: dict) -> np.ndarray:
    return np.array([table[c] for c in cells])

  out = {
    'tau_between_halves': float(stats.kendalltau(*(values(scores[h]) for h in halves))[0]),
    'tau_vs_cifar10': {
      k: float(stats.kendalltau(values(v), values(truth))[0]) for k, v in scores.items()
    },
    'score_sd': float(values(scores['whole']).std()),
    'setup': vars(args),
  }
  print(json.dumps(out, indent=1))
  write_atomic(
    os.path.join(args.workdir, 'rank_images.json'), lambda f: json.dump(out, f, indent=1)
  )
  return out


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
