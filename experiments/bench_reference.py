"""close_jax's supernet train step against the NB201 authors' PyTorch supernet, A/B in one process.

  python experiments/bench_reference.py --batch 64
  python experiments/bench_reference.py --batch 256 --method close --blocks 5   # close_jax only
  python experiments/bench_reference.py --space nb301 --batch 64 --blocks 14   # close_jax only
  python experiments/bench_reference.py --space nds_resnet --method close --blocks 9 --batch 32

Both sides train the full NB201 supernet (C=16, N=5 by default) with a new random architecture
every step, the same sequence of architectures on both sides (close_jax's training sampler:
uniform over the 6466 isomorphism classes): forward, backward, gradient clipping and SGD with
momentum and weight decay. The
reference is xautodl's `TinyNetworkRANDOM` (install with `pip install torch==2.13.0` and
`pip install --no-deps xautodl`; both are optional and never needed by the tests). The two run in
alternating rounds so that both see the same machine load; each side's figure is the median over
rounds. The last line printed is one JSON object: `batch`, `close_jax_images_per_s`,
`reference_images_per_s` and `ratio` (null without torch/xautodl), `train_step_traces`,
`peak_rss_mb`, `close_jax_archs` / `reference_archs` (digests of the architecture sequence each
side trained: equal when both ran the same architectures in the same order), plus the details of
the setting. `--space nb301` times the NB-301 (DARTS)
supernet (C=16, 8 layers by default) and `--space nds_resnet` / `nds_resnexta` (or their toy
`_smoke` spaces) the NDS supernets at the space's full size with traced widths and depths (the
masked strategy); there is no PyTorch reference for them here, so only close_jax is timed. With
`--method close` the reference is the official CLOSENet: `bench_official.py`.
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
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from bench_common import alternating_rounds, archs_digest, train_setup  # noqa: E402

from close_jax import curriculum, spaces, xla_flags  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402
from close_jax.supernet import build_supernet  # noqa: E402
from close_jax.train_step import TraceCounter  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402
from configs import nb301 as nb301_config  # noqa: E402
from configs import nds_resnet as nds_resnet_config  # noqa: E402
from configs import nds_resnexta as nds_resnexta_config  # noqa: E402

CONFIGS = {
  'nb201': nb201_config,
  'nb301': nb301_config,
  'nds_resnet': nds_resnet_config,
  'nds_resnexta': nds_resnexta_config,
}
SPACES = (*CONFIGS, 'nds_resnet_smoke', 'nds_resnexta_smoke')


def bench_config(args):
  """The space's config (its `:smoke` variant for the toy NDS spaces) at the benchmark's size."""
  base = args.space.removesuffix('_smoke')
  config = CONFIGS[base].get_config('smoke' if base != args.space else None)
  if args.space == 'nb301':
    config.model.channels, config.model.num_layers = args.channels, args.layers
  elif args.space == 'nb201':
    config.model.channels, config.model.cells_per_stage = args.channels, args.cells
  config.method = args.method
  config.model.dtype = args.dtype
  return config


class CloseJaxSide:
  """The close_jax train step on synthetic uint8 images, one new architecture per step."""

  def __init__(self, args):
    config = bench_config(args)
    self.batch = args.batch
    self.supernet = build_supernet(config, num_classes=10, num_blocks=args.blocks)
    rng = np.random.default_rng(0)
    num_images = 4 * args.batch
    shape = (num_images, args.image_size, args.image_size, 3)
    self.images = jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8))
    self.labels = jnp.asarray(rng.integers(0, 10, num_images, dtype=np.int32))
    self.counter = TraceCounter()
    self.state, self.step, self.key = train_setup(
      self.supernet, config.optim, shape[1:], counter=self.counter
    )
    space = spaces.get(config.space)
    self.archs = np.asarray(space.sample(jax.random.key(1), 4096, config.train_sampler))
    self.perms = [jnp.asarray(rng.permutation(num_images)[None, : args.batch]) for _ in range(8)]
    self.seen: list[int] = []  # indices into `archs` of the architectures trained, in order

  def warm_up(self, steps: int) -> float:
    """Runs the first `steps` (>= 1) steps; returns the first call's seconds (its compile)."""
    start = time.perf_counter()
    self.run(1, 0)
    first_call_s = time.perf_counter() - start
    if steps > 1:
      self.run(steps - 1, 1)
    return first_call_s

  def run(self, steps: int, first: int) -> float:
    """Runs `steps` steps on architectures first, first+1, ...; returns images/s."""
    start = time.perf_counter()
    for i in range(first, first + steps):
      self.state, metrics = self.step(
        self.state, self.images, self.labels, self.perms[i % 8], self.archs[i % 4096], self.key
      )
      self.seen.append(i % 4096)
    jax.block_until_ready(metrics)
    return steps * self.batch / (time.perf_counter() - start)


