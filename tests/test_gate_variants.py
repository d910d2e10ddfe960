"""The GATE training variants beyond aw_nas: AdamW for the GATE (`close.gate_optimizer`), the
annealed soft mixture and REINFORCE (`close.gate_mix`), centred logits (`close.gate_center_logits`),
each against an independent computation."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from conftest import counted_train_step

from close_jax import config_check, optim, surgery
from close_jax import curriculum as curriculum_lib
from close_jax import supernet as supernet_lib
from close_jax.checkpoint import Checkpointer
from close_jax.data import load_dataset
from close_jax.models import edge_ops
from close_jax.models import gate as gate_lib
from close_jax.train_step import TrainState
from configs import nb201 as nb201_config

N, SKIP, C1, C3, POOL = range(5)


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl='rbg')


# --- soft_annealed ----------------------------------------------------------------------------


@pytest.mark.parametrize('step', [0, 3, 7])
def test_soft_mix_is_the_gumbel_softmax_at_the_annealed_temperature(step):
  """Before the anneal ends: softmax((z + g) / tau(step)) with tau = 5 * (0.5 / 5)^(step / 8),
  and its exact gradient (no straight-through): d sum(w * p) / dz = p * (w - p.w) / tau."""
  start, end, steps = 5.0, 0.5, 8
  logits = jax.random.normal(_key(1), (6, 3))
  key = _key(step)
  w = np.asarray(jax.random.normal(_key(2), (6, 3)), np.float64)
  tau = start * (end / start) ** (step / steps)
  u = np.asarray(logits + jax.random.gumbel(key, logits.shape), np.float64) / tau
  p = np.exp(u - u.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  mix = gate_lib.soft_annealed_gumbel(logits, key, step, start, end, steps)
  np.testing.assert_allclose(np.asarray(mix), p, rtol=1e-5, atol=1e-6)
  grad = jax.grad(
    lambda z: jnp.sum(
      jnp.asarray(w, jnp.float32) * gate_lib.soft_annealed_gumbel(z, key, step, start, end, steps)
    )
  )(logits)
  expected = p * (w - np.sum(p * w, -1, keepdims=True)) / tau
  np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('step', [8, 20])
def test_soft_mix_is_hard_after_the_anneal(step):
  """From step `steps` on: the one-hot of the Gumbel-max draw, with the straight-through
  gradient of the softmax at the final temperature."""
  logits = jax.random.normal(_key(1), (6, 3))
  key = _key(5)
  noisy = logits + jax.random.gumbel(key, logits.shape)
  mix = gate_lib.soft_annealed_gumbel(logits, key, step, 5.0, 0.5, 8)
  np.testing.assert_array_equal(np.asarray(mix), np.eye(3)[np.argmax(np.asarray(noisy), -1)])
  w = jax.random.normal(_key(2), (6, 3))
  grad = jax.grad(lambda z: jnp.sum(w * gate_lib.soft_annealed_gumbel(z, key, step, 5.0, 0.5, 8)))
  expected = jax.grad(lambda z: jnp.sum(w * jax.nn.softmax((z + noisy - logits) / 0.5)))
  np.testing.assert_allclose(grad(logits), expected(logits), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('op', [C1, C3, SKIP, POOL])
def test_a_soft_mix_of_blocks_is_the_weighted_sum_of_their_outputs(op):
  """The network's mixed edge with non-one-hot weights: sum_k p_k * (the edge on block k alone)."""
  c, blocks = 4, 3
  x = jax.random.normal(_key(0), (2, 6, 6, c))
  w1 = jax.random.normal(_key(1), (blocks, 1, 1, c, c))
  w3 = jax.random.normal(_key(2), (blocks, 3, 3, c, c))
  p = jax.nn.softmax(jax.random.normal(_key(3), (blocks,)))
  mixed = edge_ops.edge_mix(
    x, jnp.int32(op), p, edge_ops.stack_blocks(w1), edge_ops.stack_blocks(w3)
  )
  parts = [edge_ops.edge_select(x, jnp.int32(op), w1[k], w3[k]) for k in range(blocks)]
  expected = sum(float(p[k]) * np.asarray(parts[k], np.float64) for k in range(blocks))
  np.testing.assert_allclose(np.asarray(mixed), expected, rtol=1e-4, atol=1e-5)


