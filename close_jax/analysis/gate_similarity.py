"""GATE assignment similarity (CLOSE paper, appendix section 3.1): do similar architectures get
similar block assignments? KL divergence between the block distributions the GATE gives two
architectures' 3x3 convolutions, against the pair's edit distance.

  python -m close_jax.analysis.gate_similarity --workdir runs/close --out kl.png

CLOSE's claim is that the GATE shares weights between similar architectures more than between
dissimilar ones; then the KL rises with the edit distance. A GATE that ignores the architecture
gives a flat zero. For each of `--seeds` random seeds, `--archs` architectures are sampled with
the space's training sampler; every pair at edit distance d (entries of the architecture array
that differ) that has a position holding the op in both, weighted in both
(`Space.weighted_positions`), contributes the mean over those positions of KL(p_a || p_b); up to
`--pairs` such pairs per distance, picked at random, are averaged; the figure is the mean over
the random seeds (their spread is the error bar).
Restores the checkpoint (GATE parameters only, no data, no optimizer): any space with a GATE.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from close_jax import gate_stats, spaces
from close_jax.analysis import plotting, workdir_files
from close_jax.checkpoint import Checkpointer
from close_jax.spaces import nb201
from close_jax.supernet import Supernet, build_supernet


def restore_gate(workdir: str, epoch: int | None = None) -> tuple[Supernet, dict, int]:
  """(supernet at the checkpoint's level, its parameters, epoch) of the newest (or `epoch`)
  checkpoint; arrays are restored as saved, so nothing about the data or optimizer is needed."""
  config = workdir_files.read_config(workdir)
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  try:
    epoch = ckpt.latest_epoch() if epoch is None else epoch
    if epoch is None:
      raise FileNotFoundError(f'no checkpoint in {ckpt.directory}')
    meta = ckpt.restore_meta(epoch)
    state = ckpt.restore_state(epoch, None)
  finally:
    ckpt.close()
  # The head's class count only shapes the network, which this analysis never runs.
  supernet = build_supernet(config, num_classes=10, num_blocks=int(meta['num_blocks']))
  if not gate_stats.has_gate(supernet):
    raise ValueError(
      f'checkpoint of epoch {epoch} in {workdir} has no learned GATE over >= 2 blocks '
      f'(method {config.method!r}, gate {config.close.gate!r}, {supernet.num_blocks} block(s))'
    )
  return supernet, state['params'], epoch


def op_index(space: spaces.Space, op: str | int | None) -> int:
  """The op's index in `space.position_ops`: an int as given, a name looked up in the space's
  `op_names`; None is the space's 3x3 convolution (`conv3x3_op`)."""
  if op is None:
    if not space.conv3x3_op:
      raise ValueError(f'space {space.name!r} names no 3x3 convolution (conv3x3_op): pass --op')
    op = space.conv3x3_op
  if isinstance(op, int) or str(op).isdigit():
    if not 0 <= int(op) < space.num_ops:
      raise ValueError(
        f'op {op!r} of space {space.name!r}: expected an index in [0, {space.num_ops})'
      )
    return int(op)
  if op not in space.op_names:
    raise ValueError(
      f'op {op!r} is not an op of space {space.name!r}: expected one of {space.op_names}'
    )
  return space.op_names.index(op)


# The CLOSE paper (appendix, section 3.1) reports the summed KL over 3x3 convolutions for one
# structurally different and one similar pair (~5 and ~0.5 on NB-301). Two NB201 pairs of that
# kind, sharing live 3x3 convolutions with the base: "different" changes most edges, "similar" one
# edge that is not a convolution.
NB201_PAIRS = {
  'base': (
    '|nor_conv_3x3~0|'
    '+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'
  ),
  'different': (
    '|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|'
  ),
  'similar': (
    '|nor_conv_3x3~0|'
    '+|nor_conv_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|'
  ),
}


def nb201_pair_kls(supernet: Supernet, params: dict) -> dict[str, float]:
  """{'different': KL, 'similar': KL}: `gate_stats.pair_kl` over the 3x3 convolutions of the
  NB201_PAIRS (an NB201 GATE's parameters)."""
  base = nb201.parse(NB201_PAIRS['base'])
  conv = nb201.OPS.index('nor_conv_3x3')
  return {
    name: float(
      f'{gate_stats.pair_kl(supernet, params, base, nb201.parse(NB201_PAIRS[name]), conv):.4g}'
    )
    for name in ('different', 'similar')
  }


def mean_kl(p: np.ndarray, q: np.ndarray) -> float:
  """Mean over rows of KL(p_i || q_i) in nats (rows are distributions)."""
  p, q = np.maximum(p, 1e-30), np.maximum(q, 1e-30)
  return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))


