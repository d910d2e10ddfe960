"""The official CLOSE implementation (aw_nas) as a benchmark reference, imported from a checkout.

aw_nas is not on PyPI: clone github.com/walkerning/aw_nas (any directory) and pass it as
`--aw-nas-src DIR`; nothing of it is copied into close_jax. It needs, next to torch, its own
light requirements: `pip install 'setuptools<81' six pyyaml scipy click graphviz imageio
setproctitle nas-bench-201` (setuptools < 81 still ships the `pkg_resources` that
`aw_nas/__init__.py` reads its version with).

Stubbed, and only when it is not installed or fails to import: `torchvision`. `import aw_nas`
imports every component package, and its dataset modules (`aw_nas/dataset/*.py`) and the
detection objective import torchvision at module level; the CPU torchvision wheel that matches
the CPU torch wheel is not on PyPI (PyPI's build needs CUDA libraries and fails to load next to
the CPU torch). The NB201 CLOSENet's forward and backward pass, its GATE and its optimizer step
never touch torchvision, so it is replaced by empty modules whose attributes are empty classes
(enough for `class X(datasets.ImageFolder)` to define). Which stubs were installed is reported as
`stubbed_modules`. `AWNAS_HOME` points at a fresh temporary directory, so no user plugin of
`~/awnas/plugins` is loaded and nothing is written to `~`, and aw_nas logs at `error`.

`AwNasCloseSide` builds `NB201CloseNet` (`nasbench-201-close`) with the search space and weights
manager settings of the shipped CLOSE config (`examples/research/close/nb201/
node_cl-2468_lr-4_mlp-200x3_wit.yaml`: C=16, 17 layers, K=5 GLOW blocks per cell, the node-level
GATE with a 5 x 128 flow GCN and a 200x3 MLP, WIT by inheritance), raises it to curriculum level L
by its own `on_epoch_start` at the schedule's epochs, and trains with the official step of
`MepaEvaluator.update_evaluator` (mepa_samples=1, no surrogate steps): `assemble_candidate` (the
GATE's straight-through Gumbel-softmax mix), `CandidateNet.gradient` (forward in train mode,
cross-entropy, backward) and `step_current_gradients` (global-norm clip at 5, SGD with the
config's lr, momentum and weight decay).
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
import time
import types

import numpy as np

from close_jax.spaces import nb201

CLOSE_CONFIG = 'examples/research/close/nb201/node_cl-2468_lr-4_mlp-200x3_wit.yaml'
_MARKER = 'aw_nas/btcs/nasbench_201_close.py'


def _stub_attribute(owner, name: str):
  """Any attribute of a stub is an empty stub class, made once and kept (dunders stay absent)."""
  if name.startswith('__'):
    raise AttributeError(name)
  sub = _StubMeta(name, (), {})
  setattr(owner, name, sub)
  return sub


class _StubMeta(type):
  __getattr__ = _stub_attribute


class _StubModule(types.ModuleType):
  __getattr__ = _stub_attribute


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Serves an empty module for each root and any `root.x.y` below it."""

  def __init__(self, roots: set[str]):
    self.roots, self.served = roots, []

  def find_spec(self, fullname, path=None, target=None):
    if fullname.split('.')[0] in self.roots:
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    self.served.append(spec.name)
    module = _StubModule(spec.name)
    module.__path__ = []
    return module

  def exec_module(self, module):
    pass


def _importable(name: str) -> bool:
  """Whether `name` imports; a failed import's partial modules are dropped, so a stub can serve
  it (PyPI's CUDA torchvision next to the CPU torch wheel fails with a RuntimeError)."""
  try:
    importlib.import_module(name)
    return True
  except Exception:  # noqa: BLE001  (ImportError, or a broken build's own error)
    for module in [m for m in sys.modules if m == name or m.startswith(name + '.')]:
      del sys.modules[module]
    return False


@functools.cache
def import_aw_nas(src: str):
  """(aw_nas.btcs.nasbench_201_close, aw_nas.btcs.nasbench_201, stubbed module names)."""
  if not os.path.isfile(os.path.join(src, _MARKER)):
    raise ValueError(f'--aw-nas-src={src!r} has no {_MARKER}: expected an aw_nas checkout')
  import torch  # noqa: F401  (fails here, with its own message, when torch is absent)

  roots = {name for name in ('torchvision',) if not _importable(name)}
  finder = _StubFinder(roots)
  if roots:
    sys.meta_path.insert(0, finder)
  os.environ['AWNAS_HOME'] = tempfile.mkdtemp(prefix='awnas_home_')
  os.environ.setdefault('AWNAS_LOG_LEVEL', 'error')
  sys.path.insert(0, os.path.abspath(src))
  from aw_nas.btcs import nasbench_201 as nb201_mod
  from aw_nas.btcs import nasbench_201_close as close_mod

  return close_mod, nb201_mod, sorted({n.split('.')[0] for n in finder.served})


