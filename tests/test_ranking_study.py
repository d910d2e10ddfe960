"""The ranking-quality study's statistics and its standalone ground-truth trainer."""

import jax
import numpy as np
import pytest
import scipy.stats

from close_jax.analysis import ranking_study
from close_jax.benchmarks.nb201_gt_trainer import Protocol, StandaloneTrainer
from close_jax.data import load_synthetic
from close_jax.spaces import nb201


def test_sample_cells_are_distinct_classes_and_seeded():
  cells = ranking_study.sample_cells(50, seed=3)
  assert cells.shape == (50, 6) and cells.dtype == np.int32
  keys = {nb201.canonical_key(c) for c in cells}
  assert len(keys) == 50  # no two isomorphic cells
  np.testing.assert_array_equal(cells, ranking_study.sample_cells(50, seed=3))
  assert not np.array_equal(cells, ranking_study.sample_cells(50, seed=4))
  with pytest.raises(ValueError, match='num_archs=7000: expected 1..6466'):
    ranking_study.sample_cells(7000, 0)


def test_bootstrap_point_values_intervals_and_paired_differences():
  rng = np.random.default_rng(0)
  truth = rng.normal(size=30)
  good = [truth + rng.normal(scale=0.5, size=30) for _ in range(2)]
  bad = [rng.normal(size=30) for _ in range(2)]
  stats = ranking_study.bootstrap(
    {'good': good, 'bad': bad, 'same': good},
    truth,
    num=200,
    pairs=(('good', 'bad'), ('good', 'same')),
  )
  entry = stats['arms']['good']['kendall_tau']
  taus = [scipy.stats.kendalltau(s, truth).statistic for s in good]  # independent of the code
  assert entry['mean'] == pytest.approx(np.mean(taus))
  assert entry['seed_std'] == pytest.approx(np.std(taus, ddof=1))  # as the power's sd
  assert entry['per_seed'] == pytest.approx(taus)
  low, high = entry['ci95']
  assert low < entry['mean'] < high and high - low < 0.6
  diff = stats['differences']['good - bad']['kendall_tau']
  assert diff['mean'] == pytest.approx(entry['mean'] - stats['arms']['bad']['kendall_tau']['mean'])
  assert diff['ci95'][0] > 0  # clearly better
  same = stats['differences']['good - same']['kendall_tau']
  assert same['mean'] == 0 and same['ci95'] == [0.0, 0.0]  # paired: the same resamples
  perfect = ranking_study.bootstrap({'oracle': [truth]}, truth, num=50)
  assert perfect['arms']['oracle']['kendall_tau']['ci95'] == pytest.approx([1.0, 1.0])
  top = perfect['arms']['oracle']['p_at_top_0.1']
  assert top['mean'] == 1.0


def test_noise_ceiling_against_scipy():
  rng = np.random.default_rng(1)
  a = rng.normal(size=20)
  b = a + rng.normal(scale=0.3, size=20)
  out = ranking_study.noise_ceiling(a, b, num=100)
  assert out['kendall_tau'] == pytest.approx(scipy.stats.kendalltau(a, b).statistic)
  assert out['ci95'][0] <= out['kendall_tau'] <= out['ci95'][1] and out['num_cells'] == 20


def _two_seeds(rng, cells, between_sd, seed_sd, offset=80.0):
  truth = offset + rng.normal(scale=between_sd, size=cells)
  runs = truth + rng.normal(scale=seed_sd, size=(2, cells))
  return truth, runs[0], runs[1]


