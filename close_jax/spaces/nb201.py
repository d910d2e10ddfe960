"""The NAS-Bench-201 cell search space.

A cell is a 4-node DAG with one op on each of its 6 edges. Architectures are represented as int
arrays of 6 op indices (positions in `OPS`) in `EDGES` order, which is also the order in which the
edges appear in the standard NB201 string, so parsing and printing need no reordering.

Many of the 15625 cells compute the same function, so CLOSE samples uniformly over the 6466
isomorphism classes defined by the benchmark's own key (`canonical_key`) rather than over raw
cells; otherwise large classes (e.g. the thousands of cells whose output is zero) would dominate.
Everything except `sample`/`sample_indices` is plain numpy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from close_jax.benchmarks import nb201_table
from close_jax.spaces.base import GateGraph

OPS = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')
NONE, SKIP = 0, 1
NUM_NODES = 4
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_EDGES = len(EDGES)
NUM_OPS = len(OPS)
NUM_ARCHS = NUM_OPS**NUM_EDGES
NUM_DEISO = 6466

_OP_INDEX = {name: i for i, name in enumerate(OPS)}
# Cells worth naming (final training's `config.genotype`): the benchmark's extremes, the largest
# cell and the ResNet-like cell.
PUBLISHED = {
  'NB201_ALL_CONV3X3': '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|'
  '+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|',
  'NB201_RESNET': '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|',
}

_SENDERS = np.array([i for i, _ in EDGES], np.int32)
_RECEIVERS = np.array([j for _, j in EDGES], np.int32)
# The GATE's graph of a cell: the official NB201 embedder (op 48, node 48, hidden 96, five flow
# layers of 128, summed messages, residual on the input node); edge p is position p.
GATE_GRAPH = GateGraph(
  num_nodes=NUM_NODES,
  input_nodes=(0,),
  num_edge_ops=NUM_OPS,
  aggregation='sum',
  edges=lambda ops: (ops, _SENDERS, _RECEIVERS),
)


def _parse_error(arch_str: object, problem: str, expected: str) -> ValueError:
  return ValueError(f'{problem} in NB201 arch {arch_str!r}: expected {expected}')


def parse(arch_str: str) -> np.ndarray:
  """Parses a standard NB201 string such as '|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|'.

  Parsing is strict (no whitespace, exact source order) because a lenient parser would silently
  map typos in user ground-truth files onto the wrong architecture.

  Returns:
    int32 array of shape (6,) in `EDGES` order.
  """
  if not isinstance(arch_str, str):
    raise _parse_error(arch_str, f'non-string {type(arch_str).__name__}', 'a str')
  groups = arch_str.split('+')
  if len(groups) != NUM_NODES - 1:
    raise _parse_error(
      arch_str, f'{len(groups)} node groups', f'{NUM_NODES - 1} groups separated by "+"'
    )
  ops = []
  for node, group in enumerate(groups, start=1):
    if len(group) < 2 or group[0] != '|' or group[-1] != '|':
      raise _parse_error(arch_str, f'group {group!r}', 'a group that starts and ends with "|"')
    tokens = group[1:-1].split('|')
    if len(tokens) != node:
      raise _parse_error(arch_str, f'{len(tokens)} edges into node {node}', f'{node} edges')
    for src, token in enumerate(tokens):
      name, sep, src_str = token.partition('~')
      if not sep:
        raise _parse_error(arch_str, f'edge token {token!r}', '"op~source"')
      if src_str != str(src):
        raise _parse_error(
          arch_str, f'source {src_str!r} in {token!r}', f'edges into node {node} from 0..{node - 1}'
        )
      if name not in _OP_INDEX:
        raise _parse_error(arch_str, f'unknown op {name!r}', 'one of ' + ', '.join(OPS))
      ops.append(_OP_INDEX[name])
  return np.array(ops, dtype=np.int32)


def validate(ops: object) -> np.ndarray:
  """Checks that `ops` is one architecture and returns it as an int32 copy.

  Float or bool arrays are rejected rather than cast, since they usually indicate that something
  other than op indices (e.g. logits or masks) was passed.
  """
  arr = np.asarray(ops)
  if arr.shape != (NUM_EDGES,):
    raise ValueError(f'NB201 arch {ops!r} has shape {arr.shape}: expected ({NUM_EDGES},)')
  if arr.dtype.kind not in 'iu':
    raise ValueError(f'NB201 arch {ops!r} has dtype {arr.dtype}: expected integer op indices')
  for edge, value in enumerate(arr.tolist()):
    if not 0 <= value < len(OPS):
      raise ValueError(
        f'op index {value} on edge {edge} of NB201 arch {ops!r}: expected 0..{len(OPS) - 1}'
      )
  return arr.astype(np.int32)


def to_str(ops: object) -> str:
  """Formats an op array as the standard NB201 string (inverse of `parse`)."""
  arr = validate(ops)
  groups, edge = [], 0
  for node in range(1, NUM_NODES):
    tokens = []
    for src in range(node):
      tokens.append(f'{OPS[arr[edge]]}~{src}')
      edge += 1
    groups.append('|' + '|'.join(tokens) + '|')
  return '+'.join(groups)


def _frozen(arr: np.ndarray) -> np.ndarray:
  # Cached arrays are shared between callers, so make accidental in-place edits fail loudly.
  arr.flags.writeable = False
  return arr


@functools.cache
def all_archs() -> np.ndarray:
  """All 15625 cells as a read-only (15625, 6) int32 array, row i = official NB201 index i.

  The order comes from the shipped ground-truth table, so indices line up with its accuracies.
  """
  archs = np.stack([parse(s) for s in nb201_table.read_table(NUM_ARCHS)['arch']])
  return _frozen(archs)


def canonical_key(ops: object) -> str:
  """The benchmark's isomorphism key (NB201 `Structure.to_unique_str(consider_zero=True)`).

  Node 0 is '0'. Each edge i->j contributes '#' if its op is none or node i's string is exactly
  '#', node i's string for skip_connect, and '(' + node i + ')@' + op otherwise; node j is its
  contributions sorted and joined with '+'. Taken literally, a node whose contributions are all '#'
  is '#+#' / '#+#+#', not '#', so zero-ness only propagates through a node fed by a single
  none edge (node 1). This literal reading yields exactly 6466 classes, the number the benchmark
  and CLOSE use; collapsing all-'#' nodes to '#' would give 6285 instead.
  """
  arr = validate(ops)
  nodes = ['0']
  edge = 0
  for node in range(1, NUM_NODES):
    parts = []
    for src in range(node):
      op = int(arr[edge])
      edge += 1
      if op == NONE or nodes[src] == '#':
        parts.append('#')
      elif op == SKIP:
        parts.append(nodes[src])
      else:
        parts.append(f'({nodes[src]})@{OPS[op]}')
    nodes.append('+'.join(sorted(parts)))
  return nodes[-1]


@functools.cache
def deiso_classes() -> tuple[np.ndarray, np.ndarray]:
  """Groups the official indices into isomorphism classes.

  Returns:
    (rep_index, class_of): rep_index (6466,) holds the smallest official index of each class in
    ascending order; class_of (15625,) maps each official index to its position in rep_index.
  """
  class_ids: dict[str, int] = {}
  reps, class_of = [], np.empty(NUM_ARCHS, dtype=np.int32)
  # Scanning in index order makes first appearance = smallest index, so reps come out sorted.
  for index, arch in enumerate(all_archs()):
    key = canonical_key(arch)
    if key not in class_ids:
      class_ids[key] = len(reps)
      reps.append(index)
    class_of[index] = class_ids[key]
  return _frozen(np.array(reps, dtype=np.int32)), _frozen(class_of)


@functools.cache
def deiso_representatives() -> np.ndarray:
  """One read-only (6466, 6) op array per isomorphism class, in `deiso_classes` order."""
  return _frozen(all_archs()[deiso_classes()[0]])


def live_ops(ops: object) -> np.ndarray:
  """Replaces with none every edge that is not on a 0 -> 3 path of non-none edges.

  Such edges cannot change the cell output: an edge out of a node that receives nothing operates
  on an all-zero tensor, which stays zero through skip, pooling and ReLU-conv-BN as long as the BN
  has no affine shift (as in the NB201 supernet), and an edge into a node that never reaches node 3
  is unused. The supernet can therefore skip them (`live_ops_traced`, the same rule under jit).

  Args:
    ops: int array-like of shape (..., 6) with values in [0, 5).

  Returns:
    An int32 array of the same shape.
  """
  arr = np.asarray(ops)
  if arr.ndim == 0 or arr.shape[-1] != NUM_EDGES or arr.dtype.kind not in 'iu':
    raise ValueError(f'NB201 archs of shape {arr.shape}, dtype {arr.dtype}: expected int (..., 6)')
  if arr.size and (arr.min() < 0 or arr.max() >= len(OPS)):
    bad = arr[(arr < 0) | (arr >= len(OPS))].flat[0]
    raise ValueError(f'op index {bad} in NB201 archs: expected 0..{len(OPS) - 1}')
  return _live(np, arr).astype(np.int32)


def live_ops_traced(ops: jax.Array) -> jax.Array:
  """`live_ops` of traced int ops (..., 6), unchecked: the NB201 supernet skips dead edges with
  it, which saves their work and changes neither the output nor any gradient."""
  return _live(jnp, jnp.asarray(ops, jnp.int32))


def _live(xp, arr):
  """The rule of `live_ops` in array namespace `xp` (numpy or jax.numpy)."""
  active = arr != NONE
  batch = arr.shape[:-1]
  from_input = [xp.ones(batch, dtype=bool)] + [xp.zeros(batch, dtype=bool)] * (NUM_NODES - 1)
  for e, (i, j) in enumerate(EDGES):  # EDGES is topologically ordered by target.
    from_input[j] = from_input[j] | (active[..., e] & from_input[i])
  to_output = [xp.zeros(batch, dtype=bool)] * (NUM_NODES - 1) + [xp.ones(batch, dtype=bool)]
  for e, (i, j) in reversed(list(enumerate(EDGES))):  # Reverse order: sources after targets.
    to_output[i] = to_output[i] | (active[..., e] & to_output[j])
  live = xp.stack(
    [active[..., e] & from_input[i] & to_output[j] for e, (i, j) in enumerate(EDGES)], axis=-1
  )
  return xp.where(live, arr, NONE)


@functools.cache
def live_ops_table() -> np.ndarray:
  """`live_ops` of every representative, read-only (6466, 6)."""
  return _frozen(live_ops(deiso_representatives()))


SAMPLERS = ('valid', 'all')


@functools.cache
def valid_classes() -> np.ndarray:
  """Class ids (read-only, ascending) whose cell has a convolution on a live input-output path.

  The official training sampler (`NasBench201RSController`, `check_valid=True`) redraws until the
  cell passes `check_valid_arch`: some conv edge i->j with i reachable from the input and j
  reaching the output, i.e. a conv among `live_ops`. 145 of the 6466 classes fail it: they would
  train only the stem, reductions and head and give the GATE no gradient.
  """
  live = live_ops_table()
  return _frozen(np.flatnonzero(np.any((live == 2) | (live == 3), axis=1)).astype(np.int32))


def sample_indices(key: jax.Array, num: int, which: str = 'valid') -> jax.Array:
  """Uniform class ids, int32 (num,): over the 6321 valid classes ('valid', the official training
  sampler) or all 6466 ('all'); `num` must be static under jit."""
  if which == 'all':
    return jax.random.randint(key, (num,), 0, NUM_DEISO, dtype=jnp.int32)
  if which != 'valid':
    raise ValueError(f'NB201 sampler {which!r}: expected one of {SAMPLERS}')
  table = jnp.asarray(valid_classes())
  return jnp.take(table, jax.random.randint(key, (num,), 0, len(table), dtype=jnp.int32))


def sample(key: jax.Array, num: int, which: str = 'valid') -> jax.Array:
  """Samples `num` architectures uniformly over isomorphism classes, int32 (num, 6).

  Uniform over classes (not raw cells) is what CLOSE's sampler does; `which` as in
  `sample_indices`. Jit-safe with static `num`: the tables are embedded as constants.
  """
  table = jnp.asarray(deiso_representatives(), dtype=jnp.int32)
  return jnp.take(table, sample_indices(key, num, which), axis=0)
