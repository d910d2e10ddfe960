"""Published cells by name, and a run's `config.genotype` resolved to the space's int array.

Only cells that are exactly expressible in the NB-301 space are here (its 7 ops, 4 intermediate
nodes, concat of nodes 2-5): DARTS (quark0/darts `cnn/genotypes.py`), PC-DARTS
(yuhuixu1993/PC-DARTS `genotypes.py`, the CIFAR-10 and the ImageNet cell) and P-DARTS
(chenxin061/pdarts `genotypes.py`). NASNet and AmoebaNet use 5 intermediate nodes, other concat
sets and 7x7 / 1x7-7x1 convolutions, and ENAS's cell has 5 nodes: none of them fits.
"""

from __future__ import annotations

import json
import os

import numpy as np

from close_jax.spaces import nb201, nb301

_DARTS = {
  'DARTS_V1': (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
  ),
  'DARTS_V2': (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
  ),
  'PC_DARTS': (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), "
    "('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), "
    "('dil_conv_3x3', 1)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_5x5', 1), "
    "('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=[2, 3, 4, 5])"
  ),
  'PC_DARTS_IMAGENET': (
    "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), "
    "('skip_connect', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), "
    "('dil_conv_5x5', 4)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_3x3', 0), "
    "('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 2), "
    "('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 3)], reduce_concat=[2, 3, 4, 5])"
  ),
  'PDARTS': (
    "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), "
    "('dil_conv_5x5', 4)], normal_concat=[2, 3, 4, 5], reduce=[('avg_pool_3x3', 0), "
    "('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), "
    "('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=[2, 3, 4, 5])"
  ),
}
_DARTS['DARTS'] = _DARTS['DARTS_V2']  # the name quark0/darts trains by default

# NB201 cells worth naming: the benchmark's extremes (the largest and the parameter-free cell).
_NB201 = {
  'NB201_ALL_CONV3X3': '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|'
  '+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|',
  'NB201_RESNET': '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|',
}

NAMES = {'nb301': tuple(sorted(_DARTS)), 'nb201': tuple(sorted(_NB201))}
_SPACES = {'nb301': (nb301, _DARTS), 'nb201': (nb201, _NB201)}


def published(name: str) -> np.ndarray:
  """The int array of a published DARTS-space cell (`DARTS_V2`, `PC_DARTS`, ...)."""
  return nb301.parse(_DARTS[name])


def resolve(spec: str, space: str) -> np.ndarray:
  """`config.genotype` as the space's int array: a name of `NAMES[space]`, the space's string
  form itself, or a path to a file holding it (a text file whose first non-empty line is the
  string, or a JSON object with key 'genotype', as the search writes them)."""
  if space not in _SPACES:
    raise ValueError(f'config.space={space!r}: expected one of {sorted(_SPACES)}')
  module, named = _SPACES[space]
  spec = spec.strip() if isinstance(spec, str) else spec
  if not isinstance(spec, str) or not spec:
    raise ValueError(
      f'config.genotype={spec!r}: expected a name ({", ".join(NAMES[space])}), a {space} genotype '
      'string or a path to a file holding one'
    )
  if spec in named:
    return module.parse(named[spec])
  if spec.startswith(('Genotype(', '|')):
    return _parse(module, spec, 'config.genotype')
  if os.path.isfile(spec):
    return _parse(module, _read(spec), f'genotype file {spec}')
  looks_like_path = os.sep in spec or spec.endswith(('.txt', '.json'))
  if looks_like_path:
    raise ValueError(f'config.genotype={spec!r}: no such genotype file')
  raise ValueError(
    f'config.genotype={spec!r}: unknown genotype name; expected one of '
    f'{", ".join(NAMES[space])}, a {space} genotype string or a path to a file holding one'
  )


def _parse(module, text: str, where: str) -> np.ndarray:
  try:
    return module.parse(text)
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