# --- REINFORCE ----------------------------------------------------------------------------------


def test_score_function_estimate_has_the_exact_expectation():
  """Two positions, three blocks, a loss table f(z0, z1): the mean over many pairs of draws of the
  leave-one-out estimate 0.5 * [(f1 - f2) grad log p(z1) + (f2 - f1) grad log p(z2)] equals
  grad sum_z p(z) f(z), computed by enumerating the 9 assignments."""
  logits = jnp.array([[0.3, -0.5, 0.1], [1.0, 0.0, -0.7]])
  table = jnp.array([[1.0, 3.0, 0.0], [2.0, -1.0, 0.5], [0.0, 4.0, 1.5]])
  weights = jnp.ones(2)

  def exact(z):
    p = jax.nn.softmax(z, -1)
    return jnp.einsum('i,j,ij->', p[0], p[1], table)

  def estimate(key):
    k1, k2 = jax.random.split(key)
    z1, z2 = gate_lib.gumbel_max(logits, k1), gate_lib.gumbel_max(logits, k2)
    f1, f2 = table[z1[0], z1[1]], table[z2[0], z2[1]]
    return jax.grad(
      lambda z: (
        0.5
        * (
          gate_lib.score_function_surrogate(z, z1, f1 - f2, weights)
          + gate_lib.score_function_surrogate(z, z2, f2 - f1, weights)
        )
      )
    )(logits)

  samples = np.asarray(jax.jit(jax.vmap(estimate))(jax.random.split(_key(0), 40000)))
  want = np.asarray(jax.grad(exact)(logits))
  assert np.abs(want).max() > 0.3  # not a trivially zero gradient
  error = np.abs(samples.mean(0) - want)
  standard_error = samples.std(0) / np.sqrt(samples.shape[0])
  assert np.all(error < 5 * standard_error + 1e-4), (error, standard_error)


def test_score_function_ignores_positions_whose_choice_does_not_matter():
  logits = jax.random.normal(_key(0), (3, 2))
  blocks = jnp.array([0, 1, 1])
  grad = jax.grad(
    lambda z: gate_lib.score_function_surrogate(z, blocks, 2.0, jnp.array([1.0, 0.0, 1.0]))
  )(logits)
  np.testing.assert_array_equal(np.asarray(grad[1]), 0.0)
  p = np.asarray(jax.nn.softmax(logits, -1))
  np.testing.assert_allclose(grad[0], 2.0 * (np.eye(2)[0] - p[0]), rtol=1e-6)


@pytest.fixture(scope='module')
def reinforce_fx():
  config = nb201_config.get_config('smoke')
  config.close.gate_mix = 'reinforce'
  full = supernet_lib.build_supernet(config, num_classes=10)
  fresh = jax.jit(lambda k: full.init(k, (8, 8, 3)))(_key(0))
  params = {**fresh, 'net': surgery.slice_blocks(fresh['net'], 2)}
  sn = supernet_lib.build_supernet(config, num_classes=10, num_blocks=2)
  x = jax.random.normal(_key(1), (8, 8, 8, 3))
  y = jnp.arange(8)

  def losses(params, ops, key):
    logits = sn.apply(params, x, ops, key, train=True)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    loss = per_example.mean()
    return sn.gate_objective(loss, per_example, params, ops, key), loss

  # Both gradients from one program (one compile): the Jacobian of (objective, loss).
  jacobian = jax.jit(jax.jacrev(lambda *a: jnp.stack(losses(*a))))

  def grads(params, ops, key):
    """(gradient of the GATE objective, gradient of the plain loss)."""
    both = jacobian(params, ops, key)
    return tuple(jax.tree.map(lambda g, i=i: g[i], both) for i in (0, 1))

  return params, grads


