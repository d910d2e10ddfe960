"""`--config.KEY=VALUE` overrides, applied by close_jax itself rather than by `config_flags`.

Why: `config_flags` only accepts overrides next to `--config=FILE` (a run resumed with `--workdir`
alone could not change `mode` or `num_epochs`), and an unknown key ends in a traceback. Here the
same overrides apply to a config file's config or to a saved `config.json`, and an unknown key is
one line naming the closest valid key.
"""

from __future__ import annotations

import ast
import contextlib
import difflib

import ml_collections

PREFIX = '--config.'


def split_argv(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """(argv without the overrides, [(dotted key, raw value)]); `--config.K V` is accepted too."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(PREFIX):
      key, eq, value = arg[len(PREFIX) :].partition('=')
      if not eq:
        if i + 1 >= len(argv):
          raise ValueError(f'{arg}: expected {arg}=VALUE')
        value, i = argv[i + 1], i + 1
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def _parse(raw: str, current):
  """A Python literal where one parses (numbers, tuples, booleans), else the string itself."""
  if isinstance(current, str):
    return raw
  if isinstance(current, bool) and raw.lower() in ('true', 'false'):
    return raw.lower() == 'true'
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw
  if isinstance(current, tuple | list) and isinstance(value, tuple | list | int):
    value = type(current)(value if isinstance(value, tuple | list) else (value,))
  return value


def apply(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]]) -> None:
  """Sets each override in place; raises ValueError (one line) on an unknown key or a value of
  the wrong type."""
  for dotted, raw in overrides:
    node, parts = config, dotted.split('.')
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        prefix = '.'.join(parts[:depth])
        keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, keys, n=1)
        hint = f"; did you mean 'config.{'.'.join([*parts[:depth], close[0]])}'?" if close else ''
        where = f"'config.{prefix}'" if prefix else 'the config'
        raise ValueError(f"unknown config key 'config.{dotted}': {where} has no '{part}'{hint}")
      if depth < len(parts) - 1:
        node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
      raise ValueError(f'config.{dotted} is a group of settings, not a value: set its fields')
    value = _parse(raw, current)
    try:
      with node.ignore_type() if current is None else contextlib.nullcontext():
        node[parts[-1]] = value
    except TypeError:
      raise ValueError(
        f'config.{dotted}={raw!r}: expected a value of type {type(current).__name__} '
        f'(like {current!r})'
      ) from None
