"""Where the vanilla NB201 train step spends its time: close_jax's XLA ops beside PyTorch's.

  python experiments/bench_profile.py --batch 64
  python experiments/bench_profile.py --batch 64 --no-reference   # close_jax only

Runs `--warmup` steps, then profiles `--steps` steps of close_jax's vanilla supernet step
(`jax.profiler.trace`; XLA:CPU records one event per executed thunk, read back with
`jax.profiler.ProfileData`) and of xautodl's `TinyNetworkRANDOM` step as `bench_reference.py`
times it (`torch.profiler`, CPU self time per aten op), on the same architectures. Each side's
self time (an op's time minus that of the ops nested in it) is grouped into families:
convolutions (forward and both gradients), matrix products, reductions (batch-norm statistics),
layout (transposes and copies), control flow (NB201's `lax.switch` per edge), elementwise
fusions (normalisation, ReLU, pads, the average pool's shifted sums), executor overhead; for
PyTorch also pooling and batch norm, which are ops of their own there. The table gives each
family's milliseconds per step and share, then each side's top ops. The last line is one JSON
object. Per-op times of a profiled run include the profiler's own overhead; read shares, not
absolute times.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
from types import SimpleNamespace

import jax

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # the benchmarks beside it; close_jax, configs/

from bench_reference import CloseJaxSide, TorchSide  # noqa: E402

from close_jax import xla_flags  # noqa: E402

# (family, pattern) in priority order; the first match names an op's family.
# XLA:CPU rewrites large reductions (batch norm's per-channel sums over N, H, W) as a
# `reduce-window` over tiles followed by a small `reduce`, so `reduce-window` thunks are
# reductions; NB201's 3x3 average pool is sums of shifted slices, fused into elementwise loops.
XLA_FAMILIES = (
  ('executor', r'^ThunkExecutor'),
  ('convolution', r'conv'),
  ('matmul', r'dot|gemm|matmul'),
  ('reduction', r'reduce'),
  ('layout', r'transpose|copy|bitcast'),
  ('control flow', r'^(cond|while|call|conditional)'),
  ('elementwise', r'fusion|multiply|add|subtract|maximum|divide|pad|select|broadcast|exp|log'),
)
TORCH_FAMILIES = (
  ('convolution', r'conv'),
  ('matmul', r'::mm$|addmm|bmm|linear'),
  ('pooling', r'pool'),
  ('batch norm', r'batch_norm'),
  ('layout', r'copy|contiguous|transpose|permute|clone|cat'),
  ('elementwise', r'add|mul|relu|threshold|div|sub|fill|zero|where|sqrt|neg|softmax|nll'),
)


def family(name: str, families) -> str:
  return next((f for f, pattern in families if re.search(pattern, name)), 'other')


def self_times(events) -> dict[str, float]:
  """Self time in ns per event name on one thread line (nested events subtracted)."""
  out = collections.Counter()
  stack = []  # [end_ns, name, duration, children]
  for ev in sorted(events, key=lambda e: (e.start_ns, -e.duration_ns)):
    while stack and stack[-1][0] <= ev.start_ns:
      end, name, duration, children = stack.pop()
      out[name] += duration - children
    if stack:
      stack[-1][3] += ev.duration_ns
    stack.append([ev.end_ns, ev.name, ev.duration_ns, 0])
  for _, name, duration, children in stack:
    out[name] += duration - children
  return out


def profile_close_jax(jx: CloseJaxSide, steps: int, first: int) -> collections.Counter:
  """Self ms per op name over XLA's compute threads."""
  logdir = tempfile.mkdtemp(prefix='close_jax_profile_')
  with jax.profiler.trace(logdir):
    jx.run(steps, first)
  (path,) = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)
  data = jax.profiler.ProfileData.from_file(path)
  total = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if 'XLAEigen' in line.name:  # XLA:CPU's intra-op pool: where the thunks run
        total.update(self_times(list(line.events)))
  ops = collections.Counter()
  for name, ns in total.items():  # 'fusion.12' and 'fusion.7' are one kind of op
    ops[re.sub(r'\.\d+$', '', name)] += ns / 1e6
  return ops


def profile_torch(ref: TorchSide, steps: int, first: int) -> collections.Counter:
  import torch

  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    ref.run(steps, first)
  total = collections.Counter()
  for avg in prof.key_averages():
    if avg.key.startswith('aten::') or avg.key.startswith('autograd::'):
      total[avg.key] += avg.self_cpu_time_total / 1e3
  return total


def by_family(ops: collections.Counter, families, steps: int) -> dict[str, float]:
  fams = collections.Counter()
  for name, ms in ops.items():
    fams[family(name, families)] += ms
  return {k: round(v / steps, 2) for k, v in fams.most_common()}


def print_table(title: str, fams: dict[str, float]) -> None:
  total = sum(fams.values()) or 1.0
  print(f'{title}: {total:.1f} ms of op self time per step')
  for name, ms in fams.items():
    print(f'  {name:<14} {ms:9.2f} ms  {100 * ms / total:5.1f}%')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--steps', type=int, default=3, help='profiled steps per side')
  parser.add_argument('--warmup', type=int, default=3, help='unprofiled steps per side')
  parser.add_argument('--top', type=int, default=12, help='top ops listed per side')
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--cells', type=int, default=5, help='cells per stage')
  parser.add_argument('--image-size', type=int, default=32)
  parser.add_argument('--no-reference', action='store_true', help='profile close_jax only')
  parser.add_argument('--torch-threads', type=int, default=0, help="0: torch's default")
  args = parser.parse_args()
  for name in ('batch', 'steps', 'warmup', 'channels', 'cells', 'image_size'):
    if getattr(args, name) < 1:
      parser.error(f'--{name.replace("_", "-")}={getattr(args, name)}: expected >= 1')
  setting = SimpleNamespace(
    space='nb201',
    method='vanilla',
    blocks=6,
    batch=args.batch,
    channels=args.channels,
    cells=args.cells,
    image_size=args.image_size,
    dtype='float32',
  )
  jx = CloseJaxSide(setting)
  jx.run(args.warmup, 0)
  jax_ops = profile_close_jax(jx, args.steps, args.warmup)
  result = {'batch': args.batch, 'steps': args.steps, 'channels': args.channels}
  result['close_jax_ms_per_step'] = by_family(jax_ops, XLA_FAMILIES, args.steps)
  print_table('close_jax (XLA:CPU)', result['close_jax_ms_per_step'])
  for name, ms in jax_ops.most_common(args.top):
    print(f'    {ms / args.steps:8.2f} ms  {name}')
  if not args.no_reference:
    total = args.warmup + args.steps
    ref = TorchSide(SimpleNamespace(**vars(setting)), jx.archs[:total])
    if args.torch_threads:
      ref.torch.set_num_threads(args.torch_threads)
    ref.run(args.warmup, 0)
    torch_ops = profile_torch(ref, args.steps, args.warmup)
    result['torch_ms_per_step'] = by_family(torch_ops, TORCH_FAMILIES, args.steps)
    print_table('PyTorch (xautodl)', result['torch_ms_per_step'])
    for name, ms in torch_ops.most_common(args.top):
      print(f'    {ms / args.steps:8.2f} ms  {name}')
  result['device'] = jax.devices()[0].device_kind
  print(json.dumps(result))


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
