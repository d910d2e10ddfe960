"""Tests for the curriculum and the pytree surgery between its levels (WIT, optimizer-state carry).

Expected values are recomputed with numpy from the params before the switch; the network is only
run for the claim that a WIT=copy switch leaves the evaluation logits unchanged.
"""

import dataclasses
import importlib
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from close_jax import config_check, evaluate, optim, surgery
from close_jax import curriculum as curriculum_lib
from close_jax import supernet as supernet_lib
from close_jax.spaces import nb201
from close_jax.train_step import TrainState
from configs import nb201 as nb201_config

K = 3  # blocks of the smoke config (cl_schedule (0, 3, 6))
NUM_EDGES = 6
IMAGE_SHAPE = (8, 8, 3)
LOGITS = ('gate', 'mlp', 'logits')


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl='rbg')


def _config(**close):
  config = nb201_config.get_config('smoke')
  for name, value in close.items():
    config.close[name] = value
  return config


def _np(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


def _path_names(path) -> tuple[str, ...]:
  return tuple(str(k.key) for k in path)


def _leaves(tree) -> dict[tuple[str, ...], np.ndarray]:
  return {_path_names(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _is_cell(names: tuple[str, ...]) -> bool:
  return names[0] == 'net' and names[1].startswith('cell_')


def _is_logits(names: tuple[str, ...]) -> bool:
  return names[:3] == LOGITS


def _perturb(params, seed: int, scale: float = 0.05):
  """Stands in for training: every leaf moves away from its fresh value."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
    lambda x: jnp.asarray(x + scale * rng.standard_normal(x.shape).astype(np.float32)), params
  )


def _random_like(shapes, seed: int):
  """Random params with the structure of `jax.eval_shape` output (cheap stand-in for an init)."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
    lambda s: jnp.asarray(rng.standard_normal(s.shape).astype(np.float32)), shapes
  )


def _cols(leaf: np.ndarray) -> np.ndarray:
  """Logit-layer leaf as (..., edges_or_1, K): column e*K + x is [..., e, x]."""
  return leaf.reshape(*leaf.shape[:-1], -1, K)


@dataclasses.dataclass
class Setup:
  config: object
  supernet: supernet_lib.Supernet  # K blocks
  fresh: dict  # the K-block initial draw
  tx: object
  curriculum: curriculum_lib.Curriculum

  def initial_state(self, num_blocks: int, params: dict | None = None) -> TrainState:
    """As `train.Run.initial_state`: the fresh draw sliced to `num_blocks` blocks."""
    params = self.fresh if params is None else params
    params = {**params, 'net': surgery.slice_blocks(params['net'], num_blocks)}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params))

  def trained_state(self, num_blocks: int, seed: int = 1) -> TrainState:
    """A state whose params differ from the fresh draw everywhere (as after training)."""
    state = self.initial_state(num_blocks)
    return state.replace(params=_perturb(state.params, seed))


@pytest.fixture(scope='module')
def setup():
  config = _config()
  supernet = supernet_lib.build_supernet(config, num_classes=10)
  fresh = jax.jit(lambda k: supernet.init(k, IMAGE_SHAPE))(_key(0))
  tx = optim.make_optimizer(config.optim)
  return Setup(config, supernet, fresh, tx, curriculum_lib.from_config(config))


def _advance(setup: Setup, state, new_count: int, wit: str, fresh=None, parent=None):
  return surgery.advance(
    state,
    setup.tx,
    setup.fresh if fresh is None else fresh,
    new_count,
    parent or setup.curriculum.parent,
    wit,
    K,
  )


# --- slice_blocks ---------------------------------------------------------------------------------


@pytest.mark.parametrize('num_blocks', [1, 2, 3])
def test_slice_blocks_keeps_first_blocks_of_cells_only(setup, num_blocks):
  sliced = _leaves(surgery.slice_blocks(setup.fresh['net'], num_blocks))
  full = _leaves(setup.fresh['net'])
  assert sliced.keys() == full.keys()
  cells = 0
  for names, leaf in full.items():
    if names[0].startswith('cell_'):
      cells += 1
      assert leaf.shape[0] == K
      assert np.array_equal(sliced[names], leaf[:num_blocks])
    else:
      assert np.array_equal(sliced[names], leaf)
  assert cells == 6  # 3 cells x (conv1x1, conv3x3)


