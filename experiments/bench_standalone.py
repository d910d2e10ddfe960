"""Batched vs sequential standalone training of NB201 cells: cells per hour, in one process.

  python experiments/bench_standalone.py --batch-sizes=1,4,8,16 --cells=16 --rounds=2

The same cells are trained by `StandaloneTrainer.accuracy` one after another (`lax.switch` edges)
and by `train_batch` in batches of A (vmapped, conditional-free edges), the modes alternating
round by round so that a load change on a shared machine hits every mode alike; compiles are
timed apart. The setting is the ranking-quality study's (Fashion-MNIST 16x16, C=8, N=1,
batch 256); write the JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from close_jax.analysis import ranking_study  # noqa: E402
from close_jax.data import idx  # noqa: E402
from close_jax.final.nb201_standalone import Protocol, StandaloneTrainer  # noqa: E402


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data-dir', default=idx.DEFAULT_DIR)
  p.add_argument('--image-size', type=int, default=16)
  p.add_argument('--train-size', type=int, default=10000)
  p.add_argument('--channels', type=int, default=8)
  p.add_argument('--cells-per-stage', type=int, default=1)
  p.add_argument('--epochs', type=int, default=1)
  p.add_argument('--batch-sizes', default='1,4,8,16', help='A values, comma separated')
  p.add_argument('--cells', type=int, default=16, help='cells per mode and round')
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--out', default='')
  return p.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  sizes = [int(a) for a in args.batch_sizes.split(',')]
  bad = [a for a in sizes if a < 1 or args.cells % a]
  if bad:
    raise SystemExit(f'error: --batch-sizes {bad}: expected divisors of --cells={args.cells}')
  dataset = idx.load_idx(args.data_dir, args.train_size, args.image_size, 0)
  test = idx.load_idx_arrays(args.data_dir, args.image_size)
  protocol = Protocol(
    channels=args.channels,
    cells_per_stage=args.cells_per_stage,
    epochs=args.epochs,
    crop_padding=2,
  )
  trainer = StandaloneTrainer(protocol, dataset, test['test_images'], test['test_labels'])
  cells = ranking_study.sample_cells(args.cells, seed=0)
  modes = {'sequential': lambda c: [trainer.accuracy(a, 0) for a in c]}
  for a in sizes:
    modes[f'batch_{a}'] = lambda c, a=a: np.concatenate(
      [trainer.train_batch(c[i : i + a], 0) for i in range(0, len(c), a)]
    )
  compile_s, seconds, results = {}, {m: [] for m in modes}, {}
  for name, run in modes.items():  # first call compiles; timed apart
    start = time.perf_counter()
    run(cells[: 1 if name == 'sequential' else int(name.split('_')[1])])
    compile_s[name] = time.perf_counter() - start
    print(f'{name}: first call (compile + one batch) {compile_s[name]:.1f}s', flush=True)
  for r in range(args.rounds):
    for name, run in modes.items():
      start = time.perf_counter()
      results[name] = np.asarray(run(cells), np.float64)
      seconds[name].append(time.perf_counter() - start)
      print(f'round {r} {name}: {seconds[name][-1]:.1f}s', flush=True)
  base = np.median(seconds['sequential'])
  table = {
    name: {
      'cells_per_hour': 3600 * args.cells / float(np.median(s)),
      'speedup_vs_sequential': base / float(np.median(s)),
      'seconds': s,
      'first_call_s': compile_s[name],
      'max_abs_accuracy_diff_vs_sequential': float(
        np.max(np.abs(results[name] - results['sequential']))
      ),
    }
    for name, s in seconds.items()
  }
  out = {'setup': vars(args), 'modes': table}
  for name, entry in table.items():
    print(
      f'{name:>12}: {entry["cells_per_hour"]:8.0f} cells/h  x{entry["speedup_vs_sequential"]:.2f}'
      f'  first call {entry["first_call_s"]:.0f}s'
      f'  max |acc - sequential| {entry["max_abs_accuracy_diff_vs_sequential"]:.2f}'
    )
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == '__main__':
  main()
