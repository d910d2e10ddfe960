"""Every key a final-training config has (`configs/darts_final_*.py`, `configs/nb201_standalone.py`
set their values), so the three configs cannot drift apart in which keys exist."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.mode = 'final'
  config.seed = 0
  config.prng_impl = 'rbg'  # threefry compiles ~10x slower on XLA:CPU
  config.compilation_cache_dir = '~/.cache/close_jax/xla'
  config.num_devices = 0  # 0: every local device; batch sizes are global
  # A published name (the space's `named_archs`: close_jax.final.genotypes.names(space)), the
  # space's genotype string, or a path to a file holding one (first non-empty line, or JSON
  # {"genotype": ...}).
  config.genotype = 'DARTS_V2'
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = 600
  config.checkpoint_every_epochs = 1
  config.keep_checkpoints = 3

  config.model = ml_collections.ConfigDict()
  # A space's `FinalNetwork.name`: darts_cifar, darts_imagenet (NB-301), nb201 (NB201).
  config.model.network = 'darts_cifar'
  config.model.channels = 36
  config.model.layers = 20  # DARTS: cells, reductions at layers // 3 and 2 * layers // 3
  config.model.cells_per_stage = 5  # NB201: N
  config.model.auxiliary = True  # DARTS auxiliary head after cell 2 * layers // 3
  config.model.auxiliary_weight = 0.4
  config.model.drop_path_prob = 0.2  # DARTS: grows linearly from 0 over the epochs
  config.model.dropout = 0.1  # before the classifier (DARTS networks)
  config.model.dtype = 'float32'  # 'bfloat16': computed in bf16, fp32 parameters

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 0.05
  config.optim.min_learning_rate = 0.001
  config.optim.schedule = 'epoch'  # cosine stepped per 'epoch' (DARTS) or per 'step' (NB201)
  config.optim.momentum = 0.9
  config.optim.nesterov = False
  config.optim.weight_decay = 3e-4
  config.optim.grad_clip_norm = 5.0  # 0: none
  config.optim.label_smoothing = 0.0

  config.data = ml_collections.ConfigDict()
  config.data.name = 'cifar10'  # 'cifar10' | 'synthetic' | 'npz' | 'imagenet_folder'
  config.data.data_dir = './data'  # cifar10: cifar-10-python.tar.gz (all 50000 train images)
  config.data.download = True
  config.data.npz_path = ''
  config.data.synthetic_num_train = 2048
  config.data.synthetic_num_rank = 512  # the test split of a synthetic run
  config.data.synthetic_image_size = 32
  config.data.synthetic_channels = 3
  config.data.synthetic_num_classes = 10
  config.data.synthetic_seed = 0
  config.data.crop_padding = 4
  config.data.hflip = True
  config.data.cutout_length = 16  # 0: no cutout
  config.data.imagenet_dir = ''  # imagenet_folder: holds train/<class>/ and val/<class>/
  config.data.image_size = 224  # RandomResizedCrop / CenterCrop size
  config.data.resize_size = 256  # validation: shorter side before the centre crop
  config.data.min_crop_scale = 0.08
  config.data.num_workers = 8  # decoding threads
  config.data.fake_imagenet_per_class = 0  # > 0 with no imagenet_dir: a generated tiny tree
  config.data.fake_imagenet_classes = 3
  return config


def check_variant(arg: str | None, path: str) -> None:
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'unknown variant {arg!r} of {path}: expected nothing or "smoke"')
