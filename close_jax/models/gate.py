"""CLOSENet's GATE: which GLOW block supplies each position's weights, from the architecture.

The embedder is the GATES-style "flow" GCN of the official code, written as message passing on a
jraph `GraphsTuple` of the space's `GateGraph`: messages run along the edges (not `none`), gated
by a sigmoid of the edge's op embedding, and are summed (NB201) or averaged (DARTS) per receiver
with `jraph.segment_sum`. Because nodes only see their predecessors through these symmetric
aggregations, relabelling nodes relabels the embeddings: isomorphic cells get the same embedding
on corresponding nodes and therefore the same assignment on corresponding edges.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph
import numpy as np
from flax import linen as nn

from close_jax.models.layers import TorchDense
from close_jax.spaces.base import GateGraph
from close_jax.spaces.nb201 import GATE_GRAPH as NB201_GRAPH  # the default of graph-less modules

GUMBEL_TEMPERATURE = 5.0  # hard-coded in the official code, not scheduled


def as_graphs_tuple(edge_ops, senders, receivers, nodes: jax.Array) -> jraph.GraphsTuple:
  """The architecture as one jraph graph: its edges carry their op ids as features."""
  return jraph.GraphsTuple(
    nodes=nodes,
    edges=edge_ops,
    senders=senders,
    receivers=receivers,
    globals=None,
    n_node=jnp.array([nodes.shape[0]]),
    n_edge=jnp.array([edge_ops.shape[0]]),
  )


class FlowLayer(nn.Module):
  """h_j' = agg_{i->j, op != none} sigmoid(A emb(op)) * (h_i W), plus h_j W for input nodes."""

  features: int
  input_nodes: tuple[int, ...]
  aggregation: str

  @nn.compact
  def __call__(self, graph: jraph.GraphsTuple, op_embedding: jax.Array) -> jraph.GraphsTuple:
    bound = 1.0 / self.features**0.5  # W ~ U(+-1/sqrt(out)), as the official embedder
    w_init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound
    )
    num_nodes = graph.nodes.shape[0]
    s = nn.Dense(self.features, use_bias=False, name='W', kernel_init=w_init)(graph.nodes)
    gate = jax.nn.sigmoid(TorchDense(self.features, name='A')(op_embedding))
    valid = (graph.edges != 0)[:, None].astype(s.dtype)
    messages = gate * s[graph.senders] * valid
    nodes = jraph.segment_sum(messages, graph.receivers, num_segments=num_nodes)
    if self.aggregation == 'mean':
      count = jraph.segment_sum(valid, graph.receivers, num_segments=num_nodes)
      nodes = nodes / jnp.maximum(count, 1.0)
    inputs = np.asarray(self.input_nodes)
    nodes = nodes.at[inputs].add(s[inputs])  # residual only on the input nodes
    return graph._replace(nodes=nodes)


class FlowEmbedder(nn.Module):
  """Per-node embeddings (num_nodes, gcn_dims[-1]) of an architecture's `GateGraph`."""

  # 'layer': a parameter-free layer norm of every node's output embedding (a close_jax option,
  # not in the official code). The official embedder's output shrinks by ~10x per flow layer at
  # initialisation and further under weight decay, so the MLP sees an almost constant input; the
  # normalised embedding keeps the architectures' relative differences at unit scale.
  norm: str = 'none'
  graph: GateGraph = NB201_GRAPH

  @nn.compact
  def __call__(self, arch: jax.Array) -> jax.Array:
    g = self.graph
    edge_ops, senders, receivers = g.edges(arch)
    inputs = np.asarray(g.input_nodes)
    input_emb = self.param('input_node', nn.initializers.normal(1.0), (len(inputs), g.node_dim))
    nodes = jnp.zeros((g.num_nodes, g.node_dim)).at[inputs].set(input_emb)
    if g.trainable_other_nodes:
      other = self.param(
        'other_node', nn.initializers.zeros, (len(g.trainable_other_nodes), g.node_dim)
      )
      for group, members in enumerate(g.trainable_other_nodes):
        nodes = nodes.at[np.asarray(members)].set(other[group])
    nodes = TorchDense(g.hidden_dim, name='node_in')(nodes)
    op_embedding = nn.Embed(
      g.num_edge_ops, g.op_dim, embedding_init=nn.initializers.normal(1.0), name='op_embedding'
    )(edge_ops)
    graph = as_graphs_tuple(edge_ops, senders, receivers, nodes)
    for layer, features in enumerate(g.gcn_dims):
      graph = FlowLayer(features, g.input_nodes, g.aggregation, name=f'flow_{layer}')(
        graph, op_embedding
      )
      if layer < len(g.gcn_dims) - 1:
        graph = graph._replace(nodes=jax.nn.relu(graph.nodes))
    if self.norm == 'layer':
      return normalise_nodes(graph.nodes)
    return graph.nodes


