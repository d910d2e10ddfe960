"""NAS-Bench-301 ground truth: the shipped surrogate subset, or a user CSV of genotypes.

`data/nb301_surrogate_subset.csv` (see data/PROVENANCE.md) holds 1218 distinct DARTS genotypes
with the NAS-Bench-301 v1.0 XGB surrogate's prediction made with noise on: an approximate ground
truth (duplicate genotypes differ by up to 0.17 points), averaged here over duplicates, where the
two (op, input) pairs of a node count as unordered.
"""

from __future__ import annotations

import functools
import importlib.resources
import os

import numpy as np

from close_jax.benchmarks import csv_table
from close_jax.spaces import nb301

GT_FILE = 'nb301_surrogate_subset.csv'
COLUMNS = ('nb301_surrogate',)


def _key(arch: np.ndarray) -> bytes:
  return nb301.canonical(arch).tobytes()


@functools.cache
def shipped() -> tuple[np.ndarray, np.ndarray]:
  """(archs (M, 2, 8, 2), accuracy (M,)) of the shipped subset, duplicates averaged; read-only."""
  with importlib.resources.as_file(
    importlib.resources.files('close_jax.benchmarks') / 'data' / GT_FILE
  ) as path:
    archs, acc = csv_table.read_ground_truth(
      path, nb301.parse, _key, 'genotype', 'val_acc_surrogate'
    )
  archs.flags.writeable = acc.flags.writeable = False
  return archs, acc


def user_ground_truth(csv_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """A user CSV with columns `genotype` (DARTS string) and `accuracy`, duplicates averaged."""
  return csv_table.read_ground_truth(csv_path, nb301.parse, _key, 'genotype', 'accuracy')