class TorchSide:
  """xautodl's TinyNetworkRANDOM with the NB201 random-search training step."""

  def __init__(self, args, archs: np.ndarray):
    import torch
    from xautodl.models.cell_searchs import CellStructure, TinyNetworkRANDOM

    self.torch = torch
    ops = ['none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3']
    self.net = TinyNetworkRANDOM(args.channels, args.cells, 4, 10, ops, False, False)
    self.opt = torch.optim.SGD(
      self.net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    self.loss = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    size = args.image_size
    self.x = torch.randn(args.batch, 3, size, size, generator=gen)
    self.y = torch.randint(0, 10, (args.batch,), generator=gen)
    self.batch = args.batch
    self.genotypes = [CellStructure.str2structure(nb201.to_str(a)) for a in archs]
    self.seen: list[str] = []  # the genotypes trained, as xautodl writes them

  def run(self, steps: int, first: int) -> float:
    start = time.perf_counter()
    for i in range(first, first + steps):
      self.net.arch_cache = self.genotypes[i % len(self.genotypes)]
      self.seen.append(self.net.arch_cache.tostr())
      self.opt.zero_grad()
      _, logits = self.net(self.x)
      self.loss(logits, self.y).backward()
      self.torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
      self.opt.step()
    return steps * self.batch / (time.perf_counter() - start)


def _torch_side(args, archs):
  try:
    return TorchSide(args, archs)
  except ImportError as e:
    print(f'reference skipped: {e} (pip install torch==2.13.0 && pip install --no-deps xautodl)')
    return None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--rounds', type=int, default=3, help='alternating A/B rounds')
  parser.add_argument('--steps', type=int, default=8, help='steps per side and round')
  parser.add_argument('--warmup', type=int, default=4, help='untimed steps per side')
  parser.add_argument('--method', default='vanilla', choices=('vanilla', 'close'))
  parser.add_argument('--space', default='nb201', choices=SPACES)
  parser.add_argument('--blocks', type=int, default=None, help='blocks per cell (close: level L)')
  parser.add_argument('--layers', type=int, default=8, help='NB-301 cells')
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--cells', type=int, default=5, help='cells per stage')
  parser.add_argument('--image-size', type=int, default=32)
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--no-reference', action='store_true', help='time close_jax only')
  args = parser.parse_args()
  vanilla_blocks = spaces.get(args.space).vanilla_blocks
  if args.blocks is None:
    args.blocks = vanilla_blocks if args.method == 'vanilla' else 1
  if args.method == 'vanilla' and args.blocks != vanilla_blocks:
    parser.error(
      f'--blocks={args.blocks}: the vanilla {args.space} supernet has {vanilla_blocks} blocks'
    )
  max_blocks = curriculum.from_config(bench_config(args)).max_blocks
  if args.method == 'close' and not 1 <= args.blocks <= max_blocks:
    parser.error(f'--blocks={args.blocks}: {args.space} CLOSENet levels are 1..{max_blocks}')

  jx = CloseJaxSide(args)
  first_call_s = jx.warm_up(args.warmup)
  total = args.warmup + args.rounds * args.steps
  # The xautodl network is the vanilla supernet: CLOSENet's reference is bench_official.py.
  no_reference = args.no_reference or args.space != 'nb201' or args.method != 'vanilla'
  ref = None if no_reference else _torch_side(args, jx.archs[:total])
  if ref is not None:
    ref.run(args.warmup, 0)

  def log(r, jax_rates, ref_rates):
    ref_txt = f', reference {ref_rates[-1]:.1f} images/s' if ref_rates else ''
    print(f'round {r + 1}/{args.rounds}: close_jax {jax_rates[-1]:.1f} images/s{ref_txt}')

  jax_rates, ref_rates = alternating_rounds(jx, ref, args.warmup, args.rounds, args.steps, log)
  jax_ips = statistics.median(jax_rates)
  ref_ips = statistics.median(ref_rates) if ref_rates else None
  result = {
    'batch': args.batch,
    'close_jax_images_per_s': round(jax_ips, 2),
    'reference_images_per_s': None if ref_ips is None else round(ref_ips, 2),
    'ratio': None if ref_ips is None else round(jax_ips / ref_ips, 3),
    'train_step_traces': jx.counter.count,
    'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    'first_call_s': round(first_call_s, 2),
    'distinct_archs': len({a.tobytes() for a in jx.archs[:total]}),
    'close_jax_archs': archs_digest(nb201.to_str(jx.archs[i]) for i in jx.seen)
    if args.space == 'nb201'
    else None,
    'reference_archs': None if ref is None else archs_digest(ref.seen),
    'space': args.space,
    'method': args.method,
    'blocks': args.blocks,
    'channels': args.channels,
    **({'layers': args.layers} if args.space == 'nb301' else {}),
    **({'cells_per_stage': args.cells} if args.space == 'nb201' else {}),
    'dtype': args.dtype,
    'device': jax.devices()[0].device_kind,
    'num_devices': jax.device_count(),
    'xla_flags': xla_flags.in_effect(),  # close_jax's CPU defaults are added on import
  }
  print(
    f'close_jax {jax_ips:.1f} images/s vs reference '
    f'{"n/a" if ref_ips is None else f"{ref_ips:.1f}"} images/s (ratio {result["ratio"]}), '
    f'{jx.counter.count} compilation(s) over {result["distinct_archs"]} archs, '
    f'first call {first_call_s:.1f} s, peak RSS {result["peak_rss_mb"]} MB'
  )
  print(json.dumps(result))


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
