"""The optimizer's learning-rate logic: the plateau controller and SRT's restart of it."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from helpers import torch_reduce_on_plateau

from close_jax import optim


def _cfg(patience: int, momentum: float = 0.0, lr: float = 0.1, factor: float = 0.5):
  return ml_collections.ConfigDict(
    dict(
      grad_clip_norm=5.0,
      weight_decay=0.0,
      learning_rate=lr,
      momentum=momentum,
      plateau_factor=factor,
      plateau_patience=patience,
    )
  )


def _lr(state, cfg) -> float:
  return optim.learning_rate(state, cfg.learning_rate)


def _controller_rates(values, cfg, restarts=()):
  tx, params = optim.make_optimizer(cfg), {'w': jnp.zeros(3)}
  state, out = tx.init(params), []
  for epoch, value in enumerate(values):
    if epoch in restarts:
      state = optim.restart(tx, params, values[epoch - 1])
    state = optim.end_of_epoch(state, value, cfg)
    out.append(_lr(state, cfg))
  return out


@pytest.mark.parametrize('patience', [0, 1, 3])
def test_the_controller_is_torch_reduce_on_plateau(patience):
  """Random epoch means with plateaus, ties and relative improvements below the threshold,
  with and without SRT: the rates equal torch's rule epoch by epoch."""
  rng = np.random.default_rng(patience)
  steps = rng.choice([-0.05, -1e-5, 0.0, 0.02], size=60, p=[0.4, 0.2, 0.2, 0.2])
  values = (2.0 + np.cumsum(steps)).round(6).tolist()
  cfg = _cfg(patience)
  for restarts in ((), (25, 40)):
    expected = torch_reduce_on_plateau(values, 0.1, 0.5, patience, restarts)
    assert len(set(expected)) > 2  # the sequence really reduces the rate several times
    assert _controller_rates(values, cfg, restarts) == pytest.approx(expected, rel=1e-6)


def test_plateau_reduces_after_more_than_patience_bad_epochs():
  """patience 2 (torch): the best epoch is epoch 0; epochs 1, 2 and 3 do not improve, so the
  rate halves after epoch 3 (the third bad epoch), not after epoch 2; then again three bad
  epochs later."""
  values = (0.5, 0.6, 0.55, 0.7, 0.7, 0.7, 0.7)
  rates = _controller_rates(values, _cfg(patience=2))
  assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_the_step_scales_the_update_and_leaves_the_controller_alone():
  """Per step the controller only scales the update: its state changes between epochs."""
  cfg = _cfg(patience=0)
  tx, params = optim.make_optimizer(cfg), {'w': jnp.zeros(3)}
  grads = {'w': jnp.ones(3)}
  state = tx.init(params)
  full, after = tx.update(grads, state, params)
  assert jax.tree.leaves(after[-1]) == jax.tree.leaves(state[-1])
  state = optim.end_of_epoch(optim.end_of_epoch(state, 1.0, cfg), 1.0, cfg)  # one bad epoch
  assert _lr(state, cfg) == pytest.approx(0.05)
  half, _ = jax.jit(tx.update)(grads, state, params)
  np.testing.assert_allclose(half['w'], 0.5 * np.asarray(full['w']), rtol=1e-6)


@pytest.mark.parametrize('patience', [1, 2])
def test_restart_keeps_the_pre_restart_value_as_best(patience):
  cfg = _cfg(patience)
  tx, params = optim.make_optimizer(cfg), {'w': jnp.zeros(3)}
  state = tx.init(params)
  for value in (2.0, 1.0) + (1.0,) * (patience + 1):  # plateaus at 1.0, the rate decays
    state = optim.end_of_epoch(state, value, cfg)
  assert _lr(state, cfg) < 0.1
  restarted = optim.restart(tx, params, 1.0)
  assert _lr(restarted, cfg) == pytest.approx(0.1)  # SRT: the initial rate again
  assert float(restarted[-1].best_value) == 1.0
  assert int(restarted[-1].num_bad_epochs) == 0
  # Not beating the pre-restart value for patience + 1 epochs halves the restarted rate ...
  state = restarted
  for _ in range(patience + 1):
    state = optim.end_of_epoch(state, 1.0, cfg)
  assert _lr(state, cfg) == pytest.approx(0.05)
  # ... which a fresh controller (best value +inf) would not do.
  fresh = tx.init(params)
  for _ in range(patience + 1):
    fresh = optim.end_of_epoch(fresh, 1.0, cfg)
  assert _lr(fresh, cfg) == pytest.approx(0.1)


def test_restart_beaten_value_keeps_the_rate():
  cfg = _cfg(1)
  tx, params = optim.make_optimizer(cfg), {'w': jnp.zeros(3)}
  state = optim.restart(tx, params, 1.0)
  for value in (0.9, 0.8, 0.7):
    state = optim.end_of_epoch(state, value, cfg)
  assert _lr(state, cfg) == pytest.approx(0.1)
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
  """Two steps at the initial rate, an epoch end that halves it (patience 0, a bad epoch after
  a good one), and a third step at the halved rate: torch's SGD with the scheduler's rate."""
  cfg = ml_collections.ConfigDict(
    dict(
      grad_clip_norm=clip,
      weight_decay=0.1,
      learning_rate=0.05,
      momentum=0.9,
      plateau_factor=0.5,
      plateau_patience=0,
    )
  )
  tx = optim.make_optimizer(cfg)
  rng = np.random.default_rng(0)
  params = {'a': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), 'b': jnp.ones(4)}
  grads_seq = [
    {'a': jnp.asarray(rng.normal(size=(3, 2)) * s, jnp.float32), 'b': jnp.full(4, 0.3 * s)}
    for s in (0.5, 20.0, 1.0)  # the second gradient's norm (~30) is clipped to 5
  ]
  state, p = tx.init(params), params
  for i, g in enumerate(grads_seq):
    if i == 2:
      state = optim.end_of_epoch(optim.end_of_epoch(state, 1.0, cfg), 2.0, cfg)
    updates, state = tx.update(g, state, p)
    p = jax.tree.map(lambda x, u: x + u, p, updates)
  expected = _torch_sgd(params, grads_seq, 0.05, 0.9, 0.1, clip or np.inf, [1.0, 1.0, 0.5])
  for k in expected:
    np.testing.assert_allclose(np.asarray(p[k]), expected[k], rtol=2e-6, atol=1e-7)
  assert np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in grads_seq[1].values())) > 5.0


def test_restart_zeroes_the_momentum():
  cfg = _cfg(patience=3, momentum=0.9)
  tx, params = optim.make_optimizer(cfg), {'w': jnp.zeros(3)}
  state = tx.init(params)
  _, state = tx.update({'w': jnp.ones(3)}, state, params)
  traces = [leaf for leaf in jax.tree.leaves(state) if getattr(leaf, 'shape', ()) == (3,)]
  assert traces and any(np.abs(np.asarray(t)).sum() > 0 for t in traces)
  fresh = optim.restart(tx, params, 0.5)
  traces = [leaf for leaf in jax.tree.leaves(fresh) if getattr(leaf, 'shape', ()) == (3,)]
  assert traces and all(np.abs(np.asarray(t)).sum() == 0 for t in traces)
  assert float(fresh[-1].best_value) == 0.5 and float(fresh[-1].scale) == 1.0
