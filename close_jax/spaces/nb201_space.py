"""NAS-Bench-201 behind the space interface (`close_jax.spaces.base`).

The numpy-level space lives in `nb201.py`, the ground truth in `benchmarks/nb201_gt.py` and the
network in `models/nb201_supernet.py`; this module only binds them to the interface.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from close_jax.benchmarks import nb201_gt
from close_jax.spaces import nb201, nb201_costs
from close_jax.spaces.base import (
  EDGE_IMPLS,
  FinalNetwork,
  Space,
  check_choice,
  check_positive,
  register,
  resolve_edge_impl,
  shipped_or_csv,
)

SHAPE_MODEL_KEYS = ('channels', 'cells_per_stage')  # sizes of the supernet's parameters
CONV_OPS = (2, 3)  # nor_conv_1x1, nor_conv_3x3: the ops whose weights a block supplies


load_ground_truth, check_ground_truth = shipped_or_csv(
  nb201_gt.COLUMNS, nb201_gt.deiso_ground_truth, nb201_gt.user_ground_truth, 'arch,accuracy'
)


def arch_code(ops: jax.Array) -> jax.Array:
  """The base-5 code of the op array (unique per cell, < 5**6)."""
  return jnp.sum(
    ops.astype(jnp.int32) * nb201.NUM_OPS ** jnp.arange(ops.shape[-1], dtype=jnp.int32)
  )


def probe_archs(num: int, seed: int = 0) -> np.ndarray:
  """A fixed, seeded set of `num` valid classes (int32 (num, 6))."""
  valid = nb201.valid_classes()
  chosen = np.random.default_rng(seed).choice(len(valid), min(num, len(valid)), replace=False)
  return nb201.deiso_representatives()[valid[np.sort(chosen)]]


def weighted_positions(archs: jax.Array) -> jax.Array:
  """Edges that are a live convolution: the only ones whose block choice changes anything."""
  return jnp.isin(nb201.live_ops_traced(archs), jnp.asarray(CONV_OPS))


def check_model(model_cfg) -> None:
  check_choice('model.edge_impl', model_cfg.get('edge_impl', 'auto'), EDGE_IMPLS)
  for key in SHAPE_MODEL_KEYS:
    check_positive(f'model.{key}', model_cfg[key])


def build_network(model_cfg, num_classes: int, num_blocks: int, dtype):
  from close_jax.models.nb201_supernet import NB201Supernet

  return NB201Supernet(
    channels=model_cfg.channels,
    cells_per_stage=model_cfg.cells_per_stage,
    num_blocks=num_blocks,
    num_classes=num_classes,
    dropout=model_cfg.dropout,
    dtype=dtype,
    edge_impl=resolve_edge_impl(model_cfg.get('edge_impl', 'auto')),
  )


def build_final_network(model_cfg, arch, num_classes: int):
  """The benchmark's network of the cell (`final.nb201_network`), as `configs/nb201_standalone.py`
  trains it: no auxiliary head, no drop path."""
  from close_jax.final.nb201_network import NB201Network

  return NB201Network(
    tuple(int(v) for v in arch),
    channels=int(model_cfg.channels),
    cells_per_stage=int(model_cfg.cells_per_stage),
    num_classes=num_classes,
    dtype=model_cfg.dtype,
  )


def standalone_params(arch) -> int:
  """The benchmark's network of the cell (C=16, N=5, CIFAR-10's 10 classes)."""
  from close_jax.final import param_count

  return param_count.nb201_num_params(arch, 16, 5, 10)


def search_params(arch, model_cfg) -> int:
  """The cell's network at the supernet's size (`model.channels`, `model.cells_per_stage`)."""
  from close_jax.final import param_count

  return param_count.nb201_num_params(arch, model_cfg.channels, model_cfg.cells_per_stage, 10)


def mutate(arch, rng: np.random.Generator) -> np.ndarray:
  """One edge's op changed to another of the five, uniformly (aw_nas's NB201 `mutate`: any op,
  the 'valid' filter of the training sampler is not applied)."""
  child = np.array(arch, np.int32)
  edge = rng.integers(nb201.NUM_EDGES)
  child[edge] = (child[edge] + rng.integers(1, nb201.NUM_OPS)) % nb201.NUM_OPS
  return child


SPACE = register(
  Space(
    name='nb201',
    arch_shape=(nb201.NUM_EDGES,),
    num_ops=nb201.NUM_OPS,
    parse=nb201.parse,
    to_str=nb201.to_str,
    samplers=nb201.SAMPLERS,
    sample=nb201.sample,
    probe_archs=probe_archs,
    ground_truth_names=nb201_gt.COLUMNS,
    load_ground_truth=load_ground_truth,
    check_ground_truth=check_ground_truth,
    arch_code=arch_code,
    num_positions=nb201.NUM_EDGES,
    position_ops=lambda ops: ops,
    weighted_positions=weighted_positions,
    vanilla_blocks=nb201.NUM_EDGES,
    vanilla_assignment=lambda ops: jnp.arange(nb201.NUM_EDGES, dtype=jnp.int32),
    graph=nb201.GATE_GRAPH,
    build_network=build_network,
    check_model=check_model,
    shape_model_keys=SHAPE_MODEL_KEYS,
    all_archs=nb201.deiso_representatives,
    costs=nb201_costs.costs,
    canonical_key=nb201.canonical_key,
    standalone_params=standalone_params,
    search_params=search_params,
    mutate=mutate,
    op_names=nb201.OPS,
    conv3x3_op='nor_conv_3x3',
    named_archs=tuple(nb201.PUBLISHED.items()),
    final_networks=(FinalNetwork('nb201', build_final_network, SHAPE_MODEL_KEYS),),
  )
)
