r"""Times the final-training step of a standalone network (default: the DARTS 20-cell, 36-channel
CIFAR network of `configs/darts_final_cifar10.py`, DARTS_V2, auxiliary head, drop path, cutout).

  python experiments/bench_final.py --batch 32 --steps 3           # CPU-sized
  python experiments/bench_final.py                                # batch 128 (the paper's)
  python experiments/bench_final.py --config=configs/darts_final_cifar10.py:smoke --steps 2

Builds the step exactly as `close_jax.final.run` does (same setup, same jitted function), compiles
it once ahead of time (the compile time and XLA's memory analysis of that executable), then runs
`--warmup` + `--steps` steps on one fixed batch of synthetic images (the config's own data when it
is synthetic already, so a smoke benchmark reuses the smoke run's compiled program). The last
stdout line is one JSON object: images/s, step ms, compile count and seconds, XLA's argument,
output, temporary and peak bytes, the process's peak RSS.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # close_jax and configs/ without an install

from close_jax import xla_flags  # noqa: E402


def _config(spec: str):
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location(
    '_bench_final_config', os.path.join(REPO, path)
  )
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant or None)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='configs/darts_final_cifar10.py')
  parser.add_argument('--genotype', default='', help="default: the config's")
  parser.add_argument('--channels', type=int, default=0, help="0: the config's")
  parser.add_argument('--layers', type=int, default=0, help="0: the config's")
  parser.add_argument('--batch', type=int, default=0, help="0: the config's batch_size")
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--cache-dir', default='', help='persistent XLA cache ("": none)')
  args = parser.parse_args(argv)

  import jax
  import numpy as np

  from close_jax.final import networks
  from close_jax.final import run as final_run
  from close_jax.train_step import TraceCounter

  config = _config(args.config)
  for key, value in (('channels', args.channels), ('layers', args.layers)):
    if value:
      config.model[key] = value
  if args.genotype:
    config.genotype = args.genotype
  if args.batch:
    config.batch_size = args.batch
  if networks.lookup(config.model.network)[1].image_folder:
    cifar = [name for name, (_, net) in networks.available().items() if not net.image_folder]
    raise SystemExit(
      f'bench_final times CIFAR-shaped networks, not {config.model.network}: give a config of '
      f'one of {", ".join(cifar)}'
    )
  if config.data.name != 'synthetic':  # CIFAR-10 need not be present to time a step
    config.data.name = 'synthetic'
    config.data.synthetic_image_size = 32
    config.data.synthetic_num_train = config.batch_size
    config.data.synthetic_num_rank = 1
  config.eval_batch_size = 1
  config.compilation_cache_dir = args.cache_dir
  setup = final_run._Setup(config, workdir='')
  data = setup.data
  counter = TraceCounter()
  step = final_run.build_train_step(setup, config, counter)
  state = jax.jit(setup.initial_state, out_shardings=setup.replicated)()
  images, labels, _ = next(data.train.epoch(0))
  batch = (setup.to_global(images), setup.to_global(labels))
  drop_prob = np.float32(config.model.drop_path_prob / 2)
  start = time.perf_counter()
  compiled = step.lower(state, *batch, setup.step_key, drop_prob).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  for _ in range(args.warmup):
    state, metrics = compiled(state, *batch, setup.step_key, drop_prob)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, *batch, setup.step_key, drop_prob)
  jax.block_until_ready(state)
  seconds = time.perf_counter() - start
  mb = lambda name: round(getattr(memory, name, 0) / 2**20, 2) if memory is not None else None
  result = {
    'network': config.model.network,
    'genotype': setup.genotype,
    'channels': int(config.model.channels),
    'layers': int(config.model.layers) if 'layers' in setup.network.shape_keys else 0,
    'auxiliary': bool(config.model.auxiliary) and setup.network.auxiliary_head,
    'image_size': data.image_size,
    'batch': config.batch_size,
    'steps': args.steps,
    'num_params': setup.num_params,
    'num_params_aux': setup.num_params_aux,
    'images_per_s': round(args.steps * config.batch_size / seconds, 3),
    'step_ms': round(1000 * seconds / args.steps, 2),
    'train_step_traces': counter.count,
    'compile_s': round(compile_s, 2),
    'loss_finite': bool(np.isfinite(float(metrics['loss']))),
    'xla_argument_mb': mb('argument_size_in_bytes'),
    'xla_output_mb': mb('output_size_in_bytes'),
    'xla_alias_mb': mb('alias_size_in_bytes'),
    'xla_temp_mb': mb('temp_size_in_bytes'),
    'xla_peak_mb': None,
    'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    'device': jax.devices()[0].device_kind,
    'num_devices': setup.mesh.size,
    'xla_flags': xla_flags.in_effect(),
  }
  if memory is not None:
    result['xla_peak_mb'] = round(
      result['xla_argument_mb']
      + result['xla_output_mb']
      - result['xla_alias_mb']
      + result['xla_temp_mb'],
      2,
    )
  print(
    f'{result["network"]} C={result["channels"]} layers={result["layers"]} '
    f'batch {result["batch"]}: '
    f'{result["images_per_s"]} images/s ({result["step_ms"]} ms/step), compile '
    f'{result["compile_s"]} s, XLA peak {result["xla_peak_mb"]} MB, RSS {result["peak_rss_mb"]} MB',
    file=sys.stderr,
  )
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  xla_flags.apply_defaults()  # close_jax's XLA:CPU defaults, before JAX starts
  main()
