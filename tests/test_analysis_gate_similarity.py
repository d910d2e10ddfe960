"""GATE assignment similarity: KL of known distributions, and the plotted KL-vs-distance of a
freshly initialised checkpoint against a pair-by-pair recomputation from the original params."""

import json
import os
import shutil

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special

from close_jax.analysis import gate_similarity
from close_jax.checkpoint import Checkpointer
from close_jax.spaces import nb201
from close_jax.supernet import build_supernet
from close_jax.train_step import TrainState
from configs import nb201 as nb201_config


def test_mean_kl_of_known_distributions():
  p = np.array([[0.5, 0.5], [0.2, 0.8]])
  q = np.array([[0.9, 0.1], [0.2, 0.8]])
  want = (0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1) + 0.0) / 2
  assert gate_similarity.mean_kl(p, q) == pytest.approx(want, rel=1e-12)
  assert gate_similarity.mean_kl(q, q) == 0.0


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  """A CLOSE run's checkpoint at 3 blocks with a freshly initialised GATE (no training)."""
  workdir = str(tmp_path_factory.mktemp('gate'))
  config = nb201_config.get_config('smoke')  # K = 3
  supernet = build_supernet(config, num_classes=10, num_blocks=3)
  params = jax.jit(lambda k: supernet.init(k, (8, 8, 3)))(jax.random.key(0))
  # A fresh GATE barely depends on the architecture (KLs ~1e-9, float noise): widen the op
  # embeddings and the logits so that the KLs (~3e-5) are well above float32 error.
  gate = params['gate']
  gate['embedder']['op_embedding']['embedding'] *= 30.0
  gate['mlp']['logits']['kernel'] *= 100.0
  tx = optax.sgd(0.1, momentum=0.9)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  ckpt = Checkpointer(workdir)
  ckpt.save(6, state, {'epoch': 6, 'method': 'close', 'level': 2, 'num_blocks': 3})
  ckpt.close()
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json())
  return workdir, supernet, params


def _independent(supernet, params, seeds, num_archs) -> dict[int, float]:
  """Mean over seeds of the mean over all usable pairs at each distance, pair by pair."""
  conv3 = nb201.OPS.index('nor_conv_3x3')
  per_seed = {}
  for seed in seeds:
    archs = np.asarray(supernet.space.sample(jax.random.key(seed), num_archs))
    live = nb201.live_ops(archs)
    logits = [np.asarray(supernet.gate_logits(params, jnp.asarray(a), None, False)) for a in archs]
    probs = [scipy.special.softmax(x.astype(np.float64), axis=-1) for x in logits]
    kls = {}
    for i in range(num_archs):
      for j in range(i + 1, num_archs):
        both = [e for e in range(6) if live[i][e] == conv3 and live[j][e] == conv3]
        distance = int(np.sum(archs[i] != archs[j]))
        if both and distance:
          kl = np.mean([scipy.special.rel_entr(probs[i][e], probs[j][e]).sum() for e in both])
          kls.setdefault(distance, []).append(kl)
    for d, values in kls.items():
      per_seed.setdefault(d, []).append(np.mean(values))
  return {d: float(np.mean(v)) for d, v in per_seed.items()}


def test_kl_by_distance_from_the_checkpoint(checkpoint, tmp_path):
  workdir, supernet, params = checkpoint
  out = str(tmp_path / 'kl.png')
  args = ['--workdir', workdir, '--archs', '24', '--pairs', '1000', '--seeds', '2', '--out', out]
  result = gate_similarity.main(args)[os.path.basename(workdir)]
  want = _independent(supernet, params, (0, 1), 24)
  assert sorted(want) == list(result['distance'])
  np.testing.assert_allclose(result['kl_mean'], [want[d] for d in sorted(want)], rtol=1e-3)
  assert np.all(result['kl_mean'] > 0)
  assert os.path.getsize(out) > 1000


def test_refuses_a_checkpoint_without_a_gate(checkpoint, tmp_path):
  workdir, _, _ = checkpoint
  config = nb201_config.get_config('smoke')
  config.method = 'vanilla'
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json())
  try:
    with pytest.raises(ValueError, match='no learned GATE'):
      gate_similarity.restore_gate(workdir)
  finally:
    config.method = 'close'
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json())


def _probs(supernet, params, arch) -> np.ndarray:
  logits = np.asarray(supernet.gate_logits(params, jnp.asarray(arch), None, False))
  return scipy.special.softmax(logits.astype(np.float64), axis=-1)


def test_nb201_pair_kls_sum_over_the_live_convolutions_both_share(checkpoint):
  _, supernet, params = checkpoint
  got = gate_similarity.nb201_pair_kls(supernet, params)
  conv3 = nb201.OPS.index('nor_conv_3x3')
  archs = np.stack(
    [nb201.parse(gate_similarity.NB201_PAIRS[n]) for n in ('base', 'different', 'similar')]
  )
  live = nb201.live_ops(archs)
  probs = [_probs(supernet, params, a) for a in archs]
  for k, name in ((1, 'different'), (2, 'similar')):
    both = [e for e in range(6) if live[0][e] == conv3 and live[k][e] == conv3]
    assert both
    want = sum(scipy.special.rel_entr(probs[0][e], probs[k][e]).sum() for e in both)
    # float32 probabilities in nb201_pair_kls: KLs of ~3e-5 agree to ~0.1%; one edge more or
    # less would change them by tens of percent
    assert got[name] == pytest.approx(want, rel=1e-2) and want > 0


def test_ranking_study_reports_the_gate_of_the_arms_that_learn_one(checkpoint, tmp_path):
  rq = helpers.load_experiment('ranking_quality')
  workdir, supernet, params = checkpoint
  for seed in (0, 1):
    shutil.copytree(workdir, tmp_path / f'close_s{seed}')
    record = {'epoch': 6, 'gate_spread': 0.1 * (seed + 1)}
    (tmp_path / f'close_s{seed}' / 'metrics.jsonl').write_text(json.dumps(record) + '\n')
    (tmp_path / f'vanilla_s{seed}').mkdir()
    (tmp_path / f'vanilla_s{seed}' / 'metrics.jsonl').write_text('{"epoch": 6}\n')
  entry = rq.gate_at_end(str(tmp_path), 'close', 2)
  kls = gate_similarity.nb201_pair_kls(supernet, params)
  assert entry == {
    'spread': [0.1, 0.2],
    'kl_different': [kls['different']] * 2,
    'kl_similar': [kls['similar']] * 2,
  }
  assert rq.gate_at_end(str(tmp_path), 'vanilla', 2) is None
  # kept per run: the report reads it on a copy of the study without checkpoints
  for seed in (0, 1):
    shutil.rmtree(tmp_path / f'close_s{seed}' / 'checkpoints')
  assert rq.gate_at_end(str(tmp_path), 'close', 2) == entry
  # a record of an earlier epoch than the run's last is not taken for its end
  stale = tmp_path / 'close_s0' / 'gate_end.json'
  stale.write_text(json.dumps({**json.loads(stale.read_text()), 'epoch': 5}))
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    rq.gate_at_end(str(tmp_path), 'close', 2)
  row = f'| close | 0.1 / 0.2 | {kls["different"]:.3g} / {kls["similar"]:.3g} |'
  assert row in rq.gate_table({'close': entry}).splitlines()
