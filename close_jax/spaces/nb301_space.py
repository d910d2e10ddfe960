"""NAS-Bench-301 (the DARTS space) behind the space interface (`close_jax.spaces.base`).

Positions are the 16 chosen edges of a genotype (8 of the normal cell, then 8 of the reduce
cell). Vanilla sharing is the one-shot DARTS supernet: every one of a cell's 14 candidate edges
owns an op set, so a chosen edge uses the block of its candidate. The GATE reads one graph of
12 nodes (the normal cell's 6, then the reduce cell's 6; nodes 0, 1, 6, 7 are the input nodes),
as the official `GCNFlowArchEmbedder` (op 32, node 32, hidden 32, four flow layers of 64, mean of
the two incoming messages, op ids shifted by one as it has no `none`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from close_jax.benchmarks import nb301_gt
from close_jax.spaces import nb301
from close_jax.spaces.base import (
  EDGE_IMPLS,
  FinalNetwork,
  GateGraph,
  Space,
  check_choice,
  check_positive,
  register,
  resolve_edge_impl,
  shipped_or_csv,
)

NODES_PER_CELL = nb301.NUM_INPUT_NODES + nb301.NUM_INTERMEDIATE  # 6
NUM_POSITIONS = len(nb301.CELLS) * nb301.EDGES_PER_CELL  # 16
SHAPE_MODEL_KEYS = ('channels', 'num_layers')  # sizes of the supernet's parameters
PARAMETRIC = (3, 4, 5, 6)  # sep_conv_3x3/5x5, dil_conv_3x3/5x5
_CELL_OF = np.repeat(np.arange(len(nb301.CELLS)), nb301.EDGES_PER_CELL)  # (16,)
_RECEIVERS = (
  np.tile(np.arange(nb301.EDGES_PER_CELL) // 2 + nb301.NUM_INPUT_NODES, 2)
  + NODES_PER_CELL * _CELL_OF
).astype(np.int32)


def gate_edges(arch: jax.Array):
  """(edge ops + 1, senders, receivers) of the 16 chosen edges in the 12-node graph."""
  arch = jnp.asarray(arch).reshape(NUM_POSITIONS, 2)
  senders = arch[:, 1] + NODES_PER_CELL * jnp.asarray(_CELL_OF)
  return arch[:, 0] + 1, senders.astype(jnp.int32), _RECEIVERS


load_ground_truth, check_ground_truth = shipped_or_csv(
  nb301_gt.COLUMNS, lambda _: nb301_gt.shipped(), nb301_gt.user_ground_truth, 'genotype,accuracy'
)


def arch_code(arch: jax.Array) -> jax.Array:
  """A 32-bit hash of the 32 genotype entries (wrapping arithmetic; the same every run)."""
  values = jnp.asarray(arch).reshape(-1).astype(jnp.uint32)
  return jax.lax.fori_loop(
    0, values.shape[0], lambda i, h: h * jnp.uint32(31) + values[i], jnp.uint32(17)
  )


def position_ops(archs: jax.Array) -> jax.Array:
  """The op of each of the 16 chosen edges, (..., 16)."""
  archs = jnp.asarray(archs)
  return archs[..., 0].reshape(*archs.shape[:-3], NUM_POSITIONS)


def weighted_positions(archs: jax.Array) -> jax.Array:
  """Positions whose op has weights: the convolutions, and skips leaving a reduce cell's inputs
  (FactorizedReduce). (..., 16) bool."""
  archs = jnp.asarray(archs)
  ops = position_ops(archs)
  sources = archs[..., 1].reshape(*archs.shape[:-3], NUM_POSITIONS)
  reduce_skip = (ops == 2) & (sources < 2) & jnp.asarray(_CELL_OF == 1)
  return jnp.isin(ops, jnp.asarray(PARAMETRIC)) | reduce_skip


def vanilla_assignment(arch: jax.Array) -> jax.Array:
  return nb301.candidate_index(jnp.asarray(arch)).reshape(NUM_POSITIONS).astype(jnp.int32)


def probe_archs(num: int, seed: int = 0) -> np.ndarray:
  return np.asarray(nb301.sample(jax.random.key(seed), num))


def check_model(model_cfg) -> None:
  from close_jax.models.nb301_supernet import EDGE_LOOPS

  check_choice('model.edge_loop', model_cfg.get('edge_loop', 'auto'), EDGE_LOOPS)
  check_choice('model.edge_impl', model_cfg.get('edge_impl', 'auto'), EDGE_IMPLS)
  for key in SHAPE_MODEL_KEYS:
    check_positive(f'model.{key}', model_cfg[key])


def build_network(model_cfg, num_classes: int, num_blocks: int, dtype):
  from close_jax.models.nb301_supernet import NB301Supernet

  return NB301Supernet(
    channels=model_cfg.channels,
    num_layers=model_cfg.num_layers,
    num_blocks=num_blocks,
    num_classes=num_classes,
    dropout=model_cfg.dropout,
    dtype=dtype,
    edge_loop=model_cfg.get('edge_loop', 'auto'),
    edge_impl=resolve_edge_impl(model_cfg.get('edge_impl', 'auto')),
  )


def build_final_network(model_cfg, arch, num_classes: int):
  """The DARTS `NetworkCIFAR` (`model.network='darts_cifar'`) or `NetworkImageNet`
  (`'darts_imagenet'`) of the genotype (`final.darts_network`)."""
  from close_jax.final.darts_network import DartsNetwork, genotype_tuple

  return DartsNetwork(
    genotype_tuple(arch),
    channels=int(model_cfg.channels),
    layers=int(model_cfg.layers),
    num_classes=num_classes,
    auxiliary=bool(model_cfg.auxiliary),
    imagenet=model_cfg.network == 'darts_imagenet',
    dropout=float(model_cfg.dropout),
    dtype=model_cfg.dtype,
  )


def check_final_model(model_cfg) -> None:
  c = model_cfg.channels
  if c % 2:
    raise ValueError(
      f'config.model.channels={c!r}: expected an even number (FactorizedReduce halves it)'
    )


FINAL_SHAPE_KEYS = ('channels', 'layers')  # the DARTS network's C and number of cells


def standalone_params(arch) -> int:
  """The DARTS CIFAR-10 network of the genotype as the paper trains it (20 cells, 36 channels,
  10 classes), without the auxiliary head (as DARTS reports sizes)."""
  from close_jax.final import param_count

  return param_count.darts_num_params(arch, 36, 20, 10, False)


def search_params(arch, model_cfg) -> int:
  """The genotype's DARTS network at the supernet's size (`model.channels`, `model.num_layers`;
  8 x 16 in configs/nb301.py), without the auxiliary head."""
  from close_jax.final import param_count

  return param_count.darts_num_params(arch, model_cfg.channels, model_cfg.num_layers, 10, False)


def mutate(arch, rng: np.random.Generator) -> np.ndarray:
  """aw_nas's NB-301 `mutate`: in a random cell, with probability 1/2 one input of nodes 3..5
  moves to another earlier node that is neither its current input nor the node's other input
  (node 2's inputs are always 0 and 1), else one of the 8 ops changes to one of the 6 others."""
  child = np.array(arch, np.int32)
  cell = rng.integers(len(nb301.CELLS))
  if rng.random() < 0.5:
    edge = rng.integers(2, nb301.EDGES_PER_CELL)  # edge 2(j-2)+t: node j's input t
    node = nb301.NUM_INPUT_NODES + edge // 2
    taken = (child[cell, edge, 1], child[cell, edge ^ 1, 1])
    child[cell, edge, 1] = rng.choice([v for v in range(node) if v not in taken])
  else:
    edge = rng.integers(nb301.EDGES_PER_CELL)
    child[cell, edge, 0] = (child[cell, edge, 0] + rng.integers(1, nb301.NUM_OPS)) % nb301.NUM_OPS
  return child


SPACE = register(
  Space(
    name='nb301',
    arch_shape=nb301.ARCH_SHAPE,
    num_ops=nb301.NUM_OPS,
    parse=nb301.parse,
    to_str=nb301.to_str,
    samplers=('uniform',),
    sample=nb301.sample,
    probe_archs=probe_archs,
    ground_truth_names=nb301_gt.COLUMNS,
    load_ground_truth=load_ground_truth,
    check_ground_truth=check_ground_truth,
    arch_code=arch_code,
    num_positions=NUM_POSITIONS,
    position_ops=position_ops,
    weighted_positions=weighted_positions,
    vanilla_blocks=nb301.NUM_CANDIDATES,
    vanilla_assignment=vanilla_assignment,
    graph=GateGraph(
      num_nodes=2 * NODES_PER_CELL,
      input_nodes=(0, 1, NODES_PER_CELL, NODES_PER_CELL + 1),
      num_edge_ops=nb301.NUM_OPS + 1,
      aggregation='mean',
      edges=gate_edges,
      # aw_nas `other_node_emb`: per cell group, zero-initialised and trained
      trainable_other_nodes=tuple(
        tuple(range(c * NODES_PER_CELL + nb301.NUM_INPUT_NODES, (c + 1) * NODES_PER_CELL))
        for c in range(len(nb301.CELLS))
      ),
      op_dim=32,
      node_dim=32,
      hidden_dim=32,
      gcn_dims=(64,) * 4,
    ),
    build_network=build_network,
    check_model=check_model,
    shape_model_keys=SHAPE_MODEL_KEYS,
    num_genes=len(nb301.CELLS) * nb301.NUM_INTERMEDIATE,  # a node's two (op, input) pairs
    canonical_key=lambda arch: nb301.to_str(nb301.canonical(arch)),
    standalone_params=standalone_params,
    search_params=search_params,
    mutate=mutate,
    # One coin per intermediate node, shared by both cells (genes are cell-major).
    crossover_groups=tuple(range(nb301.NUM_INTERMEDIATE)) * len(nb301.CELLS),
    op_names=nb301.OPS,
    conv3x3_op='sep_conv_3x3',
    named_archs=tuple(nb301.PUBLISHED.items()),
    final_networks=tuple(
      FinalNetwork(
        name,
        build_final_network,
        FINAL_SHAPE_KEYS,
        auxiliary_head=True,
        drop_path=True,
        image_folder=name == 'darts_imagenet',
        check_model=check_final_model,
      )
      for name in ('darts_cifar', 'darts_imagenet')
    ),
  )
)