def official_config(src: str) -> dict:
  import yaml

  with open(os.path.join(src, CLOSE_CONFIG)) as f:
    return yaml.safe_load(f)


def arch_matrix(ops: np.ndarray) -> np.ndarray:
  """close_jax's (6,) edge ops as aw_nas's 4x4 lower-triangular matrix, arch[to][from] = op."""
  matrix = np.zeros((nb201.NUM_NODES, nb201.NUM_NODES), np.int64)
  for (src, dst), op in zip(nb201.EDGES, np.asarray(ops).tolist(), strict=True):
    matrix[dst, src] = op
  return matrix


class AwNasCloseSide:
  """The official NB201 CLOSENet at level L, trained by the official step on a fixed batch."""

  def __init__(
    self, src: str, level: int, batch: int, image_size: int, archs: np.ndarray, cfg: dict
  ):
    """`cfg`: the parsed official config (`official_config`), its sizes possibly changed."""
    import torch

    close_mod, nb201_mod, self.stubbed = import_aw_nas(src)
    self.torch = torch
    space = nb201_mod.NasBench201SearchSpace(**cfg['search_space_cfg'])
    wm_cfg = {k: v for k, v in cfg['weights_manager_cfg'].items() if k != 'rollout_type'}
    torch.manual_seed(0)
    self.net = close_mod.NB201CloseNet(space, 'cpu', rollout_type=cfg['rollout_type'], **wm_cfg)
    schedule = wm_cfg['cl_schedule']
    if not 1 <= level <= len(schedule):
      raise ValueError(f'level {level}: the official config has levels 1..{len(schedule)}')
    for epoch in schedule[:level]:  # WIT and the GATE's last-layer inheritance, as in training
      self.net.on_epoch_start(epoch)
    assert self.net.curriculum_level == level, self.net.curriculum_level
    opt_cfg = dict(cfg['evaluator_cfg']['mepa_optimizer'])
    opt_cls = getattr(torch.optim, opt_cfg.pop('type'))
    self.optimizer = opt_cls(self.net.parameters(), **opt_cfg)
    self.level, self.config = level, cfg
    gen = torch.Generator().manual_seed(0)
    self.x = torch.randn(batch, 3, image_size, image_size, generator=gen)
    self.y = torch.randint(0, 10, (batch,), generator=gen)
    self.batch = batch
    self.rollouts = [nb201_mod.NasBench201Rollout(arch_matrix(a), space) for a in archs]
    self.seen: list[str] = []  # the genotypes trained, as aw_nas writes them
    self.net.train()

  def step(self, rollout) -> None:
    cand = self.net.assemble_candidate(rollout)
    self.net.zero_grad()
    cand.gradient(
      (self.x, self.y),
      criterion=lambda inputs, logits, targets: self.torch.nn.functional.cross_entropy(
        logits, targets
      ),
      mode='train',
      return_grads=False,
    )
    self.net.step_current_gradients(self.optimizer)
    self.seen.append(rollout.genotype)

  def run(self, steps: int, first: int) -> float:
    """Runs `steps` steps on architectures first, first+1, ...; returns images/s."""
    start = time.perf_counter()
    for i in range(first, first + steps):
      self.step(self.rollouts[i % len(self.rollouts)])
    return steps * self.batch / (time.perf_counter() - start)

  def param_counts(self) -> dict:
    """Trainable parameters: all, and without the GLOW blocks above level L.

    aw_nas allocates all K blocks of every cell at the start (blocks above L are never used and
    never receive a gradient); close_jax's supernet holds only the L active ones.
    """
    total = inactive = 0
    for name, p in self.net.named_parameters():
      if not p.requires_grad:
        continue
      total += p.numel()
      parts = name.split('.')
      block = next((int(s[2:]) for s in parts if s.startswith('c_') and s[2:].isdigit()), 0)
      inactive += p.numel() if block > self.level else 0
    return {'all': total, 'active': total - inactive}
