"""Ranking difference by complexity: NB201's closed-form costs against the model's executed
operations and parameters, and the plotted group means against a by-hand computation."""

import csv
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from close_jax.analysis import complexity
from close_jax.models.nb201_supernet import NB201Supernet
from close_jax.spaces import nb201, nb201_costs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLS = (
  '|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|',
  '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|none~2|',  # a dead edge
  '|none~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|',
  '|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_1x1~1|skip_connect~2|',
)


class _Unknown:
  """A value that depends on the inputs: only its shape is known (none is ever computed)."""


def _executed_macs(fn, *args) -> int:
  """Multiply-adds of the convolutions and dot products `fn` executes, counted from its jaxpr's
  shapes. Values computable from constants (the architecture, hence every conditional's branch
  index) are evaluated, so only the branch a conditional takes is entered."""
  closed = jax.make_jaxpr(fn)(*args)
  total = [0]

  def run(jaxpr, consts, values):
    env = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, values, strict=True))
    read = lambda v: v.val if type(v).__name__ == 'Literal' else env[v]
    for eqn in jaxpr.eqns:
      ins = [read(v) for v in eqn.invars]
      sub = next(
        (eqn.params[k] for k in ('jaxpr', 'call_jaxpr', 'fun_jaxpr') if k in eqn.params), None
      )
      name = eqn.primitive.name
      if name == 'conv_general_dilated':
        rhs, out_dim = eqn.invars[1].aval.shape, eqn.params['dimension_numbers'].rhs_spec[0]
        total[0] += int(np.prod(eqn.outvars[0].aval.shape) * np.prod(rhs) // rhs[out_dim])
      elif name == 'dot_general' and eqn.invars[0].aval.ndim > 1:
        # (a vector on the left is a sum written as a dot, batch norm's statistics on XLA:CPU:
        # `layers.channel_mean`; like batch norm itself, not counted as a layer's multiply-adds)
        (contract, _), _ = eqn.params['dimension_numbers']
        lhs = eqn.invars[0].aval.shape
        total[0] += int(np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract]))
      if name == 'cond':
        assert not isinstance(ins[0], _Unknown), 'a branch index that depends on the inputs'
        branch = eqn.params['branches'][int(ins[0])]
        outs = run(branch.jaxpr, branch.consts, ins[1:])
      elif sub is not None and hasattr(sub, 'jaxpr'):
        outs = run(sub.jaxpr, sub.consts, ins)
      elif any(isinstance(v, _Unknown) for v in ins):
        outs = [_Unknown() for _ in eqn.outvars]
      else:
        outs = eqn.primitive.bind(*ins, **eqn.params)
        outs = outs if eqn.primitive.multiple_results else [outs]
      env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]

  run(closed.jaxpr, closed.consts, [_Unknown() for _ in jax.tree.leaves(args)])
  return total[0]


def _costs(channels: int, cells: int, size: int, c_in: int) -> tuple[np.ndarray, np.ndarray]:
  model_cfg = ml_collections.ConfigDict({'channels': channels, 'cells_per_stage': cells})
  archs = np.stack([nb201.parse(c) for c in CELLS])
  return archs, *nb201_costs.costs(model_cfg, (size, size, c_in), 7, archs)


@pytest.mark.parametrize(('channels', 'cells', 'size', 'c_in'), [(4, 1, 16, 3), (3, 2, 12, 1)])
def test_nb201_flops_are_the_executed_multiply_adds(channels, cells, size, c_in):
  """The convolutions and the classifier the evaluation forward runs (one block per edge, only
  the chosen op's branch, dead edges skipped), per image; 12x12 makes an odd last stage."""
  net = NB201Supernet(channels=channels, cells_per_stage=cells, num_blocks=6, num_classes=7)
  archs, flops, _ = _costs(channels, cells, size, c_in)
  x = jax.ShapeDtypeStruct((1, size, size, c_in), jnp.float32)
  blocks = jnp.arange(6, dtype=jnp.int32)
  variables = jax.eval_shape(
    lambda k, x: net.init(k, x, archs[0], blocks, train=False), jax.random.key(0), x
  )
  for arch, want in zip(archs, flops, strict=True):
    forward = lambda v, x, arch=arch: net.apply(v, x, arch, np.arange(6), train=False)
    assert _executed_macs(forward, variables, x) == want, nb201.to_str(arch)


