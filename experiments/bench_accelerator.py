"""NB201 / NB-301 train step and ranking evaluator on whatever `jax.devices()` holds, per edge impl.

  python experiments/bench_accelerator.py                    # the full sweep (GPU/TPU: < 8 min)
  python experiments/bench_accelerator.py --channels 4 --cells 1 --image-size 8 --batches 8 \
      --steps 2 --rank-archs 2 --rank-images 64              # a CPU smoke run (the test's)
  python experiments/bench_accelerator.py --space nb301 --channels 16 --cells 8   # DARTS supernet

Variants: edge implementation (`switch`: a `lax.switch` per edge; `dense`: no conditionals, see
`close_jax.models.edge_dense`; on GPU also `switch_cmdbuf`: `switch` with XLA's CUDA-graph command
buffers running the conditionals on the device, in a subprocess because XLA_FLAGS are read once) x
global batch (256, 512) x dtype (float32, bfloat16) x method (vanilla: 6 blocks, one per edge;
close: CLOSENet at L=5, GATE + straight-through mix). Each trains the full NB201 supernet
(C=16, N=5, 32x32; `--space nb301`: the NB-301 supernet with `--cells` layers, vanilla = its 14
candidate edges as blocks, `dense` = `close_jax.models.darts_dense`) on a stream of random
architectures (one per step) and then scores a stream of architectures with the ranking
evaluator on `--rank-images` images. Compile time is reported apart from the timed steps
(`compile_s`: the first step; `rank_compile_s`: the first chunk).

Output, printed as it goes so that a run cut short still reports: one JSON line per variant
(`variant`, `edge_impl`, `batch`, `dtype`, `method`, `images_per_s`, `step_ms`, `compile_s`,
`archs_per_s`, `rank_compile_s`, `device`, `xla_flags`), then a summary table. Device-to-host
copies per step are not counted here (the profiler trace would be needed); on GPU the
`switch` - `dense` gap is the measure of the conditionals' host round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from bench_common import train_setup  # noqa: E402

from close_jax import evaluate, parallel, spaces, xla_flags  # noqa: E402
from close_jax.supernet import build_supernet  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402
from configs import nb301 as nb301_config  # noqa: E402

CMDBUF_FLAGS = '--xla_gpu_enable_command_buffer=+CONDITIONAL,+WHILE'
CLOSE_BLOCKS = 5  # CLOSENet at the curriculum's last level


def _csv(kind):
  return lambda text: tuple(kind(v) for v in text.split(',') if v)


def bench_variant(args, impl: str, batch: int, dtype: str, method: str) -> dict:
  config = (nb301_config if args.space == 'nb301' else nb201_config).get_config()
  config.method, config.model.dtype, config.model.edge_impl = method, dtype, impl
  config.model.channels = args.channels
  config.model['num_layers' if args.space == 'nb301' else 'cells_per_stage'] = args.cells
  space = spaces.get(args.space)
  supernet = build_supernet(
    config, 10, space.vanilla_blocks if method == 'vanilla' else CLOSE_BLOCKS
  )
  mesh = parallel.make_mesh(0 if args.all_devices else 1)
  rng = np.random.default_rng(0)
  size = args.image_size
  num_images = 2 * batch
  images = rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, num_images).astype(np.int32)
  images, labels = parallel.shard_rows(images, mesh), parallel.shard_rows(labels, mesh)
  state, step, key = train_setup(supernet, config.optim, (size, size, 3), mesh)
  devices = mesh.size
  shard = num_images // devices
  local = batch // devices
  perms = [
    jax.device_put(
      np.stack([rng.permutation(shard)[:local] for _ in range(devices)]),
      parallel.row_sharded(mesh),
    )
    for _ in range(4)
  ]
  archs = np.asarray(space.sample(jax.random.key(1), args.steps + 1, space.samplers[0]))
  start = time.perf_counter()
  state, metrics = step(state, images, labels, perms[0], archs[0], key)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(1, args.steps + 1):
    state, metrics = step(state, images, labels, perms[i % 4], archs[i], key)
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - start) / args.steps
  # The ranking evaluator: `--rank-archs` architectures in chunks, on `--rank-images` images.
  rank_n = args.rank_images
  x = rng.integers(0, 256, (rank_n, size, size, 3), dtype=np.uint8)
  y = rng.integers(0, 10, rank_n).astype(np.int32)
  batch_size = min(args.rank_batch, rank_n)
  xb, yb = evaluate.ranking_batches(x, y, batch_size, [128.0] * 3, [64.0] * 3, mesh)
  scorer = evaluate.make_scorer(supernet, mesh)
  chunk = args.rank_chunk * devices
  num = chunk * (args.rank_archs // chunk + 1)
  ops = np.asarray(space.sample(jax.random.key(2), num, space.samplers[0]))
  start = time.perf_counter()
  jax.block_until_ready(scorer(state.params, xb, yb, ops[:chunk], key))
  rank_compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for c in range(1, len(ops) // chunk):
    out = scorer(state.params, xb, yb, ops[c * chunk : (c + 1) * chunk], key)
  jax.block_until_ready(out)
  scored = len(ops) - chunk
  return {
    'space': args.space,
    'edge_impl': impl,
    'batch': batch,
    'dtype': dtype,
    'method': method,
    'images_per_s': round(batch / step_s, 1),
    'step_ms': round(1000 * step_s, 2),
    'compile_s': round(compile_s - step_s, 2),
    'archs_per_s': round(scored / (time.perf_counter() - start), 2),
    'rank_compile_s': round(rank_compile_s, 2),
    'loss_finite': bool(np.isfinite(float(metrics['loss']))),
  }


def _run_cmdbuf(argv: list[str]) -> list[dict]:
  """`switch` with command buffers, in a subprocess (XLA_FLAGS are read once per process)."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} {CMDBUF_FLAGS}'.strip()
  cmd = [sys.executable, os.path.abspath(__file__), *argv, '--impls=switch', '--tag=switch_cmdbuf']
  out = subprocess.run(cmd, env=env, capture_output=True, text=True)
  rows = []
  for line in out.stdout.splitlines():
    if line.startswith('{') and '"variant"' in line:
      print(line, flush=True)
      rows.append(json.loads(line))
  if out.returncode:
    print(f'switch_cmdbuf: failed ({out.stderr.strip().splitlines()[-1:]})', flush=True)
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--space', choices=('nb201', 'nb301'), default='nb201')
  parser.add_argument('--impls', type=_csv(str), default=('switch', 'dense'))
  parser.add_argument('--batches', type=_csv(int), default=(256, 512))
  parser.add_argument('--dtypes', type=_csv(str), default=('float32', 'bfloat16'))
  parser.add_argument('--methods', type=_csv(str), default=('vanilla', 'close'))
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--cells', type=int, default=5, help='NB201 N per stage; NB-301 layers')
  parser.add_argument('--image-size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=30, help='timed steps per variant')
  parser.add_argument('--rank-archs', type=int, default=64, help='timed architectures')
  parser.add_argument('--rank-images', type=int, default=10000)
  parser.add_argument('--rank-batch', type=int, default=500)
  parser.add_argument('--rank-chunk', type=int, default=8, help='architectures per call')
  parser.add_argument('--all-devices', action='store_true', help='data parallel over all')
  parser.add_argument('--tag', default='', help=argparse.SUPPRESS)
  args, _ = parser.parse_known_args()
  device = jax.devices()[0]
  print(
    f'{jax.device_count()} x {device.device_kind} ({jax.default_backend()}), '
    f'XLA_FLAGS={xla_flags.in_effect()!r}',
    flush=True,
  )
  rows = []
  for impl in args.impls:
    for method in args.methods:
      for dtype in args.dtypes:
        for batch in args.batches:
          row = bench_variant(args, impl, batch, dtype, method)
          row.update(
            variant=args.tag or impl,
            device=device.device_kind,
            backend=jax.default_backend(),
            xla_flags=xla_flags.in_effect(),
          )
          print(json.dumps(row), flush=True)
          rows.append(row)
  if jax.default_backend() == 'gpu' and not args.tag:
    rows += _run_cmdbuf([a for a in sys.argv[1:] if not a.startswith('--impls')])
  elif not args.tag:
    print('switch_cmdbuf: skipped (command buffers are an XLA:GPU feature)', flush=True)
  if args.tag:
    return
  print(
    f'{"variant":>14} {"method":>8} {"dtype":>9} {"batch":>5} {"img/s":>9} {"ms":>8} '
    f'{"compile":>8} {"archs/s":>8}'
  )
  for r in rows:
    print(
      f'{r["variant"]:>14} {r["method"]:>8} {r["dtype"]:>9} {r["batch"]:>5} '
      f'{r["images_per_s"]:>9.1f} {r["step_ms"]:>8.2f} {r["compile_s"]:>8.2f} '
      f'{r["archs_per_s"]:>8.2f}'
    )


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