@pytest.mark.parametrize('between_sd, seed_sd', [(1.0, 0.5), (0.45, 0.9), (2.0, 0.7)])
def test_seed_variance_recovers_a_simulated_split_and_predicts_its_taus(between_sd, seed_sd):
  rng = np.random.default_rng(7)
  truth, first, second = _two_seeds(rng, 20000, between_sd, seed_sd)
  out = ranking_study.seed_variance(first, second)
  assert out['seed_sd'] == pytest.approx(seed_sd, rel=0.03)
  assert out['between_sd'] == pytest.approx(between_sd, rel=0.05)
  assert out['reliability'] == pytest.approx(between_sd**2 / (between_sd**2 + seed_sd**2), abs=0.02)
  # The predictions against the simulation's own Kendall's taus (seeds; the truth vs the mean).
  seed_tau = scipy.stats.kendalltau(first, second).statistic
  mean_tau = scipy.stats.kendalltau(truth, (first + second) / 2).statistic
  assert out['predicted_tau'] == pytest.approx(seed_tau, abs=0.02)
  assert out['perfect_ranker_tau'] == pytest.approx(mean_tau, abs=0.02)
  assert out['num_cells'] == 20000 and out['ratio'] == pytest.approx(between_sd / seed_sd, rel=0.06)


def test_perfect_ranker_against_a_three_seed_mean():
  """The split from two seeds predicts how well the true means agree with a three-seed mean."""
  rng = np.random.default_rng(11)
  truth = rng.normal(size=20000)
  runs = truth + rng.normal(scale=0.5, size=(3, 20000))
  out = ranking_study.seed_variance(runs[0], runs[1], mean_of=3)
  want = scipy.stats.kendalltau(truth, runs.mean(0)).statistic
  assert out['perfect_ranker_tau'] == pytest.approx(want, abs=0.02) and out['mean_of'] == 3
  two = ranking_study.seed_variance(runs[0], runs[1])['perfect_ranker_tau']
  assert two < out['perfect_ranker_tau'] - 0.02  # the third seed is worth something here
  with pytest.raises(ValueError, match='mean_of=0: expected'):
    ranking_study.seed_variance(runs[0], runs[1], mean_of=0)


def test_seed_variance_takes_its_split_from_every_seed_given():
  """Three seeds: the one-way ANOVA's mean squares (computed here from sums of squares) give the
  split."""
  rng = np.random.default_rng(5)
  truth = rng.normal(scale=1.5, size=(200, 1))
  runs = (truth + rng.normal(scale=0.8, size=(200, 3))).T  # (seeds, cells)
  out = ranking_study.seed_variance(*runs)
  k, n = runs.shape
  ss_within = ((runs - runs.mean(0)) ** 2).sum()
  ss_between = k * ((runs.mean(0) - runs.mean()) ** 2).sum()
  ms_within, ms_between = ss_within / (n * (k - 1)), ss_between / (n - 1)
  assert out['seed_sd'] == pytest.approx(np.sqrt(ms_within))
  assert out['between_sd'] == pytest.approx(np.sqrt((ms_between - ms_within) / k))
  assert out['mean_of'] == 3 and out['seeds'] == 3
  assert out == pytest.approx(ranking_study.seed_variance(*runs[::-1]))  # seed order is moot
  with pytest.raises(ValueError, match=r'\(200,\), \(200,\), \(199,\): expected equal'):
    ranking_study.seed_variance(runs[0], runs[1], runs[2][:-1])


