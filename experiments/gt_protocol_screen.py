"""Which standalone protocol lets the NB201 cell decide the accuracy? A cheap screen before a pilot.

  python experiments/gt_protocol_screen.py --workdir=/tmp/screen \
      --protocol=n1:cells_per_stage=1,epochs=16 --protocol=n3:cells_per_stage=3,epochs=16

A ground truth ranks cells only if the cells' accuracies differ by more than two trainings of one
cell do (`ranking_study.seed_variance`: tau 0.7 between seeds needs a between-cell sd 2.86x the
seed sd). A pilot measures that on 40 random cells at hours a budget on a CPU; this screen trains
a few cells of very different quality (by default the best, the median and the 10th-percentile
cell of NAS-Bench-201's CIFAR-10 ranking) x 2 seeds under each protocol and reports their contrast
(best minus worst cell mean) against the pooled seed sd. A protocol whose contrast does not
clearly exceed its seed sd on these cells cannot reach tau 0.7 on random ones, which differ less.
Protocols change the standalone network and data only (channels, cells per stage, training
images, epochs); the supernets of the study must then use the same network and data.

Every run is appended to WORKDIR/screen_runs.jsonl (resumable: done runs are skipped) with its
accuracy and process CPU seconds; WORKDIR/screen.json and the printed table summarise them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from close_jax import xla_flags  # noqa: E402
from close_jax.benchmarks import gt_workers  # noqa: E402
from close_jax.data import idx  # noqa: E402
from close_jax.metric_writer import write_atomic  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402

# NAS-Bench-201 CIFAR-10 200-epoch test accuracy (NATS-Bench, mean over seeds): 94.37 (the best
# cell), 90.74 (the median of all 15625 cells), 79.58 (the 10th percentile).
DEFAULT_CELLS = (
  '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|',
  '|avg_pool_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|',
  '|skip_connect~0|+|skip_connect~0|skip_connect~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|',
)
KEYS = {'channels': 8, 'cells_per_stage': 1, 'train_size': 10000, 'epochs': 16}


def parse_protocol(spec: str) -> tuple[str, dict]:
  name, _, body = spec.partition(':')
  settings = dict(KEYS)
  for item in filter(None, body.split(',')):
    key, _, value = item.partition('=')
    if key not in KEYS or not value.isdigit() or int(value) < 1:
      raise SystemExit(
        f'error: --protocol {spec!r}: expected NAME:KEY=INT[,KEY=INT] with KEY in {sorted(KEYS)}'
      )
    settings[key] = int(value)
  if not name:
    raise SystemExit(f'error: --protocol {spec!r}: expected a NAME before the colon')
  return name, settings


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--data-dir', default=idx.DEFAULT_DIR)
  p.add_argument('--image-size', type=int, default=16)
  p.add_argument('--rank-size', type=int, default=5000, help='images kept out of training')
  p.add_argument('--batch-size', type=int, default=256)
  p.add_argument('--cell', action='append', help='NB201 cell string (repeatable)')
  p.add_argument('--seeds', type=int, default=2)
  p.add_argument('--protocol', action='append', required=True, help='NAME:KEY=INT[,KEY=INT]')
  args = p.parse_args(argv)
  args.protocols = dict(parse_protocol(s) for s in args.protocol)
  args.cells = args.cell or list(DEFAULT_CELLS)
  for cell in args.cells:
    try:
      nb201.parse(cell)  # a bad string fails here, before any training
    except ValueError as e:
      raise SystemExit(f'error: --cell {cell!r}: {e}') from None
  if args.seeds < 2:
    raise SystemExit(f'error: --seeds={args.seeds}: expected >= 2 (the seed sd needs two)')
  return args


def _done(path: str) -> dict:
  runs = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          r = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill
          continue
        runs[(r['protocol'], r['cell'], r['seed'])] = r
  return runs


def train(args, name: str, settings: dict, runs: dict, path: str) -> None:
  todo = [(c, s) for c in args.cells for s in range(args.seeds) if (name, c, s) not in runs]
  if not todo:
    return
  from close_jax.benchmarks.nb201_gt_trainer import Protocol, StandaloneTrainer

  split = gt_workers.idx_split(
    args.data_dir, settings['train_size'], args.image_size, args.rank_size
  )
  protocol = Protocol(
    channels=settings['channels'],
    cells_per_stage=settings['cells_per_stage'],
    epochs=settings['epochs'],
    batch_size=args.batch_size,
    crop_padding=2,
  )
  trainer = StandaloneTrainer(protocol, *split)
  for cell, seed in todo:
    start_cpu, start = time.process_time(), time.perf_counter()
    acc = trainer.accuracy(nb201.parse(cell), seed)
    record = {
      'protocol': name,
      **settings,
      'cell': cell,
      'seed': seed,
      'accuracy': round(acc, 4),
      'cpu_s': round(time.process_time() - start_cpu, 1),
      'wall_s': round(time.perf_counter() - start, 1),
    }
    with open(path, 'a') as f:
      f.write(json.dumps(record) + '\n')
      f.flush()
      os.fsync(f.fileno())
    runs[(name, cell, seed)] = record
    print(f'[{time.strftime("%H:%M:%S")}] {name} seed {seed} {acc:.2f}% {cell}', flush=True)


def summarise(args, runs: dict) -> dict:
  """Per protocol: cell means, pooled seed sd, contrast = best - worst cell mean, their ratio."""
  out = {}
  for name, settings in args.protocols.items():
    acc = np.array(
      [[runs[(name, c, s)]['accuracy'] for s in range(args.seeds)] for c in args.cells]
    )
    seed_sd = float(np.sqrt(np.mean(np.var(acc, axis=1, ddof=1))))
    means = acc.mean(axis=1)
    out[name] = {
      **settings,
      'cell_means': dict(zip(args.cells, means.round(3).tolist(), strict=True)),
      'seed_sd': seed_sd,
      'contrast': float(means.max() - means.min()),
      'contrast_over_seed_sd': float((means.max() - means.min()) / seed_sd) if seed_sd else None,
      'cpu_s_per_run': float(
        np.mean([runs[(name, c, s)]['cpu_s'] for c in args.cells for s in range(args.seeds)])
      ),
    }
  return out


def main(argv=None) -> dict:
  args = parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  path = os.path.join(args.workdir, 'screen_runs.jsonl')
  runs = _done(path)
  for name, settings in args.protocols.items():
    train(args, name, settings, runs, path)
  out = summarise(args, runs)
  print(
    '| protocol | cell means (given order) | seed sd | contrast | contrast / seed sd | CPU s/run |'
  )
  print('|---|---|---|---|---|---|')
  for name, r in out.items():
    means = ' / '.join(f'{m:.2f}' for m in r['cell_means'].values())
    print(
      f'| {name} | {means} | {r["seed_sd"]:.2f} | {r["contrast"]:.2f} | '
      f'{r["contrast_over_seed_sd"]:.2f} | {r["cpu_s_per_run"]:.0f} |'
    )
  write_atomic(os.path.join(args.workdir, 'screen.json'), lambda f: json.dump(out, f, indent=1))
  return out


if __name__ == '__main__':
  xla_flags.apply_defaults()
  main()
