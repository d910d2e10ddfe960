"""Named GATE settings beyond the official CLOSE code (aw_nas), for studies that compare them.

`LEARNING_GATE` is the one setting that made the GATE architecture-dependent when trained through
the supernet's own path on close_jax's synthetic learnability task
(`experiments/gate_learnability.py`; docs/ranking_quality.md, "GATE training variants"): the
normalised embedder gives the embedder a gradient it can feel, AdamW moves it whatever that
gradient's scale, and centred logits stop the architecture-independent part of the gradient from
deciding every edge. Everything else stays official (straight-through Gumbel-softmax). It is a
set of config overrides, not a default: no study has yet shown that it ranks better.
"""

from __future__ import annotations

LEARNING_GATE = {
  'method': 'close',
  'close.gate_embed_norm': 'layer',
  'close.gate_optimizer': 'adam',
  'close.gate_learning_rate': 3e-3,
  'close.gate_center_logits': True,
}
