"""The optimizer's learning-rate logic: the plateau controller and SRT's restart of it."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from close_jax import optim

STEPS = 2  # steps per epoch (the controller averages the plateau metric over them)


def _tx(patience: int, momentum: float = 0.0, steps: int = STEPS):
  cfg = ml_collections.ConfigDict(
    dict(
      grad_clip_norm=5.0,
      weight_decay=0.0,
      learning_rate=0.1,
      momentum=momentum,
      plateau_factor=0.5,
      plateau_patience=patience,
    )
  )
  return optim.make_optimizer(cfg, steps)


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


def _torch_sgd(params, grads_seq, lr, momentum, wd, clip, scales):
  """torch: clip_grad_norm_(max_norm=clip) on the raw gradient, then SGD.step(): d_p = g + wd*p,
  buf = d_p (first step) or momentum*buf + d_p, p -= lr*scale*buf. Written from the PyTorch
  docs, independently of optax."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  buf = None
  for g, scale in zip(grads_seq, scales, strict=True):
    g = {k: np.asarray(v, np.float64) for k, v in g.items()}
    norm = np.sqrt(sum(np.sum(v**2) for v in g.values()))
    coef = min(1.0, clip / (norm + 1e-6))
    d = {k: g[k] * coef + wd * p[k] for k in p}
    buf = d if buf is None else {k: momentum * buf[k] + d[k] for k in p}
    p = {k: p[k] - lr * scale * buf[k] for k in p}
  return p


@pytest.mark.parametrize('clip', [5.0, 0.0])  # 0: no clipping (the NDS configs)
def test_three_steps_match_pytorch_sgd_semantics(clip):
  cfg = ml_collections.ConfigDict(
    dict(
      grad_clip_norm=clip,
      weight_decay=0.1,
      learning_rate=0.05,
      momentum=0.9,
      plateau_factor=0.5,
      plateau_patience=30,
    )
  )
  tx = optim.make_optimizer(cfg, steps_per_epoch=1)
  rng = np.random.default_rng(0)
  params = {'a': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), 'b': jnp.ones(4)}
  grads_seq = [
    {'a': jnp.asarray(rng.normal(size=(3, 2)) * s, jnp.float32), 'b': jnp.full(4, 0.3 * s)}
    for s in (0.5, 20.0, 1.0)  # the second gradient's norm (~30) is clipped to 5
  ]
  state, p = tx.init(params), params
  for g in grads_seq:
    updates, state = tx.update(g, state, p, value=jnp.asarray(1.0))
    p = jax.tree.map(lambda x, u: x + u, p, updates)
  expected = _torch_sgd(params, grads_seq, 0.05, 0.9, 0.1, clip or np.inf, [1.0, 1.0, 1.0])
  for k in expected:
    np.testing.assert_allclose(np.asarray(p[k]), expected[k], rtol=2e-6, atol=1e-7)
  assert np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in grads_seq[1].values())) > 5.0


def test_plateau_halves_after_patience_bad_epochs_exactly():
  """patience 2: the best epoch is epoch 0; epochs 1 and 2 do not improve, so the rate halves
  at the end of epoch 2 and not before; it halves again two bad epochs later."""
  tx = _tx(patience=2)
  params = {'w': jnp.zeros(3)}
  state = tx.init(params)
  rates = []
  for value in (0.5, 0.6, 0.55, 0.7, 0.7, 0.7):
    state = _epoch(tx, params, state, value)
    rates.append(_lr(state))
  assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_restart_zeroes_the_momentum():
  tx = _tx(patience=3, momentum=0.9, steps=1)
  params = {'w': jnp.zeros(3)}
  state = tx.init(params)
  _, state = tx.update({'w': jnp.ones(3)}, state, params, value=jnp.asarray(1.0))
  traces = [leaf for leaf in jax.tree.leaves(state) if getattr(leaf, 'shape', ()) == (3,)]
  assert traces and any(np.abs(np.asarray(t)).sum() > 0 for t in traces)
  fresh = optim.restart(tx, params, 0.5)
  traces = [leaf for leaf in jax.tree.leaves(fresh) if getattr(leaf, 'shape', ()) == (3,)]
  assert traces and all(np.abs(np.asarray(t)).sum() == 0 for t in traces)
  assert float(fresh[-1].best_value) == 0.5 and float(fresh[-1].scale) == 1.0
