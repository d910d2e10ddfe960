"""What the benchmark scripts build alike: a supernet's optimizer, replicated state and train step
on synthetic uint8 images (normalised with mean 128 / std 64, crop padding 4, flips), seeded."""

from __future__ import annotations

import hashlib
import platform

import jax
import jax.numpy as jnp
import numpy as np

from close_jax import optim, parallel
from close_jax.train_step import TrainState, make_train_step


def train_setup(supernet, optim_config, image_shape, mesh=None, counter=None):
  """(state, step, key): params from rbg key 0, the config's optimizer, the jitted train step."""
  mesh = mesh or parallel.make_mesh(1)
  tx = optim.make_optimizer(optim_config)
  key = jax.random.key(0, impl='rbg')
  params = supernet.init(key, tuple(image_shape))
  state = parallel.replicate(TrainState(jnp.zeros((), jnp.int32), params, tx.init(params)), mesh)
  step = make_train_step(
    supernet,
    tx,
    mean=np.full(3, 128.0),
    std=np.full(3, 64.0),
    crop_padding=4,
    hflip=True,
    mesh=mesh,
    counter=counter,
  )
  return state, step, key


def archs_digest(arch_strs) -> str:
  """A short digest of an architecture sequence (NB201 strings, in order): equal digests on the
  two sides of an A/B benchmark mean both ran the same architectures in the same order."""
  return hashlib.sha256('\n'.join(arch_strs).encode()).hexdigest()[:16]


def alternating_rounds(jx, ref, warmup: int, rounds: int, steps: int, log=None):
  """`rounds` rounds of `steps` steps, close_jax then the reference (if any), so both sides see
  the same machine load; returns each side's images/s per round. Round r trains the sequence's
  architectures from `warmup + r * steps` on, on both sides."""
  jax_rates, ref_rates = [], []
  for r in range(rounds):
    first = warmup + r * steps
    jax_rates.append(jx.run(steps, first))
    if ref is not None:
      ref_rates.append(ref.run(steps, first))
    if log is not None:
      log(r, jax_rates, ref_rates)
  return jax_rates, ref_rates


def cpu_model() -> str:
  """The CPU's model name (figures are only comparable on the same model)."""
  try:
    with open('/proc/cpuinfo') as f:
      names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
    return f'{names[0]} x{len(names)}'
  except (OSError, IndexError):
    return platform.processor() or platform.machine()
