r"""The kernel gradient of NB201's 'same' convolutions, three ways, A/B in one process.

  python experiments/bench_kernel_grad.py --batches 64,256 --rounds 5

`conv` is `layers.conv_same_bwd`'s kernel gradient (a convolution with batch and features
swapped, what close_jax runs); `taps` is one `dot_general` per kernel tap over a shifted view of
the padded input (9 dots for 3x3, no patch matrix); `patches` builds the (B*H*W, k*k*Cin) patch
matrix and does one `dot_general`. Shapes are the NB201 supernet's three stages (C=16/32/64 at
32/16/8 pixels) for 3x3 and 1x1 kernels. Each variant is jitted once and timed in alternating
rounds (median); values are checked against `conv` first. Prints a table and one JSON line per
shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from close_jax import xla_flags
from close_jax.models import layers


def grad_conv(x, kernel, g):
  return layers.conv_same_bwd(x, kernel, g)[1]


def grad_taps(x, kernel, g):
  k = kernel.shape[0]
  p = k // 2
  h, w = x.shape[1], x.shape[2]
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  rows = []
  for i in range(k):
    cols = []
    for j in range(k):
      view = xp[:, i : i + h, j : j + w, :]
      cols.append(jnp.einsum('bhwc,bhwo->co', view, g))
    rows.append(jnp.stack(cols))
  return jnp.stack(rows)


def grad_patches(x, kernel, g):
  k = kernel.shape[0]
  p = k // 2
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  views = [xp[:, i : i + h, j : j + w, :] for i in range(k) for j in range(k)]
  patches = jnp.stack(views, axis=3).reshape(b * h * w, k * k * c)
  dk = patches.T @ g.reshape(b * h * w, -1)
  return dk.reshape(k, k, c, -1)


VARIANTS = {'conv': grad_conv, 'taps': grad_taps, 'patches': grad_patches}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batches', default='64,256')
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--reps', type=int, default=5, help='calls per variant and round')
  args = parser.parse_args()
  print(f'{jax.devices()[0].device_kind} ({jax.default_backend()})', flush=True)
  print('| batch | size | C | k | conv ms | taps ms | patches ms |')
  print('|---|---|---|---|---|---|---|')
  rng = np.random.default_rng(0)
  for batch in (int(b) for b in args.batches.split(',')):
    for size, c in ((32, 16), (16, 32), (8, 64)):
      for k in (3, 1):
        x = jnp.asarray(rng.standard_normal((batch, size, size, c)), jnp.float32)
        g = jnp.asarray(rng.standard_normal((batch, size, size, c)), jnp.float32)
        kernel = jnp.zeros((k, k, c, c), jnp.float32)
        fns = {name: jax.jit(fn) for name, fn in VARIANTS.items()}
        ref = np.asarray(fns['conv'](x, kernel, g))
        for fn in fns.values():
          out = np.asarray(fn(x, kernel, g))
          np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())
        times = {name: [] for name in fns}
        for _ in range(args.rounds):
          for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(args.reps):
              out = fn(x, kernel, g)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / args.reps)
        ms = {name: round(1000 * statistics.median(t), 3) for name, t in times.items()}
        print(
          f'| {batch} | {size} | {c} | {k} | {ms["conv"]} | {ms["taps"]} | {ms["patches"]} |',
          flush=True,
        )
        row = {'batch': batch, 'size': size, 'channels': c, 'kernel': k, **ms}
        print(json.dumps(row), file=sys.stderr, flush=True)


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
