"""One value that rescales a config's whole schedule to a new number of epochs.

Why: compressing the paper's 1000-epoch schedule by hand means editing the switch epochs, the SRT
epochs, the CLOSE-S switch, the plateau patience, the ranking epochs and the checkpoint cadence
together, and missing one silently changes the method. `config.budget_epochs = E` (0 = off)
multiplies every epoch-valued setting by E / num_epochs, rounds, and sets num_epochs = E. Applying
it twice is harmless: the second time the factor is 1.
"""

from __future__ import annotations

import ml_collections

# Settings counted in epochs: points in time (rounded to the nearest epoch) and durations
# (rounded, at least 1).
POINTS = (
  'close.cl_schedule',
  'close.lr_restart_epochs',
  'close.close_s_switch_epoch',
  'search.warmup_epochs',  # search configs only (keys a config lacks are skipped)
)
POINTS_AFTER_START = ('eval.eval_epochs',)  # epochs 1..num_epochs
DURATIONS = ('optim.plateau_patience', 'checkpoint_every_epochs', 'search.epochs_per_iteration')


def _get(config, dotted):
  for key in dotted.split('.'):
    config = config[key]
  return config


def _has(config, dotted) -> bool:
  for key in dotted.split('.'):
    if key not in config:
      return False
    config = config[key]
  return True


def _set(config, dotted, value):
  group, _, name = dotted.rpartition('.')
  (_get(config, group) if group else config)[name] = value


def _scale(value, factor, minimum=0):
  if isinstance(value, tuple | list):
    return tuple(_scale(v, factor, minimum) for v in value)
  return max(minimum, int(round(value * factor)))


def scale_to_budget(config: ml_collections.ConfigDict) -> list[str]:
  """Rescales `config` in place when `budget_epochs` > 0; returns one line per changed value."""
  target = int(config.get('budget_epochs', 0))
  if target <= 0 or target == config.num_epochs:
    return []
  factor = target / config.num_epochs
  changes = [f'num_epochs {config.num_epochs} -> {target}']
  with config.unlocked():
    for names, minimum in ((POINTS, 0), (POINTS_AFTER_START, 1), (DURATIONS, 1)):
      for dotted in names:
        if not _has(config, dotted):
          continue
        old = _get(config, dotted)
        new = _scale(old, factor, minimum)
        if dotted in POINTS_AFTER_START:  # ranking epochs that collapse onto one: ranked once
          new = tuple(dict.fromkeys(new))
        elif isinstance(new, tuple) and len(set(new)) < len(set(old)):
          raise ValueError(
            f'budget_epochs={target} is too short for config.{dotted}={old}: it scales to '
            f'{new}, which merges distinct epochs (expected a budget that keeps them apart)'
          )
        _set(config, dotted, new)
        if new != old:
          changes.append(f'{dotted} {old} -> {new}')
    config.num_epochs = target
  return changes
