"""The jitted supernet train step and the per-epoch sampling plan.

The architecture is an argument (a traced int array), never a closure or a static argument, so
one compiled step serves every architecture (NDS's `bucket`/`exact` strategies add a static
`shape_key`, by choice: see `models.nds_supernet`). Data lives on the devices (one shard of rows per
device, see `parallel`) and is gathered and augmented inside the step: the host sends nothing.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from close_jax import parallel
from close_jax.data import augment
from close_jax.supernet import Supernet


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; exactly what a checkpoint holds."""

  step: jax.Array
  params: Any
  opt_state: Any


class TraceCounter:
  """Counts how often the train step was traced (`count`) and how many executables its jit
  caches hold (`executables`): a recompile that reuses a trace (a new sharding, a weak type, a
  donated buffer's layout) shows in the second only."""

  def __init__(self):
    self.count = 0
    self.functions: list = []

  @property
  def executables(self) -> int:
    return sum(f._cache_size() for f in self.functions)


def make_train_step(
  supernet: Supernet,
  tx: optax.GradientTransformation,
  *,
  mean,
  std,
  crop_padding: int,
  hflip: bool,
  mesh: Mesh | None = None,
  counter: TraceCounter | None = None,
):
  """Returns jitted `train_step(state, images, labels, batch_idx, arch, key, shape_key=None) ->
  (state, metrics)`.

  `images`/`labels` are row-sharded over `mesh` (default: the first device) and `batch_idx` is
  (devices, batch per device) of shard-local rows (`parallel.gather_rows`). `key` is the run's
  step key; the step folds in `state.step`, so the randomness of step t is fixed by (seed, t)
  alone and a resumed run replays exactly. State and metrics come back replicated.
  `shape_key` (static, `Supernet.shape_key`) is None except for the NDS bucket/exact strategies,
  where it is the static computed size of `arch` (one executable per distinct key).
  The step holds no conditional of its own (the plateau controller acts between epochs,
  `optim.end_of_epoch`): with `model.edge_impl=dense` it is one straight-line program.
  """
  mesh = mesh or parallel.make_mesh(1)
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)

  def train_step(state: TrainState, images, labels, batch_idx, arch, key, shape_key=None):
    if counter is not None:
      counter.count += 1
    key = jax.random.fold_in(key, state.step)
    aug_key, net_key = jax.random.split(key)
    x = parallel.gather_rows(mesh, images, batch_idx)
    x = augment.train_transform(x, aug_key, mean, std, crop_padding, hflip)
    y = parallel.gather_rows(mesh, labels, batch_idx)

    def loss_fn(params):
      logits = supernet.apply(
        params, x, arch, net_key, train=True, shape_key=shape_key, step=state.step
      )
      per_example = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      loss = per_example.mean()
      return supernet.gate_objective(loss, per_example, params, arch, net_key), (loss, logits)

    (_, (loss, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'accuracy': accuracy, 'grad_norm': optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  jitted = jax.jit(
    train_step,
    donate_argnums=0,
    static_argnames='shape_key',
    out_shardings=parallel.replicated(mesh),
  )
  if counter is not None:
    counter.functions.append(jitted)
  return jitted


def make_epoch_plan(mesh: Mesh, shard_size: int, steps: int, local_batch: int, sample):
  """Jitted `plan(key, epoch, pool=None) -> (batch_idx (steps, devices, local_batch), archs)`.

  Each device walks a permutation of its own shard of `shard_size` rows, so an epoch sees every
  (kept) image once; one architecture per step from `sample(key, num)` (the space's training
  sampler, e.g. NB201's uniform draw over its 6321 valid classes), or uniform over the rows of
  `pool` (an architecture search's population, as CARS trains its supernet). Derived from
  (key, epoch, pool) only, so resuming at an epoch boundary reproduces the plan. `batch_idx[i]` is
  row-sharded as `train_step` expects; the architectures are replicated.
  """
  num_shards = mesh.size

  def plan(key: jax.Array, epoch, pool=None):
    perm_key, arch_key = jax.random.split(jax.random.fold_in(key, epoch))
    keys = jax.random.split(perm_key, num_shards)
    perms = jax.vmap(lambda k: jax.random.permutation(k, shard_size)[: steps * local_batch])(keys)
    batches = perms.reshape(num_shards, steps, local_batch).transpose(1, 0, 2)
    if pool is None:
      return batches, sample(arch_key, steps)
    return batches, pool[jax.random.randint(arch_key, (steps,), 0, pool.shape[0])]

  shardings = (NamedSharding(mesh, P(None, parallel.DATA)), parallel.replicated(mesh))
  return jax.jit(plan, out_shardings=shardings)
