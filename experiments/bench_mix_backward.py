r"""CLOSENet's NB201 training gradient with the one-block backward against every block's, A/B.

  python experiments/bench_mix_backward.py --cells-per-stage 5 --levels 2,5 --rounds 4

Under the straight-through GATE an edge's mix is a one-hot in the forward pass, so every block
but the chosen one has an exactly zero output cotangent. `edge_ops.edge_mix` then runs the
convolution and batch-norm gradients of that block only (`one`); `all` is the same program with
every block's gradient in both branches of that choice (`edge_ops._all_blocks_bwd` in place of
`_one_block_bwd`). The program is the gradient of the cross-entropy of `NB201Supernet` (the
ranking-quality study's shapes by default: C=8, Fashion-MNIST resized to 16x16x1, batch 256)
in its parameters and in the GATE's logits through `gate.straight_through_gumbel`, on random
architectures (the same sequence for both sides). The two compiled programs are checked to
differ (the substitution took) and their gradients equal before any timing. Each side is
jitted once per level and timed in alternating rounds; prints one JSON line per level.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common beside it

from bench_common import cpu_model  # noqa: E402

from close_jax import xla_flags  # noqa: E402
from close_jax.models import edge_ops, gate, nb201_supernet  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--channels', type=int, default=8)
  p.add_argument('--cells-per-stage', type=int, default=5)
  p.add_argument('--batch', type=int, default=256)
  p.add_argument('--image-size', type=int, default=16)
  p.add_argument('--levels', default='2,5', help='numbers of active blocks L (>= 2)')
  p.add_argument('--rounds', type=int, default=4)
  p.add_argument('--reps', type=int, default=5, help='calls (architectures) per side and round')
  args = p.parse_args(argv)
  text = args.levels
  try:
    args.levels = [int(v) for v in text.split(',')]
  except ValueError:
    args.levels = []
  if not args.levels or min(args.levels) < 2:
    p.error(f'--levels={text!r}: expected comma-separated integers >= 2')
  for flag in ('channels', 'cells_per_stage', 'batch', 'image_size', 'rounds', 'reps'):
    if getattr(args, flag) < 1:
      p.error(f'--{flag.replace("_", "-")}={getattr(args, flag)}: expected >= 1')
  return args


def gradient_fn(net, example, images, labels, backward):
  """The compiled (params, logits, ops, key) -> gradients, traced with `backward` as the one-hot
  mix's backward."""

  def loss(params, logits, ops, key):
    mix = gate.straight_through_gumbel(logits, key)
    out, _ = net.apply(
      params, images, ops, mix, train=True, rngs={'dropout': key}, mutable=['batch_stats']
    )
    return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()

  chosen = edge_ops._one_block_bwd
  edge_ops._one_block_bwd = backward  # read when the custom VJP's backward is traced
  try:
    return jax.jit(jax.grad(loss, (0, 1))).lower(*example).compile()
  finally:
    edge_ops._one_block_bwd = chosen


def run_level(args, level: int, archs: np.ndarray) -> dict:
  shape = (args.batch, args.image_size, args.image_size, 1)
  images = jax.random.normal(jax.random.key(2), shape)
  labels = jnp.arange(args.batch) % 10
  net = nb201_supernet.NB201Supernet(
    channels=args.channels, cells_per_stage=args.cells_per_stage, num_blocks=level
  )
  ops = [jnp.asarray(a, jnp.int32) for a in archs]
  params = net.init(jax.random.key(1), images, ops[0], ops[0], train=False)
  logits = jax.random.normal(jax.random.key(3), (nb201.NUM_EDGES, level))
  example = (params, logits, ops[0], jax.random.key(0))
  sides = {
    'one': gradient_fn(net, example, images, labels, edge_ops._one_block_bwd),
    'all': gradient_fn(net, example, images, labels, edge_ops._all_blocks_bwd),
  }
  if sides['one'].as_text() == sides['all'].as_text():
    raise RuntimeError('both sides compiled to one program: the backward substitution did not take')
  got = {name: fn(params, logits, ops[0], jax.random.key(4)) for name, fn in sides.items()}
  for a, b in zip(jax.tree.leaves(got['one']), jax.tree.leaves(got['all']), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * max(1.0, float(jnp.abs(b).max())))
  seconds = {name: [] for name in sides}
  for r in range(args.rounds):
    order = list(sides) if r % 2 == 0 else list(reversed(sides))
    for name in order:
      start = time.perf_counter()
      for i in range(args.reps):
        out = sides[name](params, logits, ops[r * args.reps + i], jax.random.key(5 + i))
      jax.block_until_ready(out)
      seconds[name].append((time.perf_counter() - start) / args.reps)
  med = {name: statistics.median(s) for name, s in seconds.items()}
  return {
    'level': level,
    'one_s_per_step': round(med['one'], 4),
    'all_s_per_step': round(med['all'], 4),
    'speedup': round(med['all'] / med['one'], 3),
    'rounds': {name: [round(v, 4) for v in s] for name, s in seconds.items()},
  }


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  print(f'{cpu_model()}, {jax.devices()[0].device_kind} ({jax.default_backend()})', flush=True)
  rng = np.random.default_rng(0)
  archs = rng.integers(0, nb201.NUM_OPS, (args.rounds * args.reps, nb201.NUM_EDGES))
  rows = []
  for level in args.levels:
    row = {
      'channels': args.channels,
      'cells_per_stage': args.cells_per_stage,
      'batch': args.batch,
      **run_level(args, level, archs),
    }
    print(json.dumps(row), flush=True)
    rows.append(row)
  return rows


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
