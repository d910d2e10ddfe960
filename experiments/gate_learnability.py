r"""Does the GATE learn an architecture-dependent assignment? Both tasks, several GATE settings.

  python experiments/gate_learnability.py                      # all variants, CPU minutes
  python experiments/gate_learnability.py --steps=2000 --variants=official,layer
  python experiments/gate_learnability.py --steps=300 --seeds=0,1 --no-supervised \
      --out=experiments/results/gate_variants.json            # the GATE-variant screen

The task (close_jax/analysis/gate_learnability.py): frozen random supernet (the smoke model, two
blocks: block 0 keeps only its 3x3 convolutions, block 1 only its 1x1 ones); the rule to learn is
"3x3 convolutions on block 0, 1x1 on block 1". `supervised` fits the GATE to the rule directly
(can it represent and learn it?); the training path (`st_*` figures) trains it as the trainer
does, through `Supernet.apply` and `Supernet.gate_objective` with the variant's `close.gate_*`
settings (gradient estimator, optimizer, centring). One JSON line per variant and seed; `--out`
also writes them, with the command, as one JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/

from close_jax import train, xla_flags  # noqa: E402
from close_jax.analysis import gate_learnability as gl  # noqa: E402
from close_jax.metric_writer import write_atomic  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402

ADAM = {'gate_optimizer': 'adam', 'gate_learning_rate': 3e-3}
LAYER = {'gate_embed_norm': 'layer'}
SOFT = {'gate_mix': 'soft_annealed', 'gate_anneal_steps': 'three quarters of --steps'}
VARIANTS = {
  'official': {},
  'layer': LAYER,
  'layer_wd0': {**LAYER, 'gate_weight_decay': 0.0},
  'layer_wd0_t1': {**LAYER, 'gate_weight_decay': 0.0, 'gate_temperature': 1.0},
  'adam': ADAM,
  'layer_adam': {**LAYER, **ADAM},
  'layer_adam_center': {**LAYER, **ADAM, 'gate_center_logits': True},
  'layer_soft': {**LAYER, **SOFT},
  'layer_adam_soft': {**LAYER, **ADAM, **SOFT},
  'layer_adam_soft_center': {**LAYER, **ADAM, **SOFT, 'gate_center_logits': True},
  'layer_reinforce': {**LAYER, 'gate_mix': 'reinforce'},
  'layer_adam_reinforce': {**LAYER, **ADAM, 'gate_mix': 'reinforce'},
  'layer_adam_reinforce_center': {
    **LAYER,
    **ADAM,
    'gate_mix': 'reinforce',
    'gate_center_logits': True,
  },
}


def variant_config(name: str, steps: int):
  config = nb201_config.get_config('smoke')
  for key, value in VARIANTS[name].items():
    config.close[key] = max(1, 3 * steps // 4) if key == 'gate_anneal_steps' else value
  return config


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=1000)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--seeds', default='0', help='comma-separated seeds, one run each')
  parser.add_argument('--no-supervised', action='store_true', help='skip the direct fit')
  parser.add_argument('--out', default='', help='also write every record to this JSON file')
  parser.add_argument('--cache', default='~/.cache/close_jax/xla', help="XLA cache ('': off)")
  args = parser.parse_args()
  names = [n for n in args.variants.split(',') if n]
  for name in names:
    if name not in VARIANTS:
      raise SystemExit(f'error: unknown variant {name!r}: expected some of {list(VARIANTS)}')
  try:
    seeds = [int(s) for s in args.seeds.split(',') if s]
  except ValueError:
    raise SystemExit(f'error: --seeds={args.seeds!r}: expected comma-separated integers') from None
  if args.cache:
    train.enable_compilation_cache(args.cache)  # seeds of one variant share their programs
  constant = gl.constant_result(nb201_config.get_config('smoke'), seed=seeds[0])
  records = [{'variant': 'constant_gate', 'agreement': round(constant.agreement, 4)}]
  print(json.dumps(records[0]), flush=True)
  for name in names:
    for seed in seeds:
      config = variant_config(name, args.steps)
      start = time.perf_counter()
      record = {'variant': name, 'settings': VARIANTS[name], 'steps': args.steps, 'seed': seed}
      if not args.no_supervised:
        agreement, spread = gl.supervised_agreement(config, steps=args.steps, seed=seed)
        record.update(supervised_agreement=round(agreement, 4), supervised_spread=round(spread, 5))
      st = gl.run(config, steps=args.steps, seed=seed)
      record.update(
        st_agreement=round(st.agreement, 4),
        st_spread_before=round(st.spread_before, 6),
        st_spread=float(f'{st.spread:.4g}'),
        st_entropy=round(st.entropy, 4),
        st_loss_gate=round(st.loss_gate, 4),
        st_loss_random=round(st.loss_random, 4),
        seconds=round(time.perf_counter() - start, 1),
      )
      records.append(record)
      print(json.dumps(record), flush=True)
      if args.out:  # after every run, so a stopped screen keeps what it measured
        command = 'python experiments/gate_learnability.py ' + ' '.join(sys.argv[1:])
        text = json.dumps({'command': command, 'records': records}, indent=1) + '\n'
        write_atomic(args.out, lambda f, text=text: f.write(text))


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
