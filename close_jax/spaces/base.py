"""The search-space interface: everything the trainer, supernet binding, curriculum and evaluator
need from a space, and nothing more.

A space is data (a frozen `Space` of constants and functions), registered by name; `config.space`
selects it. The rest of close_jax never imports a space module: adding a space is a module in
`spaces/`, a network in `models/` and a config.

Members (docs/spaces.md#one-interface has the same as a table):
- `arch_shape`, `num_ops`: an architecture is an int array of this shape, values in [0, num_ops).
- `parse(str)`, `to_str(arch)`: the readable form, round trip exact; errors quote the input.
- `samplers`, `sample(key, n, which)`: jit-friendly uniform training sampler, int32 (n, *shape).
- `probe_archs(n, seed)`: a fixed, seeded set of trainable architectures (GATE diagnostics).
- `ground_truth_names`, `load_ground_truth(source)`: (archs, accuracy, description) to rank, from
  a shipped column or a user CSV path; `check_ground_truth(source)` raises a one-line ValueError
  unless `source` is usable (run before any work). `eval.ground_truth='none'` never reaches them
  (`close_jax.benchmarks.ranking_set`).
- `all_archs()` (optional): every architecture, one per canonical class, when the space is small
  enough to rank in full (NB201); a ranking without ground truth then lists them instead of
  sampling.
- `arch_code(arch)`: traced int32 naming an architecture (fixes its evaluation-gate key).
- `num_positions`: positions a block is assigned to; `position_ops(archs)`: traced int
  (..., num_positions), the op at each position; `weighted_positions(archs)`: traced bool
  (..., num_positions), where the block choice matters.
- `vanilla_blocks`, `vanilla_assignment(arch)`: vanilla sharing (every candidate edge owns its
  weights) as blocks: how many, and the traced int (num_positions,) block of each position (NB201:
  6, edge e on block e; DARTS: 14 candidate edges, the chosen edge's candidate).
- `graph`: the `GateGraph` the GATE embeds; its edge p is position p (None without a GATE).
- `interval_curriculum`: CLOSE assigns blocks by interval splitting over the positions
  (`close_jax.intervals`, sequential spaces such as NDS) instead of by a GATE.
- `build_network(model_cfg, num_classes, num_blocks, dtype)`: the network, with flax's
  `init(key, x, arch, assignment, train=)` / `apply(variables, x, arch, assignment, train=, rngs=)`
  and a `num_blocks` attribute; assignment is int (P,) or a mix (P, L). The curriculum's surgery
  expects the block-shared weights as top-level `cell_*` entries with a leading block axis.
- `costs(model_cfg, image_shape, num_classes, archs)` (optional): exact (flops, params) int64
  (n,) of each architecture's forward in that network, evaluation assignment, per image
  (multiply-adds of convolutions and dense layers; the weights it uses). The evaluator writes
  them into ranking.csv; they must cost no trace or compile per architecture (closed form).
- Optional, for the search: `num_genes`, `canonical_key`, `standalone_params`, `search_params`,
  `mutate`, `crossover_groups` (see the fields).
- `shape_model_keys` (default none): the `config.model` keys that fix the shapes of the
  network's parameters; a resumed run must keep them (`config_check.check_resumable`).
- `default_sampler` (default `samplers[0]`): the training sampler of a config that names none
  (an older run's config.json).
- `shape_keyer(network)`, `specialise(network, key)` (default: none): a space whose network
  compiles per architecture shape (NDS under `bucket`/`exact`) returns from `shape_keyer` a host
  function arch -> hashable static key, or None when one executable serves every architecture;
  `specialise` gives the network that runs one key. The trainer passes the key to the train step
  as a static argument.
- `op_names`, `conv3x3_op` (default: none): the names of the op ids that `position_ops` gives,
  and which of them is the space's 3x3 convolution (the op the GATE-similarity analysis compares
  by default; the CLOSE paper's appendix section 3.1).
- `named_archs` (default: none): published architectures as (name, string form) pairs; final
  training (`config.genotype`) accepts the names.
- `final_networks` (default: none): the `FinalNetwork`s that train one of the space's
  architectures from scratch (`config.mode='final'`, `close_jax.final`), each selected by its
  `name` as `config.model.network`.

The registry (`register`, `unregister` here; `get`, `names` in `close_jax.spaces`, which loads
the built-in spaces) is kept apart from the spaces: this module imports no space.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class GateGraph:
  """The architecture as the graph the GATE's flow embedder reads, and the embedder's sizes.

  `edges(arch)` gives traced (edge_ops, senders, receivers), one entry per position: edge p runs
  senders[p] -> receivers[p] with op feature edge_ops[p] in [0, num_edge_ops), 0 meaning "no
  edge" (it carries no message). The `input_nodes` start from learned embeddings and keep their
  own transformed state at every layer; a node aggregates its incoming messages by `aggregation`
  ('sum' as the official NB201 embedder, 'mean' as the DARTS one). The other nodes start from
  zeros: fixed (NB201's `other_node_emb`, `requires_grad=False`), or, for each group of
  `trainable_other_nodes`, one shared embedding that starts at zero and is trained (the DARTS
  `GCNFlowArchEmbedder`, `other_node_zero=False`: one per cell group).
  """

  num_nodes: int
  input_nodes: tuple[int, ...]
  num_edge_ops: int
  aggregation: str
  edges: Callable[[Any], tuple[Any, Any, Any]]
  op_dim: int = 48
  node_dim: int = 48
  hidden_dim: int = 96
  gcn_dims: tuple[int, ...] = (128,) * 5
  trainable_other_nodes: tuple[tuple[int, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class FinalNetwork:
  """A standalone network that final training (`close_jax.final`) builds for one architecture of
  the space and trains from scratch, and what the trainer must know of it.

  `build(model_cfg, arch, num_classes)` returns a flax module whose call is
  `(x, drop_prob, train) -> (logits, aux_logits or None)`, with `init` at
  `(key, x, 0.0, train=False)`; an auxiliary head's parameters sit under the top-level entry
  `auxiliary_head` (left out of the reported parameter count, as DARTS reports it). The
  architecture is a static numpy array: one network, one compile per run.
  """

  # `config.model.network` that selects it; unique over all registered spaces.
  name: str
  build: Callable[[Any, np.ndarray, int], Any]
  # `config.model` keys that fix its parameter shapes: integers >= 1, checked before any work,
  # written into summary.json, and a resumed run must keep them.
  shape_keys: tuple[str, ...]
  # It has an auxiliary head (`model.auxiliary`, `model.auxiliary_weight` apply).
  auxiliary_head: bool = False
  # It drops paths (`model.drop_path_prob` applies; ignored otherwise).
  drop_path: bool = False
  # It trains on `data.name='imagenet_folder'` and only on it (the other networks never do).
  image_folder: bool = False
  # Its own further `config.model` checks (one-line ValueError), after the shape keys'.
  check_model: Callable[[Any], None] | None = None


@dataclasses.dataclass(frozen=True)
class Space:
  name: str
  arch_shape: tuple[int, ...]
  num_ops: int
  parse: Callable[[str], np.ndarray]
  to_str: Callable[[Any], str]
  samplers: tuple[str, ...]
  sample: Callable[..., Any]
  probe_archs: Callable[[int, int], np.ndarray]
  ground_truth_names: tuple[str, ...]
  load_ground_truth: Callable[[str], tuple[np.ndarray, np.ndarray, str]]
  check_ground_truth: Callable[[str], None]
  arch_code: Callable[[Any], Any]
  num_positions: int
  position_ops: Callable[[Any], Any]
  weighted_positions: Callable[[Any], Any]
  vanilla_blocks: int
  vanilla_assignment: Callable[[Any], Any]
  graph: GateGraph | None
  build_network: Callable[..., Any]
  interval_curriculum: bool = False
  # Validates the space's own `config.model` keys (one-line ValueError) before any work.
  check_model: Callable[[Any], None] | None = None
  # Every architecture, one per canonical class (in the shipped ground truth's order, where there
  # is one): what a ranking without ground truth scores. None: the space is sampled instead.
  all_archs: Callable[[], np.ndarray] | None = None
  # Exact (flops, params) per architecture (closed form); the complexity analysis reads them.
  costs: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None
  # Evolution (close_jax.search): `arch.reshape(num_genes, -1)` rows that recombine freely, i.e.
  # any mix of rows taken from valid architectures at the same row index is valid (0: every
  # entry on its own, as NB201's edges and NDS's per-stage decisions).
  num_genes: int = 0
  # A string equal for architectures that compute the same function (NB201: its isomorphism
  # class); the search dedups by it and looks found architectures up in the ground truth by it.
  # None: `to_str` (exact equality).
  canonical_key: Callable[[Any], str] | None = None
  # Parameters of the architecture's standalone network (the one trained from scratch, not the
  # supernet), numpy closed form: the search's second objective (None: no parameter objective).
  standalone_params: Callable[[Any], int] | None = None
  # `(arch, model_cfg)`: parameters of the architecture's network at the supernet's own size
  # (`model_cfg`'s channels and depth), numpy closed form: the size aw_nas's CARS objective
  # counts (its supernet child), selectable as the search's second objective.
  search_params: Callable[[Any, Any], int] | None = None
  # `(arch, rng)`: a neighbour of a numpy architecture, exactly one element changed to a
  # different valid value, drawn with the numpy Generator `rng` (aw_nas's `mutate` of the space,
  # CARS's mutation). None: the search's mutation changes one gene to a fresh sample's.
  mutate: Callable[[Any, Any], Any] | None = None
  # CARS's crossover: gene g of a child comes from the parent drawn for group
  # `crossover_groups[g]` (one coin per group; DARTS: a node index, the same in the normal and
  # the reduce cell, as aw_nas's `per_cell_group=False`). None: the space has no crossover (as
  # aw_nas's NB201 space), and CARS's crossover share of the children are mutations.
  crossover_groups: tuple[int, ...] | None = None
  # `config.model` keys that fix the network's parameter shapes: a resume must keep them.
  shape_model_keys: tuple[str, ...] = ()
  # The training sampler of a config without `train_sampler` ('' = `samplers[0]`).
  default_sampler: str = ''
  # Per-architecture executables (NDS `bucket`/`exact`): `shape_keyer(network)` is a host
  # function arch -> static key, or None when one executable serves every architecture;
  # `specialise(network, key)` is the network that runs that key.
  shape_keyer: Callable[[Any], Callable[[np.ndarray], Hashable] | None] | None = None
  specialise: Callable[[Any, Hashable], Any] | None = None
  # Names of the op ids `position_ops` gives (index order), and the name of the space's 3x3
  # convolution among them: the GATE-similarity analysis's default op. () / '': none.
  op_names: tuple[str, ...] = ()
  conv3x3_op: str = ''
  # Published architectures, (name, string form): final training's `config.genotype` names.
  named_archs: tuple[tuple[str, str], ...] = ()
  # Networks that final training (`close_jax.final`) trains for one architecture of the space.
  final_networks: tuple[FinalNetwork, ...] = ()

  def __post_init__(self):
    if not self.default_sampler:
      object.__setattr__(self, 'default_sampler', self.samplers[0])
    if self.default_sampler not in self.samplers:
      raise ValueError(
        f'space {self.name!r}: default_sampler={self.default_sampler!r} is not one of its '
        f'samplers {self.samplers}'
      )
    if (self.shape_keyer is None) != (self.specialise is None):
      raise ValueError(f'space {self.name!r}: shape_keyer and specialise come together')
    if self.op_names and len(self.op_names) != self.num_ops:
      raise ValueError(
        f'space {self.name!r}: {len(self.op_names)} op_names for num_ops={self.num_ops}'
      )
    if self.conv3x3_op and self.conv3x3_op not in self.op_names:
      raise ValueError(
        f'space {self.name!r}: conv3x3_op={self.conv3x3_op!r} is not one of its op_names '
        f'{self.op_names}'
      )


def check_choice(name: str, value, allowed) -> None:
  """One-line ValueError for a config value outside `allowed` (`name` without `config.`)."""
  if value not in allowed:
    raise ValueError(f'config.{name}={value!r} is not supported: expected one of {allowed}')


def check_positive(name: str, value, allow_zero: bool = False) -> None:
  """One-line ValueError unless `value` > 0 (>= 0 with `allow_zero`)."""
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    bound = '>= 0' if allow_zero else '> 0'
    raise ValueError(f'config.{name}={value!r} is invalid: expected a number {bound}')


EDGE_IMPLS = ('auto', 'switch', 'dense')


def resolve_edge_impl(edge_impl: str) -> str:
  """How a space's edges pick their op (`model.edge_impl` of NB201 and NB-301): `auto` is
  `switch` on XLA:CPU (a conditional is free there and skips the unused ops' work), `dense`
  elsewhere: on GPU every conditional is a host round trip
  (docs/performance.md#edges-without-conditionals-modeledge_impl), and on TPU,
  where the branch is decided on the chip, `dense` is the unmeasured default."""
  import jax

  if edge_impl == 'auto':
    return 'switch' if jax.default_backend() == 'cpu' else 'dense'
  return edge_impl


def shipped_or_csv(
  names: tuple[str, ...],
  load_shipped: Callable[[str], tuple[np.ndarray, np.ndarray]],
  load_csv: Callable[[str], tuple[np.ndarray, np.ndarray]],
  csv_columns: str,
) -> tuple[Callable, Callable]:
  """(load_ground_truth, check_ground_truth) for the usual case: one of the shipped `names`, or
  the path of a user CSV with columns `csv_columns`."""

  def check(source: str) -> None:
    """Before any training: a user CSV is parsed and validated in full (a bad row found only at
    the first ranking would throw the training away)."""
    if source not in names and not (source.endswith('.csv') and os.path.isfile(source)):
      raise ValueError(
        f"config.eval.ground_truth={source!r}: expected one of {names}, 'none' (no ground "
        f'truth) or the path of an existing CSV file with columns {csv_columns}'
      )
    if source not in names:
      load_csv(source)

  def load(source: str) -> tuple[np.ndarray, np.ndarray, str]:
    if source in names:
      archs, truth = load_shipped(source)
      return np.array(archs), np.array(truth), source
    archs, truth = load_csv(source)
    return archs, truth, os.path.abspath(source)

  return load, check


_REGISTRY: dict[str, Space] = {}


def register(space: Space) -> Space:
  """Makes `space` available as `config.space=<space.name>` (re-registering replaces it)."""
  _REGISTRY[space.name] = space
  return space


def unregister(name: str) -> None:
  """Removes the space `name` (a space defined for a while, e.g. in a test); no-op if unknown."""
  _REGISTRY.pop(name, None)
