"""NDS execution strategies (`model.nds_strategy`) on one stream of random architectures.

  python experiments/bench_nds_strategies.py                          # ResNet, 16x16, batch 32
  python experiments/bench_nds_strategies.py --space nds_resnexta --steps 40
  python experiments/bench_nds_strategies.py --space nds_resnet_smoke --steps 6 --image-size 8

Every strategy runs close_jax's own train step (`make_train_step`, the trainer's dispatch through
`Supernet.shape_key`) on the same seeded stream of uniformly sampled architectures, vanilla
assignment (every position its own block), one architecture per step:
- `mask`: one executable, every architecture computes the widest, deepest network;
- `exact`: one executable per architecture (a cache that a random stream almost never hits);
- `bucket`: widths and depths rounded up to `--width-buckets` / `--depth-buckets`.
Per strategy it reports: `stream_images_per_s` (a cold cache, compile time included: what the
first steps of a run see), `warm_images_per_s` (the same stream again with every executable
compiled: the steady state), `executables` (compiles), `compile_s` (their total), and
`peak_temp_mb` (the largest XLA temporary buffer of its executables, from `memory_analysis()`:
the activation memory of a step; on a GPU also the device's `peak_bytes_in_use`), and
`macs_vs_exact`: the convolution work per step the strategy computes over what the sampled
architectures need (`--full-size` images, mean over 4096 draws; 1.0 for `exact`). The strategies
run in alternating rounds within one process, each figure the median over rounds where there is
more than one. It also projects a paper-length run (`--run-steps`, default 1000 epochs x 312
steps) as compiles x mean compile time + steps x mean warm step time, with the number of distinct
executables such a run meets counted by sampling that many architectures on the host. The last
line printed is one JSON object with all of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from bench_common import cpu_model, train_setup  # noqa: E402

from close_jax import spaces, xla_flags  # noqa: E402
from close_jax.models.nds_supernet import STRIDES  # noqa: E402
from close_jax.supernet import build_supernet  # noqa: E402
from close_jax.train_step import TraceCounter  # noqa: E402
from configs import nds_resnet as nds_resnet_config  # noqa: E402
from configs import nds_resnexta as nds_resnexta_config  # noqa: E402

CONFIGS = {'nds_resnet': nds_resnet_config, 'nds_resnexta': nds_resnexta_config}
SPACES = (*CONFIGS, 'nds_resnet_smoke', 'nds_resnexta_smoke')


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(v) for v in text.split(',') if v)


class Strategy:
  """One strategy's supernet and train step, on shared images and architectures."""

  def __init__(self, name: str, args, images, labels):
    base = args.space.removesuffix('_smoke')
    config = CONFIGS[base].get_config('smoke' if base != args.space else None)
    config.method = 'vanilla'
    config.model.nds_strategy = name
    if args.width_buckets:
      config.model.nds_width_buckets = args.width_buckets
    if args.depth_buckets:
      config.model.nds_depth_buckets = args.depth_buckets
    self.name, self.batch = name, args.batch
    self.supernet = build_supernet(config, num_classes=10)
    self.space = spaces.get(config.space)
    self.counter = TraceCounter()
    self.state, self.step, self.key = train_setup(
      self.supernet, config.optim, images.shape[1:], counter=self.counter
    )
    self.images, self.labels = images, labels
    self.compile_s: dict = {}
    self.temp_bytes: dict = {}

  def _compile(self, shape_key, args) -> None:
    """Compiles (and times) the executable for `shape_key` ahead of its first step."""
    start = time.perf_counter()
    compiled = self.step.lower(*args, shape_key=shape_key).compile()
    self.compile_s[shape_key] = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    self.temp_bytes[shape_key] = getattr(analysis, 'temp_size_in_bytes', 0) if analysis else 0

  def run(self, archs, perms) -> float:
    """Steps over `archs` (compiling what is missing, timed inside); returns images/s."""
    start = time.perf_counter()
    for i, arch in enumerate(archs):
      shape_key = self.supernet.shape_key(arch)
      args = (self.state, self.images, self.labels, perms[i % len(perms)], arch, self.key)
      if shape_key not in self.compile_s:
        self._compile(shape_key, args)
      self.state, metrics = self.step(*args, shape_key=shape_key)
    jax.block_until_ready(metrics)
    return len(archs) * self.batch / (time.perf_counter() - start)


