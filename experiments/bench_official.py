"""close_jax's CLOSENet train step against the official aw_nas CLOSENet, A/B in one process.

  python experiments/bench_official.py --aw-nas-src ~/src/aw_nas --batch 256
  python experiments/bench_official.py --aw-nas-src ~/src/aw_nas --batch 64 --levels 5

For each curriculum level L in `--levels` (1..5), both sides train the NB201 CLOSENet at level L
with a new architecture every step, the same sequence on both sides (close_jax's training
sampler: uniform over the 6321 valid isomorphism classes): the GATE's straight-through
Gumbel-softmax mix over the L blocks of every edge, forward, backward, gradient clipping and SGD
with momentum and weight decay. The reference is the official implementation of the CLOSE paper
(Zhou et al., ECCV 2022), aw_nas's `NB201CloseNet` built from its shipped NB201 CLOSE config and
trained by its own step (see `bench_aw_nas.py` for the install, the one stubbed import and the
exact calls). The two run in alternating rounds so that both see the same machine load; each
side's figure is the median over rounds.

Differences in what each side computes, all in the official side's favour except the last:
close_jax crops and flips the batch inside its step (aw_nas's augmentation runs in its data
loader, not timed here); at L=1 close_jax skips the GATE (one block: its softmax has no gradient),
aw_nas runs the embedder and MLP anyway; aw_nas leaves the GATE's new last layer out of the
optimizer between a curriculum switch and the next learning-rate restart (a quirk of its
`reconstruct_inherit`), here it is in the optimizer, as in close_jax.

Parameter counts are printed for both: aw_nas allocates all K=5 blocks of every cell from the
start, close_jax only the L active ones, so close_jax's count must equal aw_nas's without the
blocks above L (`params_match`). One JSON line per level as it goes; the last line is one JSON
object with all levels (`rows`) and the setting. `--no-reference` times close_jax only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import sys
from types import SimpleNamespace

import jax
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # the benchmarks beside it; close_jax, configs/

from bench_aw_nas import CLOSE_CONFIG, AwNasCloseSide, official_config  # noqa: E402
from bench_common import alternating_rounds, archs_digest  # noqa: E402
from bench_reference import CloseJaxSide, bench_config  # noqa: E402

from close_jax import curriculum, spaces, xla_flags  # noqa: E402
from close_jax.models import gate as gate_lib  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402


def close_jax_args(args, level: int) -> SimpleNamespace:
  """The `bench_reference` setting of close_jax's NB201 CLOSENet at this level."""
  return SimpleNamespace(
    space='nb201',
    method='close',
    blocks=level,
    batch=args.batch,
    channels=args.channels,
    cells=args.cells,
    image_size=args.image_size,
    dtype='float32',
  )


def check_same_model(config, official: dict, args) -> dict:
  """The official config's CLOSENet sizes beside close_jax's; a mismatch is an error."""
  wm = official['weights_manager_cfg']
  graph, gate = spaces.get('nb201').graph, gate_lib.Gate
  ours = {
    'channels': config.model.channels,
    'layers': 3 * config.model.cells_per_stage + 2,
    'num_blocks_K': curriculum.from_config(config).max_blocks,
    'classifier_dropout': config.model.dropout,
    'gate': config.close.gate,
    'gate_op_node_hidden_dims': [graph.op_dim, graph.node_dim, graph.hidden_dim],
    'gate_gcn_dims': list(graph.gcn_dims),
    'gate_mlp_dims': list(gate.mlp_dims),
    'gate_mlp_dropout': gate.dropout,
  }
  theirs = {
    'channels': wm['init_channels'],
    'layers': official['search_space_cfg']['num_layers'],
    'num_blocks_K': wm['num_curriculums'],
    'classifier_dropout': wm['dropout_rate'],
    'gate': {'node-level': 'node', 'arch-level': 'arch'}.get(wm['gate_type'], wm['gate_type']),
    'gate_op_node_hidden_dims': [wm['op_embedding_dim'], wm['node_embedding_dim'], wm['hid_dim']],
    'gate_gcn_dims': list(wm['gcn_out_dims']),
    'gate_mlp_dims': list(wm['mlp_dims']),
    'gate_mlp_dropout': wm['mlp_dropout'],
  }
  differ = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
  if differ:
    raise SystemExit(f'close_jax and {CLOSE_CONFIG} differ: {differ} (close_jax, aw_nas)')
  return ours


def official_for(args, official: dict) -> dict:
  """The shipped config at `--channels` / `--cells` (the official 16 / 5 by default)."""
  official = json.loads(json.dumps(official))
  official['weights_manager_cfg']['init_channels'] = args.channels
  official['search_space_cfg']['num_layers'] = 3 * args.cells + 2
  return official


