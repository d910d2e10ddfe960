"""GATE diagnostics (entropy, spread, pair KL) and the multi-draw evaluation gate."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax import evaluate, gate_stats, surgery
from close_jax import supernet as supernet_lib
from close_jax.spaces import nb201, nb201_space
from configs import nb201 as nb201_config

N, SKIP, C1, C3, POOL = range(5)


def test_summarise_against_numpy():
  archs = jnp.asarray([[C3, C1, SKIP, POOL, C3, C1], [C1, N, N, C3, N, N]], jnp.int32)
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(3), size=(2, 6)).astype(np.float32)
  got = jax.device_get(gate_stats.summarise(jnp.asarray(probs), archs, nb201_space.SPACE))
  # Live convs: arch 0 edges 0, 1, 4, 5 (all live); arch 1 edges 0 and 3 (edge 0 feeds node 1,
  # which reaches nothing: dead) -> edge 3 only.
  picked = np.concatenate([probs[0][[0, 1, 4, 5]], probs[1][[3]]])
  entropy = -np.sum(picked * np.log(picked), -1).mean()
  spread = picked.std(axis=0).mean()
  np.testing.assert_allclose(got['gate_entropy'], entropy, rtol=1e-5)
  np.testing.assert_allclose(got['gate_spread'], spread, rtol=1e-5)
  np.testing.assert_allclose(got['gate_marginal'], picked.mean(0), rtol=1e-5)


def test_constant_gate_has_zero_spread():
  archs = jnp.asarray(nb201_space.probe_archs(16, 0))
  probs = jnp.broadcast_to(jnp.asarray([0.5, 0.3, 0.2]), (16, 6, 3))
  got = gate_stats.summarise(probs, archs, nb201_space.SPACE)
  assert float(got['gate_spread']) == pytest.approx(0.0, abs=1e-7)
  assert float(got['gate_entropy']) == pytest.approx(
    -np.sum([0.5, 0.3, 0.2] * np.log([0.5, 0.3, 0.2])), rel=1e-5
  )


def test_probe_archs_are_fixed_valid_classes():
  a, b = nb201_space.probe_archs(32, 0), nb201_space.probe_archs(32, 0)
  np.testing.assert_array_equal(a, b)
  live = nb201.live_ops(a)
  assert np.all(np.any((live == C1) | (live == C3), axis=1))


@pytest.fixture(scope='module')
def two_blocks():
  config = nb201_config.get_config('smoke')  # C=4, one cell per stage, K=3
  config.close.gate_embed_norm = 'layer'  # the official embedder starts almost constant
  full = supernet_lib.build_supernet(config, num_classes=10)
  params = jax.jit(lambda k: full.init(k, (8, 8, 3)))(jax.random.key(0))
  # A gate far from uniform and from constant: scale the logits layer up.
  logits = params['gate']['mlp']['logits']
  params['gate']['mlp']['logits'] = {'kernel': logits['kernel'] * 10.0, 'bias': logits['bias']}
  params = {**params, 'net': surgery.slice_blocks(params['net'], 2)}
  return supernet_lib.build_supernet(config, num_classes=10, num_blocks=2), params


def test_pair_kl_zero_for_itself_positive_otherwise(two_blocks):
  supernet, params = two_blocks
  a = [C3, C3, SKIP, C1, C3, C3]
  assert gate_stats.pair_kl(supernet, params, a, a, C3) == pytest.approx(0.0, abs=1e-9)
  assert gate_stats.pair_kl(supernet, params, a, [C3, POOL, C1, C3, C3, SKIP], C3) > 1e-4
  with pytest.raises(ValueError, match='share no weighted position with op 3'):
    gate_stats.pair_kl(supernet, params, a, [C1, C1, C1, C1, C1, C1], C3)


def test_gate_samples_average_the_single_draw_scores(two_blocks):
  supernet, params = two_blocks
  key = jax.random.key(123, impl='rbg')
  x = jax.random.normal(jax.random.key(1), (2, 16, 8, 8, 3))  # 2 batches of 16
  y = jax.random.randint(jax.random.key(2), (2, 16), 0, 10)
  archs = jnp.asarray([[C3, C1, SKIP, POOL, C3, C1], [C3, C3, C3, C3, C3, C3]], jnp.int32)
  one = evaluate.make_scorer(supernet, gate_samples=1)
  three = evaluate.make_scorer(supernet, gate_samples=3)
  single = np.asarray(one(params, x, y, archs, key))
  multi = np.asarray(three(params, x, y, archs, key))

  @jax.jit
  def draw_score(ops, draw_key):  # independent of make_scorer: assign, forward, count
    assignment = supernet.assign(params, ops, draw_key, train=False)
    logits = jax.vmap(lambda b: supernet.forward(params, b, ops, assignment, None, False))(x)
    return jnp.mean(jnp.argmax(logits, -1) == y), assignment

  for i, ops in enumerate(archs):
    keys = evaluate.draw_keys(key, ops, 3, supernet.space)
    scored = [draw_score(ops, keys[m]) for m in range(3)]
    np.testing.assert_allclose(multi[i], np.mean([float(s) for s, _ in scored]), rtol=1e-6)
    np.testing.assert_allclose(single[i], float(scored[0][0]), rtol=1e-6)  # draw 0 = official
  # The draws really differ (otherwise averaging would be vacuous).
  blocks = {
    tuple(np.asarray(draw_score(archs[1], k)[1]))
    for k in evaluate.draw_keys(key, archs[1], 3, supernet.space)
  }
  assert len(blocks) > 1


def test_gate_samples_collapse_to_one_without_a_random_assignment(two_blocks):
  supernet, _ = two_blocks
  assert evaluate.gate_draws(supernet, 4) == 4
  config = nb201_config.get_config('smoke')
  config.method = 'vanilla'
  assert evaluate.gate_draws(supernet_lib.build_supernet(config, 10), 4) == 1
  config.method = 'close'
  assert evaluate.gate_draws(supernet_lib.build_supernet(config, 10, num_blocks=1), 4) == 1


def test_mode_assignment_is_the_gates_most_likely_block_whatever_the_key(two_blocks):
  """eval.gate_assignment='mode': every evaluation key gives the argmax of the GATE's logits,
  one draw is all a score needs, and the scorer's scores do not depend on its key."""
  sampled, params = two_blocks
  supernet = dataclasses.replace(sampled, eval_assignment='mode')
  ops = jnp.asarray([C3, C3, C3, C3, C3, C3], jnp.int32)
  want = np.argmax(np.asarray(supernet.gate_logits(params, ops, None, False)), -1)
  keys = [jax.random.key(k, impl='rbg') for k in range(4)]
  for key in keys:
    np.testing.assert_array_equal(np.asarray(supernet.assign(params, ops, key, train=False)), want)
  draws = {tuple(np.asarray(sampled.assign(params, ops, k, train=False))) for k in keys}
  assert len(draws) > 1  # the official draws do differ by key
  assert evaluate.gate_draws(supernet, 4) == 1
  x = jax.random.normal(jax.random.key(1), (2, 16, 8, 8, 3))
  y = jax.random.randint(jax.random.key(2), (2, 16), 0, 10)
  score = evaluate.make_scorer(supernet)
  scores = [np.asarray(score(params, x, y, ops[None], k)) for k in keys[:2]]
  np.testing.assert_array_equal(scores[0], scores[1])