def _replicates(truth, seed_sd, reps, seed):
  """Per replicate: (measured seed-to-seed tau, seed_variance of its two seeds, the actual tau of
  the true means against a three-seed mean)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(reps):
    a, b, c = (truth + rng.normal(0, seed_sd, len(truth)) for _ in range(3))
    split = ranking_study.seed_variance(a, b, mean_of=3)
    actual = scipy.stats.kendalltau(truth, (a + b + c) / 3).statistic
    out.append((scipy.stats.kendalltau(a, b).statistic, split, actual))
  return out


def test_simulated_ceiling_agrees_with_normal_theory_on_normal_cells():
  truth = np.random.default_rng(5).normal(0, 1.5, 150)
  reps = _replicates(truth, 0.7, 8, seed=6)
  measured = np.mean([m for m, _, _ in reps])
  for key in ('simulated_tau', 'predicted_tau'):
    assert np.mean([v[key] for _, v, _ in reps]) == pytest.approx(measured, abs=0.03)
  actual = np.mean([a for *_, a in reps])
  for key in ('simulated_perfect_ranker_tau', 'perfect_ranker_tau'):
    assert np.mean([v[key] for _, v, _ in reps]) == pytest.approx(actual, abs=0.03)


def test_simulated_ceiling_spreads_the_truth_as_the_split_estimates_it():
  """At a reliability near one half the scaling of the observed means matters: no scaling, the
  plain reliability, or the seed variance in place of the mean's all miss normal theory by 0.05
  or more here; the right one agrees with it."""
  rng = np.random.default_rng(11)
  truth = rng.normal(0, 1, 2000)
  first, second = (truth + rng.normal(0, 1, 2000) for _ in range(2))
  out = ranking_study.seed_variance(first, second)
  assert out['simulated_tau'] == pytest.approx(out['predicted_tau'], abs=0.02)
  assert out['simulated_perfect_ranker_tau'] == pytest.approx(out['perfect_ranker_tau'], abs=0.02)


def test_simulated_ceiling_is_not_fooled_by_a_few_outlying_cells():
  """37 close cells and 3 far below: the outliers make the between-cell sd large, so normal theory
  promises a tau the close cells cannot give; the simulation on the cells' own spread is far
  nearer (still above: the outliers' share of the reliability under-shrinks the close cells)."""
  rng = np.random.default_rng(7)
  truth = np.concatenate([rng.normal(0, 0.5, 37), [-8.0, -9.0, -10.0]])
  reps = _replicates(truth, 0.6, 24, seed=8)
  measured = np.mean([m for m, _, _ in reps])
  normal = np.mean([v['predicted_tau'] for _, v, _ in reps])
  simulated = np.mean([v['simulated_tau'] for _, v, _ in reps])
  assert normal - measured > 0.3 and abs(simulated - measured) < 0.15
  actual = np.mean([a for *_, a in reps])
  normal_ranker = np.mean([v['perfect_ranker_tau'] for _, v, _ in reps])
  simulated_ranker = np.mean([v['simulated_perfect_ranker_tau'] for _, v, _ in reps])
  assert abs(simulated_ranker - actual) < abs(normal_ranker - actual) / 2


def test_simulated_ceiling_is_not_fooled_by_a_few_wayward_runs():
  """Normal cells, and seed noise that now and then (1% of runs) costs a run 25 points: the
  pooled seed sd nearly triples, so normal theory sees the three-seed mean far noisier than it
  is; the simulation, drawing from the runs' own deviations, is far nearer the tau of the true
  process (estimated here from fresh runs of it; still below: a wayward run shows in the
  deviations of all its cell's runs)."""
  rng = np.random.default_rng(3)
  truth = rng.normal(0, 1.9, 150)

  def runs(num):
    return truth + rng.normal(0, 0.8, (num, 150)) - 25.0 * (rng.random((num, 150)) < 0.01)

  simulated, normal, actual, seed_sd = [], [], [], []
  for _ in range(6):
    split = ranking_study.seed_variance(*runs(3))
    seed_sd.append(split['seed_sd'])
    simulated.append(split['simulated_perfect_ranker_tau'])
    normal.append(split['perfect_ranker_tau'])
    actual.append(scipy.stats.kendalltau(truth, runs(3).mean(axis=0)).statistic)
  assert np.mean(seed_sd) > 2.0  # 0.8 without the wayward runs
  simulated, normal, actual = np.mean(simulated), np.mean(normal), np.mean(actual)
  assert actual - normal > 0.15 and abs(simulated - actual) < (actual - normal) / 2


def test_simulated_ceiling_is_seeded_and_handles_no_spread():
  a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.2, 1.9, 3.3, 3.8])
  assert ranking_study.simulated_ceiling(a, b) == ranking_study.simulated_ceiling(a, b)
  flat = ranking_study.simulated_ceiling(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))
  assert flat['seed_tau'] == 0.0 and flat['draws'] == 0  # no between-cell variance left


def test_seed_variance_needed_ratio_reaches_the_target_tau():
  needed = ranking_study.seed_variance(np.arange(3.0), np.arange(3.0) + 1, target_tau=0.7)
  _, first, second = _two_seeds(np.random.default_rng(3), 20000, needed['needed_ratio'], 1.0)
  assert scipy.stats.kendalltau(first, second).statistic == pytest.approx(0.7, abs=0.02)
  assert needed['needed_ratio'] == pytest.approx(2.85, abs=0.01)


