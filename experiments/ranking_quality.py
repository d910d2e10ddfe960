"""Ranking quality on real data, with error bars: does CLOSE rank better than vanilla here?

  python experiments/ranking_quality.py --workdir=/tmp/rq   # Fashion-MNIST 16x16, ~1 h on 2 cores
  python experiments/ranking_quality.py --workdir=/tmp/rq --report-only

Needs the Fashion-MNIST idx files (`apt-get install dataset-fashion-mnist`; any MNIST-format
directory with --data-dir) and matplotlib for the PNG. Three steps, each resumable:
1. Ground truth: --num-archs NB201 cells (a seeded uniform sample of the 6466 classes) trained
   standalone (`close_jax.final.nb201_standalone`) on the supernet's training split and tested on
   the test images; --ceiling-archs of them trained again with another seed (the noise ceiling).
   Cached cell by cell in WORKDIR/ground_truth*.csv, so later runs only train supernets.
2. Supernets: vanilla, CLOSE and CLOSE-S (and the extra arms) x --seeds, same network size and
   budget (`budget_epochs` scales the paper's schedule), in WORKDIR/runs/<arm>_s<seed>, ranking the
   same cells at every 200 paper-epochs and just before and after each switch.
3. Report: per arm Kendall's tau, Spearman's rho, P@top-10%/25% with bootstrap 95% intervals over
   the cells and the spread over seeds; paired differences; the noise ceiling; rank-by-parameters
   and rank-by-FLOPs; WORKDIR/summary.json, WORKDIR/ranking_quality.png, WORKDIR/table.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

import numpy as np  # noqa: E402

from close_jax import (  # noqa: E402
  budget,
  train,
  xla_flags,  # noqa: E402
)
from close_jax.analysis import ranking_study  # noqa: E402
from close_jax.data import idx  # noqa: E402
from close_jax.metric_writer import write_atomic  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402

BASE_ARMS = {'vanilla': {'method': 'vanilla'}, 'close': {}, 'close_s': {'method': 'close_s'}}
PAIRS = (
  ('close', 'vanilla'),
  ('close_s', 'vanilla'),
  ('close', 'close_random'),
  ('close_m4', 'close'),
)


def _log(message: str) -> None:
  print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--data-dir', default=idx.DEFAULT_DIR)
  p.add_argument('--image-size', type=int, default=16)
  p.add_argument('--train-size', type=int, default=10000, help='training images (both kinds)')
  p.add_argument(
    '--rank-size', type=int, default=5000, help='held-out images the supernet ranks on'
  )
  p.add_argument('--channels', type=int, default=8)
  p.add_argument('--cells-per-stage', type=int, default=1)
  p.add_argument('--batch-size', type=int, default=256)
  p.add_argument('--num-archs', type=int, default=40)
  p.add_argument('--ceiling-archs', type=int, default=12)
  p.add_argument('--gt-epochs', type=int, default=4)
  p.add_argument('--epochs', type=int, default=16, help='supernet epochs (the schedule scales)')
  p.add_argument('--seeds', type=int, default=2)
  p.add_argument('--gate-samples', type=int, default=4, help='M of the close_m4 arm')
  p.add_argument(
    '--extra-arm',
    action='append',
    default=['close_random:close.gate=random'],
    help='NAME:KEY=VALUE[,KEY=VALUE] (repeatable), e.g. close_copy:close.wit=copy',
  )
  p.add_argument('--bootstrap', type=int, default=1000)
  p.add_argument('--report-only', action='store_true')
  return p.parse_args(argv)


def _parse_value(text: str):
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def arms_of(args) -> dict[str, dict]:
  arms = dict(BASE_ARMS)
  for spec in args.extra_arm:
    name, _, body = spec.partition(':')
    if not name or not body or '=' not in body:
      raise SystemExit(f'error: --extra-arm {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE]')
    arms[name] = dict(
      (k.strip(), _parse_value(v.strip())) for k, v in (kv.split('=', 1) for kv in body.split(','))
    )
  return arms


def load_data(args):
  dataset = idx.load_idx(args.data_dir, args.train_size, args.image_size, args.rank_size)
  test = idx.load_idx_arrays(args.data_dir, args.image_size)
  return dataset, test['test_images'], test['test_labels']


# --- 1. ground truth ------------------------------------------------------------------------------


def _read_rows(path: str) -> dict[str, float]:
  if not os.path.exists(path):
    return {}
  with open(path, newline='') as f:
    return {row['arch']: float(row['accuracy']) for row in csv.DictReader(f)}


def ground_truth(args, archs: np.ndarray, seed: int, name: str) -> dict[str, float]:
  """Standalone accuracies of `archs`, appended to WORKDIR/<name>.partial.csv as each finishes;
  WORKDIR/<name>.csv (atomic) once all are done."""
  path = os.path.join(args.workdir, f'{name}.csv')
  done = _read_rows(path)
  if len(done) == len(archs):
    return done
  from close_jax.final.nb201_standalone import Protocol, StandaloneTrainer

  partial = os.path.join(args.workdir, f'{name}.partial.csv')
  done = _read_rows(partial)
  dataset, test_images, test_labels = load_data(args)
  protocol = Protocol(
    channels=args.channels,
    cells_per_stage=args.cells_per_stage,
    epochs=args.gt_epochs,
    batch_size=args.batch_size,
    crop_padding=2,
  )
  trainer = StandaloneTrainer(protocol, dataset, test_images, test_labels)
  if not os.path.exists(partial):
    with open(partial, 'w') as f:
      f.write('arch,accuracy\n')
  for i, arch in enumerate(archs):
    key = nb201.to_str(arch)
    if key in done:
      continue
    start = time.perf_counter()
    done[key] = trainer.accuracy(arch, seed)
    with open(partial, 'a') as f:
      f.write(f'{key},{done[key]:.4f}\n')
    left = (len(archs) - i - 1) * (time.perf_counter() - start)
    _log(f'{name} {i + 1}/{len(archs)}: {done[key]:.2f}%  {key}  ETA {left / 60:.1f} min')
  rows = [(nb201.to_str(a), done[nb201.to_str(a)]) for a in archs]
  write_atomic(
    path, lambda f: f.writelines(['arch,accuracy\n'] + [f'{a},{v:.4f}\n' for a, v in rows])
  )
  os.remove(partial)
  return dict(rows)


# --- 2. supernets ---------------------------------------------------------------------------------


def supernet_config(args, arm: dict, seed: int, gt_csv: str):
  config = nb201_config.get_config()  # the paper's setting, then scaled to --epochs
  config.seed = seed
  config.data.name = 'idx'
  config.data.idx_dir = args.data_dir
  config.data.idx_train_size = args.train_size
  config.data.idx_rank_size = args.rank_size
  config.data.image_size = args.image_size
  config.data.crop_padding = 2
  config.model.channels = args.channels
  config.model.cells_per_stage = args.cells_per_stage
  config.batch_size = args.batch_size
  config.eval.eval_epochs = tuple(range(200, config.num_epochs + 1, 200))
  config.eval.at_switches = True
  config.eval.ground_truth = gt_csv
  config.eval.num_archs = 0
  config.eval.batch_size = 500
  config.budget_epochs = args.epochs
  for key, value in arm.items():
    group, _, name = key.rpartition('.')
    node = config
    for part in group.split('.') if group else ():
      node = node[part]
    node[name] = value
  return config


def train_arms(args, arms: dict, gt_csv: str) -> None:
  for seed in range(args.seeds):
    for name, arm in arms.items():
      workdir = os.path.join(args.workdir, 'runs', f'{name}_s{seed}')
      if os.path.exists(os.path.join(workdir, 'ranking.csv')) and _finished(workdir, args):
        continue
      _log(f'supernet {name} seed {seed} -> {workdir}')
      train.train_and_evaluate(supernet_config(args, arm, seed, gt_csv), workdir)
    m4 = os.path.join(args.workdir, 'runs', f'close_m4_s{seed}')
    if not os.path.exists(os.path.join(m4, 'ranking.csv')):  # re-rank CLOSE with M draws
      shutil.rmtree(m4, ignore_errors=True)
      shutil.copytree(os.path.join(args.workdir, 'runs', f'close_s{seed}'), m4)
      config = supernet_config(args, {'eval.gate_samples': args.gate_samples}, seed, gt_csv)
      config.mode = 'evaluate'
      _log(f'close seed {seed} re-ranked with eval.gate_samples={args.gate_samples} -> {m4}')
      train.train_and_evaluate(config, m4)


def _finished(workdir: str, args) -> bool:
  records = _jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return bool(records) and records[-1]['epoch'] + 1 == args.epochs


def _jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


# --- 3. report ------------------------------------------------------------------------------------


def _scores(workdir: str, archs: list[str]) -> np.ndarray:
  with open(os.path.join(workdir, 'ranking.csv'), newline='') as f:
    table = {row['arch']: float(row['supernet_score']) for row in csv.DictReader(f)}
  missing = [a for a in archs if a not in table]
  if missing:
    raise SystemExit(f'error: {workdir}/ranking.csv lacks {len(missing)} cells, e.g. {missing[0]}')
  return np.asarray([table[a] for a in archs])


def report(args, arms: dict, truth: dict[str, float], second: dict[str, float]) -> dict:
  names = list(truth)
  gt = np.asarray([truth[a] for a in names])
  runs = os.path.join(args.workdir, 'runs')
  scores = {
    arm: [_scores(os.path.join(runs, f'{arm}_s{s}'), names) for s in range(args.seeds)]
    for arm in [*arms, 'close_m4']
  }
  archs = np.stack([nb201.parse(a) for a in names])
  params, flops = ranking_study.cell_costs(
    archs, args.channels, args.cells_per_stage, args.image_size
  )
  scores['params'], scores['flops'] = [params.astype(float)], [flops.astype(float)]
  pairs = tuple(p for p in PAIRS if p[0] in scores and p[1] in scores)
  stats = ranking_study.bootstrap(scores, gt, args.bootstrap, seed=0, pairs=pairs)
  ceiling_names = list(second)
  stats['noise_ceiling'] = ranking_study.noise_ceiling(
    [truth[a] for a in ceiling_names], [second[a] for a in ceiling_names], args.bootstrap
  )
  stats['history'] = {
    arm: [_jsonl(os.path.join(runs, f'{arm}_s{s}', 'rankings.jsonl')) for s in range(args.seeds)]
    for arm in arms
  }
  stats['gate'] = {
    arm: [
      _jsonl(os.path.join(runs, f'{arm}_s{s}', 'metrics.jsonl'))[-1].get('gate_spread')
      for s in range(args.seeds)
    ]
    for arm in arms
  }
  config = supernet_config(args, {}, 0, '')
  budget.scale_to_budget(config)
  stats['schedule'] = {
    'epochs': config.num_epochs,
    'cl_schedule': list(config.close.cl_schedule),
    'lr_restart_epochs': list(config.close.lr_restart_epochs),
    'close_s_switch_epoch': config.close.close_s_switch_epoch,
    'plateau_patience': config.optim.plateau_patience,
  }
  stats['setup'] = {k: v for k, v in vars(args).items() if k != 'report_only'}
  stats['ground_truth'] = {
    'mean': float(gt.mean()),
    'min': float(gt.min()),
    'max': float(gt.max()),
    'num_cells': len(gt),
  }
  write_atomic(os.path.join(args.workdir, 'summary.json'), lambda f: json.dump(stats, f, indent=1))
  table = markdown_table(stats)
  write_atomic(os.path.join(args.workdir, 'table.md'), lambda f: f.write(table))
  print(table)
  plot(stats, os.path.join(args.workdir, 'ranking_quality.png'))
  return stats


def _ci(entry: dict) -> str:
  low, high = entry['ci95']
  return f'{entry["mean"]:+.3f} [{low:+.3f}, {high:+.3f}]'


def markdown_table(stats: dict) -> str:
  keys = [k for k in next(iter(stats['arms'].values())) if k != 'spearman_rho']
  lines = [
    '| arm | ' + ' | '.join(f'{k} [95% CI]' for k in keys) + ' | tau seed std |',
    '|---|' + '---|' * (len(keys) + 1),
  ]
  for arm, entry in stats['arms'].items():
    cells = ' | '.join(_ci(entry[k]) for k in keys)
    lines.append(f'| {arm} | {cells} | {entry["kendall_tau"]["seed_std"]:.3f} |')
  lines += ['', '| paired difference | ' + ' | '.join(keys) + ' |', '|---|' + '---|' * len(keys)]
  for pair, entry in stats['differences'].items():
    lines.append(f'| {pair} | ' + ' | '.join(_ci(entry[k]) for k in keys) + ' |')
  ceiling = stats['noise_ceiling']
  low, high = ceiling['ci95']
  lines += [
    '',
    f'Noise ceiling (tau between two seeds of standalone training, {ceiling["num_cells"]} cells): '
    f'{ceiling["kendall_tau"]:+.3f} [{low:+.3f}, {high:+.3f}]',
  ]
  return '\n'.join(lines) + '\n'


def plot(stats: dict, path: str) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  arms = stats['arms']
  names = list(arms)
  means = [arms[n]['kendall_tau']['mean'] for n in names]
  errors = np.array(
    [
      [m - arms[n]['kendall_tau']['ci95'][0], arms[n]['kendall_tau']['ci95'][1] - m]
      for n, m in zip(names, means, strict=True)
    ]
  ).T
  axes[0].bar(names, means, yerr=errors, capsize=4, color='tab:blue', alpha=0.7)
  axes[0].axhline(stats['noise_ceiling']['kendall_tau'], color='k', ls='--', label='noise ceiling')
  axes[0].set(ylabel="Kendall's tau (95% CI over cells)", title='Ranking quality per arm')
  axes[0].tick_params(axis='x', rotation=30)
  axes[0].legend()
  for arm, runs in stats['history'].items():
    by_point: dict[tuple, list[float]] = {}
    for records in runs:
      for r in records:
        offset = {'before_switch': -0.15, 'after_switch': 0.15}.get(r.get('when'), 0.0)
        by_point.setdefault((r['epoch'] + offset,), []).append(r['kendall_tau'])
    points = sorted(by_point)
    axes[1].plot(
      [p[0] for p in points], [np.mean(by_point[p]) for p in points], marker='.', label=arm
    )
  for epoch in stats['schedule']['cl_schedule'][1:]:
    axes[1].axvline(epoch, color='gray', ls=':', lw=1)
  axes[1].set(
    xlabel='epoch (dotted: CLOSE switches)',
    ylabel="Kendall's tau (mean over seeds)",
    title='Ranking quality during training',
  )
  axes[1].legend(fontsize=8)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
  args = parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  arms = arms_of(args)
  archs = ranking_study.sample_cells(args.num_archs, seed=0)
  if args.ceiling_archs > args.num_archs:
    raise SystemExit(f'error: --ceiling-archs={args.ceiling_archs} exceeds --num-archs')
  start = time.perf_counter()
  if args.report_only:
    truth = _read_rows(os.path.join(args.workdir, 'ground_truth.csv'))
    second = _read_rows(os.path.join(args.workdir, 'ground_truth_seed1.csv'))
  else:
    truth = ground_truth(args, archs, seed=0, name='ground_truth')
    second = ground_truth(args, archs[: args.ceiling_archs], seed=1, name='ground_truth_seed1')
    _log(f'ground truth done after {(time.perf_counter() - start) / 60:.1f} min')
    train_arms(args, arms, os.path.join(args.workdir, 'ground_truth.csv'))
    _log(f'supernets done after {(time.perf_counter() - start) / 60:.1f} min')
  return report(args, arms, truth, second)


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