def test_reinforce_adds_a_gate_gradient_and_leaves_the_network_gradient(reinforce_fx):
  params, grads = reinforce_fx
  ops = jnp.array([C3, C1, C3, C1, C3, C3], jnp.int32)
  norms = []
  for seed in range(3):
    with_score, plain = grads(params, ops, _key(seed))
    for a, b in zip(jax.tree.leaves(with_score['net']), jax.tree.leaves(plain['net']), strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # The blocks are sampled, not relaxed: the plain loss gives the GATE nothing.
    assert float(optax.tree.norm(plain['gate'])) == 0.0
    norms.append(float(optax.tree.norm(with_score['gate'])))
  assert max(norms) > 0, norms  # two draws differ for some key and their losses differ


def test_reinforce_gives_no_gate_gradient_without_convolutions(reinforce_fx):
  params, grads = reinforce_fx
  ops = jnp.array([SKIP, POOL, SKIP, POOL, N, SKIP], jnp.int32)
  assert float(optax.tree.norm(grads(params, ops, _key(0))[0]['gate'])) == 0.0


# --- centred logits -------------------------------------------------------------------------------


def test_centred_logits_have_zero_mean_over_the_weighted_positions():
  logits = jax.random.normal(_key(0), (6, 3))
  weights = jnp.array([1, 0, 1, 1, 0, 1], bool)
  centred = np.asarray(gate_lib.centre_logits(logits, weights))
  np.testing.assert_allclose(centred[np.asarray(weights)].mean(0), 0.0, atol=1e-6)
  # Differences between positions stay; a constant per block (one for all positions) cancels.
  np.testing.assert_allclose(centred[0] - centred[2], logits[0] - logits[2], rtol=1e-5)
  shifted = gate_lib.centre_logits(logits + jnp.array([3.0, -1.0, 7.0]), weights)
  np.testing.assert_allclose(np.asarray(shifted), centred, atol=1e-5)


def test_centred_gate_ignores_the_output_bias():
  """With centring, the MLP's output bias (the architecture-independent part) gets no gradient
  and does not change the logits; without it, it does."""
  ops = jnp.array([C3, C1, SKIP, C3, C1, C3], jnp.int32)
  grads = {}
  for centre in (False, True):
    config = nb201_config.get_config('smoke')
    config.close.gate_center_logits = centre
    sn = supernet_lib.build_supernet(config, num_classes=10, num_blocks=2)
    gate = sn.gate.init(_key(0), ops, train=False)['params']
    w = jax.random.normal(_key(1), (6, 2))

    def f(gate, sn=sn, w=w):
      return jnp.sum(w * jax.nn.softmax(sn.gate_logits({'gate': gate}, ops, None, False), -1))

    grads[centre] = jax.grad(f)(gate)['mlp']['logits']['bias']
  scale = float(jnp.abs(grads[False]).max())
  assert scale > 1e-3
  assert float(jnp.abs(grads[True]).max()) < 1e-5 * scale  # zero up to float rounding


# --- the GATE's optimizer -------------------------------------------------------------------------


def _optim_cfg(**overrides) -> ml_collections.ConfigDict:
  cfg = dict(
    grad_clip_norm=0.0,
    weight_decay=5e-4,
    learning_rate=0.05,
    momentum=0.9,
    plateau_factor=0.5,
    plateau_patience=3,
  )
  return ml_collections.ConfigDict({**cfg, **overrides})


def test_adam_moves_the_gate_and_sgd_the_rest():
  """Three steps against numpy: torch-style SGD (decay before momentum) on 'net', AdamW (bias
  corrected, decoupled decay) on 'gate'."""
  lr, gate_lr, wd, gate_wd, mom = 0.05, 0.01, 5e-4, 0.1, 0.9
  tx = optim.make_optimizer(
    _optim_cfg(), gate_weight_decay=gate_wd, gate_optimizer='adam', gate_learning_rate=gate_lr
  )
  params = {'net': {'w': jnp.array([1.0, -2.0])}, 'gate': {'v': jnp.array([0.5, 3.0, -1.0])}}
  state = tx.init(params)
  net, gate = np.array([1.0, -2.0]), np.array([0.5, 3.0, -1.0])
  buf, m, v = np.zeros(2), np.zeros(3), np.zeros(3)
  for t in range(1, 4):
    g_net = np.array([0.3, -0.1]) * t
    g_gate = np.array([1e-5, -2e-6, 4e-6]) * t  # tiny: Adam's step does not depend on the scale
    grads = {'net': {'w': jnp.asarray(g_net)}, 'gate': {'v': jnp.asarray(g_gate)}}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    buf = mom * buf + (g_net + wd * net)
    net = net - lr * buf
    m = 0.9 * m + 0.1 * g_gate
    v = 0.999 * v + 0.001 * g_gate**2
    step = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    gate = gate - gate_lr * (step + gate_wd * gate)
    np.testing.assert_allclose(np.asarray(params['net']['w']), net, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(params['gate']['v']), gate, rtol=1e-5)
  assert abs(gate[0] - 0.5) > 0.02  # moved by ~gate_lr per step despite a 1e-5 gradient


def test_sgd_default_keeps_the_optimizer_state_layout():
  """The official default builds the same optax state as before the option existed, so older
  checkpoints restore."""
  cfg = _optim_cfg()
  params = {'net': {'w': jnp.ones(2)}, 'gate': {'v': jnp.ones(3)}}
  reference = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.add_decayed_weights(cfg.weight_decay),
    optax.sgd(cfg.learning_rate, momentum=cfg.momentum),
    optim.scale_by_plateau(),
  )
  assert jax.tree.structure(optim.make_optimizer(cfg).init(params)) == jax.tree.structure(
    reference.init(params)
  )