def bench_level(args, level: int) -> tuple[dict, list[str] | None]:
  """(the level's JSON row, the modules stubbed for aw_nas' import)."""
  jx = CloseJaxSide(close_jax_args(args, level))
  first_call_s = jx.warm_up(args.warmup)
  total = args.warmup + args.rounds * args.steps
  ref = None
  if not args.no_reference:
    ref = AwNasCloseSide(
      args.aw_nas_src,
      level,
      args.batch,
      args.image_size,
      jx.archs[:total],
      official_for(args, official_config(args.aw_nas_src)),
    )
    ref.run(args.warmup, 0)
  jax_rates, ref_rates = alternating_rounds(jx, ref, args.warmup, args.rounds, args.steps)
  jax_ips = statistics.median(jax_rates)
  ref_ips = statistics.median(ref_rates) if ref_rates else None
  jax_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(jx.state.params))
  counts = ref.param_counts() if ref is not None else {'all': None, 'active': None}
  row = {
    'level': level,
    'batch': args.batch,
    'close_jax_images_per_s': round(jax_ips, 2),
    'reference_images_per_s': None if ref_ips is None else round(ref_ips, 2),
    'ratio': None if ref_ips is None else round(jax_ips / ref_ips, 3),
    'close_jax_rounds': [round(v, 2) for v in jax_rates],
    'reference_rounds': [round(v, 2) for v in ref_rates],
    'close_jax_params': jax_params,
    'aw_nas_params_all': counts['all'],
    'aw_nas_params_active': counts['active'],
    'params_match': None if ref is None else jax_params == counts['active'],
    'train_step_traces': jx.counter.count,
    'first_call_s': round(first_call_s, 2),
    'steps_per_side': len(jx.seen),
    'distinct_archs': len(set(jx.seen)),
    'close_jax_archs': archs_digest(nb201.to_str(jx.archs[i]) for i in jx.seen),
    'reference_archs': None if ref is None else archs_digest(ref.seen),
  }
  print(
    f'L={level}: close_jax {jax_ips:.1f} images/s, aw_nas '
    f'{"n/a" if ref_ips is None else f"{ref_ips:.1f}"} images/s (ratio {row["ratio"]}); '
    f'params close_jax {jax_params}, aw_nas {counts["active"]} active of {counts["all"]}'
  )
  print(json.dumps(row), flush=True)
  return row, (ref.stubbed if ref is not None else None)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--aw-nas-src', default='', help='an aw_nas checkout (the reference)')
  parser.add_argument('--levels', default='1,2,3,4,5', help='curriculum levels L to time')
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--rounds', type=int, default=3, help='alternating A/B rounds')
  parser.add_argument('--steps', type=int, default=4, help='steps per side and round')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps per side')
  parser.add_argument('--channels', type=int, default=16, help='C on both sides (official: 16)')
  parser.add_argument('--cells', type=int, default=5, help='cells per stage (official: 5)')
  parser.add_argument('--image-size', type=int, default=32)
  parser.add_argument('--no-reference', action='store_true', help='time close_jax only')
  parser.add_argument('--torch-threads', type=int, default=0, help="0: torch's default")
  args = parser.parse_args()
  config = bench_config(SimpleNamespace(**vars(close_jax_args(args, 1)), layers=8))
  max_blocks = curriculum.from_config(config).max_blocks
  try:
    levels = [int(v) for v in args.levels.split(',')]
  except ValueError:
    parser.error(f'--levels={args.levels!r}: expected comma-separated integers 1..{max_blocks}')
  if not levels or any(not 1 <= v <= max_blocks for v in levels):
    parser.error(f'--levels={args.levels!r}: NB201 CLOSENet levels are 1..{max_blocks}')
  for name in ('batch', 'rounds', 'steps', 'warmup', 'channels', 'cells', 'image_size'):
    if getattr(args, name) < 1:
      parser.error(f'--{name.replace("_", "-")}={getattr(args, name)}: expected >= 1')
  setting = {}
  if not args.no_reference:
    if not args.aw_nas_src:
      parser.error('--aw-nas-src is required (an aw_nas checkout), or pass --no-reference')
    marker = os.path.join(args.aw_nas_src, CLOSE_CONFIG)
    if not os.path.isfile(marker):
      parser.error(
        f'--aw-nas-src={args.aw_nas_src!r} has no {CLOSE_CONFIG}: not an aw_nas checkout'
      )
    if importlib.util.find_spec('torch') is None:
      parser.error(
        'the aw_nas reference needs torch (pip install torch==2.13.0), or --no-reference'
      )
    setting = check_same_model(config, official_for(args, official_config(args.aw_nas_src)), args)

  torch_threads = _torch_threads(args)
  rows, stubbed = [], None
  for level in levels:
    row, stubbed = bench_level(args, level)
    rows.append(row)
  result = {
    'rows': rows,
    'batch': args.batch,
    'rounds': args.rounds,
    'steps': args.steps,
    'image_size': args.image_size,
    'model': setting or {'channels': args.channels, 'cells_per_stage': args.cells},
    'stubbed_modules': stubbed,
    'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    'device': jax.devices()[0].device_kind,
    'xla_flags': xla_flags.in_effect(),
    'torch_threads': torch_threads,
  }
  print(json.dumps(result))


def _torch_threads(args) -> int | None:
  """Sets torch's intra-op threads when asked; the number in effect (None: no reference)."""
  if args.no_reference:
    return None
  import torch

  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  return torch.get_num_threads()


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
