"""Trains NB201 cells from scratch, one fresh network per cell: ground truth on the user's data.

Why this network: it is the supernet's NB201 skeleton with one weight set per edge and the cell
fixed (`NB201Supernet` with 6 blocks, edge e on block e), so its cell semantics (ReLU-conv-BN with
batch statistics, no affine) are exactly those of the supernet ranked against it. It is not the
NAS-Bench-201 release's network, whose cell BNs are affine with running statistics: that one is
`final.nb201_network`, trained by `configs/nb201_standalone.py` (one compile per cell). The protocol
is the benchmark's: SGD with Nesterov momentum 0.9, weight decay 5e-4 (added to the gradient, as
PyTorch), cosine learning rate to 0, random crop and flip; no dropout.

The cell is a traced array, so one compiled epoch (a `lax.scan` over its steps) and one
evaluator serve every cell of a study.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from close_jax.data import train_transform
from close_jax.data.augment import normalize
from close_jax.models.nb201_supernet import NB201Supernet

EDGE_BLOCKS = jnp.arange(6, dtype=jnp.int32)  # edge e owns block e: a plain network


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
  """Trains cells one after another on one compiled epoch; `accuracy(arch, seed)` in percent."""

  def __init__(self, protocol: Protocol, dataset, test_images: np.ndarray, test_labels: np.ndarray):
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
      num_blocks=6,
      num_classes=dataset.num_classes,
      dropout=0.0,
    )
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
    self._epoch = jax.jit(self._epoch_fn)
    self._evaluate = jax.jit(self._evaluate_fn)

  def num_params(self, arch) -> int:
    """Weights the network of `arch` uses (its cells' dead or weight-free edges excluded)."""
    from close_jax.spaces import nb201

    ops = nb201.live_ops(np.asarray(arch))
    params = jax.eval_shape(self._init_fn, jax.random.key(0), jnp.asarray(arch, jnp.int32))
    total = 0
    for name, sub in params.items():
      for key, leaf in sub.items() if name.startswith('cell_') else ():
        per_edge = int(np.prod(leaf.shape[1:]))
        op = {'conv1x1': 2, 'conv3x3': 3}[key]
        total += per_edge * int(np.sum(ops == op))
      if not name.startswith('cell_'):
        total += sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(sub))
    return total

  def _init_fn(self, key, arch):
    x = jnp.zeros((1, *self.images.shape[1:]), jnp.float32)
    return self.net.init(key, x, arch, EDGE_BLOCKS, train=False)['params']

  def _loss(self, params, x, y, arch):
    logits = self.net.apply({'params': params}, x, arch, EDGE_BLOCKS, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def _epoch_fn(self, params, opt_state, arch, key):
    p = self.protocol
    perm_key, aug_key = jax.random.split(key)
    order = jax.random.permutation(perm_key, len(self.images))[: self.steps * p.batch_size]

    def step(carry, xs):
      params, opt_state = carry
      idx, k = xs
      x = train_transform(self.images[idx], k, self.mean, self.std, p.crop_padding, p.hflip)
      loss, grads = jax.value_and_grad(self._loss)(params, x, self.labels[idx], arch)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    xs = (order.reshape(self.steps, p.batch_size), jax.random.split(aug_key, self.steps))
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), xs)
    return params, opt_state, jnp.mean(losses)

  def _evaluate_fn(self, params, arch):
    b = self.protocol.eval_batch_size
    images = self.test_images.reshape(-1, b, *self.test_images.shape[1:])
    labels = self.test_labels.reshape(-1, b)

    def correct(batch):
      x, y = batch
      x = normalize(x, self.mean, self.std)
      logits = self.net.apply({'params': params}, x, arch, EDGE_BLOCKS, train=False)
      return jnp.sum(jnp.argmax(logits, -1) == y)

    return 100.0 * jnp.sum(jax.lax.map(correct, (images, labels))) / self.test_labels.shape[0]

  def accuracy(self, arch, seed: int, log=None) -> float:
    """Test accuracy (%) of `arch` trained from scratch with `seed` (init, order, augmentation)."""
    arch = jnp.asarray(arch, jnp.int32)
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = self._init(init_key, arch)
    opt_state = self.tx.init(params)
    start = time.perf_counter()
    for epoch in range(self.protocol.epochs):
      params, opt_state, loss = self._epoch(
        params, opt_state, arch, jax.random.fold_in(data_key, epoch)
      )
      if not np.isfinite(float(loss)):
        raise FloatingPointError(f'non-finite loss {float(loss)} in epoch {epoch}')
    acc = float(self._evaluate(params, arch))
    if log is not None:
      log(f'loss {float(loss):.4f}  test acc {acc:.2f}%  {time.perf_counter() - start:.1f}s')
    return acc
