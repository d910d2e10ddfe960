"""The programs a GPU runs per step and per ranking call hold no conditional and no loop whose
trip count depends on data: on XLA:GPU each conditional copies its predicate to the host and
syncs the stream, and so does each iteration of a `while` whose trip count XLA cannot know.

The train step and the scorer are exported for CUDA (`jax.export`, no GPU needed: the text is
what XLA:GPU would compile, e.g. threefry's rolled CPU loops do not appear) with
`model.edge_impl=dense` (NB-301 also `model.edge_loop=unroll`), as `auto` picks on a GPU.
"""

import re

import jax
import pytest
from helpers import tiny_config

from close_jax import train
from configs import nb301 as nb301_config


def _ops(text: str) -> dict[str, int]:
  return {op: len(re.findall(rf'stablehlo\.{op}\b', text)) for op in ('case', 'if', 'while')}


def _counted(text: str) -> list[bool]:
  """Per `while`: whether its condition compares an iteration variable with a constant (the
  loop of a `lax.scan`/`lax.map`/`fori_loop` with static bounds, whose trip count XLA knows)."""
  conds = re.findall(r'stablehlo\.while\(.*?\n\s*cond \{\n(.*?)\n', text)
  return [bool(re.search(r'compare\s+LT, %iterArg\w*, %c\w*,', c)) for c in conds]


def _config(space: str, method: str):
  overrides = {'model.edge_impl': 'dense', 'close.cl_schedule': (0, 1), 'eval.at_end': False}
  config = tiny_config(method=method, **overrides)
  if space == 'nb301':
    base = nb301_config.get_config('smoke')
    config.space, config.train_sampler = 'nb301', base.train_sampler
    config.model = base.model
    config.model.edge_impl, config.model.edge_loop = 'dense', 'unroll'
    config.eval.ground_truth = base.eval.ground_truth
  return config


@pytest.mark.parametrize('space', ['nb201', 'nb301'])
@pytest.mark.parametrize('method', ['vanilla', 'close'])
def test_dense_step_and_scorer_lower_without_host_round_trips(space, method):
  run = train.Run(_config(space, method), '/nonexistent')  # nothing is written
  num_blocks = run.curriculum.max_blocks  # CLOSE: 2 blocks, so the GATE's draw is in both
  supernet = run.supernet(num_blocks)
  state = jax.eval_shape(lambda: run.initial_state(num_blocks))
  images, labels = run.device_data()
  archs = run.space.sample(jax.random.key(0), run.config.eval.arch_chunk)
  batch = jax.ShapeDtypeStruct((1, run.local_batch), 'int32', sharding=run.replicated)
  step = jax.export.export(run.train_step(supernet), platforms=('cuda',))
  text = step(state, images, labels, batch, archs[0], run.step_key).mlir_module()
  assert _ops(text) == {'case': 0, 'if': 0, 'while': 0}
  x, y = run.scorers.batches()
  scorer = jax.export.export(run.scorers.get(supernet), platforms=('cuda',))
  text = scorer(state.params, x, y, archs, run.eval_key).mlir_module()
  # Its loops: the `lax.map` over the chunk's architectures and the `lax.scan` over the ranking
  # batches, plus, for NB-301's GATE draw, the `fori_loop` of the architecture's code (the key
  # of its evaluation draw); all of static trip count, which XLA:GPU runs without reading the
  # condition back (see `evaluate.make_scorer`).
  counts = _ops(text)
  assert counts == {'case': 0, 'if': 0, 'while': 3 if (space, method) == ('nb301', 'close') else 2}
  assert _counted(text) == [True] * counts['while']
