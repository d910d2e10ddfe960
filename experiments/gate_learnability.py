r"""Does the GATE learn an architecture-dependent assignment? Both tasks, several GATE settings.

  python experiments/gate_learnability.py                      # all variants, CPU minutes
  python experiments/gate_learnability.py --steps=2000 --variants=official,layer

The task (close_jax/analysis/gate_learnability.py): frozen random supernet (the smoke model, two
blocks: block 0 keeps only its 3x3 convolutions, block 1 only its 1x1 ones); the rule to learn is
"3x3 convolutions on block 0, 1x1 on block 1". `supervised` fits the GATE to the rule directly
(can it represent and learn it?); `straight_through` trains it as CLOSE does, through the
Gumbel-softmax straight-through estimator on the teacher's logits. One JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import time

from close_jax import xla_flags
from close_jax.analysis import gate_learnability as gl
from configs import nb201 as nb201_config

VARIANTS = {
  'official': {},
  'layer': {'gate_embed_norm': 'layer'},
  'layer_wd0': {'gate_embed_norm': 'layer', 'gate_weight_decay': 0.0},
  'layer_wd0_t1': {'gate_embed_norm': 'layer', 'gate_weight_decay': 0.0, 'gate_temperature': 1.0},
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=1000)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  names = [n for n in args.variants.split(',') if n]
  for name in names:
    if name not in VARIANTS:
      raise SystemExit(f'error: unknown variant {name!r}: expected some of {list(VARIANTS)}')
  constant = gl.constant_result(nb201_config.get_config('smoke'), seed=args.seed)
  print(json.dumps({'variant': 'constant_gate', 'agreement': round(constant.agreement, 4)}))
  for name in names:
    config = nb201_config.get_config('smoke')
    for key, value in VARIANTS[name].items():
      config.close[key] = value
    start = time.perf_counter()
    agreement, spread = gl.supervised_agreement(config, steps=args.steps, seed=args.seed)
    st = gl.run(config, steps=args.steps, seed=args.seed)
    record = {
      'variant': name,
      'settings': VARIANTS[name],
      'steps': args.steps,
      'supervised_agreement': round(agreement, 4),
      'supervised_spread': round(spread, 5),
      'st_agreement': round(st.agreement, 4),
      'st_spread_before': round(st.spread_before, 6),
      'st_spread': round(st.spread, 6),
      'st_entropy': round(st.entropy, 4),
      'st_loss_gate': round(st.loss_gate, 4),
      'st_loss_random': round(st.loss_random, 4),
      'seconds': round(time.perf_counter() - start, 1),
    }
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
