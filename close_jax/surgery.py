"""Pytree surgery between jitted training segments: add blocks with WIT, carry optimizer state.

All functions are pure and run on whole pytrees. Cell weights carry a leading block axis, so a
curriculum step is "slice or grow axis 0 of every cell leaf", and the GATE's last layer keeps K
outputs throughout (the first L are used), so WIT there edits columns in place.

WIT (weight inheritance) for a new block x with parent p:
- 'sum'  (official aw_nas): block x = its own fresh initialisation + block p's trained weights;
  GATE logit x's weights and bias += logit p's (for the arch-level gate, whose last layer has
  6*K position-major outputs, only position 0's, exactly as the official `inherit` indexes it).
- 'copy': block x = block p, logit x = logit p at every position, and both biases - log 2:
  parent and child split the parent's probability evenly, so the distribution over the
  functions the network computes is unchanged, and with the inverse-CDF evaluation draw
  (`gate.sample_blocks`) every architecture's evaluation output is unchanged (the child is
  adjacent to its parent in block order, as with `parent(x) = x - 1`).
- 'none': block x and logit x keep their fresh initialisation (the ablation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

WIT_MODES = ('sum', 'copy', 'none')
GATE_OUTPUT = ('mlp', 'logits')  # the GATE layer whose outputs are the K block logits
GATE_HEAD_RESETS = ('none', 'official')


class GateHeadFreezeState(NamedTuple):
  frozen: jax.Array  # bool scalar: the GATE's output layer gets no update this step


def gate_head_freeze() -> optax.GradientTransformation:
  """Zeroes the update of the GATE's output layer while `frozen` (`close.gate_head_reset=
  'official'`).

  aw_nas (`CloseNet.on_epoch_start` / `NB201CloseNet`, `reconstruct_inherit`) wraps the WIT'd
  last MLP layer in new `nn.Parameter`s at every curriculum switch after the first, but its SGD
  optimizer is built once and rebuilt only at the SRT epoch (`MepaEvaluator.switch`), so the
  new layer is outside the optimizer until then: it still gets a gradient, and that gradient
  counts in the global-norm clipping over all parameters, but it is neither updated, decayed nor
  given momentum. With the shipped schedule that is (1-based) epochs 201-400 and 601-1000. After
  clipping and SGD, this zeroes exactly the layer's final update (decay and momentum included);
  `advance` sets the flag and `optim.restart` (a fresh `tx.init`) clears it.
  """

  def init(params):
    del params
    return GateHeadFreezeState(jnp.zeros((), bool))

  def update(updates, state, params=None):
    del params

    def freeze(path, update):
      if _is_gate_output(path):
        return jnp.where(state.frozen, jnp.zeros_like(update), update)
      return update

    return jax.tree_util.tree_map_with_path(freeze, updates), state

  return optax.GradientTransformation(init, update)


def _is_gate_output(path) -> bool:
  names = tuple(str(getattr(k, 'key', '')) for k in path[:3])
  return names == ('gate', *GATE_OUTPUT)


def freeze_gate_head(opt_state, frozen: bool = True):
  """The optimizer state with the GATE-head freeze flag set (unchanged without the freeze)."""
  if isinstance(opt_state, GateHeadFreezeState):
    return GateHeadFreezeState(jnp.asarray(frozen))
  if isinstance(opt_state, tuple) and not hasattr(opt_state, '_fields'):
    return tuple(freeze_gate_head(part, frozen) for part in opt_state)
  return opt_state


def _is_cell_leaf(path) -> bool:
  return str(getattr(path[0], 'key', '')).startswith('cell_')


def slice_blocks(net_params: dict, num_blocks: int) -> dict:
  """Keeps the first `num_blocks` blocks of every cell (the initial level of a curriculum)."""
  return jax.tree_util.tree_map_with_path(
    lambda path, leaf: leaf[:num_blocks] if _is_cell_leaf(path) else leaf, net_params
  )


def initial_params(fresh_params: dict, num_blocks: int, curriculum) -> dict:
  """`num_blocks` blocks per cell (the first level's count) from the K-block initial draw.

  Independent blocks (the first `num_blocks` draws) unless `curriculum.split_start`: then,
  as aw_nas's NDS supernet at its first epoch (`GermCloseWeightsManager.on_epoch_start(1)`, one
  `split_curriculum` per extra block), blocks 1..n-1 are grown from block 0 one split at a time
  with the run's WIT, so with 'sum' each is a chained sum of fresh draws (ResNet's block 6 is
  f6 + f5 + f3 + f0): correlated with block 0 and larger in norm, like the official blocks.
  """
  if not curriculum.split_start:
    return {**fresh_params, 'net': slice_blocks(fresh_params['net'], num_blocks)}
  net = slice_blocks(fresh_params['net'], 1)
  net = grow_blocks(net, fresh_params['net'], num_blocks, curriculum.parent, curriculum.wit)
  return {**fresh_params, 'net': net}


def grow_blocks(
  net_params: dict, fresh_net_params: dict, new_count: int, parent: Callable[[int], int], wit: str
) -> dict:
  """Adds blocks old_count..new_count-1 to every cell, each initialised by WIT from its parent."""

  def grow(path, leaf, fresh):
    if not _is_cell_leaf(path):
      return leaf
    blocks = list(leaf)
    for x in range(len(blocks), new_count):
      inherited = blocks[parent(x)]
      blocks.append({'sum': fresh[x] + inherited, 'copy': inherited, 'none': fresh[x]}[wit])
    return jnp.stack(blocks)

  return jax.tree_util.tree_map_with_path(grow, net_params, fresh_net_params)


def _logit_columns(leaf: jax.Array, max_blocks: int) -> jax.Array:
  """Views the last axis (edges x K for the arch-level gate, K for the node gate) as (..., K)."""
  return leaf.reshape(*leaf.shape[:-1], -1, max_blocks)


def wit_gate(
  gate_params: dict,
  fresh_gate_params: dict,
  new_blocks: range,
  parent: Callable[[int], int],
  wit: str,
  max_blocks: int,
) -> dict:
  """WIT on the GATE's output layer: logit x inherits from logit parent(x)."""
  out = gate_params[GATE_OUTPUT[0]][GATE_OUTPUT[1]]
  fresh = fresh_gate_params[GATE_OUTPUT[0]][GATE_OUTPUT[1]]
  layer = {}
  for name, leaf in out.items():
    cols = _logit_columns(leaf, max_blocks)
    fresh_cols = _logit_columns(fresh[name], max_blocks)
    for x in new_blocks:
      if wit == 'sum':
        # Official `inherit`: output unit x += unit x-1 of the flattened last layer. For the node
        # gate that is logit x; for the arch gate (position-major) only position 0's logit x.
        cols = cols.at[..., 0, x].add(cols[..., 0, parent(x)])
        continue
      p = cols[..., parent(x)]
      cols = cols.at[..., x].set({'copy': p, 'none': fresh_cols[..., x]}[wit])
      if wit == 'copy' and name == 'bias':
        cols = cols.at[..., [parent(x), x]].add(-math.log(2.0))
    layer[name] = cols.reshape(leaf.shape)
  mlp = {**gate_params[GATE_OUTPUT[0]], GATE_OUTPUT[1]: layer}
  return {**gate_params, GATE_OUTPUT[0]: mlp}


def new_entry_mask(params: dict, old_count: int, new_count: int, max_blocks: int) -> dict:
  """True (leaf-shaped) where an entry becomes active at this switch: blocks old..new-1 of every
  cell and their GATE logits. Logits of blocks that are still inactive keep their state."""

  def mask(path, leaf):
    names = [str(getattr(k, 'key', '')) for k in path]
    if names[0] == 'net' and names[1].startswith('cell_'):
      block = jnp.arange(leaf.shape[0]).reshape(-1, *([1] * (leaf.ndim - 1)))
    elif names[0] == 'gate' and tuple(names[1:3]) == GATE_OUTPUT:
      block = jnp.arange(leaf.shape[-1]) % max_blocks
    else:
      return jnp.zeros(leaf.shape, bool)
    return jnp.broadcast_to((block >= old_count) & (block < new_count), leaf.shape)

  return jax.tree_util.tree_map_with_path(mask, params)


def carry_opt_state(tx: optax.GradientTransformation, opt_state, new_params: dict, is_new: dict):
  """Optimizer state for the grown params: old entries keep their momentum, new ones start at
  zero, and non-parameter state (the plateau controller) is kept as it is."""

  def carry(old, new_param, new_mask):
    pad = [(0, n - o) for n, o in zip(new_param.shape, old.shape, strict=True)]
    return jnp.where(new_mask, jnp.zeros_like(new_param), jnp.pad(old, pad))

  return optax.tree_utils.tree_map_params(tx, carry, opt_state, new_params, is_new)


def advance(
  state,
  tx: optax.GradientTransformation,
  fresh_params: dict,
  new_count: int,
  parent: Callable[[int], int],
  wit: str,
  max_blocks: int,
):
  """The whole switch: grow every cell to `new_count` blocks, WIT on the GATE, carry momentum.

  `state` is a TrainState; `fresh_params` is the K-block initialisation of the run (the same draw
  the first level was sliced from), which supplies each new block's own initial weights.
  """
  old_count = next(
    leaf.shape[0]
    for path, leaf in jax.tree_util.tree_flatten_with_path(state.params['net'])[0]
    if _is_cell_leaf(path)
  )
  params = {'net': grow_blocks(state.params['net'], fresh_params['net'], new_count, parent, wit)}
  if 'gate' in state.params:
    params['gate'] = wit_gate(
      state.params['gate'],
      fresh_params['gate'],
      range(old_count, new_count),
      parent,
      wit,
      max_blocks,
    )
  is_new = new_entry_mask(params, old_count, new_count, max_blocks)
  opt_state = carry_opt_state(tx, state.opt_state, params, is_new)
  # close.gate_head_reset='official': the switch puts the GATE's output layer outside the
  # optimizer until the next SRT (a no-op when the optimizer has no freeze, or without a GATE)
  opt_state = freeze_gate_head(opt_state, True)
  return state.replace(params=params, opt_state=opt_state)
