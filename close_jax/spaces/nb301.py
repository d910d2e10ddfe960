"""The NAS-Bench-301 (DARTS) cell search space.

A genotype has a normal and a reduce cell. Each cell has 2 input nodes (0: the output of cell
k-2, 1: of cell k-1) and 4 intermediate nodes 2..5; node j takes 2 distinct earlier nodes, each
through one op, and the cell output concatenates nodes 2..5. close_jax encodes a genotype as an
int32 array of shape (2, 8, 2): [cell (normal, reduce)][edge 2(j-2) + t][(op index, input)],
edges in the order of the DARTS `Genotype` string, so parsing and printing need no reordering.
Everything except `sample` is plain numpy.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

OPS = (
  'max_pool_3x3',
  'avg_pool_3x3',
  'skip_connect',
  'sep_conv_3x3',
  'sep_conv_5x5',
  'dil_conv_3x3',
  'dil_conv_5x5',
)
NUM_OPS = len(OPS)
CELLS = ('normal', 'reduce')
NUM_INPUT_NODES = 2
NUM_INTERMEDIATE = 4
EDGES_PER_CELL = 2 * NUM_INTERMEDIATE
ARCH_SHAPE = (len(CELLS), EDGES_PER_CELL, 2)
CONCAT = list(range(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_INTERMEDIATE))
# Candidate edges of a cell (one-shot DARTS supernet): (input i -> node j) for i < j, j = 2..5.
CANDIDATES = tuple(
  (i, j) for j in range(2, 2 + NUM_INTERMEDIATE) for i in range(j)
)  # 2 + 3 + 4 + 5 = 14
NUM_CANDIDATES = len(CANDIDATES)


# Published cells by name (final training's `config.genotype`). Only cells exactly expressible in
# this space are here (its 7 ops, 4 intermediate nodes, concat of nodes 2-5): DARTS (quark0/darts
# `cnn/genotypes.py`), PC-DARTS (yuhuixu1993/PC-DARTS `genotypes.py`, the CIFAR-10 and the
# ImageNet cell) and P-DARTS (chenxin061/pdarts `genotypes.py`). NASNet and AmoebaNet use 5
# intermediate nodes, other concat sets and 7x7 / 1x7-7x1 convolutions, and ENAS's cell has 5
# nodes: none of them fits.
PUBLISHED = {
  'DARTS_V1': (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
  ),
  'DARTS_V2': (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
  ),
  'PC_DARTS': (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), "
    "('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), "
    "('dil_conv_3x3', 1)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_5x5', 1), "
    "('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=[2, 3, 4, 5])"
  ),
  'PC_DARTS_IMAGENET': (
    "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), "
    "('skip_connect', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), "
    "('dil_conv_5x5', 4)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_3x3', 0), "
    "('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 2), "
    "('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 3)], reduce_concat=[2, 3, 4, 5])"
  ),
  'PDARTS': (
    "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), "
    "('dil_conv_5x5', 4)], normal_concat=[2, 3, 4, 5], reduce=[('avg_pool_3x3', 0), "
    "('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), "
    "('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=[2, 3, 4, 5])"
  ),
}
PUBLISHED['DARTS'] = PUBLISHED['DARTS_V2']  # the name quark0/darts trains by default


def reduction_layers(num_layers: int) -> tuple[int, ...]:
  """The layers of an `num_layers`-cell DARTS network that reduce (stride 2, channels x2).

  As DARTS and aw_nas (`CNNSearchSpace`: `cell_layout[num_layers // 3] = 1` and
  `cell_layout[2 * num_layers // 3] = 1`): 8 layers reduce at 2 and 5 (channels 16, 16, 32, 32,
  32, 64, 64, 64 at C=16), 20 layers at 6 and 13. Shared by the supernet and the closed-form
  parameter count, so the two cannot disagree.
  """
  if num_layers < 1:
    raise ValueError(f'num_layers={num_layers!r}: expected at least one layer')
  return tuple(sorted({num_layers // 3, 2 * num_layers // 3}))


_OP_INDEX = {name: i for i, name in enumerate(OPS)}
_PAIR = re.compile(r"\('([a-z0-9_]+)', (\d+)\)")
_GENOTYPE = re.compile(
  r'Genotype\(normal=\[(?P<normal>[^\]]*)\], normal_concat=(?P<normal_concat>\[[^\]]*\]), '
  r'reduce=\[(?P<reduce>[^\]]*)\], reduce_concat=(?P<reduce_concat>\[[^\]]*\])\)'
)


def _error(text: object, problem: str, expected: str) -> ValueError:
  return ValueError(f'{problem} in NB301 genotype {text!r}: expected {expected}')


def _parse_cell(text: str, cell: str, body: str) -> np.ndarray:
  pairs = [p.strip() for p in body.split('), ')] if body else []
  pairs = [p if p.endswith(')') else p + ')' for p in pairs]
  if len(pairs) != EDGES_PER_CELL:
    raise _error(text, f'{len(pairs)} (op, input) pairs in {cell}', f'{EDGES_PER_CELL}')
  out = np.zeros((EDGES_PER_CELL, 2), np.int32)
  for e, token in enumerate(pairs):
    match = _PAIR.fullmatch(token)
    if not match:
      raise _error(text, f'pair {token!r} in {cell}', "('op', input)")
    name, source = match.group(1), int(match.group(2))
    if name not in _OP_INDEX:
      raise _error(text, f'unknown op {name!r} in {cell}', 'one of ' + ', '.join(OPS))
    node = NUM_INPUT_NODES + e // 2
    if source >= node:
      raise _error(
        text, f'input {source} of node {node} in {cell}', f'an earlier node 0..{node - 1}'
      )
    out[e] = (_OP_INDEX[name], source)
  for node in range(NUM_INTERMEDIATE):
    a, b = out[2 * node, 1], out[2 * node + 1, 1]
    if a == b:
      raise _error(
        text, f'the same input {a} twice for node {node + 2} in {cell}', 'two distinct inputs'
      )
  return out


def parse(text: str) -> np.ndarray:
  """Parses a DARTS `Genotype(normal=[...], normal_concat=[2, 3, 4, 5], reduce=[...], ...)`.

  Strict (exact spacing and quotes, as the benchmark writes it), so a typo in a user file cannot
  map onto another genotype. Returns int32 (2, 8, 2).
  """
  if not isinstance(text, str):
    raise _error(text, f'non-string {type(text).__name__}', 'a str')
  match = _GENOTYPE.fullmatch(text)
  if not match:
    raise _error(
      text,
      'malformed text',
      "Genotype(normal=[('op', input) x8], normal_concat=[2, 3, 4, 5], reduce=[...], "
      'reduce_concat=[2, 3, 4, 5])',
    )
  for cell in CELLS:
    concat = match.group(f'{cell}_concat')
    if concat != str(CONCAT):
      raise _error(text, f'{cell}_concat={concat}', str(CONCAT))
  return np.stack([_parse_cell(text, cell, match.group(cell)) for cell in CELLS])


def validate(arch: object) -> np.ndarray:
  """Checks one encoded genotype (shape, ops, inputs) and returns an int32 copy."""
  arr = np.asarray(arch)
  if arr.shape != ARCH_SHAPE or arr.dtype.kind not in 'iu':
    raise ValueError(
      f'NB301 arch of shape {arr.shape}, dtype {arr.dtype}: expected int {ARCH_SHAPE}'
    )
  return parse(_format(arr))  # the parser's checks, one code path


def _format(arr: np.ndarray) -> str:
  def cell(c: int) -> str:
    pairs = []
    for op, source in arr[c].tolist():
      if not 0 <= op < NUM_OPS:
        raise ValueError(f'op index {op} in NB301 arch: expected 0..{NUM_OPS - 1}')
      pairs.append(f"('{OPS[op]}', {source})")
    return '[' + ', '.join(pairs) + ']'

  return (
    f'Genotype(normal={cell(0)}, normal_concat={CONCAT}, reduce={cell(1)}, reduce_concat={CONCAT})'
  )


def to_str(arch: object) -> str:
  """Formats an encoded genotype as the DARTS string (inverse of `parse`, byte-exact)."""
  return _format(validate(arch))


def canonical(arch: object) -> np.ndarray:
  """The de-duplication form: the two (op, input) pairs of every node sorted (they are an
  unordered pair; swapping them gives the same network)."""
  arr = np.array(arch, np.int32).reshape(*np.shape(arch)[:-3], len(CELLS), NUM_INTERMEDIATE, 2, 2)
  order = np.argsort(arr[..., 1] * NUM_OPS + arr[..., 0], axis=-1, kind='stable')
  arr = np.take_along_axis(arr, order[..., None], axis=-2)
  return arr.reshape(*arr.shape[:-4], *ARCH_SHAPE)


def candidate_index(arch: np.ndarray | jax.Array):
  """Index in `CANDIDATES` of every chosen edge, (..., 2, 8): the one-shot supernet's edge (and,
  in vanilla sharing, the block) that serves it. Works on numpy and traced arrays."""
  xp = jnp if isinstance(arch, jax.Array) else np
  node = xp.arange(EDGES_PER_CELL) // 2 + NUM_INPUT_NODES  # 2,2,3,3,4,4,5,5
  first = node * (node - 1) // 2 - 1  # candidates before node j: 2+3+..+(j-1) = j(j-1)/2 - 1
  return first + arch[..., 1]


def sample(key: jax.Array, num: int, which: str = 'uniform') -> jax.Array:
  """`num` genotypes, int32 (num, 2, 8, 2), as the official sampler: per intermediate node of
  each cell, 2 distinct earlier nodes and an op for each, all uniform. Jit-safe (static num)."""
  if which != 'uniform':
    raise ValueError(f'NB301 sampler {which!r}: expected uniform')
  op_key, first_key, second_key = jax.random.split(key, 3)
  shape = (num, len(CELLS), NUM_INTERMEDIATE)
  choices = jnp.arange(NUM_INPUT_NODES, NUM_INPUT_NODES + NUM_INTERMEDIATE)  # earlier nodes
  first = jax.random.randint(first_key, shape, 0, choices)
  second = jax.random.randint(second_key, shape, 0, choices - 1)
  second = second + (second >= first)  # distinct from first, uniform over the rest
  inputs = jnp.stack([first, second], axis=-1).reshape(num, len(CELLS), EDGES_PER_CELL)
  ops = jax.random.randint(op_key, inputs.shape, 0, NUM_OPS)
  return jnp.stack([ops, inputs], axis=-1).astype(jnp.int32)