# --- WIT ------------------------------------------------------------------------------------------


def _check_untouched(before: dict, after: dict):
  """Every leaf that is neither a cell nor the gate's logit layer is carried over exactly."""
  for names, leaf in before.items():
    if not _is_cell(names) and not _is_logits(names):
      assert np.array_equal(after[names], leaf), names


def test_wit_sum_new_block_is_fresh_plus_parent(setup):
  state = setup.trained_state(1)
  before, fresh = _leaves(state.params), _leaves(setup.fresh)
  after = _leaves(_advance(setup, state, 2, 'sum').params)
  assert after.keys() == before.keys()
  for names, leaf in before.items():
    if _is_cell(names):
      assert after[names].shape == (2, *leaf.shape[1:])
      assert np.array_equal(after[names][0], leaf[0])
      assert np.array_equal(after[names][1], fresh[names][1] + leaf[0])
      assert not np.array_equal(after[names][1], leaf[0])
    elif _is_logits(names):
      old, new = _cols(leaf), _cols(after[names])
      assert new.shape == old.shape
      assert np.array_equal(new[..., 1], old[..., 1] + old[..., 0])
      assert np.array_equal(new[..., 0], old[..., 0])
      assert np.array_equal(new[..., 2], old[..., 2])
  _check_untouched(before, after)


def test_wit_sum_two_levels_chain_through_parents(setup):
  """1 -> 3 in one advance: block 2 inherits from the new block 1 (parent = previous block)."""
  state = setup.trained_state(1)
  before, fresh = _leaves(state.params), _leaves(setup.fresh)
  after = _leaves(_advance(setup, state, 3, 'sum').params)
  for names, leaf in before.items():
    if _is_cell(names):
      block1 = fresh[names][1] + leaf[0]
      assert np.array_equal(after[names][1], block1)
      assert np.array_equal(after[names][2], fresh[names][2] + block1)
    elif _is_logits(names):
      old, new = _cols(leaf), _cols(after[names])
      col1 = old[..., 1] + old[..., 0]
      assert np.array_equal(new[..., 1], col1)
      assert np.array_equal(new[..., 2], old[..., 2] + col1)


@pytest.fixture(scope='module')
def arch_gate(setup):
  """Params of the `gate=arch` supernet (real structure, random values: no init compile)."""
  config = _config(gate='arch')
  supernet = supernet_lib.build_supernet(config, num_classes=10)
  shapes = jax.eval_shape(lambda k: supernet.init(k, IMAGE_SHAPE), _key(0))
  kernel = shapes['gate']['mlp']['logits']['kernel']
  assert kernel.shape == (200, NUM_EDGES * K)
  trained = {'net': setup.fresh['net'], 'gate': _random_like(shapes['gate'], 1)}
  fresh = {'net': setup.fresh['net'], 'gate': _random_like(shapes['gate'], 2)}
  logits = jax.jit(lambda p, ops: supernet.gate.apply({'params': p}, ops, train=False))
  return trained, fresh, logits


@pytest.mark.parametrize('transition', [(1, 2), (2, 3)])
def test_wit_sum_arch_gate_edits_the_one_official_row(setup, arch_gate, transition):
  """aw_nas `inherit` does w[x] += w[x-1] on the (6*K, 200) last layer: output unit x is
  position 0's logit x in the position-major layout, so only that one is inherited."""
  old_count, new_count = transition
  trained, fresh, _ = arch_gate
  state = setup.initial_state(old_count, trained)
  before = state.params['gate']['mlp']['logits']
  after = _advance(setup, state, new_count, 'sum', fresh=fresh).params['gate']['mlp']['logits']
  for name in ('kernel', 'bias'):
    old, new = np.asarray(before[name]), np.asarray(after[name])
    assert new.shape == old.shape
    expected = old.copy()
    x, p = new_count - 1, old_count - 1
    expected[..., x] = old[..., x] + old[..., p]
    assert np.array_equal(new, expected), name
    assert not np.array_equal(new, old), name


