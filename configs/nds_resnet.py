r"""NDS ResNet supernet with the interval curriculum: the paper's setting, `:smoke` for CPU.

  python -m close_jax.main --config=configs/nds_resnet.py:smoke --workdir=/tmp/nds_smoke
  python -m close_jax.main --config=configs/nds_resnet.py --workdir=/tmp/nds_resnet \
      --config.eval.ground_truth=/path/to/ResNet.json

The official `nds/resnet_cl-9-22446688_lr-4_pre.yaml`: K=17 blocks per stage, 9 from the start and
two more at each of epochs 200/400/600/800 (criterion `pre`), SRT at 400, 1000 epochs, batch 128,
SGD lr 0.05 momentum 0.9 weight decay 5e-5, no gradient clipping, the NB201 plateau rule. No
ground truth is shipped, so by default the run ranks without one (`eval.ground_truth='none'`:
`eval.num_archs` distinct architectures drawn with `eval.seed`, scores in ranking.csv, no
correlations); give the NDS release JSON (or a CSV of arch,accuracy) to rank a seeded
`eval.num_archs` of its models against their accuracies (the paper ranks 5000). `:smoke` trains
the toy-sized `nds_resnet_smoke` space (depths 1/2/4, widths 8/16) on synthetic images and runs
as it is.
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


def nds_config(arg, space, schedule) -> ml_collections.ConfigDict:
  """The NDS setting shared by ResNet and ResNeXt-A (configs/nds_resnexta.py uses it too)."""
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'unknown variant {arg!r} of configs/{space}.py: expected nothing or "smoke"')
  config = _nb201().get_config(arg or None)
  config.space = space
  config.train_sampler = 'uniform'
  del config.model['channels']
  del config.model['cells_per_stage']
  del config.model['edge_impl']
  config.model.stem_width = 16
  # How traced widths/depths execute (docs/spaces.md#execution-strategies): 'mask' (one
  # executable, max-size compute), 'bucket' (sizes rounded up to the edges below, one executable
  # per bucket combination), 'exact' (one executable per architecture). Empty edges: a quarter,
  # a half and all of the space's largest width / depth.
  config.model.nds_strategy = 'bucket'  # measured fastest at full size (docs/spaces.md)
  config.model.nds_width_buckets = ()
  config.model.nds_depth_buckets = ()
  # Weight init: 'he_fan_out' (aw_nas's NDS supernet: every conv N(0, 2 / (k*k*C_out))) or
  # 'torch' (PyTorch's default U(+-1/sqrt(fan_in))).
  config.model.nds_init = 'he_fan_out'
  config.batch_size = 128
  config.budget_reference_steps_per_epoch = 40000 // 128  # the patience's setting, per epoch
  config.optim.weight_decay = 5e-5
  config.optim.grad_clip_norm = 0.0
  config.close.cl_schedule = schedule
  config.close.interval_criterion = 'pre'  # 'pre' (official) | 'max': which interval to split
  # The 9 starting blocks: 'split' (official: 8 interval splits of block 0 with WIT, so with
  # 'sum' chained sums of fresh draws) | 'independent' (9 independent draws).
  config.close.start_blocks = 'split'
  # None is shipped: 'none' ranks sampled architectures by score alone; or the path of the NDS
  # release JSON or of a CSV of arch,accuracy.
  config.eval.ground_truth = 'none'
  config.eval.num_archs = 5000
  config.eval.batch_size = 500
  if arg == 'smoke':
    config.space = f'{space}_smoke'
    config.batch_size = 32
    config.data.synthetic_num_train = 128
    config.data.synthetic_num_rank = 64
    config.num_epochs = 5
    config.close.cl_schedule = (0, 2, 4)  # the toy spaces have 3 positions per stage
    config.close.lr_restart_epochs = (4,)
    config.model.nds_strategy = 'mask'  # toy sizes: one compile beats many cheap steps
    config.eval.eval_epochs = ()
    config.eval.num_archs = 8
    config.eval.batch_size = 32
    config.eval.arch_chunk = 4
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return nds_config(arg, 'nds_resnet', (0,) * 9 + (200, 200, 400, 400, 600, 600, 800, 800))
