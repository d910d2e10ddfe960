"""The space interface is the only coupling: a third space, defined here through the public
interface alone (NB201 restricted to none / skip_connect / nor_conv_3x3), trains and ranks with
the real trainer."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from close_jax import train
from close_jax.benchmarks import nb201_gt
from close_jax.models.nb201_supernet import NB201Supernet, live_ops
from close_jax.spaces import base, nb201
from close_jax.spaces import nb201_space as nb201_binding
from configs import nb201 as nb201_config

TRI_OPS = ('none', 'skip_connect', 'nor_conv_3x3')
TO_NB201 = np.array([nb201.OPS.index(op) for op in TRI_OPS], np.int32)  # (0, 1, 3)


def tri_parse(text: str) -> np.ndarray:
  ops = nb201.parse(text)
  if not np.isin(ops, TO_NB201).all():
    raise ValueError(f'tri arch {text!r}: expected only the ops {TRI_OPS}')
  return np.searchsorted(TO_NB201, ops).astype(np.int32)


def tri_to_str(arch) -> str:
  return nb201.to_str(TO_NB201[np.asarray(arch)])


def tri_sample(key, num, which='all'):
  del which
  return jax.random.randint(key, (num, 6), 0, len(TRI_OPS), jnp.int32)


def all_tri() -> np.ndarray:
  grid = np.stack(np.meshgrid(*[np.arange(3)] * 6, indexing='ij'), -1).reshape(-1, 6)
  return grid.astype(np.int32)


def tri_ground_truth(source: str):
  """Every tri cell with its real NB201 CIFAR-10 accuracy (the cell is an NB201 cell)."""
  tri_check(source)
  archs = all_tri()
  index = {tuple(a): i for i, a in enumerate(nb201.all_archs().tolist())}
  column = nb201_gt.load_column('cifar10_test_200ep')
  truth = np.array([column[index[tuple(TO_NB201[a])]] for a in archs])
  return archs, truth, source


def tri_check(source: str) -> None:
  if source != 'nb201_mapped':
    raise ValueError(f'config.eval.ground_truth={source!r}: expected nb201_mapped')


def tri_weighted(archs):
  return live_ops(jnp.asarray(TO_NB201)[archs]) == 3


def tri_probe(num, seed):
  archs = all_tri()
  archs = archs[np.asarray(tri_weighted(jnp.asarray(archs))).any(-1)]
  return archs[np.sort(np.random.default_rng(seed).choice(len(archs), num, replace=False))]


class TriNetwork:
  """Adapter: maps tri op ids onto the NB201 network's (same parameters, nothing nested)."""

  def __init__(self, inner: NB201Supernet):
    self.inner, self.num_blocks = inner, inner.num_blocks

  def init(self, key, x, ops, assignment, **kwargs):
    return self.inner.init(key, x, jnp.asarray(TO_NB201)[ops], assignment, **kwargs)

  def apply(self, variables, x, ops, assignment, **kwargs):
    return self.inner.apply(variables, x, jnp.asarray(TO_NB201)[ops], assignment, **kwargs)


def tri_network(model_cfg, num_classes, num_blocks, dtype):
  return TriNetwork(nb201_binding.build_network(model_cfg, num_classes, num_blocks, dtype))


TRI = base.Space(
  name='nb201_tri',
  arch_shape=(6,),
  num_ops=3,
  parse=tri_parse,
  to_str=tri_to_str,
  samplers=('all',),
  sample=tri_sample,
  probe_archs=tri_probe,
  ground_truth_names=('nb201_mapped',),
  load_ground_truth=tri_ground_truth,
  check_ground_truth=tri_check,
  arch_code=lambda ops: jnp.sum(ops * 3 ** jnp.arange(6, dtype=jnp.int32)),
  num_positions=6,
  position_ops=lambda ops: ops,
  weighted_positions=tri_weighted,
  vanilla_blocks=6,
  vanilla_assignment=lambda ops: jnp.arange(6, dtype=jnp.int32),
  graph=nb201_binding.SPACE.graph,
  build_network=tri_network,
)


def tri_config(method: str):
  config = nb201_config.get_config('smoke')
  config.space = 'nb201_tri'
  config.method = method
  config.train_sampler = 'all'
  config.compilation_cache_dir = ''
  config.data.synthetic_num_train = 128
  config.data.synthetic_num_rank = 64
  config.batch_size = 32
  config.num_epochs = 4
  config.close.cl_schedule = (0, 2)
  config.close.lr_restart_epochs = ()
  config.eval.eval_epochs = ()
  config.eval.ground_truth = 'nb201_mapped'
  config.eval.num_archs = 10
  config.eval.batch_size = 32
  config.eval.arch_chunk = 5
  return config


@pytest.mark.parametrize('method', ['close', 'vanilla'])
def test_a_third_space_trains_and_ranks_through_the_interface(method, tmp_path):
  base.register(TRI)
  config = tri_config(method)
  result = train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  blocks = [1, 1, 2, 2] if method == 'close' else [6] * 4
  assert [r['num_blocks'] for r in records] == blocks
  assert records[-1]['train_step_compiles'] == (2 if method == 'close' else 1)
  assert result['num_archs'] == 10 and result['ground_truth'] == 'nb201_mapped'
  with open(os.path.join(tmp_path, 'ranking.csv')) as f:
    rows = list(csv.DictReader(f))
  archs, truth, _ = tri_ground_truth('nb201_mapped')
  by_arch = {tri_to_str(a): t for a, t in zip(archs, truth, strict=True)}
  assert len(rows) == 10
  for row in rows:
    assert set(nb201.parse(row['arch'])) <= {0, 1, 3}  # printed by the space's own to_str
    assert float(row['ground_truth']) == pytest.approx(by_arch[row['arch']], abs=1e-5)
  if method == 'close':  # the GATE embedded the tri graph with its 3-op vocabulary
    assert 'gate_spread' in records[-1]


def test_unknown_space_is_a_one_line_error(tmp_path):
  config = tri_config('close')
  config.space = 'nb999'
  with pytest.raises(ValueError, match="config.space='nb999' is not supported"):
    train.train_and_evaluate(config, str(tmp_path))
