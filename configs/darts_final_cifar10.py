r"""DARTS-space final training on CIFAR-10 (CLOSE paper, section 2.3): a found or published cell
stacked 20 times at 36 initial channels, trained from scratch; `:smoke` for a CPU run in seconds.

  python -m close_jax.main --config=configs/darts_final_cifar10.py --workdir=runs/darts_v2
  python -m close_jax.main --config=configs/darts_final_cifar10.py --workdir=runs/found \
      --config.genotype=runs/darts_search/search/chosen.genotype
  python -m close_jax.main --config=configs/darts_final_cifar10.py:smoke --workdir=/tmp/final_smoke

600 epochs, batch 128, SGD momentum 0.9, weight decay 3e-4, cosine 0.05 -> 0.001 per epoch, grad
clip 5, dropout 0.1, cutout 16, drop path 0.2 (linear from 0), auxiliary tower weight 0.4; trains
on all 50000 CIFAR-10 training images and tests on the 10000 test images every epoch.
"""

import ml_collections

from close_jax.final.config_base import base_config, check_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  check_variant(arg, 'configs/darts_final_cifar10.py')
  config = base_config()  # the paper setting is the base's default
  if arg == 'smoke':  # tiny network with every part of the real one (aux head, drop path, cutout)
    config.data.name = 'synthetic'
    config.data.synthetic_num_train = 64
    config.data.synthetic_num_rank = 24
    config.data.synthetic_image_size = 32  # the auxiliary head needs 8x8 maps after 2 reductions
    config.data.cutout_length = 8
    config.model.channels = 4
    config.model.layers = 3
    config.batch_size = 16
    config.eval_batch_size = 16
    config.num_epochs = 2
  return config