def test_wit_copy_arch_gate_duplicates_each_edges_logit(setup, arch_gate):
  """Behavioural check of the edge-major order: after a copy, the gate's logit for the new block
  equals its parent's on every edge (a block-major mix-up would mix edges)."""
  trained, fresh, logits = arch_gate
  state = setup.initial_state(1, trained)
  new = _advance(setup, state, 2, 'copy', fresh=fresh).params['gate']
  ops = jnp.array([3, 2, 1, 4, 3, 2], jnp.int32)
  old_out = np.asarray(logits(trained['gate'], ops))
  new_out = np.asarray(logits(new, ops))
  assert old_out.shape == (NUM_EDGES, K)
  np.testing.assert_allclose(new_out[:, 1], new_out[:, 0], rtol=1e-6, atol=1e-6)
  # Parent and child split the parent's probability evenly: both logits are the parent's - log 2.
  np.testing.assert_allclose(new_out[:, 0], old_out[:, 0] - np.log(2.0), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(new_out[:, 2], old_out[:, 2], rtol=1e-6, atol=1e-6)
  assert np.abs(old_out[:, 1] - old_out[:, 0]).max() > 1e-3  # it was not equal before


@pytest.mark.parametrize('transition', [(1, 2), (2, 3)])
def test_wit_copy_new_block_equals_parent(setup, transition):
  old_count, new_count = transition
  state = setup.trained_state(old_count)
  before = _leaves(state.params)
  after = _leaves(_advance(setup, state, new_count, 'copy').params)
  x, p = new_count - 1, old_count - 1
  for names, leaf in before.items():
    if _is_cell(names):
      assert np.array_equal(after[names][:old_count], leaf)
      assert np.array_equal(after[names][x], leaf[p])
    elif _is_logits(names):
      old, new = _cols(leaf), _cols(after[names])
      shift = np.log(2.0) if names[-1] == 'bias' else 0.0
      np.testing.assert_allclose(new[..., x], old[..., p] - shift, rtol=0, atol=1e-6)
      np.testing.assert_allclose(new[..., p], old[..., p] - shift, rtol=0, atol=1e-6)
      others = [b for b in range(K) if b not in (x, p)]
      assert np.array_equal(new[..., others], old[..., others])
  _check_untouched(before, after)


def test_wit_none_new_block_is_fresh(setup):
  state = setup.trained_state(2)
  before, fresh = _leaves(state.params), _leaves(setup.fresh)
  after = _leaves(_advance(setup, state, 3, 'none').params)
  for names, leaf in before.items():
    if _is_cell(names):
      assert np.array_equal(after[names][:2], leaf)
      assert np.array_equal(after[names][2], fresh[names][2])
    elif _is_logits(names):
      old, new = _cols(leaf), _cols(after[names])
      assert np.array_equal(new[..., 2], _cols(fresh[names])[..., 2])
      assert np.array_equal(new[..., :2], old[..., :2])
  _check_untouched(before, after)


# --- WIT=copy keeps the evaluation function -------------------------------------------------------


@pytest.fixture(scope='module')
def eval_logits(setup):
  """eval_logits(L)(params, archs) -> logits (archs, batch, 10) of the L-block supernet, each arch
  with its evaluation key `evaluate.arch_key(EVAL_KEY, ops, space)` as the ranking uses."""
  x = jax.random.normal(_key(11), (4, *IMAGE_SHAPE))
  eval_key = _key(123)
  cache = {}

  def get(num_blocks: int):
    if num_blocks not in cache:
      sn = supernet_lib.build_supernet(setup.config, num_classes=10, num_blocks=num_blocks)

      def run(params, archs):
        return jax.lax.map(
          lambda ops: sn.apply(
            params, x, ops, evaluate.arch_key(eval_key, ops, sn.space), train=False
          ),
          archs,
        )

      cache[num_blocks] = jax.jit(run)
    return cache[num_blocks]

  return get


def _make_blocks_differ(state: TrainState, block: int, seed: int) -> TrainState:
  """Moves block `block` of every cell and the gate's logit column `block` (as training would)."""
  rng = np.random.default_rng(seed)

  def move(path, leaf):
    names = _path_names(path)
    if _is_cell(names):
      return leaf.at[block].add(0.3 * rng.standard_normal(leaf.shape[1:]).astype(np.float32))
    if _is_logits(names):
      cols = leaf.reshape(*leaf.shape[:-1], -1, K)
      noise = rng.standard_normal(cols.shape[:-1]).astype(np.float32)
      return cols.at[..., block].add(noise).reshape(leaf.shape)
    return leaf

  return state.replace(params=jax.tree_util.tree_map_with_path(move, state.params))


@pytest.mark.parametrize(
  'transition',
  [
    (1, 2),
    (2, 3),
  ],
)
def test_wit_copy_switch_keeps_evaluation_logits(setup, eval_logits, transition):
  old_count, new_count = transition
  state = setup.trained_state(1)
  if old_count == 2:
    state = _make_blocks_differ(_advance(setup, state, 2, 'copy'), block=1, seed=5)
  archs = nb201.sample(jax.random.key(3), 10)
  before = np.asarray(eval_logits(old_count)(state.params, archs))
  after_state = _advance(setup, state, new_count, 'copy')
  after = np.asarray(eval_logits(new_count)(after_state.params, archs))
  assert before.shape == after.shape == (10, 4, 10)
  assert np.abs(before).max() > 1e-2
  np.testing.assert_allclose(after, before, atol=1e-5, rtol=1e-5)


def test_wit_sum_switch_does_change_evaluation_logits(setup, eval_logits):
  """Contrast for the copy test: with WIT=sum the new block differs from its parent, so the
  comparison above does detect a changed function."""
  state = setup.trained_state(1)
  archs = nb201.sample(jax.random.key(3), 10)
  before = np.asarray(eval_logits(1)(state.params, archs))
  after = np.asarray(eval_logits(2)(_advance(setup, state, 2, 'sum').params, archs))
  changed = np.abs(after - before).max(axis=(1, 2)) > 1e-3
  assert changed.any()


# --- Optimizer state carry ------------------------------------------------------------------------


def _train_updates(setup: Setup, state: TrainState, num: int, seed: int) -> TrainState:
  """`num` real optimizer updates with random gradients (the momentum becomes non-zero)."""
  update = jax.jit(setup.tx.update)
  rng = np.random.default_rng(seed)
  params, opt_state = state.params, state.opt_state
  for i in range(num):
    grads = jax.tree_util.tree_map(
      lambda x: jnp.asarray(rng.standard_normal(x.shape).astype(np.float32)), params
    )
    updates, opt_state = update(grads, opt_state, params)
    # An epoch end after each update steps the plateau controller away from its initial state.
    opt_state = optim.end_of_epoch(opt_state, 2.0 - 0.1 * i, setup.config.optim)
    params = jax.tree_util.tree_map(jnp.add, params, updates)
  return state.replace(step=state.step + num, params=params, opt_state=opt_state)


@pytest.mark.parametrize('transition', [(1, 2), (2, 3)])
def test_advance_carries_momentum_and_plateau_state(setup, transition):
  old_count, new_count = transition
  state = _train_updates(setup, setup.initial_state(old_count), num=3, seed=old_count)
  new = _advance(setup, state, new_count, 'sum')
  assert int(new.step) == int(state.step) == 3

  old_trace = _leaves(state.opt_state[2][0].trace)
  new_trace = _leaves(new.opt_state[2][0].trace)
  new_params = _leaves({'x': new.params})
  assert new_trace.keys() == old_trace.keys()
  for names, old in old_trace.items():
    new_leaf = new_trace[names]
    assert new_leaf.shape == new_params[('x', *names)].shape
    assert np.abs(old).max() > 0, names  # momentum really is non-zero before the switch
    if _is_cell(names):
      assert np.array_equal(new_leaf[:old_count], old)
      assert np.array_equal(new_leaf[old_count:new_count], np.zeros_like(new_leaf[old_count:]))
    elif _is_logits(names):
      old_cols, new_cols = _cols(old), _cols(new_leaf)
      assert np.array_equal(new_cols[..., :old_count], old_cols[..., :old_count])
      assert not np.any(new_cols[..., old_count:new_count])
    else:
      assert np.array_equal(new_leaf, old), names

  old_plateau, new_plateau = state.opt_state[-1], new.opt_state[-1]
  assert float(old_plateau.best_value) == pytest.approx(1.8)  # three epoch ends stepped it
  for a, b in zip(
    jax.tree_util.tree_leaves(old_plateau), jax.tree_util.tree_leaves(new_plateau), strict=True
  ):
    assert np.array_equal(a, b)
  assert type(new_plateau) is type(old_plateau)


# --- new_entry_mask -------------------------------------------------------------------------------


@pytest.mark.parametrize('old_count', [1, 2])
def test_new_entry_mask_node_gate(setup, old_count):
  new_count = old_count + 1
  mask = _leaves(surgery.new_entry_mask(setup.fresh, old_count, new_count, K))
  params = _leaves(setup.fresh)
  assert mask.keys() == params.keys()
  for names, m in mask.items():
    shape = params[names].shape
    assert m.shape == shape, names
    assert m.dtype == np.bool_
    m = np.broadcast_to(m, shape)
    if _is_cell(names):
      for b in range(K):
        active = old_count <= b < new_count
        assert m[b].all() if active else not m[b].any(), (names, b)
    elif _is_logits(names):
      assert m.shape[-1] == K
      for b in range(K):
        active = old_count <= b < new_count
        assert m[..., b].all() if active else not m[..., b].any(), (names, b)
    else:
      assert not m.any(), names


def test_new_entry_mask_arch_gate(setup, arch_gate):
  trained, _, _ = arch_gate
  mask = surgery.new_entry_mask(trained, 1, 2, K)['gate']['mlp']['logits']
  for name in ('kernel', 'bias'):
    m = np.asarray(mask[name])
    assert m.shape[-1] == NUM_EDGES * K
    columns = np.arange(NUM_EDGES * K)
    expected_cols = columns % K == 1  # column e*K + x belongs to block x
    assert np.array_equal(m, np.broadcast_to(expected_cols, m.shape)), name


# --- CLOSE-S --------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def close_s():
  config = nb201_config.get_config('smoke')
  config.method = 'close_s'
  curriculum = curriculum_lib.from_config(config)
  supernet = supernet_lib.build_supernet(config, num_classes=10)
  shapes = jax.eval_shape(lambda k: supernet.init(k, IMAGE_SHAPE), _key(0))
  return config, curriculum, shapes


def test_close_s_curriculum(close_s):
  config, curriculum, shapes = close_s
  assert curriculum.block_counts == (1, 6)
  assert curriculum.start_epochs == (0, config.close.close_s_switch_epoch)
  assert curriculum.max_blocks == 6
  assert [curriculum.parent(x) for x in range(1, 6)] == [0] * 5
  assert set(shapes) == {'net'}  # CLOSE-S has no gate
  assert shapes['net']['cell_0']['conv3x3'].shape[0] == 6


@pytest.mark.parametrize('wit', ['copy', 'sum'])
def test_close_s_split_derives_all_blocks_from_block_0(close_s, wit):
  config, curriculum, shapes = close_s
  fresh = _random_like(shapes, seed=7)
  trained = _perturb({'net': surgery.slice_blocks(fresh['net'], 1)}, seed=8)
  tx = optim.make_optimizer(config.optim)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=trained, opt_state=tx.init(trained))
  new = surgery.advance(state, tx, fresh, 6, curriculum.parent, wit, curriculum.max_blocks)
  before, after, fresh = _leaves(trained), _leaves(new.params), _leaves(fresh)
  assert 'gate' not in new.params
  for names, leaf in before.items():
    if _is_cell(names):
      assert after[names].shape == (6, *leaf.shape[1:])
      for x in range(6):
        expected = leaf[0] if wit == 'copy' or x == 0 else fresh[names][x] + leaf[0]
        assert np.array_equal(after[names][x], expected), (names, x)
    else:
      assert np.array_equal(after[names], leaf), names
  new_trace = _leaves(new.opt_state[2][0].trace)
  for names, leaf in new_trace.items():
    assert leaf.shape == after[names].shape