def normalise_nodes(nodes: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Zero-mean, unit-variance features per node; an all-zero node (no live input) stays zero.

  The epsilon is tiny on purpose: the embeddings it rescales can be ~1e-4 in magnitude.
  """
  centred = nodes - jnp.mean(nodes, axis=-1, keepdims=True)
  return centred * jax.lax.rsqrt(jnp.mean(centred**2, axis=-1, keepdims=True) + eps)


class MLP(nn.Module):
  hidden: tuple[int, ...]
  out: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for i, width in enumerate(self.hidden):
      x = jax.nn.relu(TorchDense(width, name=f'hidden_{i}')(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return TorchDense(self.out, name='logits')(x)


class Gate(nn.Module):
  """Logits (edges, K) over the K blocks for every edge of the graph; the caller keeps the first L.

  kind='node': MLP([E_from; E_to]) per edge (the paper's GATE). kind='arch': one MLP on the output
  node's embedding (the shipped `use_final_only: true`) gives all edges*K logits, edge-major (the
  arch-level ablation). `gate=random` needs no module. Every linear layer starts as PyTorch's
  `nn.Linear` (weights and biases U(+-1/sqrt(fan_in))), as in the official code.
  """

  num_blocks: int
  kind: str = 'node'
  mlp_dims: tuple[int, ...] = (200, 200, 200)
  dropout: float = 0.1
  embed_norm: str = 'none'
  graph: GateGraph = NB201_GRAPH

  @nn.compact
  def __call__(self, arch: jax.Array, train: bool) -> jax.Array:
    emb = FlowEmbedder(norm=self.embed_norm, graph=self.graph, name='embedder')(arch)
    _, senders, receivers = self.graph.edges(arch)
    if self.kind == 'node':
      pair = jnp.concatenate([emb[senders], emb[receivers]], axis=-1)
      return MLP(self.mlp_dims, self.num_blocks, self.dropout, name='mlp')(pair, train)
    num_edges = senders.shape[0]
    logits = MLP(self.mlp_dims, num_edges * self.num_blocks, self.dropout, name='mlp')(
      emb[-1], train
    )
    return logits.reshape(num_edges, self.num_blocks)


def straight_through_gumbel(
  logits: jax.Array, key: jax.Array, temperature: float = GUMBEL_TEMPERATURE
) -> jax.Array:
  """Forward: the exact one-hot of argmax(logits + g); backward: the gradient of the tempered
  softmax p = softmax((logits + g) / temperature), as `onehot - stop_gradient(p) + p`."""
  noisy = logits + jax.random.gumbel(key, logits.shape, logits.dtype)
  soft = jax.nn.softmax(noisy / temperature, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(noisy, -1), logits.shape[-1], dtype=soft.dtype)
  return hard + (soft - jax.lax.stop_gradient(soft))  # parenthesised: forward is exactly hard


def sample_blocks(logits: jax.Array, key: jax.Array) -> jax.Array:
  """The evaluation assignment: one Categorical(softmax(logits)) draw per edge, by inverse CDF.

  Same distribution as the official Gumbel-max draw, but with one uniform per edge whatever the
  number of blocks, so a block split that halves its parent's probability between parent and an
  adjacent child (WIT=copy) moves no architecture to a block with different weights.
  """
  u = jax.random.uniform(key, logits.shape[:-1] + (1,), logits.dtype)
  cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
  return jnp.minimum(jnp.sum(cdf < u, axis=-1), logits.shape[-1] - 1).astype(jnp.int32)


# How the GATE's training gradient reaches it (`close.gate_mix`; close_jax options beyond aw_nas,
# whose GATE trains through `straight_through_gumbel` only). See `close_jax.supernet.Supernet`.
GATE_MIXES = ('straight_through', 'soft_annealed', 'reinforce')


def annealed_temperature(step, start: float, end: float, steps: int) -> jax.Array:
  """Geometric anneal from `start` at step 0 to `end` at step `steps`, then `end`."""
  progress = jnp.minimum(jnp.asarray(step, jnp.float32) / steps, 1.0)
  return start * (end / start) ** progress


def soft_annealed_gumbel(
  logits: jax.Array, key: jax.Array, step, start: float, end: float, steps: int
) -> jax.Array:
  """The Gumbel-softmax mixture softmax((logits + g) / tau(step)) of the blocks, no
  straight-through: every block runs with its probability and the GATE gets the exact gradient
  of that relaxed network. tau anneals from `start` to `end` over `steps` training steps; from
  then on the mixture is hard (the one-hot of the same Gumbel-max draw, with the
  straight-through gradient at `end`), as evaluation runs one block per edge."""
  noisy = logits + jax.random.gumbel(key, logits.shape, logits.dtype)
  soft = jax.nn.softmax(noisy / annealed_temperature(step, start, end, steps), axis=-1)
  final = jax.nn.softmax(noisy / end, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(noisy, -1), logits.shape[-1], dtype=soft.dtype)
  hard = hard + (final - jax.lax.stop_gradient(final))
  return jnp.where(jnp.asarray(step) >= steps, hard, soft)


def gumbel_max(logits: jax.Array, key: jax.Array) -> jax.Array:
  """One block per position drawn from Categorical(softmax(logits)), int32, no gradient."""
  noisy = jax.lax.stop_gradient(logits) + jax.random.gumbel(key, logits.shape, logits.dtype)
  return jnp.argmax(noisy, -1).astype(jnp.int32)


def score_function_surrogate(
  logits: jax.Array, blocks: jax.Array, advantage: jax.Array, weights: jax.Array
) -> jax.Array:
  """A scalar whose gradient in `logits` is the REINFORCE (score-function) estimate
  advantage * grad log p(blocks), with log p summed over the positions with `weights` 1 (where the
  block choice can change the loss). `advantage` (loss minus a baseline) gets no gradient."""
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_p, blocks[..., None], axis=-1)[..., 0]
  return jax.lax.stop_gradient(advantage) * jnp.sum(picked * weights)


def centre_logits(logits: jax.Array, weights: jax.Array) -> jax.Array:
  """Logits (P, L) minus each block's mean over the positions with `weights` 1 (all positions
  when there is none): any part common to all those positions (the output layer's bias, an
  architecture-independent preference) cancels, so only differences between positions remain.
  Centring over the blocks of one position instead would change nothing: a softmax ignores it."""
  w = weights.astype(logits.dtype)[:, None]
  count = jnp.sum(w)
  w = jnp.where(count > 0, w, jnp.ones_like(w))
  mean = jnp.sum(logits * w, axis=0, keepdims=True) / jnp.sum(w)
  return logits - mean