def test_seed_variance_no_cell_effect_and_bad_input():
  _, first, second = _two_seeds(np.random.default_rng(5), 5000, 0.0, 1.0)
  out = ranking_study.seed_variance(first, second)
  assert out['between_sd'] < 0.1 and out['predicted_tau'] < 0.01
  with pytest.raises(ValueError, match=r'shapes \(3,\), \(4,\): expected equal'):
    ranking_study.seed_variance(np.zeros(3), np.zeros(4))
  with pytest.raises(ValueError, match='target_tau=1.5: expected a value in'):
    ranking_study.seed_variance(np.arange(3.0), np.arange(3.0), target_tau=1.5)


@pytest.fixture(scope='module')
def trainer():
  data = load_synthetic(num_train=64, num_rank=32, image_size=8, channels=1, num_classes=4)
  protocol = Protocol(
    channels=4, cells_per_stage=1, epochs=2, batch_size=32, eval_batch_size=16, crop_padding=1
  )
  return StandaloneTrainer(protocol, data, data.rank_images, data.rank_labels)


def test_cell_costs_equal_the_standalone_networks_parameter_tree(trainer):
  """Closed form (conv k*k*C^2 per live edge and stage) vs the Flax parameter tree: the two
  differ only by the skeleton, the same constant for every cell."""
  cells = ranking_study.sample_cells(12, seed=0)
  params, flops = ranking_study.cell_costs(cells, channels=4, cells_per_stage=1, image_size=8)
  counted = np.array([trainer.num_params(c) for c in cells])
  assert len(set(counted - params)) == 1
  skeleton = trainer.num_params(nb201.parse('|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'))
  assert (counted - params)[0] == skeleton
  # NB201 halves the resolution as it doubles the width: FLOPs order cells as parameters do.
  assert scipy.stats.kendalltau(params, flops).statistic == pytest.approx(1.0)


def test_standalone_training_is_seeded_and_compiles_once(trainer):
  cells = ranking_study.sample_cells(3, seed=1)
  first = [trainer.accuracy(c, seed=0) for c in cells]
  assert trainer._step._cache_size() == 1 and trainer._evaluate._cache_size() == 1
  assert trainer._plan._cache_size() == 1
  assert trainer.accuracy(cells[0], seed=0) == first[0]
  assert all(
    0.0 <= a <= 100.0 and a * 32 / 100 == pytest.approx(round(a * 32 / 100)) for a in first
  )
  params = trainer._init(jax.random.key(0), cells[0])
  assert 'gate' not in params and params['cell_0']['conv3x3'].shape[0] == 6


