r"""Architecture search in NAS-Bench-201 (CARS-style evolution with a CLOSE supernet).

  python -m close_jax.main --config=configs/nb201_search.py --workdir=/tmp/nb201_search
  python -m close_jax.main --config=configs/nb201_search.py:smoke --workdir=/tmp/nb201_search_s

The schedule of configs/darts_search.py on the NB201 supernet (400 epochs, the CLOSE schedule
scaled to them). Every NB201 cell is in the shipped ground truth, so the run reports the true
accuracy and percentile of what it finds, and of random search with as many evaluations.
"""

import os

import ml_collections

from close_jax.search.config import search_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'smoke'):
    raise ValueError(
      f'unknown variant {arg!r} of configs/nb201_search.py: expected nothing or "smoke"'
    )
  config = search_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'nb201.py'), arg)
  if arg == 'smoke':
    config.close.cl_schedule = (0, 3)  # one switch, between the iterations at epochs 2 and 4
    config.close.lr_restart_epochs = (3,)
    config.close.close_s_switch_epoch = 3
  return config
