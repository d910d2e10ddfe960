"""Ranking throughput: architectures scored per second by the one compiled evaluator.

  python experiments/bench_ranking.py --archs 16 --images 2000
  python experiments/bench_ranking.py --archs 6466 --images 10000   # the full NB201 protocol
  python experiments/bench_ranking.py --archs 24 --images 2000 --rounds 3 --reference

Scores `--archs` NB201 cells (the first N of the 6466 classes) on `--images` synthetic ranking
images with the full-size vanilla supernet, after one warm-up call. Prints architectures/s, the
compile count (1 means every architecture reused one program), the exact forward convolution
FLOPs of the scored architectures (dead edges removed, as the supernet skips them), and the
projected time for all 6466 cells on the full 10000-image split at an assumed sustained rate
(`--device-tflops`; the default 50 is a guess for an H100/H200-class GPU on these small
convolutions, which reach a fraction of the chip's peak). The last line is one JSON object.

`--reference` also scores the same architectures on the same images with the NB201 authors'
PyTorch supernet (xautodl's `TinyNetworkRANDOM`, as `bench_reference.py`; `pip install
torch==2.13.0` and `pip install --no-deps xautodl`) in a plain loop: per architecture, every
batch under `torch.no_grad()` with batch-statistics batch norm (the official evaluation's
train-mode BN), accuracy counted on the host. The architectures are split into `--rounds`
consecutive groups, scored by the two sides in alternation; each side's architectures/s is the
median over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from bench_common import archs_digest  # noqa: E402

from close_jax import evaluate, parallel, xla_flags  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402
from close_jax.supernet import build_supernet  # noqa: E402
from close_jax.train_step import TraceCounter  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402


def forward_flops(ops: np.ndarray, channels: int, cells: int, size: int = 32) -> float:
  """Multiply-add FLOPs (x2) of one image's forward pass: convolutions and the classifier."""
  live = nb201.live_ops(ops)  # numpy: the traced rule, eagerly for 6466 cells, costs ~30 s
  per_cell = sum(2 * k * k for op, k in ((2, 1), (3, 3)) for _ in range(int(np.sum(live == op))))
  flops = 2 * 9 * 3 * channels * size * size  # stem
  for stage in range(3):
    c, hw = channels * 2**stage, (size // 2**stage) ** 2
    flops += cells * per_cell * c * c * hw
    if stage:  # residual block: 3x3 stride 2, 3x3, 1x1 shortcut
      flops += 2 * 9 * (c // 2) * c * hw + 2 * 9 * c * c * hw + 2 * (c // 2) * c * hw
  return flops + 2 * 4 * channels * 10


class TorchRanker:
  """xautodl's TinyNetworkRANDOM scoring architectures one at a time, batch by batch."""

  def __init__(self, args, images: np.ndarray, labels: np.ndarray):
    import torch
    from xautodl.models.cell_searchs import CellStructure, TinyNetworkRANDOM

    self.torch, self.structure = torch, CellStructure
    if args.torch_threads:
      torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    self.net = TinyNetworkRANDOM(args.channels, args.cells, 4, 10, nb201.OPS, False, False)
    self.net.train()  # batch statistics, as close_jax's and the official evaluation
    x = torch.from_numpy(((images.astype(np.float32) - 128.0) / 64.0).transpose(0, 3, 1, 2))
    y = torch.from_numpy(labels.astype(np.int64))
    n = len(images) // args.batch * args.batch
    self.batches = list(zip(x[:n].split(args.batch), y[:n].split(args.batch), strict=True))
    self.seen: list[str] = []  # the genotypes scored, as xautodl writes them

  def score(self, archs: np.ndarray) -> tuple[np.ndarray, float]:
    """(accuracies, architectures/s)."""
    scores = np.zeros(len(archs))
    start = time.perf_counter()
    with self.torch.no_grad():
      for i, arch in enumerate(archs):
        self.net.arch_cache = self.structure.str2structure(nb201.to_str(arch))
        correct = sum(int((self.net(x)[1].argmax(1) == y).sum()) for x, y in self.batches)
        scores[i] = correct / sum(len(y) for _, y in self.batches)
        self.seen.append(self.net.arch_cache.tostr())
    return scores, len(archs) / (time.perf_counter() - start)


def _torch_ranker(args, images, labels):
  try:
    return TorchRanker(args, images, labels)
  except ImportError as e:
    print(f'reference skipped: {e} (pip install torch==2.13.0 && pip install --no-deps xautodl)')
    return None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--archs', type=int, default=16)
  parser.add_argument('--images', type=int, default=2000)
  parser.add_argument('--batch', type=int, default=500, help='ranking batch (divides --images)')
  parser.add_argument('--chunk', type=int, default=8, help='architectures per call per device')
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--cells', type=int, default=5)
  parser.add_argument('--device-tflops', type=float, default=50.0)
  parser.add_argument('--rounds', type=int, default=1, help='alternating A/B rounds')
  parser.add_argument('--reference', action='store_true', help='also time the PyTorch loop')
  parser.add_argument('--torch-threads', type=int, default=0, help="0: torch's default")
  args = parser.parse_args()
  if args.images % args.batch:
    parser.error(f'--batch={args.batch} must divide --images={args.images}')
  if not 1 <= args.rounds <= args.archs:
    parser.error(f'--rounds={args.rounds}: expected 1..--archs ({args.archs})')

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
  ref = _torch_ranker(args, images, labels) if args.reference else None
  if ref is not None:
    ref.score(archs[:1])  # warm-up
    ref.seen.clear()
  rates, ref_rates, seen = [], [], []
  for group in np.array_split(archs, args.rounds):
    start = time.perf_counter()
    evaluate.score_architectures(scorer, params, x, y, group, chunk, key, log=None)
    rates.append(len(group) / (time.perf_counter() - start))
    seen.extend(nb201.to_str(a) for a in group)
    if ref is not None:
      ref_rates.append(ref.score(group)[1])
  archs_per_s = statistics.median(rates)
  ref_archs_per_s = statistics.median(ref_rates) if ref_rates else None
  full_scale = 10000 / args.images
  every = nb201.deiso_representatives()
  mean_flops = float(np.mean([forward_flops(a, args.channels, args.cells) for a in every]))
  projected = 6466 * 10000 * mean_flops / (args.device_tflops * 1e12)
  result = {
    'archs': args.archs,
    'images': args.images,
    'archs_per_s': round(archs_per_s, 3),
    'reference_archs_per_s': None if ref_archs_per_s is None else round(ref_archs_per_s, 3),
    'ratio': None if ref_archs_per_s is None else round(archs_per_s / ref_archs_per_s, 3),
    'rounds': args.rounds,
    'close_jax_archs': archs_digest(seen),
    'reference_archs': None if ref is None else archs_digest(ref.seen),
    'cpu_projected_6466_s': round(6466 * full_scale / archs_per_s, 1),
    'evaluator_compiles': counter.count,
    'first_call_s': round(compile_s, 2),
    'mean_forward_mflops_per_image': round(mean_flops / 1e6, 1),
    'gpu_projected_6466_s': round(projected, 1),
    'device_tflops_assumed': args.device_tflops,
    'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    'num_devices': mesh.size,
    'device': jax.devices()[0].device_kind,
    'torch_threads': None if ref is None else ref.torch.get_num_threads(),
  }
  ref_txt = '' if ref is None else f' (PyTorch loop {ref_archs_per_s:.3f}, ratio {result["ratio"]})'
  print(
    f'{archs_per_s:.3f} archs/s on {args.images} images{ref_txt} ({counter.count} '
    f'compilation(s), first call {compile_s:.1f} s); 6466 archs x 10000 images: '
    f'{result["cpu_projected_6466_s"]} s here, {result["gpu_projected_6466_s"]} s at '
    f'{args.device_tflops} TFLOP/s ({result["mean_forward_mflops_per_image"]} MFLOP/image)'
  )
  print(json.dumps(result))


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
