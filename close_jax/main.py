"""Command-line entry point: parse flags, then `train.train_and_evaluate(config, workdir)`.

  python -m close_jax.main --config=configs/nb201.py --workdir=DIR [--config.num_epochs=...]

Without --config, the config saved in WORKDIR/config.json is used, so an interrupted run resumes
with `--workdir` alone; `--config.KEY=VALUE` overrides apply to either (`close_jax.overrides`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from close_jax import overrides as overrides_lib
from close_jax import xla_flags

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
    raise FileNotFoundError(f'--config is required: {path} does not exist (no run to resume)')
  with open(path) as f:
    saved = json.load(f)
  saved.pop(xla_flags.RECORDED_KEY, None)  # a record of the last run, not a setting
  return ml_collections.ConfigDict(saved)


def main(argv: list[str], overrides: list[tuple[str, str]]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax logs dozens of INFO lines per checkpoint
  # close_jax modules are imported after flag parsing: importing jax early is slow and noisy.
  try:
    config = _load_config(_WORKDIR.value)
    overrides_lib.apply(config, overrides)
    mode = config.get('mode', 'train')
    if mode == 'final':  # close_jax.final checks its own config and sets up its own cache
      _entry(mode)(config, _WORKDIR.value)
      return
    from close_jax import train

    prepared = train.prepare(config)  # filled, budget-scaled and validated once
    setup_process(prepared.config)
    _entry(mode)(prepared, _WORKDIR.value)
  except (ValueError, OSError, FloatingPointError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def setup_process(config: ml_collections.ConfigDict) -> None:
  """`jax.distributed.initialize` when `config.distributed.initialize` (before anything asks for
  devices), and the persistent compilation cache (`config.compilation_cache_dir`, '' = off): a
  rerun's compile is 2-3x shorter with it (measured). Library callers of `train.run_training`
  with `distributed.initialize` call it first."""
  from close_jax import parallel

  parallel.initialize_distributed(config.distributed)
  xla_flags.use_compilation_cache(config.compilation_cache_dir)


def _entry(mode: str):
  """The job a config's `mode` names: a supernet ('train' / 'evaluate'), an architecture search
  ('search', `close_jax.search`), or a standalone network ('final', `close_jax.final`)."""
  if mode == 'search':
    from close_jax.search import run as search_run

    return search_run.run
  if mode == 'final':
    from close_jax.final import run as final_run

    return final_run.run
  from close_jax import train

  return train.train_and_evaluate


def _check_config_file(argv: list[str]) -> None:
  """`--config=FILE[:ARG]` loaded once here, so a missing file or a bad variant is one line
  (config_flags would print a flags-parsing banner and a help hint)."""
  for arg in argv:
    if arg.startswith('--config='):
      path, _, variant = arg[len('--config=') :].partition(':')
      if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
      spec = importlib.util.spec_from_file_location('_close_jax_config_check', path)
      module = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(module)
      if not hasattr(module, 'get_config'):
        raise ValueError(f'config file {path!r} defines no get_config(arg)')
      module.get_config(variant or None)


def run() -> None:
  xla_flags.apply_defaults()  # before anything starts JAX's backend
  try:
    argv, overrides = overrides_lib.split_argv(sys.argv)
    _check_config_file(argv)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  sys.argv = argv  # config_flags reads sys.argv for overrides of its own: it sees none
  app.run(functools.partial(main, overrides=overrides), argv=argv)


if __name__ == '__main__':
  run()
