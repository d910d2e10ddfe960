"""The optimizer's learning-rate logic: the plateau controller and SRT's restart of it."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from close_jax import optim

STEPS = 2  # steps per epoch (the controller averages the plateau metric over them)


def _tx(patience: int):
  cfg = ml_collections.ConfigDict(
    dict(
      grad_clip_norm=5.0,
      weight_decay=0.0,
      learning_rate=0.1,
      momentum=0.0,
      plateau_factor=0.5,
      plateau_patience=patience,
    )
  )
  return optim.make_optimizer(cfg, STEPS)


def _epoch(tx, params, state, value: float):
  """One epoch of STEPS steps whose plateau metric is `value`; returns the state."""
  grads = {'w': jnp.ones(3)}
  for _ in range(STEPS):
    _, state = tx.update(grads, state, params, value=jnp.asarray(value))
  return state


def _lr(state) -> float:
  return float(optim.learning_rate(state, 0.1))


@pytest.mark.parametrize('patience', [1, 2])
def test_restart_keeps_the_pre_restart_value_as_best(patience):
  tx, params = _tx(patience), {'w': jnp.zeros(3)}
  state = tx.init(params)
  for value in (2.0, 1.0, 1.0, 1.0, 1.0):  # plateaus at 1.0, the rate decays
    state = _epoch(tx, params, state, value)
  assert _lr(state) < 0.1
  restarted = optim.restart(tx, params, 1.0)
  assert _lr(restarted) == pytest.approx(0.1)  # SRT: the initial rate again
  assert float(restarted[-1].best_value) == 1.0
  assert int(restarted[-1].plateau_count) == 0
  np.testing.assert_array_equal(restarted[-1].avg_value, 0.0)
  # Not beating the pre-restart value for `patience` epochs halves the restarted rate ...
  state = restarted
  for _ in range(patience):
    state = _epoch(tx, params, state, 1.0)
  assert _lr(state) == pytest.approx(0.05)
  # ... which a fresh controller (best value +inf, the old behaviour) would not do.
  fresh = tx.init(params)
  for _ in range(patience):
    fresh = _epoch(tx, params, fresh, 1.0)
  assert _lr(fresh) == pytest.approx(0.1)


def test_restart_beaten_value_keeps_the_rate():
  tx, params = _tx(1), {'w': jnp.zeros(3)}
  state = optim.restart(tx, params, 1.0)
  for value in (0.9, 0.8, 0.7):
    state = _epoch(tx, params, state, value)
  assert _lr(state) == pytest.approx(0.1)
  assert float(state[-1].best_value) == pytest.approx(0.7)
