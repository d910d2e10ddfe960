r"""NDS ResNeXt-A supernet with the interval curriculum: the paper's setting, `:smoke` for CPU.

  python -m close_jax.main --config=configs/nds_resnexta.py:smoke --workdir=/tmp/nds_smoke
  python -m close_jax.main --config=configs/nds_resnexta.py --workdir=/tmp/nds_resnexta \
      --config.eval.ground_truth=/path/to/ResNeXt-A.json

The official `nds/resnexta_cl-9-2468_lr-4_pre.yaml`: K=13 blocks per stage, 9 from the start and
one more at each of epochs 200/400/600/800; everything else as configs/nds_resnet.py.
"""

import importlib.util
import os


def _nds_resnet():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'nds_resnet.py')
  spec = importlib.util.spec_from_file_location('_close_jax_config_nds_resnet', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None):
  return _nds_resnet().nds_config(arg, 'nds_resnexta', (0,) * 9 + (200, 400, 600, 800))