# --- curriculum.from_config -----------------------------------------------------------------------


def test_level_at_default_schedule():
  curriculum = curriculum_lib.from_config(nb201_config.get_config())
  assert curriculum.block_counts == (1, 2, 3, 4, 5)
  assert curriculum.max_blocks == 5
  epochs = (0, 199, 200, 799, 800, 999)
  assert [curriculum.level_at(e) for e in epochs] == [0, 0, 1, 3, 4, 4]
  assert [curriculum.blocks_at(e) for e in epochs] == [1, 1, 2, 4, 5, 5]
  assert [curriculum.parent(x) for x in range(1, 5)] == [0, 1, 2, 3]


def test_blocks_sharing_a_start_epoch_are_added_together():
  curriculum = curriculum_lib.from_config(_config(cl_schedule=(0, 0, 0, 10, 10, 20)))
  assert curriculum.block_counts == (3, 5, 6) and curriculum.start_epochs == (0, 10, 20)
  assert [curriculum.blocks_at(e) for e in (0, 9, 10, 19, 20)] == [3, 3, 5, 5, 6]


@pytest.mark.parametrize('schedule', [(5, 10), (0, 10, 5), (), (0, 20, 10)])
def test_malformed_schedule_names_the_config_value(schedule):
  config = _config(cl_schedule=schedule)
  with pytest.raises(ValueError, match=r'config\.close\.cl_schedule'):
    curriculum_lib.from_config(config)


