"""One value that rescales a config's whole schedule to a new number of epochs.

Why: compressing the paper's 1000-epoch schedule by hand means editing the switch epochs, the SRT
epochs, the CLOSE-S switch, the plateau patience, the ranking epochs and the checkpoint cadence
together, and missing one silently changes the method. `config.budget_epochs = E` (0 = off)
multiplies every epoch-valued setting by E / num_epochs, rounds, and sets num_epochs = E. Applying
it twice is harmless: the second time the factor is 1.

How the plateau patience scales is `config.budget_scaling`:
- 'steps' (default): points in time keep their fraction of the run, and the patience keeps its
  number of optimizer steps: `optim.plateau_patience_steps = plateau_patience x
  budget_reference_steps_per_epoch` (the steps per epoch of the setting the patience was tuned
  for: the CLOSE paper's 40000 CIFAR-10 images at batch 512 = 78); the trainer turns it into
  epochs of its own length (`optim.patience_epochs`). Why: reduce-on-plateau is a test on noisy
  epoch means (one random architecture per step); its false alarms depend on how many epoch
  means it waits for and on how many steps each averages, not on the run's length. Scaled with
  the epochs, the paper's 30 epochs become 3 epochs of a 100-epoch run and the controller halves
  the rate on noise (measured: 13 halvings, final rate 6e-6, with Kendall's tau flat after 40%
  of the run).
- 'epochs': every epoch-valued setting, the patience included, scales with the run.
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


SCALINGS = ('steps', 'epochs')
PATIENCE = 'optim.plateau_patience'


def scale_to_budget(config: ml_collections.ConfigDict) -> list[str]:
  """Rescales `config` in place when `budget_epochs` > 0; returns one line per changed value."""
  target = int(config.get('budget_epochs', 0))
  if target <= 0 or target == config.num_epochs:
    return []
  scaling = config.get('budget_scaling', 'epochs')
  if scaling not in SCALINGS:
    raise ValueError(f'config.budget_scaling={scaling!r}: expected one of {SCALINGS}')
  factor = target / config.num_epochs
  changes = [f'num_epochs {config.num_epochs} -> {target}']
  with config.unlocked():
    if scaling == 'steps' and config.optim.get('plateau_patience_steps', 0) <= 0:
      reference = int(config.budget_reference_steps_per_epoch)
      if reference <= 0:
        raise ValueError(
          f'config.budget_reference_steps_per_epoch={reference!r}: expected the steps per '
          "epoch (> 0) of the setting the patience was tuned for (budget_scaling='steps')"
        )
      steps = config.optim.plateau_patience * reference
      config.optim.plateau_patience_steps = steps
      changes.append(
        f'optim.plateau_patience_steps 0 -> {steps} ({config.optim.plateau_patience} epochs '
        f'of {reference} steps; budget_scaling=steps)'
      )
    for names, minimum in ((POINTS, 0), (POINTS_AFTER_START, 1), (DURATIONS, 1)):
      for dotted in names:
        if dotted == PATIENCE and scaling == 'steps':
          continue  # counted in steps above
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