def test_adam_state_survives_srt_and_a_checkpoint(tmp_path):
  config = nb201_config.get_config('smoke')
  config.close.gate_optimizer = 'adam'
  tx = optim.from_config(config)
  params = {'net': {'w': jnp.ones(2)}, 'gate': {'v': jnp.ones(3)}}
  state = tx.init(params)
  grads = {'net': {'w': jnp.ones(2)}, 'gate': {'v': jnp.ones(3)}}
  for _ in range(3):
    _, state = tx.update(grads, state, params)
  restarted = optim.restart(tx, params, 0.25)
  assert float(optim.learning_rate(restarted, 0.05)) == pytest.approx(0.05)
  assert float(restarted[-1].best_value) == 0.25
  counts = [int(x) for x in jax.tree.leaves(restarted) if getattr(x, 'dtype', None) == jnp.int32]
  assert counts and not any(counts)  # Adam's step count starts again
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(1, state, {'epoch': 1})
  restored = ckpt.restore_state(1, jax.tree.map(jnp.zeros_like, state))
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ckpt.close()


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  'key, value, message',
  [
    ('gate_optimizer', 'rmsprop', "config.close.gate_optimizer='rmsprop'"),
    ('gate_learning_rate', 0.0, 'config.close.gate_learning_rate=0.0 is invalid'),
    ('gate_mix', 'soft', "config.close.gate_mix='soft'"),
    ('gate_anneal_steps', -1, 'config.close.gate_anneal_steps=-1 is invalid'),
    ('gate_final_temperature', 0.0, 'config.close.gate_final_temperature=0.0 is invalid'),
    ('gate_center_logits', 'yes', "config.close.gate_center_logits='yes'"),
  ],
)
def test_bad_gate_training_values_are_one_line_errors(key, value, message):
  config = nb201_config.get_config('smoke')
  with config.unlocked():  # as a hand-edited config.json could hold them (any type)
    del config.close[key]
    config.close[key] = value
  with pytest.raises(ValueError, match=r'^[^\n]+$') as error:
    config_check.validate(config)
  assert message in str(error.value)


def test_contradictory_gate_training_values_are_refused():
  config = nb201_config.get_config('smoke')
  config.close.gate_mix = 'soft_annealed'
  with pytest.raises(ValueError, match='gate_anneal_steps=0'):
    config_check.validate(config)
  config = nb201_config.get_config('smoke')
  config.close.gate_optimizer, config.close.gate_lr_multiplier = 'adam', 2.0
  with pytest.raises(ValueError, match='close.gate_learning_rate'):
    config_check.validate(config)


