"""Trains NB201 cells from scratch, one fresh network per cell: ground truth on the user's data.

Why this network: it is the supernet's NB201 skeleton with one weight set per edge and the cell
fixed (`NB201Supernet` with 6 blocks, edge e on block e), so its cell semantics (ReLU-conv-BN with
batch statistics, no affine) are exactly those of the supernet ranked against it. It is not the
NAS-Bench-201 release's network, whose cell BNs are affine with running statistics: that one is
`final.nb201_network`, trained by `configs/nb201_standalone.py` (one compile per cell). The protocol
is the benchmark's: SGD with Nesterov momentum 0.9, weight decay 5e-4 (added to the gradient, as
PyTorch), cosine learning rate to 0, random crop and flip; no dropout.

The cell is a traced array, so one compiled training step and one evaluator serve every cell of
a study. `accuracy` runs an epoch as a Python loop over that jitted step (`epoch_form='steps'`,
the default) or as one `lax.scan` over the steps (`'scan'`); on XLA:CPU, one core, the loop
trained the ranking-quality study's 5-cells-per-stage network ~1.13x faster
(`experiments/bench_standalone.py --epoch-forms`); both are the same computation, up to float
rounding. `train_batch` trains A cells at once in one compiled
program: parameters and optimizer states stacked on a leading axis, the (A, 6) cells as data,
`jax.vmap` over all of it. Under `vmap` a `lax.switch` whose index differs per cell runs every
branch, so the batched network uses the conditional-free edges of `models.edge_dense` (the same
function for a one-hot op, see there), where an edge is one 3x3 convolution whose kernel folds the
op. Every cell draws its initialisation, data order and augmentation from `cell_key(seed, cell)`,
never from its position in a batch, so a cell's result does not depend on which cells train
beside it; `accuracy` (one cell, `lax.switch` edges) uses the same keys.

Which to use: on XLA:CPU a convolution vmapped over A kernels becomes one grouped convolution that
took 2.5-5x the CPU time of the A convolutions run one by one (A = 4..16, the ranking study's
shapes; `experiments/bench_standalone.py --conv-only`), so on CPU `accuracy` cell by cell is the
faster; `train_batch` is for accelerators, where it is not measured yet (nor is the epoch form).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from close_jax.data import train_transform
from close_jax.data.augment import normalize
from close_jax.models.nb201_supernet import NB201Supernet
from close_jax.spaces import nb201

EDGE_BLOCKS = jnp.arange(nb201.NUM_EDGES, dtype=jnp.int32)  # edge e owns block e: a plain network
# The ops whose weights a cell's parameters hold, by parameter name of the supernet's cell.
_CONV_OPS = {'conv1x1': nb201.OPS.index('nor_conv_1x1'), 'conv3x3': nb201.OPS.index('nor_conv_3x3')}


def cell_code(arch) -> int:
  """The cell as the base-5 number of its six op ids: a batch-independent id in [0, 5**6)."""
  ops = np.asarray(arch, np.int64)
  edges, num_ops = nb201.NUM_EDGES, nb201.NUM_OPS
  if ops.shape != (edges,) or ops.min() < 0 or ops.max() >= num_ops:
    raise ValueError(f'cell {ops.tolist()}: expected {edges} op ids in 0..{num_ops - 1}')
  return int(np.sum(ops * num_ops ** np.arange(edges)))


def cell_key(seed, code):
  """(init key, data key) of cell `code` (see `cell_code`) trained with `seed`; traceable.
  Threefry keys: `rbg` keys compile faster but draw other numbers under `vmap` than alone."""
  key = jax.random.fold_in(jax.random.key(seed), code)
  init_key, data_key = jax.random.split(key)
  return init_key, data_key


@dataclasses.dataclass(frozen=True)
class Protocol:
  channels: int = 16
  cells_per_stage: int = 5
  epochs: int = 200
  batch_size: int = 256
  learning_rate: float = 0.1
  weight_decay: float = 5e-4
  crop_padding: int = 4
  hflip: bool = True
  eval_batch_size: int = 500


class StandaloneTrainer:
  """Trains cells on one compiled step: `accuracy(arch, seed)` one cell, `train_batch(archs,
  seed)` several at once; test accuracies in percent."""

  EPOCH_FORMS = ('steps', 'scan')

  def __init__(
    self,
    protocol: Protocol,
    dataset,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    epoch_form: str = 'steps',
  ):
    if epoch_form not in self.EPOCH_FORMS:
      raise ValueError(f'epoch_form={epoch_form!r}: expected one of {self.EPOCH_FORMS}')
    self.epoch_form = epoch_form
    self.protocol = p = protocol
    self.steps = len(dataset.train_images) // p.batch_size
    if self.steps < 1:
      raise ValueError(
        f'batch_size={p.batch_size} exceeds the {len(dataset.train_images)} training images'
      )
    if len(test_images) < p.eval_batch_size:
      raise ValueError(
        f'eval_batch_size={p.eval_batch_size} exceeds the {len(test_images)} test images'
      )
    self.net = NB201Supernet(
      channels=p.channels,
      cells_per_stage=p.cells_per_stage,
      num_blocks=nb201.NUM_EDGES,
      num_classes=dataset.num_classes,
      dropout=0.0,
      edge_impl='switch',
    )
    self.dense_net = self.net.clone(edge_impl='dense')  # same parameters, no conditionals
    schedule = optax.cosine_decay_schedule(p.learning_rate, p.epochs * self.steps)
    self.tx = optax.chain(
      optax.add_decayed_weights(p.weight_decay),
      optax.sgd(schedule, momentum=0.9, nesterov=True),
    )
    self.images = jnp.asarray(dataset.train_images)
    self.labels = jnp.asarray(dataset.train_labels)
    usable = len(test_images) // p.eval_batch_size * p.eval_batch_size  # no ragged batch
    self.test_images = jnp.asarray(test_images[:usable])
    self.test_labels = jnp.asarray(test_labels[:usable])
    self.mean, self.std = jnp.asarray(dataset.mean), jnp.asarray(dataset.std)
    self._init = jax.jit(self._init_fn)
    self._init_one = jax.jit(self._init_cell)
    self._epoch = jax.jit(functools.partial(self._epoch_fn, self.net))
    self._step = jax.jit(functools.partial(self._indexed_step, self.net), donate_argnums=(0, 1))
    self._plan = jax.jit(self._plan_fn)
    self._evaluate = jax.jit(functools.partial(self._evaluate_fn, self.net))
    self._epoch_batch = jax.jit(
      jax.vmap(functools.partial(self._epoch_fn, self.dense_net), in_axes=(0, 0, 0, 0))
    )
    self._evaluate_batch = jax.jit(jax.vmap(functools.partial(self._evaluate_fn, self.dense_net)))

  def num_params(self, arch) -> int:
    """Weights the network of `arch` uses (its cells' dead or weight-free edges excluded)."""
    ops = nb201.live_ops(np.asarray(arch))
    params = jax.eval_shape(self._init_fn, jax.random.key(0), jnp.asarray(arch, jnp.int32))
    total = 0
    for name, sub in params.items():
      for key, leaf in sub.items() if name.startswith('cell_') else ():
        per_edge = int(np.prod(leaf.shape[1:]))
        total += per_edge * int(np.sum(ops == _CONV_OPS[key]))
      if not name.startswith('cell_'):
        total += sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(sub))
    return total

  def _init_fn(self, key, arch):
    x = jnp.zeros((1, *self.images.shape[1:]), jnp.float32)
    return self.net.init(key, x, arch, EDGE_BLOCKS, train=False)['params']

  def _init_cell(self, seed, code):
    """(params, optimizer state, data key) of one cell."""
    init_key, data_key = cell_key(seed, code)
    params = self._init_fn(
      init_key, jnp.zeros(nb201.NUM_EDGES, jnp.int32)
    )  # the cell shapes nothing
    return params, self.tx.init(params), data_key

  def _loss(self, net, params, x, y, arch):
    logits = net.apply({'params': params}, x, arch, EDGE_BLOCKS, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def _plan_fn(self, key):
    """An epoch's (steps, batch) image indices and (steps,) augmentation keys."""
    p = self.protocol
    perm_key, aug_key = jax.random.split(key)
    order = jax.random.permutation(perm_key, len(self.images))[: self.steps * p.batch_size]
    return order.reshape(self.steps, p.batch_size), jax.random.split(aug_key, self.steps)

  def _step_fn(self, net, params, opt_state, arch, idx, key):
    p = self.protocol
    x = train_transform(self.images[idx], key, self.mean, self.std, p.crop_padding, p.hflip)
    loss, grads = jax.value_and_grad(self._loss, 1)(net, params, x, self.labels[idx], arch)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def _indexed_step(self, net, params, opt_state, arch, order, keys, i):
    return self._step_fn(net, params, opt_state, arch, order[i], keys[i])

  def _epoch_fn(self, net, params, opt_state, arch, key):
    def step(carry, xs):
      params, opt_state, loss = self._step_fn(net, *carry, arch, *xs)
      return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), self._plan_fn(key))
    return params, opt_state, jnp.mean(losses)

  def _epoch_steps(self, params, opt_state, arch, key):
    """`_epoch_fn`'s epoch as a loop over the jitted step (the state's buffers are donated)."""
    order, keys = self._plan(key)
    losses = []
    for i in range(self.steps):
      params, opt_state, loss = self._step(params, opt_state, arch, order, keys, np.int32(i))
      losses.append(loss)
    return params, opt_state, jnp.mean(jnp.stack(losses))

  def _evaluate_fn(self, net, params, arch):
    b = self.protocol.eval_batch_size
    images = self.test_images.reshape(-1, b, *self.test_images.shape[1:])
    labels = self.test_labels.reshape(-1, b)

    def correct(batch):
      x, y = batch
      x = normalize(x, self.mean, self.std)
      logits = net.apply({'params': params}, x, arch, EDGE_BLOCKS, train=False)
      return jnp.sum(jnp.argmax(logits, -1) == y)

    return 100.0 * jnp.sum(jax.lax.map(correct, (images, labels))) / self.test_labels.shape[0]

  def _train_one(self, arch, seed: int):
    """(params, last epoch's mean loss) of `arch` trained alone with `lax.switch` edges, each
    epoch in `epoch_form`."""
    params, opt_state, data_key = self._init_one(seed, cell_code(arch))
    arch = jnp.asarray(arch, jnp.int32)
    epoch_fn = self._epoch_steps if self.epoch_form == 'steps' else self._epoch
    for epoch in range(self.protocol.epochs):
      params, opt_state, loss = epoch_fn(
        params, opt_state, arch, jax.random.fold_in(data_key, epoch)
      )
      _check_finite(np.asarray(loss)[None], epoch, [arch])
    return params, float(loss)

  def accuracy(self, arch, seed: int, log=None) -> float:
    """Test accuracy (%) of `arch` trained from scratch with `seed` (init, order, augmentation
    from `cell_key`)."""
    start = time.perf_counter()
    params, loss = self._train_one(arch, seed)
    acc = float(self._evaluate(params, jnp.asarray(arch, jnp.int32)))
    if log is not None:
      log(f'loss {loss:.4f}  test acc {acc:.2f}%  {time.perf_counter() - start:.1f}s')
    return acc

  def _train_batch(self, archs, seeds):
    """(stacked params, last epoch's mean losses (A,)) of the cells `archs` (A, 6) trained at
    once, cell i with seed `seeds` (one int or (A,)); cell i's result is that of
    `accuracy(archs[i], seeds[i])` to float tolerance."""
    archs = np.asarray(archs, np.int32)
    if archs.ndim != 2 or archs.shape[1] != nb201.NUM_EDGES or len(archs) < 1:
      raise ValueError(f'archs of shape {archs.shape}: expected (A, {nb201.NUM_EDGES}) with A >= 1')
    seeds = np.broadcast_to(np.asarray(seeds, np.int64), (len(archs),))
    if seeds.min() < 0 or seeds.max() >= 2**31:
      raise ValueError(f'seeds {seeds.tolist()}: expected integers in [0, 2**31)')
    # each cell initialised alone by the one-cell program (compiled once, not once per A), stacked
    states = [self._init_one(int(s), cell_code(a)) for a, s in zip(archs, seeds, strict=True)]
    params, opt_state, data_keys = jax.tree.map(lambda *x: jnp.stack(x), *states)
    cells = jnp.asarray(archs)
    for epoch in range(self.protocol.epochs):
      keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(data_keys, epoch)
      params, opt_state, losses = self._epoch_batch(params, opt_state, cells, keys)
      _check_finite(np.asarray(losses), epoch, archs)
    return params, np.asarray(losses)

  def train_batch(self, archs, seeds) -> np.ndarray:
    """Test accuracies (%) of the cells `archs` (A, 6), each trained from scratch with `seeds`
    (one int, or one per cell: a batch may hold one cell twice), all in one compiled program;
    one compile per batch size A."""
    params, _ = self._train_batch(archs, seeds)
    return np.asarray(self._evaluate_batch(params, jnp.asarray(archs, jnp.int32)), np.float64)


def _check_finite(losses: np.ndarray, epoch: int, archs) -> None:
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    cell = np.asarray(archs[bad[0]]).tolist()
    raise FloatingPointError(f'non-finite loss {losses[bad[0]]} in epoch {epoch} of cell {cell}')
