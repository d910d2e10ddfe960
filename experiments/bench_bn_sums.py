"""Batch norm's per-channel sums as XLA reductions or as dots with a ones vector: one process.

  python experiments/bench_bn_sums.py --batch 64 --rounds 6
  python experiments/bench_bn_sums.py --batch 64 --method close --blocks 5

Builds the NB201 supernet train step twice, traced once under each `layers.CHANNEL_SUM` setting
for this backend, and times them in alternating rounds on the same architectures (the order of
the two alternates too), so both see the same machine load. Prints one JSON object: images/s per
round and side, the medians and their ratio (dot / reduce), the first calls' seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_reference  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from close_jax import xla_flags  # noqa: E402
from close_jax.models import layers  # noqa: E402

SETTINGS = ('reduce', 'dot')


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--rounds', type=int, default=6)
  p.add_argument('--steps', type=int, default=6, help='steps per side and round')
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--method', default='vanilla', choices=('vanilla', 'close'))
  p.add_argument('--blocks', type=int, default=None)
  p.add_argument('--channels', type=int, default=16)
  p.add_argument('--cells', type=int, default=5)
  p.add_argument('--image-size', type=int, default=32)
  args = p.parse_args(argv)
  for name in ('batch', 'rounds', 'steps', 'warmup', 'channels', 'cells', 'image_size'):
    if getattr(args, name) < 1:
      p.error(f'--{name.replace("_", "-")}={getattr(args, name)}: expected an integer >= 1')
  side_args = argparse.Namespace(space='nb201', layers=8, dtype='float32', **vars(args))
  backend = jax.default_backend()
  before = layers.CHANNEL_SUM.get(backend)
  sides, first_call = {}, {}
  try:
    for setting in SETTINGS:
      layers.CHANNEL_SUM[backend] = setting  # read when the step is traced (its first call)
      side = bench_reference.CloseJaxSide(side_args)
      first_call[setting] = round(side.warm_up(args.warmup), 1)
      sides[setting] = side
    rates = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
      order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
      for setting in order:
        rates[setting].append(sides[setting].run(args.steps, args.warmup + r * args.steps))
      print(f'round {r}: ' + ', '.join(f'{s} {rates[s][-1]:.1f}' for s in SETTINGS), flush=True)
  finally:
    if before is None:
      layers.CHANNEL_SUM.pop(backend, None)
    else:
      layers.CHANNEL_SUM[backend] = before
  median = {s: float(np.median(v)) for s, v in rates.items()}
  out = {
    'backend': backend,
    'device': jax.devices()[0].device_kind,
    'batch': args.batch,
    'method': args.method,
    'blocks': args.blocks,
    'images_per_s': {s: [round(v, 2) for v in rates[s]] for s in SETTINGS},
    'median_images_per_s': {s: round(v, 2) for s, v in median.items()},
    'ratio_dot_over_reduce': round(median['dot'] / median['reduce'], 3),
    'first_call_s': first_call,
    'archs_digest_equal': sides['dot'].seen == sides['reduce'].seen,
    'xla_flags': xla_flags.in_effect(),
  }
  print(json.dumps(out))


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
