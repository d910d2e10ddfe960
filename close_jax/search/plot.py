"""The search's front plot: every iteration's population in (parameters, fitness), darker later,
the final front joined by a line."""

from __future__ import annotations

import numpy as np


def plot_fronts(records: list[dict], path: str, title: str = '') -> None:
  """Writes a PNG of the populations of `records` (population.jsonl lines, in order)."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  if not records or records[-1]['params'] is None:
    raise ValueError('a front plot needs parameter counts (a space with standalone_params)')
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  colors = plt.get_cmap('viridis')(np.linspace(0.15, 0.95, len(records)))
  for record, color in zip(records, colors, strict=True):
    ax.scatter(
      np.asarray(record['params']) / 1e6, record['fitness'], s=8, color=color, alpha=0.6,
      label=f'iteration {record["iteration"]}' if record is records[-1] else None,
    )  # fmt: skip
  last = records[-1]
  front = sorted(last['front'], key=lambda i: last['params'][i])
  ax.plot(
    [last['params'][i] / 1e6 for i in front], [last['fitness'][i] for i in front],
    color='crimson', marker='o', ms=4, lw=1.2, label='final front',
  )  # fmt: skip
  ax.set_xlabel('parameters of the standalone network (M)')
  ax.set_ylabel('fitness (supernet accuracy, held-out split)')
  ax.set_title(title or f'{len(records)} iterations, darker = earlier')
  ax.legend(loc='lower right', fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
