"""NDS ResNet and ResNeXt-A (Radosavovic et al. 2019, "On Network Design Spaces"), sequential.

An architecture is three stages of residual blocks, each stage with its own depth and width (and,
in ResNeXt-A, bottleneck ratio and group count). It is stored as a fixed-shape int32 (3, 4) array
of choice indices, one row per stage and one column per decision in `DECISIONS` (ResNet leaves the
last two columns at 0), so every architecture of a family is the same traced shape.

Two text forms: the readable one, `ds=[1,2,4] ws=[16,32,64]` (plus `bot_muls=[...] num_gs=[...]`
for ResNeXt-A), named after the NDS fields; and the NDS release JSON (`ResNet.json`,
`ResNeXt-A.json`), a list of models whose `net.ds`, `net.ws`, `net.bot_muls`, `net.num_gs` hold the
stem's entry then the three stages' (aw_nas reads entries 1..3), with the error in `min_test_top1`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

DECISIONS = ('ds', 'ws', 'bot_muls', 'num_gs')
NUM_STAGES = 3


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  block: str  # 'basic' (two 3x3 convs) or 'bottleneck' (1x1 -> 3x3 group conv -> 1x1)
  ds: tuple[int, ...]
  ws: tuple[int, ...]
  bot_muls: tuple[float, ...] = (1.0,)
  num_gs: tuple[int, ...] = (1,)

  @property
  def decisions(self) -> tuple[str, ...]:
    """The decisions an architecture of this family makes (ResNet: depth and width only)."""
    return DECISIONS if self.block == 'bottleneck' else DECISIONS[:2]

  @property
  def max_depth(self) -> int:
    return max(self.ds)

  @property
  def num_positions(self) -> int:
    """Shared positions per stage: every block but the stage's first (stride / projection)."""
    return self.max_depth - 1

  def choices(self, decision: str) -> tuple:
    return getattr(self, decision)


RESNET = Family(
  'nds_resnet',
  'basic',
  ds=(1, 2, 3, 4, 6, 8, 12, 16, 24),
  ws=(16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256),
)
RESNEXTA = Family(
  'nds_resnexta',
  'bottleneck',
  ds=(1, 2, 4, 8, 16),
  ws=(16, 32, 64, 128, 256),
  bot_muls=(0.25, 0.5, 1.0),
  num_gs=(1, 2, 4),
)
FAMILIES = {f.name: f for f in (RESNET, RESNEXTA)}


def inner_width(width: int, bot_mul: float) -> int:
  """A bottleneck's inner width, rounded as pycls's AnyNet does."""
  return int(round(width * bot_mul))


def from_values(family: Family, values: dict[str, list], where: str) -> np.ndarray:
  """The (3, 4) index array of per-stage values; `where` names the input in errors."""
  arch = np.zeros((NUM_STAGES, len(DECISIONS)), np.int32)
  for column, decision in enumerate(DECISIONS):
    if decision not in family.decisions:
      continue
    if decision not in values:
      raise ValueError(f'{where}: missing {decision!r}; {family.name} expects {family.decisions}')
    stages = list(values[decision])
    if len(stages) != NUM_STAGES:
      raise ValueError(f'{where}: {decision}={stages}: expected {NUM_STAGES} values, one per stage')
    for stage, value in enumerate(stages):
      choices = family.choices(decision)
      if value not in choices:
        raise ValueError(
          f'{where}: {decision}[{stage}]={value!r} is not in {family.name}: expected one of '
          f'{list(choices)}'
        )
      arch[stage, column] = choices.index(value)
  for stage in range(NUM_STAGES):
    width, bot_mul, groups = (values_of(family, arch)[d][stage] for d in DECISIONS[1:])
    inner = inner_width(width, bot_mul)
    if inner % groups:
      raise ValueError(
        f'{where}: stage {stage} width {width} x bot_mul {bot_mul:g} = {inner} channels, not '
        f'divisible by num_gs={groups}'
      )
  return arch


def values_of(family: Family, arch) -> dict[str, list]:
  """Per-decision lists of per-stage values (ResNet: bottleneck ratio 1, one group)."""
  arch = np.asarray(arch)
  return {
    d: [family.choices(d)[int(arch[s, c])] for s in range(NUM_STAGES)]
    for c, d in enumerate(DECISIONS)
  }


def _fmt(value) -> str:
  return f'{value:g}' if isinstance(value, float) else str(value)


def to_str(family: Family, arch) -> str:
  values = values_of(family, arch)
  return ' '.join(f'{d}=[{",".join(_fmt(v) for v in values[d])}]' for d in family.decisions)


_FIELD = re.compile(r'(\w+)=\[([^\]]*)\]')


def parse(family: Family, text: str) -> np.ndarray:
  """The inverse of `to_str`; a malformed string is a one-line error quoting it."""
  expected = ' '.join(f'{d}=[a,b,c]' for d in family.decisions)
  where = f'{family.name} architecture {text!r}'
  fields = _FIELD.findall(text)
  if not fields or _FIELD.sub('', text).strip():
    raise ValueError(f'{where}: expected the form {expected!r}')
  values = {}
  for name, body in fields:
    if name not in family.decisions or name in values:
      raise ValueError(f'{where}: field {name!r} unknown or repeated; expected {expected!r}')
    cast = float if name == 'bot_muls' else int
    try:
      values[name] = [cast(v) for v in body.split(',')]
    except ValueError:
      raise ValueError(f'{where}: {name}=[{body}] is not a list of numbers') from None
  return from_values(family, values, where)


def sample(family: Family, key, n: int) -> jax.Array:
  """int32 (n, 3, 4): each decision of each stage uniform over its choices, as the official
  germ sampler draws them independently; traced, so it runs inside the jitted step."""
  counts = np.array([[len(family.choices(d)) for d in DECISIONS]] * NUM_STAGES)
  return jax.random.randint(key, (n, NUM_STAGES, len(DECISIONS)), 0, jnp.asarray(counts))


def load_json(family: Family, path: str) -> tuple[np.ndarray, np.ndarray]:
  """(archs (N, 3, 4), accuracy % = 100 - min_test_top1) of an NDS release file; a malformed file
  is a one-line error naming the file and the entry."""
  if not os.path.isfile(path):
    raise ValueError(
      f'NDS ground truth {path!r}: no such file (the NDS release {family.name} JSON)'
    )
  try:
    with open(path) as f:
      models = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'NDS ground truth {path!r}: not JSON ({e})') from None
  if not isinstance(models, list) or not models:
    raise ValueError(f'NDS ground truth {path!r}: expected a non-empty list of models')
  archs, accuracy = [], []
  for i, model in enumerate(models):
    where = f'NDS ground truth {path!r} model {i}'
    net = model.get('net') if isinstance(model, dict) else None
    if not isinstance(net, dict) or not isinstance(model.get('min_test_top1'), (int, float)):
      raise ValueError(f'{where}: expected a dict with "net" (a dict) and "min_test_top1" (number)')
    values = {}
    for decision in family.decisions:
      entries = net.get(decision)
      if not isinstance(entries, list) or len(entries) != NUM_STAGES + 1:
        raise ValueError(
          f'{where}: net.{decision}={entries!r}: expected {NUM_STAGES + 1} entries (the stem '
          "and the three stages')"
        )
      values[decision] = entries[1:]
    archs.append(from_values(family, values, where))
    accuracy.append(100.0 - float(model['min_test_top1']))
  return np.stack(archs), np.asarray(accuracy, np.float32)
