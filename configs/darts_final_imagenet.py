r"""DARTS-space final training on ImageNet (CLOSE paper): 14 cells, 48 initial channels, 300 epochs;
`:smoke` trains a tiny network on a generated class-folder tree in the workdir.

  python -m close_jax.main --config=configs/darts_final_imagenet.py --workdir=runs/darts_v2_in \
      --config.data.imagenet_dir=/data/imagenet          # holds train/<class>/ and val/<class>/
  python -m close_jax.main --config=configs/darts_final_imagenet.py:smoke --workdir=/tmp/in_smoke

Batch 256, SGD momentum 0.9, weight decay 3e-5, cosine 0.1 -> 0 per epoch, no drop path, grad clip
5, auxiliary tower weight 0.4 and label smoothing 0.1 (as quark0/darts `train_imagenet.py`), no
dropout. Training images: RandomResizedCrop(224) + flip; validation: Resize(256) + CenterCrop(224).
"""

import ml_collections

from close_jax.final.config_base import base_config, check_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  check_variant(arg, 'configs/darts_final_imagenet.py')
  config = base_config()
  config.model.network = 'darts_imagenet'
  config.model.channels = 48
  config.model.layers = 14
  config.model.drop_path_prob = 0.0
  config.model.dropout = 0.0
  config.data.name = 'imagenet_folder'
  config.data.cutout_length = 0
  config.optim.learning_rate = 0.1
  config.optim.min_learning_rate = 0.0
  config.optim.weight_decay = 3e-5
  config.optim.label_smoothing = 0.1
  config.batch_size = 256
  config.eval_batch_size = 250  # 50000 validation images = 200 batches
  config.num_epochs = 300
  if arg == 'smoke':  # 224x224 inputs: the ImageNet auxiliary head needs its 7x7 maps
    config.data.fake_imagenet_per_class = 4
    config.data.fake_imagenet_classes = 3
    config.data.num_workers = 2
    config.model.channels = 4
    config.model.layers = 3
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_epochs = 2
  return config
