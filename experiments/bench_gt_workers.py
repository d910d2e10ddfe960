"""Standalone runs per hour with W CPU worker processes (`close_jax.benchmarks.gt_workers`).

  python experiments/bench_gt_workers.py --workers=1,2 --runs=6 --epochs=2 --rounds=2

Every setting trains the same cells (the ranking study's: NB201 C=8, Fashion-MNIST 16x16,
10000 training images, batch 256, 10000 test images), the settings alternating round by round so
that a load change hits each alike. W=1 is one process on all the cores this process may use
(XLA:CPU's intra-op threads); W>1 gives each worker its own cores. Each worker compiles and trains
one warm-up run before the clock starts, so the figure is the steady rate of a long campaign
(compiles are once per worker and minutes against its hours). Write the JSON with --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_common import cpu_model  # noqa: E402

from close_jax import cpu_workers  # noqa: E402
from close_jax.benchmarks import gt_workers  # noqa: E402
from close_jax.data import idx  # noqa: E402

WARM_UP = '|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|'


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data-dir', default=idx.DEFAULT_DIR)
  p.add_argument('--cells-per-stage', type=int, default=3)
  p.add_argument('--epochs', type=int, default=2)
  p.add_argument('--workers', default='1,2', help='W values, comma separated')
  p.add_argument('--runs', type=int, default=6, help='timed runs per setting and round')
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--out', default='')
  return p.parse_args(argv)


def warm_trainer(make_train, ready_dir: str, workers: int):
  """In a worker: build the trainer, train one warm-up run (the compile), then wait until all
  `workers` are warm, so that the parent's clock starts with every worker training."""
  train = make_train()
  train(WARM_UP, 99)
  with open(os.path.join(ready_dir, f'{os.getpid()}'), 'w') as f:
    f.write(repr(time.time()))
  while len(os.listdir(ready_dir)) < workers:
    time.sleep(0.01)
  return train


def measure(make_train, cells: list[str], workers: int, epochs: int) -> dict:
  """Runs per hour of `cells` (seed 0) trained by `workers` processes, from the moment all are
  warm to the last run's end."""
  with tempfile.TemporaryDirectory() as tmp:
    ready = os.path.join(tmp, 'ready')
    os.mkdir(ready)
    ends = []
    gt_workers.train_parallel(
      functools.partial(warm_trainer, make_train, ready, workers),
      [(c, 0) for c in cells],
      epochs,
      os.path.join(tmp, 'runs.csv'),
      workers,
      on_run=lambda *_: ends.append(time.time()),
    )
    start = max(float(pathlib.Path(ready, n).read_text()) for n in os.listdir(ready))
  wall = max(ends) - start
  return {
    'workers': workers,
    'runs': len(cells),
    'wall_s': round(wall, 1),
    'runs_per_hour': round(3600 * len(cells) / wall, 1),
  }


def main(argv=None) -> dict:
  args = parse_args(argv)
  from close_jax.analysis import ranking_study
  from close_jax.benchmarks.nb201_gt_trainer import Protocol
  from close_jax.spaces import nb201

  settings = [int(w) for w in args.workers.split(',')]
  for w in settings:
    cpu_workers.core_slices(cpu_workers.usable_cores(), w)  # a bad W fails before any work
  data = {'data_dir': args.data_dir, 'train_size': 10000, 'image_size': 16, 'rank_size': 5000}
  protocol = Protocol(
    channels=8,
    cells_per_stage=args.cells_per_stage,
    epochs=args.epochs,
    batch_size=256,
    crop_padding=2,
  )
  make_train = functools.partial(gt_workers.idx_standalone, data, protocol)
  cells = [nb201.to_str(a) for a in ranking_study.sample_cells(args.runs, seed=7)]
  rounds = []
  for r in range(args.rounds):
    for w in settings:
      rounds.append({'round': r, **measure(make_train, cells, w, args.epochs)})
      print(json.dumps(rounds[-1]), flush=True)
  summary = {
    w: sum(x['runs_per_hour'] for x in rounds if x['workers'] == w) / args.rounds for w in settings
  }
  out = {
    'command': ' '.join(sys.argv),
    'machine': f'{cpu_model()}, {len(cpu_workers.usable_cores())} usable',
    'protocol': vars(protocol),
    'rounds': rounds,
    'mean_runs_per_hour': summary,
    'ratio_to_first': {w: round(v / summary[settings[0]], 3) for w, v in summary.items()},
  }
  print(json.dumps(out['mean_runs_per_hour']), json.dumps(out['ratio_to_first']))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == '__main__':
  main()