def _aw_nas_pre_splits(num_positions: int, num_curriculums: int, count: int):
  """(parent, new) of each split that takes aw_nas's NDS supernet from 1 to `count` blocks:
  `GermCloseWeightsManager.new_curriculum(1, count, 'pre')` transcribed, its quirks included."""
  groups = {0: (0, num_positions)}
  out = []
  for _ in range(1, count):
    ind, pos = 0, num_curriculums + 1
    for key, (left, right) in groups.items():
      if right - left > 1 and left < pos:
        ind, pos = key, left
    left, right = groups[ind]
    groups[ind] = (left, (left + right) // 2)
    out.append((ind, len(groups)))
    groups[len(groups)] = ((left + right) // 2, right)
  return out


@pytest.mark.parametrize(
  ('name', 'positions', 'max_blocks'), [('nds_resnet', 23, 17), ('nds_resnexta', 15, 13)]
)
def test_nds_starting_blocks_are_chained_sums_of_fresh_draws(name, positions, max_blocks):
  """aw_nas builds the 9 starting blocks with 8 splits at epoch 1, each adding the parent's
  weights to the new block's own init; `start_blocks='independent'` keeps 9 plain draws."""
  config = importlib.import_module(f'configs.{name}').get_config()
  curriculum = curriculum_lib.from_config(config)
  assert curriculum.block_counts[0] == 9 and curriculum.split_start
  rng = np.random.default_rng(0)
  fresh = {
    'net': {
      'cell_stage0': {'conv1': rng.normal(size=(max_blocks, 3, 2)).astype(np.float32)},
      'cell_stage2': {'c': rng.normal(size=(max_blocks, 4)).astype(np.float32)},
      'first_0_proj': rng.normal(size=(2, 2)).astype(np.float32),
    }
  }
  params = _np(surgery.initial_params(jax.tree.map(jnp.asarray, fresh), 9, curriculum))
  for cell, leaf in (('cell_stage0', 'conv1'), ('cell_stage2', 'c')):
    f = fresh['net'][cell][leaf]
    blocks = {0: f[0]}
    for parent, new in _aw_nas_pre_splits(positions, max_blocks, 9):
      blocks[new] = f[new] + blocks[parent]
    expected = np.stack([blocks[b] for b in range(9)])
    np.testing.assert_allclose(params['net'][cell][leaf], expected, rtol=1e-6)
    if name == 'nds_resnet':
      np.testing.assert_allclose(params['net'][cell][leaf][6], f[6] + f[5] + f[3] + f[0], 1e-6)
  assert np.array_equal(params['net']['first_0_proj'], fresh['net']['first_0_proj'])
  config.close.start_blocks = 'independent'
  curriculum = curriculum_lib.from_config(config)
  params = _np(surgery.initial_params(jax.tree.map(jnp.asarray, fresh), 9, curriculum))
  assert np.array_equal(
    params['net']['cell_stage0']['conv1'], fresh['net']['cell_stage0']['conv1'][:9]
  )
  config.close.start_blocks = 'chained'
  with pytest.raises(ValueError, match="config.close.start_blocks='chained'"):
    curriculum_lib.from_config(config)


# --- close.gate_head_reset='official' -------------------------------------------------------------


def test_official_gate_head_reset_freezes_the_head_from_a_switch_to_the_next_srt(setup):
  """aw_nas's GATE output layer after a switch is a new parameter outside the optimizer until
  the SRT rebuilds it: its value is the WIT'd layer, and it gets no update (no step, decay or
  momentum) until then, while every other parameter trains exactly as without the option (its
  gradient still counts in the clipping norm, as in aw_nas's clip over all parameters)."""
  official = dataclasses.replace(
    setup, tx=optim.make_optimizer(setup.config.optim, gate_head_reset='official')
  )
  start = official.trained_state(1)
  before = _train_updates(official, start, num=2, seed=3)  # level 1: the head trains
  reference = _train_updates(setup, setup.trained_state(1), num=2, seed=3)
  assert not np.array_equal(
    _leaves(before.params)[(*LOGITS, 'kernel')], _leaves(start.params)[(*LOGITS, 'kernel')]
  )
  for names, leaf in _leaves(before.params).items():
    assert np.array_equal(leaf, _leaves(reference.params)[names]), names

  switched = _advance(official, before, 2, 'sum')
  plain = _advance(setup, reference, 2, 'sum')
  assert _leaves(switched.params).keys() == _leaves(plain.params).keys()
  for names, leaf in _leaves(switched.params).items():  # the WIT'd head, not a re-draw
    assert np.array_equal(leaf, _leaves(plain.params)[names]), names

  frozen = _train_updates(official, switched, num=3, seed=4)
  trained = _train_updates(setup, plain, num=3, seed=4)
  head_kept = 0
  for names, leaf in _leaves(frozen.params).items():
    if _is_logits(names):
      assert np.array_equal(leaf, _leaves(switched.params)[names]), names
      assert not np.array_equal(_leaves(trained.params)[names], leaf), names
      head_kept += 1
    else:
      np.testing.assert_allclose(leaf, _leaves(trained.params)[names], rtol=1e-6, atol=1e-7)
  assert head_kept == 2  # kernel and bias

  restarted = frozen.replace(opt_state=optim.restart(official.tx, frozen.params, 1.0))
  after_srt = _leaves(_train_updates(official, restarted, num=1, seed=5).params)
  for names, leaf in _leaves(frozen.params).items():  # the SRT puts the head back in training
    if _is_logits(names):
      assert not np.array_equal(after_srt[names], leaf), names


def test_gate_head_reset_none_adds_no_optimizer_state(setup):
  """The default keeps the optimizer (and so every checkpoint) as it was."""
  params = setup.initial_state(1).params
  none = optim.make_optimizer(setup.config.optim, gate_head_reset='none').init(params)
  assert jax.tree_util.tree_structure(none) == jax.tree_util.tree_structure(setup.tx.init(params))
  untouched = surgery.freeze_gate_head(none)  # a switch of a default run adds no flag
  assert jax.tree_util.tree_structure(untouched) == jax.tree_util.tree_structure(none)
  official = optim.make_optimizer(setup.config.optim, gate_head_reset='official')
  flags = [s for s in official.init(params) if isinstance(s, surgery.GateHeadFreezeState)]
  assert len(flags) == 1 and not bool(flags[0].frozen)


def test_gate_head_reset_is_validated_and_kept_on_resume():
  config = _config(gate_head_reset='always')
  with pytest.raises(ValueError, match="config.close.gate_head_reset='always' is not supported"):
    config_check.validate(config)
  saved = json.loads(_config().to_json())  # a run saved with the default 'none'
  with pytest.raises(ValueError, match="config.close.gate_head_reset='official' differs from"):
    config_check.check_resumable(saved, _config(gate_head_reset='official'), '/tmp/run')
  del saved['close']['gate_head_reset']  # a run saved before the key: it gets 'none'
  assert config_check.fill_later_keys(ml_collections.ConfigDict(saved)).close.gate_head_reset == (
    'none'
  )