def test_older_configs_get_the_official_gate_training_and_resume_checks_it(tmp_path):
  config = nb201_config.get_config('smoke')
  saved = json.loads(config.to_json())
  for name in ('gate_optimizer', 'gate_mix', 'gate_center_logits', 'gate_anneal_steps'):
    del saved['close'][name]
  old = config_check.fill_later_keys(ml_collections.ConfigDict(saved))
  assert (old.close.gate_optimizer, old.close.gate_mix) == ('sgd', 'straight_through')
  assert old.close.gate_center_logits is False
  config_check.validate(old)
  changed = nb201_config.get_config('smoke')
  changed.close.gate_optimizer = 'adam'
  with pytest.raises(ValueError, match="config.close.gate_optimizer='adam' differs from 'sgd'"):
    config_check.check_resumable(json.loads(config.to_json()), changed, str(tmp_path))


def test_a_curriculum_switch_carries_the_adam_state():
  """At a switch the GATE's Adam moments are carried as the SGD momentum is: old entries keep
  theirs, the new block's logit starts from zero, shapes follow the grown parameters."""
  config = nb201_config.get_config('smoke')
  config.close.gate_optimizer = 'adam'
  config.optim.grad_clip_norm = 0.0  # the gradient of ones below arrives unscaled
  full = supernet_lib.build_supernet(config, num_classes=10)
  fresh = jax.jit(lambda k: full.init(k, (8, 8, 3)))(_key(0))
  tx = optim.from_config(config)
  params = {**fresh, 'net': surgery.slice_blocks(fresh['net'], 2)}
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = tx.update(grads, state.opt_state, params)
  state = state.replace(opt_state=opt_state)
  curriculum = curriculum_lib.from_config(config)
  grown = surgery.advance(state, tx, fresh, 3, curriculum.parent, 'sum', full.max_blocks)
  assert jax.tree.structure(grown.opt_state) == jax.tree.structure(tx.init(grown.params))
  adam = [s for s in jax.tree.leaves(grown.opt_state, is_leaf=_is_adam) if _is_adam(s)][0]
  mu = adam.mu['gate']['mlp']['logits']['kernel']  # (200, K): column k is block k's logit
  np.testing.assert_allclose(np.asarray(mu[:, :2]), 0.1)  # (1 - b1) * a gradient of 1
  np.testing.assert_array_equal(np.asarray(mu[:, 2]), 0.0)


def _is_adam(node) -> bool:
  return isinstance(node, optax.ScaleByAdamState)


# --- through the train step -----------------------------------------------------------------------


@pytest.mark.parametrize(
  'settings',
  [
    {'gate_mix': 'reinforce', 'gate_optimizer': 'adam', 'gate_center_logits': True},
    {'gate_mix': 'soft_annealed', 'gate_anneal_steps': 3},
  ],
)
def test_the_train_step_trains_the_gate_with_one_compile(settings):
  """The jitted train step at L=2: one trace for several architectures and for steps on both
  sides of the anneal's end, the GATE and the network both move, the loss is finite."""
  config = nb201_config.get_config('smoke')
  config.data.synthetic_num_train, config.batch_size = 64, 16
  for key, value in settings.items():
    config.close[key] = value
  config_check.validate(config)
  dataset = load_dataset(config.data)
  full = supernet_lib.build_supernet(config, dataset.num_classes)
  sn = supernet_lib.build_supernet(config, dataset.num_classes, num_blocks=2)
  fresh = jax.jit(lambda k: full.init(k, dataset.image_shape))(_key(0))
  params = {**fresh, 'net': surgery.slice_blocks(fresh['net'], 2)}
  tx = optim.from_config(config)
  state, step, counter, images, labels = counted_train_step(sn, tx, params, dataset)
  archs = jnp.array([[C3, C1, C3, C1, C3, C1], [C1, C3, SKIP, C3, C1, C3]] * 3, jnp.int32)
  before = jax.tree.map(np.asarray, state.params)
  for i, arch in enumerate(archs):
    state, metrics = step(state, images, labels, (jnp.arange(16) + i)[None], arch, _key(1))
    assert np.isfinite(float(metrics['loss']))
  assert counter.count == 1
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(moved['gate']['mlp'])), moved['gate']['mlp']
  assert any(jax.tree.leaves(moved['gate']['embedder'])) and any(jax.tree.leaves(moved['net']))