def test_an_epoch_of_jitted_steps_equals_the_scanned_epoch(trainer):
  """`epoch_form='steps'` (the default) and `'scan'` train the same numbers up to float rounding;
  a bad form is refused."""
  data = load_synthetic(num_train=64, num_rank=32, image_size=8, channels=1, num_classes=4)
  scan = StandaloneTrainer(trainer.protocol, data, data.rank_images, data.rank_labels, 'scan')
  cell = ranking_study.sample_cells(1, seed=4)[0]
  stepped, loss_stepped = trainer._train_one(cell, 3)
  scanned, loss_scanned = scan._train_one(cell, 3)
  for a, b in zip(_leaves(stepped), _leaves(scanned), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert loss_stepped == pytest.approx(loss_scanned, rel=1e-5)
  assert scan._epoch._cache_size() == 1 and scan._step._cache_size() == 0
  with pytest.raises(ValueError, match=r"epoch_form='loop': expected one of \('steps', 'scan'\)"):
    StandaloneTrainer(trainer.protocol, data, data.rank_images, data.rank_labels, 'loop')


def _leaves(params, i=None):
  return [np.asarray(x if i is None else x[i]) for x in jax.tree.leaves(params)]


def test_batched_training_does_not_depend_on_the_batch(trainer):
  """A cell trained alone, in a batch of 3 and in that batch reversed ends with the same weights
  (float tolerance: the programs differ), and equals the one-cell `lax.switch` trainer's."""
  c0, c1, c2 = ranking_study.sample_cells(3, seed=1)
  alone, loss_alone = trainer._train_batch(np.stack([c0]), 0)
  forward, loss_fwd = trainer._train_batch(np.stack([c0, c1, c2]), 0)
  backward, loss_bwd = trainer._train_batch(np.stack([c2, c1, c0]), 0)
  for a, b, c in zip(_leaves(alone, 0), _leaves(forward, 0), _leaves(backward, 2), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(loss_bwd[::-1], loss_fwd, rtol=1e-5)
  single, loss_single = trainer._train_one(c0, 0)
  for a, b in zip(_leaves(single), _leaves(alone, 0), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
  assert loss_single == pytest.approx(loss_alone[0], rel=1e-5)
  accs = trainer.train_batch(np.stack([c0, c1, c2]), 0)
  np.testing.assert_array_equal(trainer.train_batch(np.stack([c2, c1, c0]), 0)[::-1], accs)
  assert accs[0] == trainer.accuracy(c0, 0)
  assert trainer._epoch_batch._cache_size() == 2  # one compile per batch size A, not per cell


def test_a_batch_may_mix_seeds_and_rejects_bad_cells(trainer):
  c0, c1 = ranking_study.sample_cells(2, seed=2)
  params, _ = trainer._train_batch(np.stack([c0, c0, c1]), [0, 1, 0])
  alone, _ = trainer._train_batch(np.stack([c0]), 1)
  for a, b in zip(_leaves(alone, 0), _leaves(params, 1), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
  pairs = zip(_leaves(params, 0), _leaves(params, 1), strict=True)
  assert any(not np.allclose(a, b) for a, b in pairs)  # the seed matters
  with pytest.raises(ValueError, match=r'cell \[0, 1, 2, 3, 4, 5\]: expected 6 op ids in 0..4'):
    trainer.train_batch(np.array([[0, 1, 2, 3, 4, 5]]), 0)
  with pytest.raises(ValueError, match=r'archs of shape \(6,\): expected \(A, 6\)'):
    trainer.train_batch(c0, 0)


def _pair_count_tau(a, b) -> float:
  """Kendall's tau-a by counting concordant and discordant pairs (no ties in these data)."""
  n, total = len(a), 0
  for i in range(n):
    for j in range(i + 1, n):
      total += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
  return total / (n * (n - 1) / 2)


def test_noise_sources_split_the_spread_between_evaluation_and_training_seeds():
  rng = np.random.default_rng(3)
  truth = rng.normal(size=25)
  trained = [truth + rng.normal(scale=s, size=25) for s in (0.3, 0.8, 1.5)]  # 3 training seeds
  draws = np.array([[t + rng.normal(scale=0.4, size=25) for t in trained] for _ in range(4)])
  out = ranking_study.noise_sources(draws, truth)
  tau = np.array([[_pair_count_tau(s, truth) for s in row] for row in draws])
  np.testing.assert_allclose(out['tau'], tau, atol=1e-12)
  sd_eval = np.sqrt(np.mean([np.var(tau[:, t], ddof=1) for t in range(3)]))
  sd_train = np.sqrt(np.mean([np.var(tau[e], ddof=1) for e in range(4)]))
  assert out['sd_over_eval_seeds'] == pytest.approx(sd_eval)
  assert out['sd_over_train_seeds'] == pytest.approx(sd_train)
  pairs_eval = [
    _pair_count_tau(draws[i, t], draws[j, t]) for t in range(3) for i in range(4) for j in range(i)
  ]
  assert out['agreement_eval_seeds'] == pytest.approx(np.mean(pairs_eval))
  # identical draws: the evaluation adds no spread and its rankings agree perfectly
  same = ranking_study.noise_sources(np.stack([draws[0]] * 3), truth)
  assert same['sd_over_eval_seeds'] == pytest.approx(0, abs=1e-12) and same[
    'agreement_eval_seeds'
  ] == pytest.approx(1)
  with pytest.raises(ValueError, match=r'expected \(evaluation seeds >= 2'):
    ranking_study.noise_sources(draws[:1], truth)