def test_nb201_params_are_the_weights_a_child_uses():
  """The entries a child's gradient reaches when every edge has its own block (no sharing); 8
  16x16 images, so that no used weight has an exactly zero gradient by chance."""
  net = NB201Supernet(channels=4, cells_per_stage=1, num_blocks=6, num_classes=7)
  archs, _, params = _costs(4, 1, 16, 3)
  x = jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
  blocks = jnp.arange(6, dtype=jnp.int32)
  variables = jax.jit(lambda k: net.init(k, x, archs[0], blocks, train=False))(jax.random.key(0))
  probe = jax.random.normal(jax.random.key(2), (8, 7))

  @jax.jit
  def support(arch, variables, x, probe):  # one compile: the architecture is traced, as in ranking
    loss = lambda v: jnp.sum(net.apply(v, x, arch, blocks, train=False) * probe)
    return sum(jnp.count_nonzero(g) for g in jax.tree.leaves(jax.grad(loss)(variables)))

  for arch, want in zip(archs, params, strict=True):
    assert int(support(jnp.asarray(arch), variables, x, probe)) == want, nb201.to_str(arch)


def _rank_desc(values: np.ndarray) -> np.ndarray:
  """Rank 1 = largest; ties share the mean of their ranks (by counting, not by sorting)."""
  return np.array(
    [1 + np.sum(values > v) + (np.sum(values == v) - 1) / 2 for v in values], np.float64
  )


def _write_workdir(path, rng, n: int) -> dict:
  os.makedirs(path)
  truth = rng.integers(0, 30, n).astype(float)  # ties on purpose
  scores = rng.integers(0, 20, n) / 20
  flops = rng.integers(1, 6, n) * 1_000_000  # many ties: groups split by file order
  params = rng.integers(1000, 5000, n)
  with open(os.path.join(path, 'ranking.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['arch', 'supernet_score', 'ground_truth', 'flops', 'params'])
    for i in range(n):
      w.writerow([f'a{i}', f'{scores[i]:.6f}', f'{truth[i]:.6f}', flops[i], params[i]])
  return {'truth': truth, 'scores': scores, 'flops': flops, 'params': params}


def _expected_means(table: dict, by: str, sizes: list[int]) -> list[float]:
  diff = _rank_desc(table['truth']) - _rank_desc(table['scores'])
  order = sorted(range(len(diff)), key=lambda i: (table[by][i], i))
  means, start = [], 0
  for size in sizes:
    means.append(sum(diff[order[start : start + size]]) / size)
    start += size
  return means


def test_group_means_by_flops_and_params(tmp_path):
  rng = np.random.default_rng(0)
  vanilla = _write_workdir(str(tmp_path / 'vanilla'), rng, 23)  # 23 = 5 + 5 + 5 + 4 + 4
  close = _write_workdir(str(tmp_path / 'close'), rng, 23)
  out = str(tmp_path / 'by_flops.png')
  workdirs = [str(tmp_path / 'vanilla'), str(tmp_path / 'close')]
  results = complexity.main(['--workdirs', *workdirs, '--out', out])
  for name, table in (('vanilla', vanilla), ('close', close)):
    np.testing.assert_allclose(
      results[name]['means'], _expected_means(table, 'flops', [5, 5, 5, 4, 4]), atol=1e-12
    )
    assert list(results[name]['counts']) == [5, 5, 5, 4, 4]
  assert os.path.getsize(out) > 1000
  out = str(tmp_path / 'by_params.png')
  results = complexity.main(
    ['--workdirs', workdirs[0], '--by', 'params', '--groups', '3', '--out', out]
  )
  np.testing.assert_allclose(
    results['vanilla']['means'], _expected_means(vanilla, 'params', [8, 8, 7]), atol=1e-12
  )


def test_command_writes_the_png_and_refuses_a_csv_without_costs(tmp_path):
  _write_workdir(str(tmp_path / 'run'), np.random.default_rng(1), 10)
  out = tmp_path / 'fig.png'
  cmd = [sys.executable, '-m', 'close_jax.analysis.complexity', '--workdirs', str(tmp_path / 'run')]
  proc = subprocess.run([*cmd, '--out', str(out)], capture_output=True, text=True, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert out.stat().st_size > 1000 and 'per flops group' in proc.stdout
  with open(tmp_path / 'run' / 'ranking.csv', 'w') as f:
    f.write('arch,supernet_score,ground_truth\na,0.5,70\n')
  with pytest.raises(ValueError, match="no 'flops' column"):
    complexity.analyse(str(tmp_path / 'run'))
