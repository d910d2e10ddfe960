"""NDS ResNet and ResNeXt-A behind the space interface (`close_jax.spaces.base`).

Positions are the shared positions of a stage (1..max_depth-1); the three stages use the same
position -> block map and each has its own blocks, as the official `GermCloseStage`. There is no
GATE: CLOSE assigns blocks by the interval curriculum (`close_jax.intervals`, `Space.intervals`),
and vanilla gives every position its own block.

Besides the paper spaces, `nds_resnet_smoke` and `nds_resnexta_smoke` are the same code at toy
sizes (depths 1/2/4, widths 8/16), so that the CLI and the tests run on a CPU in seconds.
Ground truth is a user file: the NDS release JSON (`ResNet.json`, `ResNeXt-A.json`) or a CSV with
columns `arch` (the readable form) and `accuracy`. None is shipped (the release is not available
offline), so the configs rank without one by default (`eval.ground_truth='none'`: a seeded sample
of `eval.num_archs` architectures, scores only).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from close_jax.benchmarks import csv_table
from close_jax.spaces import nds
from close_jax.spaces.base import Space, check_choice, check_positive, register


def _load(family: nds.Family, source: str) -> tuple[np.ndarray, np.ndarray, str]:
  check = _check(family, source)
  if check == 'json':
    archs, accuracy = nds.load_json(family, source)
    _, first, inverse = np.unique(
      archs.reshape(len(archs), -1), axis=0, return_index=True, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    means = np.bincount(inverse, accuracy) / np.bincount(inverse)
    order = np.argsort(first)  # file order of first appearance, duplicates averaged
    archs, accuracy = archs[first[order]], means[order]
  else:
    archs, accuracy = csv_table.read_ground_truth(
      source, functools.partial(nds.parse, family), lambda a: a.tobytes()
    )
  return archs, np.asarray(accuracy, np.float64), os.path.abspath(source)


def _check(family: nds.Family, source: str) -> str:
  kind = os.path.splitext(source)[1].lower().lstrip('.')
  if kind not in ('json', 'csv') or not os.path.isfile(source):
    raise ValueError(
      f"config.eval.ground_truth={source!r}: expected 'none' (none is shipped for "
      f'{family.name}), the path of an existing NDS release JSON or a CSV with columns '
      'arch,accuracy'
    )
  return kind


def _check_ground_truth(family: nds.Family, source: str) -> None:
  _load(family, source)  # parsed in full before any training


def arch_code(arch: jax.Array) -> jax.Array:
  values = jnp.asarray(arch).reshape(-1).astype(jnp.uint32)
  return jax.lax.fori_loop(
    0, values.shape[0], lambda i, h: h * jnp.uint32(31) + values[i], jnp.uint32(17)
  )


def make_space(family: nds.Family) -> Space:
  positions = family.num_positions
  ds = np.asarray(family.ds)

  def active_positions(archs):
    """(..., P) bool: the position runs in at least one stage (depth - 1 > p)."""
    depth = jnp.asarray(ds)[jnp.asarray(archs)[..., :, 0]].max(-1)
    return jnp.arange(positions) < depth[..., None] - 1

  return Space(
    name=family.name,
    arch_shape=(nds.NUM_STAGES, len(nds.DECISIONS)),
    num_ops=max(len(family.choices(d)) for d in nds.DECISIONS),
    parse=functools.partial(nds.parse, family),
    to_str=functools.partial(nds.to_str, family),
    samplers=('uniform',),
    sample=lambda key, n, which='uniform': nds.sample(family, key, n),
    probe_archs=lambda n, seed=0: np.asarray(nds.sample(family, jax.random.key(seed), n)),
    ground_truth_names=(),
    load_ground_truth=functools.partial(_load, family),
    check_ground_truth=functools.partial(_check_ground_truth, family),
    arch_code=arch_code,
    num_positions=positions,
    position_ops=lambda archs: jnp.zeros((*jnp.shape(archs)[:-2], positions), jnp.int32),
    weighted_positions=active_positions,
    vanilla_blocks=positions,
    vanilla_assignment=lambda arch: jnp.arange(positions, dtype=jnp.int32),
    graph=None,
    build_network=functools.partial(_build_network, family),
    interval_curriculum=True,
    check_model=functools.partial(_check_model, family),
    shape_model_keys=('stem_width',),
    shape_keyer=lambda network: network.shape_key if network.per_arch_shapes else None,
    specialise=lambda network, caps: network.clone(caps=caps),
  )


STRATEGIES = ('mask', 'bucket', 'exact')  # see models.nds_supernet


def default_buckets(family: nds.Family) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Width and depth bucket edges when the config gives none: a quarter, a half and all of the
  maximum (rounded down to a choice, so the smallest bucket holds at least one value)."""

  def edges(values):
    top = max(values)
    return tuple(
      sorted({max([min(values)] + [v for v in values if v <= top * f]) for f in (0.25, 0.5, 1.0)})
    )

  return edges(family.ws), edges(family.ds)


def _buckets(family: nds.Family, model_cfg) -> tuple[tuple[int, ...], tuple[int, ...]]:
  widths, depths = default_buckets(family)
  return (
    tuple(model_cfg.get('nds_width_buckets', ()) or widths),
    tuple(model_cfg.get('nds_depth_buckets', ()) or depths),
  )


def _check_model(family: nds.Family, model_cfg) -> None:
  from close_jax.models.nds_supernet import INITS

  check_positive('model.stem_width', model_cfg.get('stem_width', 16))
  check_choice('model.nds_strategy', model_cfg.get('nds_strategy', 'mask'), STRATEGIES)
  check_choice('model.nds_init', model_cfg.get('nds_init', 'he_fan_out'), INITS)
  for name, edges, top in zip(
    ('nds_width_buckets', 'nds_depth_buckets'),
    _buckets(family, model_cfg),
    (max(family.ws), max(family.ds)),
    strict=True,
  ):
    if list(edges) != sorted(set(edges)) or edges[0] < 1 or edges[-1] < top:
      raise ValueError(
        f'config.model.{name}={tuple(edges)!r}: expected increasing positive edges, the last '
        f'at least {top} (the largest value of {family.name})'
      )


def _build_network(family, model_cfg, num_classes: int, num_blocks: int, dtype):
  from close_jax.models.nds_supernet import NDSSupernet

  widths, depths = _buckets(family, model_cfg)
  return NDSSupernet(
    family,
    num_blocks=num_blocks,
    num_classes=num_classes,
    stem_width=model_cfg.get('stem_width', 16),
    dtype=dtype,
    strategy=model_cfg.get('nds_strategy', 'mask'),
    width_buckets=widths,
    depth_buckets=depths,
    weight_init=model_cfg.get('nds_init', 'he_fan_out'),
  )


SMOKE = {
  'nds_resnet': dataclasses.replace(nds.RESNET, name='nds_resnet_smoke', ds=(1, 2, 4), ws=(8, 16)),
  'nds_resnexta': dataclasses.replace(
    nds.RESNEXTA, name='nds_resnexta_smoke', ds=(1, 2, 4), ws=(8, 16), bot_muls=(0.5, 1.0)
  ),
}
# By space name: the NDS families and their toy `_smoke` variants (`nds.FAMILIES` has the former).
SPACE_FAMILIES = {f.name: f for f in (*nds.FAMILIES.values(), *SMOKE.values())}
for _family in SPACE_FAMILIES.values():
  register(make_space(_family))
