"""budget_epochs: the paper's schedule scaled to a new length equals the hand-scaled one."""

import pytest

from close_jax import budget, config_check, optim
from configs import nb201 as nb201_config


def test_paper_setting_at_100_epochs_equals_the_hand_scaled_config():
  config = nb201_config.get_config()
  config.budget_scaling = 'epochs'
  config.budget_epochs = 100
  config.eval.eval_epochs = (250, 500, 1000)
  changes = budget.scale_to_budget(config)
  hand = nb201_config.get_config()
  hand.budget_scaling = 'epochs'
  hand.budget_epochs = 100
  hand.num_epochs = 100
  hand.close.cl_schedule = (0, 20, 40, 60, 80)
  hand.close.lr_restart_epochs = (40,)
  hand.close.close_s_switch_epoch = 40
  hand.optim.plateau_patience = 3
  hand.checkpoint_every_epochs = 1
  hand.eval.eval_epochs = (25, 50, 100)
  assert config.to_dict() == hand.to_dict()
  assert changes[0] == 'num_epochs 1000 -> 100'
  assert 'close.cl_schedule (0, 200, 400, 600, 800) -> (0, 20, 40, 60, 80)' in changes
  config_check.validate(config)
  assert budget.scale_to_budget(config) == []  # a second application changes nothing


def test_off_by_default_and_durations_stay_positive():
  config = nb201_config.get_config()
  assert config.budget_epochs == 0 and budget.scale_to_budget(config) == []
  config.budget_scaling = 'epochs'
  config.budget_epochs = 10
  budget.scale_to_budget(config)
  assert config.optim.plateau_patience == 1 and config.checkpoint_every_epochs == 1
  assert config.close.cl_schedule == (0, 2, 4, 6, 8)


def test_a_budget_too_small_for_the_schedule_is_refused():
  config = nb201_config.get_config()
  config.budget_epochs = 3  # five blocks cannot start at distinct epochs within 3 epochs
  message = r'budget_epochs=3 is too short for config.close.cl_schedule=\(0, 200, 400, 600, 800\)'
  with pytest.raises(ValueError, match=message):
    budget.scale_to_budget(config)


def test_steps_scaling_keeps_the_patience_in_optimizer_steps():
  """The default: switches keep their fraction of the run, the patience its 30 x 78 steps."""
  config = nb201_config.get_config()
  assert config.budget_scaling == 'steps'
  config.budget_epochs = 100
  changes = budget.scale_to_budget(config)
  assert config.close.cl_schedule == (0, 20, 40, 60, 80)
  assert config.close.lr_restart_epochs == (40,)
  assert config.optim.plateau_patience == 30  # not scaled: counted in steps instead
  assert config.optim.plateau_patience_steps == 30 * 78
  assert any(c.startswith('optim.plateau_patience_steps 0 -> 2340') for c in changes)
  config_check.validate(config)
  # The trainer's epochs: 2340 steps are 60 epochs of 39 steps (10000 images at batch 256), 30
  # of the paper's own 78, and at least one epoch however long an epoch is.
  assert optim.patience_epochs(config.optim, 39) == 60
  assert optim.patience_epochs(config.optim, 78) == 30
  assert optim.patience_epochs(config.optim, 10**6) == 1
  assert budget.scale_to_budget(config) == []  # a second application changes nothing


def test_patience_given_in_steps_is_kept_and_epochs_are_the_fallback():
  config = nb201_config.get_config()
  assert optim.patience_epochs(config.optim, 39) == 30  # no steps given: the epochs as set
  config.optim.plateau_patience_steps = 500
  config.budget_epochs = 100
  budget.scale_to_budget(config)
  assert config.optim.plateau_patience_steps == 500  # a user's own step count stays
  assert optim.patience_epochs(config.optim, 100) == 5


@pytest.mark.parametrize(
  ('key', 'value', 'message'),
  [
    ('budget_scaling', 'steps_please', r"config.budget_scaling='steps_please': expected one of"),
    ('budget_reference_steps_per_epoch', 0, r'config.budget_reference_steps_per_epoch=0'),
  ],
)
def test_bad_scaling_settings_are_one_line_errors(key, value, message):
  config = nb201_config.get_config()
  config.budget_epochs = 100
  config[key] = value
  with pytest.raises(ValueError, match=message):
    budget.scale_to_budget(config)
