"""The search spaces: `get(name)` the registered space, `names()` the known ones.

The interface (`Space`, `GateGraph`, `FinalNetwork`, `register`) lives in
`close_jax.spaces.base`, which imports no space; the built-in spaces register themselves when
first asked for here, so that importing the interface never pulls in every space's tables.
"""

from __future__ import annotations

from close_jax.spaces import base
from close_jax.spaces.base import (
  FinalNetwork,
  GateGraph,
  Space,
  check_choice,
  check_positive,
  register,
  unregister,
)

__all__ = [
  'FinalNetwork',
  'GateGraph',
  'Space',
  'check_choice',
  'check_positive',
  'get',
  'names',
  'register',
  'unregister',
]


def _load_builtin() -> None:
  from close_jax.spaces import nb201_space, nb301_space, nds_space  # noqa: F401


def names() -> tuple[str, ...]:
  _load_builtin()
  return tuple(sorted(base._REGISTRY))


def get(name: str) -> Space:
  """The registered space `name`; a one-line error lists the known ones."""
  _load_builtin()
  if name not in base._REGISTRY:
    raise ValueError(f'config.space={name!r} is not supported: expected one of {names()}')
  return base._REGISTRY[name]
