r"""Architecture search in the DARTS space (CARS-style evolution with a CLOSE supernet).

  python -m close_jax.main --config=configs/darts_search.py --workdir=/tmp/darts_search
  python -m close_jax.main --config=configs/darts_search.py:smoke --workdir=/tmp/search_smoke

The CLOSE paper's setting: 400 epochs, 100 of warm-up, then an evolution iteration (population
100) every 5 epochs while the supernet trains on the population. The NB-301 supernet's CLOSE
schedule (blocks added at 200/400/600/800 of 1000 epochs, SRT at 400) is scaled to the 400
epochs by close_jax.budget: blocks at 80/160/240/320, SRT at 160. The chosen genotype is
trained with configs/darts_final_cifar10.py.
"""

import os

import ml_collections

from close_jax.search.config import search_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'smoke'):
    raise ValueError(
      f'unknown variant {arg!r} of configs/darts_search.py: expected nothing or "smoke"'
    )
  config = search_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'nb301.py'), arg)
  if arg == 'smoke':
    config.close.cl_schedule = (0, 2, 4)
    config.close.lr_restart_epochs = (4,)
  return config
