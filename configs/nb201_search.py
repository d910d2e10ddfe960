r"""Architecture search in NAS-Bench-201 (CARS-style evolution with a CLOSE supernet).

  python -m close_jax.main --config=configs/nb201_search.py --workdir=/tmp/nb201_search
  python -m close_jax.main --config=configs/nb201_search.py:smoke --workdir=/tmp/nb201_search_s

The schedule of configs/darts_search.py on the NB201 supernet (400 epochs, the CLOSE schedule
scaled to them). Every NB201 cell is in the shipped ground truth, so the run reports the true
accuracy and percentile of what it finds, and of random search with as many evaluations.
"""

import importlib.util
import os

import ml_collections

from close_jax import budget
from close_jax.search.config import add_search_group


def _load(name: str):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
  spec = importlib.util.spec_from_file_location(f'_close_jax_config_{name[:-3]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'smoke'):
    raise ValueError(
      f'unknown variant {arg!r} of configs/nb201_search.py: expected nothing or "smoke"'
    )
  config = _load('nb201.py').get_config(arg or None)
  if not arg:
    config.budget_epochs = 400
    budget.scale_to_budget(config)
    config.budget_epochs = 0
  add_search_group(config)
  config.eval.at_end = False
  if arg == 'smoke':
    config.num_epochs = 6
    config.close.cl_schedule = (0, 3)  # one switch, between the iterations at epochs 2 and 4
    config.close.lr_restart_epochs = (3,)
    config.close.close_s_switch_epoch = 3
    config.eval.eval_epochs = ()
    config.search.warmup_epochs = 2
    config.search.epochs_per_iteration = 2
    config.search.population_size = 6
    config.search.fitness_batches = 1
  return config
