"""budget_epochs: the paper's schedule scaled to a new length equals the hand-scaled one."""

import pytest

from close_jax import budget, config_check
from configs import nb201 as nb201_config


def test_paper_setting_at_100_epochs_equals_the_hand_scaled_config():
  config = nb201_config.get_config()
  config.budget_epochs = 100
  config.eval.eval_epochs = (250, 500, 1000)
  changes = budget.scale_to_budget(config)
  hand = nb201_config.get_config()
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
