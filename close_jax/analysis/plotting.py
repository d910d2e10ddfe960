"""matplotlib without a display: every analysis writes a PNG, in scripts, CI and notebooks alike."""

from __future__ import annotations

import os


def pyplot():
  """pyplot on the Agg backend (unless a notebook already chose an inline one)."""
  import matplotlib

  if 'inline' not in matplotlib.get_backend():
    matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  pyplot().close(fig)
  return path
