"""What one supernet run resolves and builds once, before it writes anything.

`prepare` completes and validates a config once and resolves the space and curriculum it names;
`Run` builds the mesh, data, optimizer, keys, fresh parameters, compiled scorers and output
writers from it. The trainer (`close_jax.train`), the architecture search's hook, the
experiments and the tests build on these objects instead of re-reading the config.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from close_jax import budget, config_check, evaluate, optim, parallel, spaces, surgery
from close_jax import curriculum as curriculum_lib
from close_jax.data import load_dataset
from close_jax.metric_writer import MetricWriter
from close_jax.run_rankings import Rankings
from close_jax.supernet import Supernet, build_supernet
from close_jax.train_step import TraceCounter, TrainState, make_train_step


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A config completed with the keys added since older runs, scaled to its `budget_epochs` and
  validated, with the space and curriculum it names resolved once."""

  config: ml_collections.ConfigDict
  space: spaces.Space
  curriculum: curriculum_lib.Curriculum


def prepare(config: ml_collections.ConfigDict | Prepared) -> Prepared:
  """Fills, budget-scales (printing each change) and validates `config` in place, once."""
  if isinstance(config, Prepared):
    return config
  config_check.fill_later_keys(config)
  for change in budget.scale_to_budget(config):
    _log(f'budget_epochs={config.budget_epochs}: {change}')
  space, curriculum = config_check.validate(config)
  return Prepared(config, space, curriculum)


class Run:
  """What one supernet run builds once: mesh, data, space, curriculum, optimizer, keys, the
  fresh parameters, the compiled scorers and the output writers.

  The trainer, the architecture search's hook (`close_jax.search.hook`), the experiments and the
  tests build on it: `supernet(num_blocks)` a level's supernet, `initial_state(num_blocks)` the
  state a run starts from, `train_step(supernet, counter)` a level's compiled step,
  `device_data()` the sharded training split, `scorers` the compiled ranking scorers.
  Building it reads and checks the data and writes nothing; `close()` closes its writers.
  """

  def __init__(self, config: ml_collections.ConfigDict | Prepared, workdir: str):
    prepared = prepare(config)
    config = self.config = prepared.config
    self.space = prepared.space
    self.curriculum = prepared.curriculum
    self.workdir = workdir
    if config.distributed.initialize and not jax.distributed.is_initialized():
      raise ValueError(
        'config.distributed.initialize=True but jax.distributed is not initialised: call '
        'close_jax.main.setup_process(config) first (python -m close_jax.main does)'
      )
    self.mesh = parallel.make_mesh(config.num_devices)
    devices = self.mesh.size
    if config.batch_size % devices:
      raise ValueError(
        f'config.batch_size={config.batch_size} must be a multiple of the {devices} devices '
        '(every device trains an equal part of the global batch)'
      )
    self.dataset = load_dataset(config.data)
    if config.batch_size > self.dataset.num_train:
      raise ValueError(
        f'config.batch_size={config.batch_size} exceeds the '
        f'{self.dataset.num_train} training images'
      )
    if config.eval.batch_size > len(self.dataset.rank_images):
      raise ValueError(
        f'config.eval.batch_size={config.eval.batch_size} exceeds the '
        f'{len(self.dataset.rank_images)} ranking images'
      )
    self.local_batch = config.batch_size // devices
    self.shard_size = self.dataset.num_train // devices
    self.steps_per_epoch = self.shard_size // self.local_batch
    self.tx = optim.from_config(config)
    key = jax.random.key(config.seed, impl=config.prng_impl)
    self.init_key, self.plan_key, self.step_key = (jax.random.fold_in(key, i) for i in range(3))
    self.eval_key = jax.random.key(config.eval.seed, impl=config.prng_impl)
    self.replicated = parallel.replicated(self.mesh)
    full = self.supernet(self.curriculum.max_blocks)
    self._fresh = jax.jit(
      lambda: full.init(self.init_key, self.dataset.image_shape), out_shardings=self.replicated
    )
    # Surgery, SRT and the plateau controller run eagerly between epochs; this puts their
    # result back on the mesh with the sharding the compiled step expects (no recompile).
    self.place = jax.jit(lambda tree: tree, out_shardings=self.replicated)
    self.train_counter = TraceCounter()
    self.scorers = evaluate.Scorers(self.dataset, config.eval, self.mesh, TraceCounter())
    process0 = jax.process_index() == 0
    self.metrics = MetricWriter(workdir, process0, tensorboard=config.tensorboard)
    self.rankings = Rankings(self)

  def supernet(self, num_blocks: int) -> Supernet:
    return build_supernet(
      self.config, self.dataset.num_classes, num_blocks, self.space, self.curriculum.max_blocks
    )

  def fresh_params(self) -> dict:
    """The K-block initial draw; every level's new blocks take their own init from it."""
    return self._fresh()

  def initial_state(self, num_blocks: int) -> TrainState:
    params = surgery.initial_params(self.fresh_params(), num_blocks, self.curriculum)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params))
    return self.place(state)

  def train_step(self, supernet: Supernet, counter: TraceCounter | None = None):
    """The level's jitted step; traces are counted in `counter` (default: the run's)."""
    cfg = self.config
    return make_train_step(
      supernet,
      self.tx,
      mean=self.dataset.mean,
      std=self.dataset.std,
      crop_padding=cfg.data.crop_padding,
      hflip=cfg.data.hflip,
      mesh=self.mesh,
      counter=self.train_counter if counter is None else counter,
    )

  def device_data(self) -> tuple[jax.Array, jax.Array]:
    """The training split, one shard of rows per device (each process places its own)."""
    data = self.dataset
    return (
      parallel.shard_rows(data.train_images, self.mesh),
      parallel.shard_rows(data.train_labels, self.mesh),
    )

  def close(self) -> None:
    self.metrics.close()
    self.rankings.close()
