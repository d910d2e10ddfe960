"""Throughput of the jitted supernet train step with a new random architecture every step.

  python experiments/bench_train_step.py --batch 256 --steps 10

Prints images/s after warm-up, compile time, the number of compilations (1 means the architecture
really is data) and peak host memory; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from close_jax import optim  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402
from close_jax.supernet import build_supernet  # noqa: E402
from close_jax.train_step import TraceCounter, TrainState, make_train_step  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--cells', type=int, default=5, help='cells per stage')
  parser.add_argument('--image-size', type=int, default=32)
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  args = parser.parse_args()

  config = nb201_config.get_config()
  config.model.channels, config.model.cells_per_stage = args.channels, args.cells
  config.model.dtype = args.dtype
  supernet = build_supernet(config, num_classes=10)
  tx = optim.make_optimizer(config.optim, steps_per_epoch=100)
  rng = np.random.default_rng(0)
  num_images = 4 * args.batch
  images = jnp.asarray(
    rng.integers(0, 256, (num_images, args.image_size, args.image_size, 3), dtype=np.uint8)
  )
  labels = jnp.asarray(rng.integers(0, 10, num_images, dtype=np.int32))
  key = jax.random.key(0, impl='rbg')
  params = supernet.init(key, images.shape[1:])
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  counter = TraceCounter()
  step = make_train_step(
    supernet,
    tx,
    mean=np.full(3, 128.0),
    std=np.full(3, 64.0),
    crop_padding=4,
    hflip=True,
    plateau_metric='train_loss',
    counter=counter,
  )
  total = args.warmup + args.steps
  archs = nb201.sample(jax.random.key(1), total)
  batches = [jnp.asarray(rng.permutation(num_images)[: args.batch]) for _ in range(total)]

  start = time.perf_counter()
  state, metrics = step(state, images, labels, batches[0], archs[0], key)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  for i in range(1, args.warmup):
    state, metrics = step(state, images, labels, batches[i], archs[i], key)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for i in range(args.warmup, total):
    state, metrics = step(state, images, labels, batches[i], archs[i], key)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  result = {
    'batch': args.batch,
    'channels': args.channels,
    'cells_per_stage': args.cells,
    'dtype': args.dtype,
    'device': jax.devices()[0].device_kind,
    'distinct_archs': len({tuple(a) for a in np.asarray(archs)}),
    'images_per_s': round(args.steps * args.batch / seconds, 2),
    'seconds_per_step': round(seconds / args.steps, 4),
    'first_call_s': round(compile_s, 2),
    'train_step_compiles': counter.count,
    'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
  }
  print(
    f'{result["images_per_s"]} images/s at batch {args.batch} ({result["seconds_per_step"]} '
    f's/step, {result["distinct_archs"]} archs), first call {compile_s:.1f} s, '
    f'{counter.count} compilation(s), peak RSS {result["peak_rss_mb"]} MB'
  )
  print(json.dumps(result))


if __name__ == '__main__':
  main()