def conv_macs(family, caps, image_size: int, stem: int = 16) -> int:
  """Multiply-accumulates per image of the convolutions a step computes under per-stage `caps`
  (depth, width, inner): what the strategy costs, whatever the architecture."""
  size, c_in = image_size, stem
  total = 9 * 3 * stem * size * size
  for s, (depth, width, inner) in enumerate(caps):
    stride = STRIDES[s]
    out = size // stride
    if family.block == 'basic':
      first = 9 * c_in * width * out * out + 9 * width * width * out * out
      block = 18 * width * width * out * out
    else:
      first = c_in * inner * size * size + 9 * inner * inner * out * out + inner * width * out * out
      block = (2 * width * inner + 9 * inner * inner) * out * out
    total += first + c_in * width * out * out + (depth - 1) * block  # + projection
    size, c_in = out, width
  return total


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--space', choices=SPACES, default='nds_resnet')
  parser.add_argument('--strategies', default='mask,bucket,exact')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--image-size', type=int, default=16)
  parser.add_argument('--steps', type=int, default=24, help='architectures in the stream')
  parser.add_argument('--rounds', type=int, default=2, help='warm rounds (alternating)')
  parser.add_argument('--width-buckets', type=_ints, default=(), help='e.g. 64,256')
  parser.add_argument('--depth-buckets', type=_ints, default=(), help='e.g. 8,24')
  parser.add_argument('--run-steps', type=int, default=1000 * 312, help='projection length')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--full-size', type=int, default=32, help='image size of macs_vs_exact')
  args = parser.parse_args()

  rng = np.random.default_rng(args.seed)
  num_images = 4 * args.batch
  shape = (num_images, args.image_size, args.image_size, 3)
  images = jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, num_images, dtype=np.int32))
  perms = [jnp.asarray(rng.permutation(num_images)[None, : args.batch]) for _ in range(8)]
  names = [n for n in args.strategies.split(',') if n]
  sides = [Strategy(n, args, images, labels) for n in names]
  space = sides[0].space
  stream = np.asarray(space.sample(jax.random.key(args.seed + 1), args.steps))
  run_archs = np.asarray(space.sample(jax.random.key(args.seed + 2), min(args.run_steps, 200_000)))
  print(
    f'{args.space}: {args.steps} random architectures, batch {args.batch} at '
    f'{args.image_size}x{args.image_size}, on {jax.devices()[0].device_kind} '
    f'({cpu_model()}), strategies {names}'
  )
  results = {}
  for side in sides:  # cold: compile time included
    rate = side.run(stream, perms)
    results[side.name] = {'stream_images_per_s': rate}
    print(f'{side.name}: stream {rate:.1f} images/s with {len(side.compile_s)} compiles')
  warm = {side.name: [] for side in sides}
  for r in range(args.rounds):  # alternating warm rounds
    for side in sides:
      warm[side.name].append(side.run(stream, perms))
    print(f'warm round {r + 1}: ' + '  '.join(f'{k} {v[-1]:.1f}' for k, v in warm.items()))
  for side in sides:
    res = results[side.name]
    res['warm_images_per_s'] = statistics.median(warm[side.name])
    res['executables'] = len(side.compile_s)
    res['train_step_executables'] = side.counter.executables
    res['compile_s'] = sum(side.compile_s.values())
    res['mean_compile_s'] = res['compile_s'] / res['executables']
    res['peak_temp_mb'] = max(side.temp_bytes.values()) / 2**20
    keys = {side.supernet.shape_key(a) for a in run_archs}
    distinct = len(keys) if len(run_archs) == args.run_steps else None
    if distinct is None:  # more steps than sampled: a saturated set stays, else scale linearly
      saturated = len(keys) < len(run_archs) // 2
      scaled = round(len(keys) * args.run_steps / len(run_archs))
      distinct = len(keys) if saturated else min(args.run_steps, scaled)
    step_s = args.batch / res['warm_images_per_s']
    net = side.supernet.network
    exact = [dataclasses.replace(net, strategy='exact').shape_key(a) for a in run_archs[:4096]]
    mine = [side.supernet.shape_key(a) or net.full_caps() for a in run_archs[:4096]]
    res['macs_vs_exact'] = float(
      np.mean([conv_macs(net.family, c, args.full_size) for c in mine])
      / np.mean([conv_macs(net.family, c, args.full_size) for c in exact])
    )
    res['run_executables'] = distinct
    res['run_hours'] = (distinct * res['mean_compile_s'] + args.run_steps * step_s) / 3600
  stats = jax.devices()[0].memory_stats() or {}
  summary = {
    'space': args.space,
    'batch': args.batch,
    'image_size': args.image_size,
    'steps': args.steps,
    'device': jax.devices()[0].device_kind,
    'cpu': cpu_model(),
    'width_buckets': list(sides[0].supernet.network.width_buckets),
    'depth_buckets': list(sides[0].supernet.network.depth_buckets),
    'run_steps': args.run_steps,
    'device_peak_bytes': stats.get('peak_bytes_in_use'),
    'strategies': results,
  }
  for name, res in results.items():
    print(
      f'{name:>6}: stream {res["stream_images_per_s"]:7.1f} img/s  warm '
      f'{res["warm_images_per_s"]:7.1f} img/s  executables {res["executables"]:3d}  compile '
      f'{res["compile_s"]:6.1f} s  peak temp {res["peak_temp_mb"]:7.1f} MB  projected run '
      f'{res["run_hours"]:8.1f} h ({res["run_executables"]} executables)  conv work '
      f'{res["macs_vs_exact"]:.2f}x exact at {args.full_size}x{args.full_size}'
    )
  print(json.dumps(summary))


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
