"""Command-line entry point: parse flags, then `train.train_and_evaluate(config, workdir)`.

  python -m close_jax.main --config=configs/nb201.py --workdir=DIR [--config.num_epochs=...]

Without --config, the config saved in WORKDIR/config.json is used, so an interrupted run resumes
with `--workdir` alone; `--config.KEY=VALUE` overrides apply to either (`close_jax.overrides`).
"""

from __future__ import annotations

import functools
import json
import os
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from close_jax import overrides as overrides_lib

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Path to a config file (file.py:arg).', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
flags.mark_flag_as_required('workdir')


def _load_config(workdir: str) -> ml_collections.ConfigDict:
  if _CONFIG.value is not None:
    return _CONFIG.value
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise app.UsageError(f'--config is required: {path} does not exist (no run to resume)')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def main(argv: list[str], overrides: list[tuple[str, str]]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax logs dozens of INFO lines per checkpoint
  from close_jax import train  # after flag parsing: importing jax early is slow and noisy

  config = _load_config(_WORKDIR.value)
  try:
    overrides_lib.apply(config, overrides)
    train.train_and_evaluate(config, _WORKDIR.value)
  except (ValueError, OSError, FloatingPointError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def run() -> None:
  try:
    argv, overrides = overrides_lib.split_argv(sys.argv)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  sys.argv = argv  # config_flags reads sys.argv for overrides of its own: it sees none
  app.run(functools.partial(main, overrides=overrides), argv=argv)


if __name__ == '__main__':
  run()
