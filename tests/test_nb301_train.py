"""NB-301 end to end: the smoke config through the CLI (ranking files, one compile per level over
many genotypes) and the rolled edge loop against the unrolled one. Resuming across a switch is
space-independent trainer code, tested on NB201 (tests/test_train_curriculum.py,
tests/test_crash.py) and NDS (tests/test_nds_train.py)."""

import csv
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import _CACHE
from helpers import read_jsonl

from close_jax.models import nb301_supernet
from close_jax.spaces import nb301

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 16 steps of batch 8 per epoch: every curriculum level trains 32 genotypes on one compile. Two
# levels (1 block for epochs 0-1, 2 from epoch 2 with SRT) instead of the smoke config's three: a
# switch, SRT and the per-level compile count are all there, and each DARTS level costs a compile
# of tens of seconds (three levels are tested on NB201: tests/test_train_curriculum.py).
OVERRIDES = {
  'batch_size': 8,
  'num_epochs': 3,
  'close.cl_schedule': (0, 2),
  'close.lr_restart_epochs': (2,),
  'compilation_cache_dir': _CACHE,
}


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('nb301'))
  flags = [f'--config.{k}={v}'.replace(' ', '') for k, v in OVERRIDES.items()]
  cmd = [sys.executable, '-m', 'close_jax.main', '--config=configs/nb301.py:smoke', *flags]
  out = subprocess.run(
    [*cmd, f'--workdir={workdir}'], cwd=REPO, capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def test_smoke_cli_trains_the_curriculum_and_ranks(cli_run):
  records = read_jsonl(cli_run)
  assert [r['num_blocks'] for r in records] == [1, 1, 2]
  # One train-step trace per level, each serving 16 steps of sampled genotypes per epoch.
  assert [r['train_step_traces'] for r in records] == [1, 1, 2]
  assert [r['train_step_executables'] for r in records] == [1, 1, 2]
  assert all(r['step'] == 16 * (r['epoch'] + 1) for r in records)
  with open(os.path.join(cli_run, 'ranking.json')) as f:
    ranking = json.load(f)
  assert ranking['num_archs'] == 8 and -1.0 <= ranking['kendall_tau'] <= 1.0
  with open(os.path.join(cli_run, 'ranking.csv'), newline='') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 8
  for row in rows:  # every ranked genotype is a valid DARTS genotype string
    assert nb301.to_str(nb301.parse(row['arch'])) == row['arch']


@pytest.mark.parametrize('reduction, mix', [(False, False), (True, True)])
def test_rolled_edge_loop_equals_unrolled(reduction, mix):
  """`scan` (one edge compiled per cell) and `unroll` (eight) compute the same cell, values and
  gradients, on a normal cell selecting blocks and a reduce cell mixing them."""
  genotype = nb301.sample(jax.random.key(7), 1)[0][int(reduction)]
  s0, s1 = jax.random.normal(jax.random.key(1), (2, 2, 8, 8, 4))
  if mix:
    assignment = jax.nn.softmax(jax.random.normal(jax.random.key(2), (8, 2)))
  else:
    assignment = jax.random.randint(jax.random.key(2), (8,), 0, 2)
  cells = {loop: nb301_supernet.SearchCell(4, 2, reduction, loop) for loop in ('scan', 'unroll')}
  params = cells['scan'].init(jax.random.key(0), s0, s1, genotype, assignment)

  def value_and_grads(cell):
    def loss(p, a, s0):
      return jnp.sum(cell.apply(p, s0, s1, genotype, a) ** 2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2) if mix else (0, 2)))(
      params, assignment, s0
    )

  (v_scan, g_scan), (v_unroll, g_unroll) = (value_and_grads(c) for c in cells.values())
  assert g_scan[0]['params']['s1_sep3_dw1'].shape[0] == 2
  np.testing.assert_allclose(v_scan, v_unroll, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_unroll), strict=True):
    # float32 sums in another order: equal to 1e-4 of the leaf's largest gradient
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.abs(b).max()))


def test_edge_loop_auto_follows_the_backend():
  expected = 'scan' if jax.default_backend() == 'cpu' else 'unroll'
  assert nb301_supernet.resolve_edge_loop('auto') == expected
  assert nb301_supernet.resolve_edge_loop('unroll') == 'unroll'
  with pytest.raises(ValueError, match="edge_loop='rolled'"):
    nb301_supernet.resolve_edge_loop('rolled')
