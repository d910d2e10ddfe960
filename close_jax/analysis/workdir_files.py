"""Reading a run's outputs back: the analyses work from files, so they run on any finished (or
running) workdir without the data, the device or the process that trained it."""

from __future__ import annotations

import csv
import json
import os

import ml_collections
import numpy as np

from close_jax import config_check, xla_flags


class NoGroundTruth(ValueError):
  """The run ranked without ground truth (`eval.ground_truth='none'`), so an analysis that
  compares with true accuracies has nothing to compare with."""

  def __init__(self, path: str, remedy: str):
    super().__init__(
      f"{path} has no ground truth (the run ranked with eval.ground_truth='none'): {remedy}"
    )


def analysable(analyse, labelled_workdirs: dict[str, str]) -> dict[str, dict]:
  """`analyse(workdir)` of every workdir that has ground truth; one line for each skipped one,
  and a one-line error when none is left."""
  results = {}
  for label, workdir in labelled_workdirs.items():
    try:
      results[label] = analyse(workdir)
    except NoGroundTruth as e:
      print(f'skipped {label}: {e}')
  if not results:
    raise SystemExit('error: no workdir has ground truth to compare with (see above)')
  return results


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json as a config (later keys filled as a resumed run would)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir!r} the --workdir of a run?')
  with open(path) as f:
    saved = json.load(f)
  saved.pop(xla_flags.RECORDED_KEY, None)
  return config_check.fill_later_keys(ml_collections.ConfigDict(saved))


def read_ranking_csv(workdir: str) -> dict[str, np.ndarray]:
  """ranking.csv as columns: `arch` (str) and every numeric column (float64)."""
  path = os.path.join(workdir, 'ranking.csv')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: the run has not ranked yet')
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f'{path} has no architectures')
  columns = {'arch': np.array([r['arch'] for r in rows])}
  for name in rows[0]:
    if name != 'arch':
      columns[name] = np.array([float(r[name]) for r in rows], np.float64)
  return columns
