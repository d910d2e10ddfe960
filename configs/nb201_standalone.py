r"""An NB201 cell trained from scratch with the benchmark's own protocol, so a user can produce
NAS-Bench-201-style ground truth on their own data; `:smoke` for a CPU run in seconds.

  python -m close_jax.main --config=configs/nb201_standalone.py --workdir=runs/nb201_cell \
      --config.genotype='|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
  python -m close_jax.main --config=configs/nb201_standalone.py:smoke --workdir=/tmp/nb201_smoke

The NAS-Bench-201 network (C=16, N=5, affine BN with running statistics, ResNet reduction
blocks) trained 200 epochs at batch 256 with SGD lr 0.1, Nesterov momentum 0.9, weight decay
5e-4, cosine to 0 per step, random crop + flip, no clipping, dropout, cutout or drop path.
"""

import ml_collections

from close_jax.final.config_base import base_config, check_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  check_variant(arg, 'configs/nb201_standalone.py')
  config = base_config()
  config.genotype = 'NB201_ALL_CONV3X3'
  config.model.network = 'nb201'
  config.model.channels = 16
  config.model.cells_per_stage = 5
  config.model.auxiliary = False
  config.model.drop_path_prob = 0.0
  config.model.dropout = 0.0
  config.data.cutout_length = 0
  config.optim.learning_rate = 0.1
  config.optim.min_learning_rate = 0.0
  config.optim.schedule = 'step'
  config.optim.nesterov = True
  config.optim.weight_decay = 5e-4
  config.optim.grad_clip_norm = 0.0
  config.batch_size = 256
  config.num_epochs = 200
  if arg == 'smoke':
    config.genotype = 'NB201_RESNET'
    config.data.name = 'synthetic'
    config.data.synthetic_num_train = 128
    config.data.synthetic_num_rank = 40
    config.data.synthetic_image_size = 8
    config.data.crop_padding = 1
    config.model.channels = 4
    config.model.cells_per_stage = 1
    config.batch_size = 32
    config.eval_batch_size = 16
    config.num_epochs = 2
  return config
