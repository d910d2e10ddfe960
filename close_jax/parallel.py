"""Data parallelism over a 1-D `data` mesh: one code path for 1 CPU, 8 GPUs or a TPU pod.

The train state is replicated; the training set is split into one shard of rows per device and
stays there (each process places only the shards of its own devices); every step each device
gathers its part of the global batch from its own shard, and from there on `jax.jit` partitions
the step itself: convolutions run per shard, batch-norm statistics and gradients are reduced over
the whole global batch, so N devices compute what one device would on the same global batch.
Every device trains the same architecture in a step (the op ids are replicated).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA = 'data'


def initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
  """`jax.distributed.initialize` when `cfg.initialize`; empty fields are auto-detected.

  With every field left empty JAX detects the cluster itself (TPU pods, SLURM, Open MPI,
  Kubernetes); on a plain set of machines give the coordinator address, process count and id.
  """
  if not cfg.initialize:
    return
  kwargs = {}
  if cfg.coordinator_address:
    kwargs['coordinator_address'] = cfg.coordinator_address
  if cfg.num_processes > 0:
    kwargs['num_processes'] = int(cfg.num_processes)
  if cfg.process_id >= 0:
    kwargs['process_id'] = int(cfg.process_id)
  jax.distributed.initialize(**kwargs)


def make_mesh(num_devices: int = 0) -> Mesh:
  """A mesh over all devices of all processes (or the first `num_devices`, single process)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(
        f'config.num_devices={num_devices} exceeds the {len(devices)} available devices'
      )
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ValueError(
        f'config.num_devices={num_devices}: a multi-process run uses all {len(devices)} devices '
        '(set 0)'
      )
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def row_sharded(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the devices (a batch, the rows of a dataset)."""
  return NamedSharding(mesh, P(DATA))


def shard_rows(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """`array` as a global array with one equal block of rows per device.

  The trailing `len(array) % devices` rows are dropped so every shard has the same size; each
  process copies only the rows of its own devices.
  """
  rows = (len(array) // mesh.size) * mesh.size
  if rows == 0:
    raise ValueError(f'{len(array)} rows cannot be split over {mesh.size} devices')
  shape = (rows, *array.shape[1:])
  return jax.make_array_from_callback(shape, row_sharded(mesh), lambda index: array[index])


def replicate(tree, mesh: Mesh):
  """A host pytree (numpy or local arrays) as replicated global arrays."""
  return jax.device_put(jax.device_get(tree), replicated(mesh))


def gather_rows(mesh: Mesh, table: jax.Array, index: jax.Array) -> jax.Array:
  """Rows of a row-sharded `table`, each device reading its own shard.

  `index` is (devices, rows per device) of shard-local row numbers (row-sharded too); the result
  is the (devices * rows per device, ...) batch, row-sharded. No data crosses devices.
  """
  return jax.shard_map(
    lambda t, i: t[i[0]], mesh=mesh, in_specs=(P(DATA), P(DATA)), out_specs=P(DATA)
  )(table, index)
