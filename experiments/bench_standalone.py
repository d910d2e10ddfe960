"""Batched vs sequential standalone training of NB201 cells: cells per hour, in one process.

  python experiments/bench_standalone.py --batch-sizes=1,4,8,16 --cells=16 --rounds=2

The same cells are trained by `StandaloneTrainer.accuracy` one after another (`lax.switch` edges)
and by `train_batch` in batches of A (vmapped, conditional-free edges), the modes alternating
round by round so that a load change on a shared machine hits every mode alike; compiles are
timed apart. Process CPU time is reported beside wall time: on a loaded machine its ratio is the
steadier one. The setting is the ranking-quality study's (Fashion-MNIST 16x16, C=8, N=1,
batch 256); write the JSON with --out.

  taskset -c 0 python experiments/bench_standalone.py --epoch-forms --single-thread \
    --cells-per-stage=5 --cells=2 --epochs=1 --rounds=3

`--epoch-forms` compares instead the two forms of `accuracy`'s epoch, a loop over the jitted step
(`sequential`, the default) and one `lax.scan` (`sequential_scan`); `--single-thread` runs XLA:CPU
on one thread, as each of the study's `--workers` does (it must come before JAX's backend starts:
from the command line; the XLA flags in effect are recorded in the output's `setup`).
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
from close_jax.analysis import ranking_study  # noqa: E402
from close_jax.benchmarks import gt_workers  # noqa: E402
from close_jax.benchmarks.nb201_gt_trainer import Protocol, StandaloneTrainer  # noqa: E402
from close_jax.data import idx  # noqa: E402


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
  p.add_argument(
    '--conv-only', action='store_true', help='only the convolution: A alone vs vmapped over A'
  )
  p.add_argument(
    '--epoch-forms', action='store_true', help="accuracy's epoch: jitted steps vs one lax.scan"
  )
  p.add_argument('--single-thread', action='store_true', help='XLA:CPU on one thread')
  return p.parse_args(argv)


def conv_ratios(sizes: list[int], batch: int = 256, size: int = 16, channels: int = 8) -> dict:
  """CPU time of a 3x3 convolution (forward, and the kernel gradient) run for A cells one by one
  vs vmapped over the A kernels, which XLA lowers to one grouped convolution."""
  import jax
  import jax.numpy as jnp
  from jax import lax

  def conv(x, k):
    dims = ('NHWC', 'HWIO', 'NHWC')
    return lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)

  def loss(k, x):
    return jnp.sum(jnp.tanh(conv(x, k)))

  one = {'forward': jax.jit(conv), 'kernel_grad': jax.jit(lambda x, k: jax.grad(loss)(k, x))}
  many = {name: jax.jit(jax.vmap(fn)) for name, fn in one.items()}

  def cpu(fn, reps=5):
    jax.block_until_ready(fn())  # compile
    start = time.process_time()
    for _ in range(reps):
      jax.block_until_ready(fn())
    return (time.process_time() - start) / reps

  out = {}
  for a in sizes:
    x = jnp.ones((a, batch, size, size, channels))
    k = jnp.full((a, 3, 3, channels, 3 * channels), 0.01)
    out[a] = {}
    for name in one:
      fn, vfn = one[name], many[name]
      alone = cpu(lambda fn=fn, x=x, k=k: [fn(xi, ki) for xi, ki in zip(x, k, strict=True)])
      batched = cpu(lambda vfn=vfn, x=x, k=k: vfn(x, k))
      out[a][name] = {'alone_cpu_ms': 1e3 * alone, 'vmapped_cpu_ms': 1e3 * batched}
      print(
        f'A={a} {name}: alone {1e3 * alone:.0f} CPU-ms, vmapped {1e3 * batched:.0f} '
        f'(x{batched / alone:.2f})',
        flush=True,
      )
  return out


def main(argv=None) -> dict:
  args = parse_args(argv)
  sizes = [int(a) for a in args.batch_sizes.split(',')]
  if args.epoch_forms and args.conv_only:
    raise SystemExit('error: --epoch-forms and --conv-only: expected at most one of them')
  if args.epoch_forms:
    sizes, args.batch_sizes = [], ''  # the two epoch forms only, no batched mode
  if args.single_thread:
    xla_flags.add_flags({'xla_cpu_multi_thread_eigen': 'false'})  # before JAX's backend starts
  args.xla_flags = os.environ.get('XLA_FLAGS', '')
  bad = [a for a in sizes if a < 1 or (args.cells % a and not args.conv_only)]
  if bad:
    raise SystemExit(f'error: --batch-sizes {bad}: expected divisors of --cells={args.cells}')
  if args.conv_only:
    out = {'setup': vars(args), 'conv': conv_ratios(sizes)}
    if args.out:
      with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    return out
  split = gt_workers.idx_split(args.data_dir, args.train_size, args.image_size, 0)
  protocol = Protocol(
    channels=args.channels,
    cells_per_stage=args.cells_per_stage,
    epochs=args.epochs,
    crop_padding=2,
  )
  trainer = StandaloneTrainer(protocol, *split)
  cells = ranking_study.sample_cells(args.cells, seed=0)
  modes = {'sequential': lambda c: [trainer.accuracy(a, 0) for a in c]}
  if args.epoch_forms:
    scan = StandaloneTrainer(protocol, *split, epoch_form='scan')
    modes['sequential_scan'] = lambda c: [scan.accuracy(a, 0) for a in c]
  for a in sizes:
    modes[f'batch_{a}'] = lambda c, a=a: np.concatenate(
      [trainer.train_batch(c[i : i + a], 0) for i in range(0, len(c), a)]
    )
  compile_s, seconds, cpu, results = {}, {m: [] for m in modes}, {m: [] for m in modes}, {}
  for name, run in modes.items():  # first call compiles; timed apart
    start = time.perf_counter()
    run(cells[: 1 if name.startswith('sequential') else int(name.split('_')[1])])
    compile_s[name] = time.perf_counter() - start
    print(f'{name}: first call (compile + one batch) {compile_s[name]:.1f}s', flush=True)
  for r in range(args.rounds):
    for name, run in modes.items() if r % 2 == 0 else reversed(modes.items()):
      start, start_cpu = time.perf_counter(), time.process_time()
      results[name] = np.asarray(run(cells), np.float64)
      seconds[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
      print(f'round {r} {name}: {seconds[name][-1]:.1f}s, {cpu[name][-1]:.1f} CPU-s', flush=True)
  base, base_cpu = np.median(seconds['sequential']), np.median(cpu['sequential'])
  table = {
    name: {
      'cells_per_hour': 3600 * args.cells / float(np.median(s)),
      'speedup_vs_sequential': base / float(np.median(s)),
      'cpu_speedup_vs_sequential': base_cpu / float(np.median(cpu[name])),
      'seconds': s,
      'cpu_seconds': cpu[name],
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
      f' (CPU time x{entry["cpu_speedup_vs_sequential"]:.2f})'
      f'  first call {entry["first_call_s"]:.0f}s'
      f'  max |acc - sequential| {entry["max_abs_accuracy_diff_vs_sequential"]:.2f}'
    )
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
