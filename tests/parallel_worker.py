"""Subprocess side of the data-parallel tests (the device count is fixed when JAX starts).

  python tests/parallel_worker.py equivalence OUT.json        # under 8 fake CPU devices
  python tests/parallel_worker.py train WORKDIR OUT.npz [PROCESS_ID NUM_PROCESSES PORT]

`equivalence` runs the same train steps and ranking on 8 devices and on 1 device with the same
global batch and writes the largest differences; `train` trains a tiny config (optionally as one
process of a multi-process run) and saves this process's copy of the final parameters.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from close_jax import evaluate, main, optim, parallel, train  # noqa: E402
from close_jax.data import load_dataset  # noqa: E402
from close_jax.spaces import nb201  # noqa: E402
from close_jax.supernet import build_supernet  # noqa: E402
from close_jax.train_step import TraceCounter, TrainState, make_train_step  # noqa: E402
from configs import nb201 as nb201_config  # noqa: E402


def tiny_config(method: str):
  config = nb201_config.get_config('smoke')
  config.method = method
  config.prng_impl = 'threefry2x32'  # its bits do not depend on how an array is sharded
  config.compilation_cache_dir = ''
  config.data.synthetic_num_train = 128
  config.data.synthetic_num_rank = 64
  config.batch_size = 16
  config.num_epochs = 2
  config.close.cl_schedule = (0, 1)
  config.close.lr_restart_epochs = ()
  config.checkpoint_every_epochs = 2
  config.eval.eval_epochs = ()
  config.eval.num_archs = 8
  config.eval.batch_size = 32
  config.eval.arch_chunk = 1
  config.eval.gate_probe_archs = 0  # diagnostics are tested in-process; here they only compile
  return config


def _max_diff(a, b) -> float:
  leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)


def equivalence(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  result = {}
  # CLOSE only: its GATE and straight-through mix are the replicated parameters that vanilla's
  # per-edge blocks add nothing to, and each method costs four compiles on 8 fake devices.
  for method, blocks in (('close', 2),):
    config = tiny_config(method)
    data = load_dataset(config.data)
    supernet = build_supernet(config, data.num_classes, blocks)
    tx = optim.make_optimizer(config.optim)
    key = jax.random.key(0, impl=config.prng_impl)
    params = supernet.init(key, data.image_shape)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
    archs = np.asarray(nb201.sample(jax.random.key(1), 3))
    shard = data.num_train // 8
    rng = np.random.default_rng(0)
    local = [rng.choice(shard, (8, 2), replace=False) for _ in archs]  # 2 images per device
    runs = {}
    for devices in (8, 1):
      mesh = parallel.make_mesh(devices)
      counter = TraceCounter()
      step = make_train_step(
        supernet,
        tx,
        mean=data.mean,
        std=data.std,
        crop_padding=1,
        hflip=True,
        mesh=mesh,
        counter=counter,
      )
      images = parallel.shard_rows(data.train_images[: 8 * shard], mesh)
      labels = parallel.shard_rows(data.train_labels[: 8 * shard], mesh)
      s = parallel.replicate(state, mesh)
      losses = []
      for ops, idx in zip(archs, local, strict=True):
        if devices == 1:  # the same global batch: shard-local rows -> rows of the whole set
          idx = (idx + shard * np.arange(8)[:, None]).reshape(1, 16)
        batch = jax.device_put(idx, parallel.row_sharded(mesh))
        s, metrics = step(s, images, labels, batch, ops, key)
        losses.append(float(metrics['loss']))
      scorer = evaluate.make_scorer(supernet, mesh)
      x, y = evaluate.ranking_batches(
        data.rank_images, data.rank_labels, 32, data.mean, data.std, mesh
      )
      scores = np.asarray(
        scorer(s.params, x, y, np.asarray(nb201.sample(jax.random.key(2), 8)), key)
      )
      runs[devices] = (s, losses, scores, counter.count, s.params)
      result[f'{method}_{devices}_param_devices'] = len(
        jax.tree.leaves(s.params)[0].sharding.device_set
      )
    (s8, l8, sc8, c8, _), (s1, l1, sc1, c1, _) = runs[8], runs[1]
    result[f'{method}_param_diff'] = _max_diff(s8.params, s1.params)
    result[f'{method}_opt_diff'] = _max_diff(s8.opt_state, s1.opt_state)
    result[f'{method}_param_change'] = _max_diff(s1.params, state.params)
    result[f'{method}_loss_diff'] = float(np.max(np.abs(np.subtract(l8, l1))))
    result[f'{method}_score_diff'] = float(np.max(np.abs(sc8 - sc1)))
    result[f'{method}_compiles'] = [c8, c1]
  with open(out_path, 'w') as f:
    json.dump(result, f)


def train_tiny(workdir: str, out_path: str, process_id=None, num_processes=None, port=None):
  config = tiny_config('close')
  # Both runs shard over the same 2-device mesh, so rbg's bits agree too, and it compiles the
  # K-block init several times faster than threefry on XLA:CPU.
  config.prng_impl = 'rbg'
  if process_id is not None:
    config.distributed.initialize = True
    config.distributed.coordinator_address = f'localhost:{port}'
    config.distributed.num_processes = int(num_processes)
    config.distributed.process_id = int(process_id)
  main.setup_process(config)  # jax.distributed, as `python -m close_jax.main` does first
  out = train.run_training(config, workdir)
  state, result = out.state, out.ranking
  flat = {
    jax.tree_util.keystr(path): np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
  }
  np.savez(
    out_path,
    **flat,
    __kendall_tau=np.asarray(result['kendall_tau']),
    __process_count=np.asarray(jax.process_count()),
    __device_count=np.asarray(jax.device_count()),
  )


if __name__ == '__main__':
  if sys.argv[1] == 'equivalence':
    equivalence(sys.argv[2])
  else:
    train_tiny(*sys.argv[2:])
