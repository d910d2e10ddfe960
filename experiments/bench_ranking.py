"""Ranking throughput: architectures scored per second by the one compiled evaluator.

  python experiments/bench_ranking.py --archs 16 --images 2000
  python experiments/bench_ranking.py --archs 6466 --images 10000   # the full NB201 protocol

Scores `--archs` NB201 cells (the first N of the 6466 classes) on `--images` synthetic ranking
images with the full-size vanilla supernet, after one warm-up call. Prints architectures/s, the
compile count (1 means every architecture reused one program), the exact forward convolution
FLOPs of the scored architectures (dead edges removed, as the supernet skips them), and the
projected time for all 6466 cells on the full 10000-image split at an assumed sustained rate
(`--device-tflops`; the default 50 is a guess for an H100/H200-class GPU on these small
convolutions, which reach a fraction of the chip's peak). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from close_jax import (  # noqa: E402
  evaluate,
  parallel,
  xla_flags,  # noqa: E402
)
from close_jax.models.nb201_supernet import live_ops  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402
from close_jax.supernet import build_supernet  # noqa: E402
from close_jax.train_step import TraceCounter  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402


def forward_flops(ops: np.ndarray, channels: int, cells: int, size: int = 32) -> float:
  """Multiply-add FLOPs (x2) of one image's forward pass: convolutions and the classifier."""
  live = np.asarray(live_ops(ops))
  per_cell = sum(2 * k * k for op, k in ((2, 1), (3, 3)) for _ in range(int(np.sum(live == op))))
  flops = 2 * 9 * 3 * channels * size * size  # stem
  for stage in range(3):
    c, hw = channels * 2**stage, (size // 2**stage) ** 2
    flops += cells * per_cell * c * c * hw
    if stage:  # residual block: 3x3 stride 2, 3x3, 1x1 shortcut
      flops += 2 * 9 * (c // 2) * c * hw + 2 * 9 * c * c * hw + 2 * (c // 2) * c * hw
  return flops + 2 * 4 * channels * 10


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--archs', type=int, default=16)
  parser.add_argument('--images', type=int, default=2000)
  parser.add_argument('--batch', type=int, default=500, help='ranking batch (divides --images)')
  parser.add_argument('--chunk', type=int, default=8, help='architectures per call per device')
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--cells', type=int, default=5)
  parser.add_argument('--device-tflops', type=float, default=50.0)
  args = parser.parse_args()
  if args.images % args.batch:
    parser.error(f'--batch={args.batch} must divide --images={args.images}')

  config = nb201_config.get_config()
  config.method = 'vanilla'
  config.model.channels, config.model.cells_per_stage = args.channels, args.cells
  supernet = build_supernet(config, num_classes=10)
  mesh = parallel.make_mesh()
  params = parallel.replicate(supernet.init(jax.random.key(0, impl='rbg'), (32, 32, 3)), mesh)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, args.images).astype(np.int32)
  stats = np.full(3, 128.0), np.full(3, 64.0)
  x, y = evaluate.ranking_batches(images, labels, args.batch, *stats, mesh)
  archs = nb201.deiso_representatives()[: args.archs]
  counter = TraceCounter()
  scorer = evaluate.make_scorer(supernet, mesh, counter)
  chunk = args.chunk * mesh.size
  key = jax.random.key(1, impl='rbg')

  start = time.perf_counter()
  evaluate.score_architectures(scorer, params, x, y, archs[:chunk], chunk, key, log=None)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  evaluate.score_architectures(scorer, params, x, y, archs, chunk, key, log=None)
  seconds = time.perf_counter() - start
  archs_per_s = args.archs / seconds
  full_scale = 10000 / args.images
  every = nb201.deiso_representatives()
  mean_flops = float(np.mean([forward_flops(a, args.channels, args.cells) for a in every]))
  projected = 6466 * 10000 * mean_flops / (args.device_tflops * 1e12)
  result = {
    'archs': args.archs,
    'images': args.images,
    'archs_per_s': round(archs_per_s, 3),
    'cpu_projected_6466_s': round(6466 * full_scale / archs_per_s, 1),
    'evaluator_compiles': counter.count,
    'first_call_s': round(compile_s, 2),
    'mean_forward_mflops_per_image': round(mean_flops / 1e6, 1),
    'gpu_projected_6466_s': round(projected, 1),
    'device_tflops_assumed': args.device_tflops,
    'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    'num_devices': mesh.size,
    'device': jax.devices()[0].device_kind,
  }
  print(
    f'{archs_per_s:.3f} archs/s on {args.images} images ({counter.count} compilation(s), '
    f'first call {compile_s:.1f} s); 6466 archs x 10000 images: '
    f'{result["cpu_projected_6466_s"]} s here, {result["gpu_projected_6466_s"]} s at '
    f'{args.device_tflops} TFLOP/s ({result["mean_forward_mflops_per_image"]} MFLOP/image)'
  )
  print(json.dumps(result))


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
