r"""gate=node (official, normalised embedder, the GATE training variants), gate=random and vanilla.

  python experiments/make_digits_npz.py --out=/tmp/digits16.npz      # needs scikit-learn
  python experiments/gate_compare.py --npz=/tmp/digits16.npz --workdir=/tmp/gate_compare \
      --epochs=100
  python experiments/gate_compare.py --idx=/usr/share/datasets/fashion-mnist \
      --workdir=/tmp/gate_compare_fmnist --epochs=16 --variants=close_node,close_node_learning

Trains each variant in WORKDIR/<variant> on the npz dataset or the Fashion-MNIST idx files
(`--idx`: 16x16, the first `--train-size` training images, ranking on the next 1000) (NB201,
C=8, N=2, batch 128; for
CLOSE the paper's schedule scaled to the budget: blocks added at 20/40/60/80% of the epochs, SRT
at 40%, plateau patience 3), ranks `--archs` architectures, and prints one JSON line per variant:
the GATE's entropy and spread at the first switch and at the end, the summed KL between the
GATE's block distributions for a structurally different and a similar pair (at initialisation
and after training), the spread of the supernet scores, and Kendall's tau against the shipped
CIFAR-10 ground truth (indicative only when the data is not CIFAR-10).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from close_jax import gate_presets, train, xla_flags  # noqa: E402
from close_jax.analysis import gate_similarity  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402

VARIANTS = {
  'vanilla': {'method': 'vanilla'},
  'close_node': {'method': 'close'},
  'close_node_layer': {'method': 'close', 'close.gate_embed_norm': 'layer'},
  'close_random': {'method': 'close', 'close.gate': 'random'},
  # The variant that learned the synthetic rule through training (close_jax/gate_presets.py).
  'close_node_learning': gate_presets.LEARNING_GATE,
}


def make_config(args, overrides: dict):
  config = nb201_config.get_config()
  if args.idx:
    config.data.name, config.data.idx_dir, config.data.image_size = 'idx', args.idx, 16
    config.data.idx_train_size, config.data.idx_rank_size = args.train_size, 1000
  else:
    config.data.name, config.data.npz_path = 'npz', args.npz
  config.data.crop_padding, config.data.hflip = 2, False
  config.model.channels, config.model.cells_per_stage = 8, 2
  config.batch_size, config.num_epochs, config.seed = 128, args.epochs, args.seed
  e = args.epochs
  config.close.cl_schedule = (0, e // 5, 2 * e // 5, 3 * e // 5, 4 * e // 5)
  config.close.lr_restart_epochs = (2 * e // 5,)
  config.optim.plateau_patience = 3
  config.checkpoint_every_epochs = max(1, e // 5)
  config.eval.num_archs, config.eval.batch_size = args.archs, 128
  for key, value in overrides.items():
    group, _, name = key.rpartition('.')
    (config[group] if group else config)[name] = value
  return config


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  data = parser.add_mutually_exclusive_group(required=True)
  data.add_argument('--npz', help='a .npz dataset (experiments/make_digits_npz.py)')
  data.add_argument('--idx', help='a directory of MNIST-format idx files (Fashion-MNIST)')
  parser.add_argument('--train-size', type=int, default=10000, help='--idx: training images')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--epochs', type=int, default=100)
  parser.add_argument('--archs', type=int, default=200)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  args = parser.parse_args()
  for name in args.variants.split(','):
    if name not in VARIANTS:
      raise SystemExit(f'error: unknown variant {name!r}: expected some of {list(VARIANTS)}')
    config = make_config(args, VARIANTS[name])
    workdir = os.path.join(args.workdir, name)
    print(f'=== {name} -> {workdir}', flush=True)
    out = train.run_training(config, workdir)
    state, result = out.state, out.ranking
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(workdir, 'ranking.csv')) as f:
      scores = np.array([float(row['supernet_score']) for row in csv.DictReader(f)])
    summary = {
      'variant': name,
      'epochs': args.epochs,
      'final_train_accuracy': round(records[-1]['accuracy'], 4),
      'kendall_tau_vs_cifar10_gt': round(result['kendall_tau'], 4),
      'score_mean': round(float(scores.mean()), 4),
      'score_std': round(float(scores.std()), 4),
    }
    first_switch = next((r for r in records if 'switch_gate_spread' in r), None)
    if first_switch is not None:
      run = train.Run(config, workdir)
      supernet = run.supernet(run.curriculum.max_blocks)
      summary.update(
        first_switch_gate_spread=first_switch['switch_gate_spread'],
        final_gate_entropy=records[-1]['gate_entropy'],
        final_gate_spread=records[-1]['gate_spread'],
        final_gate_marginal=records[-1]['gate_marginal'],
        kl_at_init=gate_similarity.nb201_pair_kls(supernet, run.fresh_params()),
        kl_trained=gate_similarity.nb201_pair_kls(supernet, state.params),
      )
    print(json.dumps(summary), flush=True)


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
