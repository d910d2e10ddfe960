"""A run's `config.genotype` resolved to the space's int array: a published name (the space's
`named_archs`: DARTS, PC-DARTS, P-DARTS cells for NB-301, two NB201 cells), the space's string
form itself, or a path to a file holding it, as the search writes them."""

from __future__ import annotations

import json
import os

import numpy as np

from close_jax import spaces


def names(space: str) -> tuple[str, ...]:
  """The published names `config.genotype` accepts for `space`, sorted."""
  return tuple(sorted(dict(spaces.get(space).named_archs)))


def published(name: str) -> np.ndarray:
  """The int array of a published cell of any registered space (`DARTS_V2`, `NB201_RESNET`,
  ...)."""
  for space_name in spaces.names():
    space = spaces.get(space_name)
    named = dict(space.named_archs)
    if name in named:
      return space.parse(named[name])
  known = sorted(n for s in spaces.names() for n, _ in spaces.get(s).named_archs)
  raise ValueError(f'genotype name {name!r}: expected one of {", ".join(known)}')


def resolve(spec: str, space: str) -> np.ndarray:
  """`config.genotype` as the int array of `space` (a registered space's name): a name of
  `names(space)`, the space's string form itself, or a path to a file holding it (a text file
  whose first non-empty line is the string, or a JSON object with key 'genotype')."""
  the_space = spaces.get(space)
  named = dict(the_space.named_archs)
  expected = f'{_one_of(named)}a {space} genotype string or a path to a file holding one'
  spec = spec.strip() if isinstance(spec, str) else spec
  if not isinstance(spec, str) or not spec:
    raise ValueError(f'config.genotype={spec!r}: expected {expected}')
  if spec in named:
    return the_space.parse(named[spec])
  if os.path.isfile(spec):
    return _parse(the_space, _read(spec), f'genotype file {spec}')
  try:
    return the_space.parse(spec)
  except ValueError as e:
    if os.sep in spec or spec.endswith(('.txt', '.json')):
      raise ValueError(f'config.genotype={spec!r}: no such genotype file') from None
    if spec.isidentifier():  # a single word: a published name, mistyped
      raise ValueError(
        f'config.genotype={spec!r}: unknown genotype name; expected {expected}'
      ) from None
    raise ValueError(f'config.genotype: {e}') from None


def _one_of(named: dict) -> str:
  return f'one of {", ".join(sorted(named))}, ' if named else ''


def _parse(space: spaces.Space, text: str, where: str) -> np.ndarray:
  try:
    return space.parse(text)
  except ValueError as e:
    raise ValueError(f'{where}: {e}') from None


def _read(path: str) -> str:
  with open(path) as f:
    text = f.read()
  if text.lstrip().startswith('{'):
    try:
      value = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f'genotype file {path}: invalid JSON ({e.msg} at line {e.lineno})') from None
    if not isinstance(value, dict) or not isinstance(value.get('genotype'), str):
      raise ValueError(f"genotype file {path}: expected a JSON object with a string 'genotype'")
    return value['genotype'].strip()
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if not lines:
    raise ValueError(f'genotype file {path} is empty: expected a genotype string on its first line')
  return lines[0]
