r"""NAS-Bench-301 (DARTS space) supernet: the paper's setting by default, `:smoke` for CPU.

  python -m close_jax.main --config=configs/nb301.py --workdir=/tmp/nb301
  python -m close_jax.main --config=configs/nb301.py:smoke --workdir=/tmp/nb301_smoke

Everything not set here is the NB201 config's (optimizer, curriculum K=5 with blocks added at
epochs 200/400/600/800 of 1000 and SRT at 400, batch 512, data): the official NB301 CLOSE config
matches NB201's. The default ranks the 1218 shipped genotypes against the NB-301 surrogate.
"""

import importlib.util
import os

import ml_collections


def _nb201():
  """configs/nb201.py, loaded by path so that this file works from any working directory."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'nb201.py')
  spec = importlib.util.spec_from_file_location('_close_jax_config_nb201', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'unknown variant {arg!r} of configs/nb301.py: expected nothing or "smoke"')
  config = _nb201().get_config(arg or None)
  config.space = 'nb301'
  config.train_sampler = 'uniform'
  config.model.channels = 16
  config.model.num_layers = 8  # reductions at layers 8 // 3 = 2 and 16 // 3 = 5 (as aw_nas)
  del config.model['cells_per_stage']
  # How a cell's 8 edges are traced: `scan` compiles one edge (fast to compile, the XLA:CPU
  # choice), `unroll` eight (no loop-trip host round trips on GPU/TPU); `auto` picks by backend.
  config.model.edge_loop = 'auto'
  # `edge_impl` (inherited, 'auto'): DARTS edges as one conditional each ('switch', CPU) or
  # folded without conditionals ('dense', GPU/TPU; close_jax/models/darts_dense.py).
  config.eval.ground_truth = 'nb301_surrogate'
  if arg == 'smoke':
    config.model.channels = 4
    config.model.num_layers = 3  # reductions at layers 1 and 2
    config.batch_size = 32
    config.data.synthetic_num_train = 128
    config.data.synthetic_num_rank = 64
    config.num_epochs = 5
    config.close.cl_schedule = (0, 2, 4)
    config.close.lr_restart_epochs = (4,)
    config.close.close_s_switch_epoch = 3
    config.eval.eval_epochs = ()
    config.eval.num_archs = 8
    config.eval.batch_size = 32
    config.eval.arch_chunk = 4
  return config