def pairs_by_distance(
  archs: np.ndarray, shared: np.ndarray, max_pairs: int, rng: np.random.Generator
) -> dict[int, list[tuple[int, int]]]:
  """Up to `max_pairs` random pairs (i < j) per edit distance >= 1 among those with
  `shared[i, j]` (at least one comparable position)."""
  flat = archs.reshape(len(archs), -1)
  distance = (flat[:, None, :] != flat[None, :, :]).sum(-1)
  i, j = np.triu_indices(len(archs), k=1)
  keep = shared[i, j] & (distance[i, j] > 0)
  out = {}
  for d in np.unique(distance[i, j][keep]):
    idx = np.flatnonzero(keep & (distance[i, j] == d))
    idx = rng.permutation(idx)[:max_pairs]
    out[int(d)] = [(int(i[k]), int(j[k])) for k in np.sort(idx)]
  return out


def kl_by_distance(
  supernet: Supernet,
  params: dict,
  op: int,
  num_archs: int = 128,
  max_pairs: int = 50,
  seeds: tuple[int, ...] = (0, 1, 2),
) -> dict:
  """Per edit distance: mean KL over each seed's pairs, then mean and std over seeds."""
  space = supernet.space
  # Logits from the device, softmax in float64 here: nearly equal float32 distributions would
  # give KLs of float noise, negative ones included.
  logits_fn = jax.jit(
    jax.vmap(lambda arch: supernet.gate_logits(params, arch, None, train=False).astype(jnp.float32))
  )
  per_seed: dict[int, list[float]] = {}
  pair_counts: dict[int, int] = {}
  for seed in seeds:
    archs = np.asarray(space.sample(jax.random.key(seed), num_archs), np.int32)
    probs = scipy.special.softmax(np.asarray(logits_fn(jnp.asarray(archs)), np.float64), -1)
    usable = np.asarray(space.weighted_positions(jnp.asarray(archs))) & (
      np.asarray(space.position_ops(jnp.asarray(archs))) == op
    )  # (n, P)
    shared = (usable[:, None, :] & usable[None, :, :]).any(-1)
    pairs = pairs_by_distance(archs, shared, max_pairs, np.random.default_rng(seed))
    for d, chosen in pairs.items():
      both = [usable[a] & usable[b] for a, b in chosen]
      kls = [mean_kl(probs[a][m], probs[b][m]) for (a, b), m in zip(chosen, both, strict=True)]
      per_seed.setdefault(d, []).append(float(np.mean(kls)))
      pair_counts[d] = pair_counts.get(d, 0) + len(chosen)
  distances = sorted(per_seed)
  return {
    'distance': np.array(distances),
    'kl_mean': np.array([np.mean(per_seed[d]) for d in distances]),
    'kl_std': np.array([np.std(per_seed[d]) for d in distances]),
    'per_seed': {d: per_seed[d] for d in distances},
    'pairs': np.array([pair_counts[d] for d in distances]),
  }


def plot(results: dict[str, dict], path: str) -> str:
  plt = plotting.pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, r in results.items():
    ax.errorbar(r['distance'], r['kl_mean'], yerr=r['kl_std'], marker='o', capsize=3, label=name)
  ax.set(
    xlabel='edit distance between the two architectures',
    ylabel="KL of the 3x3 convolutions' block distributions (nats)",
    title='GATE assignment similarity',
  )
  ax.grid(alpha=0.3)
  ax.legend()
  return plotting.save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdirs', '--workdir', nargs='+', required=True)
  parser.add_argument('--labels', nargs='*', help='one per workdir (default: directory names)')
  parser.add_argument('--epoch', type=int, default=None, help='checkpoint (default: newest)')
  parser.add_argument('--op', default=None, help='op name or index (default: the 3x3 conv)')
  parser.add_argument('--archs', type=int, default=128, help='architectures sampled per seed')
  parser.add_argument('--pairs', type=int, default=50, help='pairs per distance and seed')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--out', required=True, help='PNG to write')
  args = parser.parse_args(argv)
  labels = args.labels or [os.path.basename(os.path.normpath(w)) for w in args.workdirs]
  if len(labels) != len(args.workdirs):
    parser.error('--labels needs one label per workdir')
  results = {}
  for label, workdir in zip(labels, args.workdirs, strict=True):
    supernet, params, epoch = restore_gate(workdir, args.epoch)
    op = op_index(supernet.space, args.op)
    results[label] = kl_by_distance(
      supernet, params, op, args.archs, args.pairs, tuple(range(args.seeds))
    )
    r = results[label]
    kl = ' '.join(f'd={d}:{m:.4g}' for d, m in zip(r['distance'], r['kl_mean'], strict=True))
    print(f'{label} (epoch {epoch}, {supernet.num_blocks} blocks): mean KL {kl}')
  print(f'plot: {plot(results, args.out)}')
  return results


if __name__ == '__main__':
  main()
