"""`--config.KEY=VALUE` overrides: argv splitting, typed values, one-line errors."""

import pytest

from close_jax import overrides
from configs import nb201 as nb201_config


def test_split_argv_takes_both_forms():
  argv = ['prog', '--workdir=/w', '--config.num_epochs=3', '--config.mode', 'evaluate', '--x']
  rest, pairs = overrides.split_argv(argv)
  assert rest == ['prog', '--workdir=/w', '--x']
  assert pairs == [('num_epochs', '3'), ('mode', 'evaluate')]
  with pytest.raises(ValueError, match='--config.mode: expected --config.mode=VALUE'):
    overrides.split_argv(['prog', '--config.mode'])


def test_values_take_the_type_of_the_field():
  config = nb201_config.get_config()
  overrides.apply(
    config,
    [
      ('num_epochs', '50'),
      ('optim.learning_rate', '1'),
      ('close.cl_schedule', '(0, 10, 20)'),
      ('close.lr_restart_epochs', '10'),
      ('eval.at_end', 'false'),
      ('eval.ground_truth', 'my.csv'),
      ('compilation_cache_dir', ''),
      ('data.name', '1e3'),  # a string field keeps the text
    ],
  )
  assert config.num_epochs == 50 and config.optim.learning_rate == 1.0
  assert config.close.cl_schedule == (0, 10, 20) and config.close.lr_restart_epochs == (10,)
  assert config.eval.at_end is False and config.eval.ground_truth == 'my.csv'
  assert config.compilation_cache_dir == '' and config.data.name == '1e3'


def test_lists_of_a_saved_config_json_stay_lists():
  import ml_collections

  saved = ml_collections.ConfigDict({'close': {'cl_schedule': [0, 200]}})
  overrides.apply(saved, [('close.cl_schedule', '(0,100,200)')])
  assert saved.close.cl_schedule == [0, 100, 200]


@pytest.mark.parametrize(
  'key, value, message',
  [
    (
      'num_epoch',
      '3',
      "'config.num_epoch': the config has no 'num_epoch'; did you mean 'config.num_epochs'?",
    ),
    ('evl.seed', '3', "the config has no 'evl'; did you mean 'config.eval'?"),
    ('eval.zzz', '3', "'config.eval' has no 'zzz'$"),
    ('num_epochs', '2.5', "config.num_epochs='2.5': expected a value of type int"),
    ('eval', '3', 'config.eval is a group of settings'),
    ('num_epochs.x', '3', "'config.num_epochs' has no 'x'"),
  ],
)
def test_errors_are_one_line(key, value, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(')) as info:
    overrides.apply(nb201_config.get_config(), [(key, value)])
  assert '\n' not in str(info.value)
