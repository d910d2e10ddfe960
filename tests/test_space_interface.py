"""The space interface is the only coupling: a space defined here, with its own tiny network,
model keys, shape keys, GATE graph, ground truth, op names and standalone network, trains with
CLOSE, resumes (and refuses a changed shape key), ranks, is analysed, searched and trained from
scratch by final training (`close_jax.final`) with the real code, with no edit anywhere else.

The space: three layers in a chain (nodes 0 -> 1 -> 2 -> 3), each `skip`, a 1x1 or a 3x3
convolution; one cell's blocks hold both kernels, and position p runs layer p on its block."""

import csv
import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from close_jax import config_check, spaces, train
from close_jax.analysis import complexity, gate_similarity, switch_quality
from close_jax.benchmarks import csv_table
from close_jax.final import config_base as final_config_base
from close_jax.final import networks as final_networks
from close_jax.spaces.base import shipped_or_csv
from configs import nb201 as nb201_config

OPS = ('skip', 'conv1', 'conv3')
LAYERS = 3
SKIP, CONV1, CONV3 = range(len(OPS))
ALL = np.stack(np.meshgrid(*[np.arange(len(OPS))] * LAYERS, indexing='ij'), -1).reshape(-1, LAYERS)


def parse(text: str) -> np.ndarray:
  names = text.split('-') if isinstance(text, str) else ()
  if len(names) != LAYERS or any(n not in OPS for n in names):
    raise ValueError(f'chain arch {text!r}: expected {LAYERS} of {OPS} joined by "-"')
  return np.array([OPS.index(n) for n in names], np.int32)


def to_str(arch) -> str:
  return '-'.join(OPS[int(op)] for op in np.asarray(arch))


def weighted(archs):
  return jnp.asarray(archs) != SKIP  # a skip layer uses no block


def probe(num: int, seed: int = 0) -> np.ndarray:
  usable = ALL[np.asarray(weighted(ALL)).any(-1)]
  pick = np.random.default_rng(seed).choice(len(usable), min(num, len(usable)), replace=False)
  return usable[np.sort(pick)].astype(np.int32)


def load_csv(path):
  return csv_table.read_ground_truth(path, parse, to_str)


load_ground_truth, check_ground_truth = shipped_or_csv((), None, load_csv, 'arch,accuracy')


class Cell(nn.Module):
  """Both kernels per block (leading block axis); position p runs layer p with block
  assignment[p], or the mix of the first L blocks with weights assignment[p] (L,)."""

  width: int
  num_blocks: int

  @nn.compact
  def __call__(self, x, arch, assignment):
    init = nn.initializers.lecun_normal(batch_axis=(0,))
    k1 = self.param('conv1', init, (self.num_blocks, 1, 1, self.width, self.width))
    k3 = self.param('conv3', init, (self.num_blocks, 3, 3, self.width, self.width))
    for p in range(LAYERS):
      if assignment.ndim == 2:
        mix = assignment[p].astype(x.dtype)
        w1 = jnp.tensordot(mix, k1[: mix.shape[0]], 1)
        w3 = jnp.tensordot(mix, k3[: mix.shape[0]], 1)
      else:
        w1, w3 = k1[assignment[p]], k3[assignment[p]]
      conv = lambda w, y: jax.lax.conv_general_dilated(
        y, w.astype(y.dtype), (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
      )
      outs = jnp.stack([x, jax.nn.relu(conv(w1, x)), jax.nn.relu(conv(w3, x))])
      x = jnp.tensordot(jax.nn.one_hot(arch[p], len(OPS), dtype=x.dtype), outs, 1)
    return x


class ChainNet(nn.Module):
  width: int
  num_blocks: int
  num_classes: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, arch, assignment, *, train: bool):
    x = nn.Conv(self.width, (3, 3), name='stem')(x.astype(self.dtype))
    x = Cell(self.width, self.num_blocks, name='cell_0')(x, jnp.asarray(arch), assignment)
    return nn.Dense(self.num_classes, name='head')(jnp.mean(x, axis=(1, 2)))


def check_model(model_cfg) -> None:
  spaces.check_positive('model.width', model_cfg.width)


def build_network(model_cfg, num_classes, num_blocks, dtype):
  return ChainNet(model_cfg.width, num_blocks, num_classes, dtype)


def costs(model_cfg, image_shape, num_classes, archs):
  """Multiply-adds and weights of the layers an architecture runs (stem and head shared)."""
  w, (h, wd, c) = model_cfg.width, image_shape
  taps = ((archs == CONV1) * 1 + (archs == CONV3) * 9).sum(-1).astype(np.int64)
  flops = (9 * c * w + taps * w * w) * h * wd + w * num_classes
  params = 9 * c * w + w + taps * w * w + w * num_classes + num_classes
  return flops, params


class ChainFinalNet(nn.Module):
  """The standalone network of one architecture (final training): the chosen layers only, each
  with its own weights; BN on the stem keeps running statistics."""

  arch: tuple
  channels: int
  num_classes: int

  @nn.compact
  def __call__(self, x, drop_prob=None, train: bool = False):
    del drop_prob  # no drop path (FinalNetwork.drop_path=False)
    x = nn.Conv(self.channels, (3, 3), name='stem')(x)
    x = nn.BatchNorm(use_running_average=not train, name='stem_bn')(x)
    for p, op in enumerate(self.arch):
      if op != SKIP:
        k = 1 if op == CONV1 else 3
        x = jax.nn.relu(nn.Conv(self.channels, (k, k), use_bias=False, name=f'layer{p}')(x))
    return nn.Dense(self.num_classes, name='head')(jnp.mean(x, axis=(1, 2))), None


def final_params(arch, channels: int, num_classes: int) -> int:
  taps = int(np.sum(arch == CONV1) + 9 * np.sum(arch == CONV3))
  stem = 9 * 3 * channels + channels + 2 * channels  # conv with bias, BN scale and bias
  return stem + taps * channels * channels + channels * num_classes + num_classes


def build_final(model_cfg, arch, num_classes):
  return ChainFinalNet(tuple(int(v) for v in arch), int(model_cfg.channels), num_classes)


SENDERS = np.arange(LAYERS, dtype=np.int32)
CHAIN = spaces.Space(
  name='chain_test',
  arch_shape=(LAYERS,),
  num_ops=len(OPS),
  parse=parse,
  to_str=to_str,
  samplers=('uniform',),
  sample=lambda key, n, which='uniform': jax.random.randint(key, (n, LAYERS), 0, len(OPS)),
  probe_archs=probe,
  ground_truth_names=(),
  load_ground_truth=load_ground_truth,
  check_ground_truth=check_ground_truth,
  arch_code=lambda arch: jnp.sum(arch * len(OPS) ** jnp.arange(LAYERS)),
  num_positions=LAYERS,
  position_ops=lambda archs: archs,
  weighted_positions=weighted,
  vanilla_blocks=LAYERS,
  vanilla_assignment=lambda arch: jnp.arange(LAYERS, dtype=jnp.int32),
  graph=spaces.GateGraph(
    num_nodes=LAYERS + 1,
    input_nodes=(0,),
    num_edge_ops=len(OPS) + 1,  # 0 is "no edge": every layer is an edge, op + 1
    aggregation='sum',
    edges=lambda arch: (jnp.asarray(arch) + 1, SENDERS, SENDERS + 1),
    op_dim=8,
    node_dim=8,
    hidden_dim=8,
    gcn_dims=(16, 16),
  ),
  build_network=build_network,
  check_model=check_model,
  costs=costs,
  shape_model_keys=('width',),
  op_names=OPS,
  conv3x3_op='conv3',
  named_archs=(('CHAIN_MIXED', 'conv3-skip-conv1'),),
  final_networks=(spaces.FinalNetwork('chain', build_final, ('channels',)),),
)


def truth_of(arch) -> float:
  """An accuracy the test decides: 3x3 layers help most, then 1x1 (no ties between classes)."""
  return 50.0 + 9.0 * float(np.sum(arch == CONV3)) + 3.0 * float(np.sum(arch == CONV1))


@pytest.fixture
def chain_space():
  spaces.register(CHAIN)
  yield CHAIN
  spaces.unregister(CHAIN.name)


def chain_config(ground_truth: str) -> ml_collections.ConfigDict:
  config = nb201_config.get_config('smoke')
  config.space = CHAIN.name
  del config['train_sampler']  # the space's default_sampler fills it
  config.model = ml_collections.ConfigDict({'width': 4, 'dtype': 'float32'})
  config.compilation_cache_dir = ''
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_rank = 32
  config.batch_size = 32
  config.num_epochs = 3
  config.checkpoint_every_epochs = 1
  config.close.cl_schedule = (0, 2)
  config.close.lr_restart_epochs = ()
  config.eval.eval_epochs = ()
  config.eval.at_switches = True
  config.eval.ground_truth = ground_truth
  config.eval.num_archs = 0
  config.eval.batch_size = 32
  config.eval.arch_chunk = 9
  config.eval.gate_probe_archs = 4
  return config


def _write_truth(path) -> str:
  with open(path, 'w', newline='') as f:
    csv.writer(f).writerows([('arch', 'accuracy')] + [(to_str(a), truth_of(a)) for a in ALL])
  return str(path)


def _jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_space_defined_here_trains_resumes_ranks_and_is_analysed(chain_space, tmp_path):
  truth_csv = _write_truth(tmp_path / 'truth.csv')
  workdir = tmp_path / 'run'
  config = chain_config(truth_csv)
  train.train_and_evaluate(config, str(workdir))
  records = _jsonl(workdir / 'metrics.jsonl')
  assert [r['num_blocks'] for r in records] == [1, 1, 2]
  assert 'gate_spread' in records[-1]  # the GATE embedded the chain graph
  assert json.loads((workdir / 'config.json').read_text())['train_sampler'] == 'uniform'

  # Resume for one more epoch: the checkpoint of epoch 3 is restored, not retrained.
  config = chain_config(truth_csv)
  config.num_epochs = 4
  result = train.train_and_evaluate(config, str(workdir))
  assert [r['epoch'] for r in _jsonl(workdir / 'metrics.jsonl')] == [0, 1, 2, 3]
  assert result['num_archs'] == len(ALL) and result['epoch'] == 4

  # The space's shape key is a resume's shape key: refused before anything is written.
  config = chain_config(truth_csv)
  config.model.width = 8
  before = (workdir / 'metrics.jsonl').read_text()
  with pytest.raises(ValueError, match=r'config.model.width=8 differs from 4 of the run'):
    train.train_and_evaluate(config, str(workdir))
  assert (workdir / 'metrics.jsonl').read_text() == before

  # Ranking: every architecture with the CSV's accuracy and the space's own costs.
  with open(workdir / 'ranking.csv') as f:
    rows = list(csv.DictReader(f))
  assert sorted(r['arch'] for r in rows) == sorted(to_str(a) for a in ALL)
  cfg = ml_collections.ConfigDict({'width': 4})
  for row in rows:
    arch = parse(row['arch'])
    assert float(row['ground_truth']) == pytest.approx(truth_of(arch))
    flops, params = costs(cfg, (8, 8, 3), 10, arch[None])
    assert (float(row['flops']), float(row['params'])) == (flops[0], params[0])

  # The analyses that apply to any space: by complexity, around the switch, GATE similarity.
  by_flops = complexity.analyse(str(workdir), 'flops', groups=3)
  assert sum(by_flops['counts']) == len(ALL)
  quality = switch_quality.analyse(str(workdir))
  assert quality['switches'] == [2]
  assert len(quality['kendall_tau']) == len(_jsonl(workdir / 'rankings.jsonl'))
  supernet, params, epoch = gate_similarity.restore_gate(str(workdir))
  assert supernet.space is CHAIN and epoch == 4 and supernet.num_blocks == 2
  kl = gate_similarity.kl_by_distance(supernet, params, CONV3, 27, 10, (0,))
  assert len(kl['distance']) and min(kl['distance']) >= 1
  assert np.all(np.asarray(kl['kl_mean']) >= 0)
  # The command line finds the space's 3x3 convolution and its op names through the interface.
  assert gate_similarity.op_index(CHAIN, None) == CONV3
  assert gate_similarity.op_index(CHAIN, 'conv1') == CONV1
  with pytest.raises(ValueError, match=r"op 'conv5' is not an op of space 'chain_test'"):
    gate_similarity.op_index(CHAIN, 'conv5')
  args = ['--workdir', str(workdir), '--archs', '27', '--pairs', '10', '--seeds', '1']
  by_cli = gate_similarity.main([*args, '--out', str(tmp_path / 'kl.png')])['run']
  np.testing.assert_array_equal(by_cli['distance'], kl['distance'])
  np.testing.assert_allclose(by_cli['kl_mean'], kl['kl_mean'], rtol=1e-6)
  assert (tmp_path / 'kl.png').stat().st_size > 0


def test_the_search_runs_on_a_space_defined_here(chain_space, tmp_path):
  """CARS-style evolution over the chain space's genes, looked up in the CSV ground truth."""
  from close_jax.search import config as search_config
  from close_jax.search import run as search_run

  truth_csv = _write_truth(tmp_path / 'truth.csv')
  config = search_config.add_search_group(chain_config(truth_csv))
  config.eval.at_end = config.eval.at_switches = False
  config.search.warmup_epochs = 2
  config.search.epochs_per_iteration = 1
  config.search.population_size = 4
  config.search.fitness_batches = 1
  config.search.selection = 'topk'  # the space defines no standalone parameter count
  summary = search_run.run(config, str(tmp_path / 'run'))
  chosen = summary['chosen']
  assert summary['iterations'] == 1 and summary['evaluations'] == 8
  assert chosen['true_accuracy'] == pytest.approx(truth_of(parse(chosen['arch'])))
  on_disk = json.loads((tmp_path / 'run' / 'search' / 'summary.json').read_text())
  assert on_disk['chosen']['arch'] == chosen['arch']


def chain_final_config() -> ml_collections.ConfigDict:
  config = final_config_base.base_config()
  config.genotype = 'CHAIN_MIXED'
  config.model.network = 'chain'
  config.model.channels = 4
  config.compilation_cache_dir = ''
  config.data.name = 'synthetic'
  config.data.synthetic_num_train = 32
  config.data.synthetic_num_rank = 16
  config.data.synthetic_image_size = 8
  config.data.crop_padding = 1
  config.data.cutout_length = 0
  config.batch_size = 16
  config.eval_batch_size = 16
  config.num_epochs = 2
  return config


def test_final_training_of_a_space_defined_here(chain_space, tmp_path):
  """The space's own standalone network trains from scratch by its published name; the config's
  auxiliary head and drop path (on in the base config) do not apply to it."""
  from close_jax.final import run as final_run

  config = chain_final_config()
  assert config.model.auxiliary and config.model.drop_path_prob > 0
  summary = final_run.run(config, str(tmp_path / 'final'))
  arch = parse('conv3-skip-conv1')
  assert summary['genotype'] == 'conv3-skip-conv1' and summary['channels'] == 4
  assert summary['num_params'] == summary['num_params_aux'] == final_params(arch, 4, 10)
  assert not summary['auxiliary'] and 'layers' not in summary and summary['epochs_done'] == 2
  records = _jsonl(tmp_path / 'final' / 'metrics.jsonl')
  assert [r['drop_path_prob'] for r in records] == [0.0, 0.0]
  assert all(r['train_step_traces'] == 1 and r['eval_step_compiles'] == 1 for r in records)
  # A genotype string of the space, and a resume that changes its shape key, go through it too.
  config = chain_final_config()
  config.genotype = 'skip-skip-conv3'
  config.model.channels = 6
  with pytest.raises(ValueError, match=r'config.model.channels=6 differs from 4 of the run'):
    final_run.run(config, str(tmp_path / 'final'))
  with pytest.raises(ValueError, match=r"config.genotype: chain arch 'conv3-conv3': expected 3 of"):
    config.genotype = 'conv3-conv3'
    final_run.run(config, str(tmp_path / 'other'))


def test_final_training_refuses_a_space_without_a_final_network(chain_space, tmp_path):
  from close_jax.final import run as final_run

  config = chain_final_config()
  config.model.network = 'nds_resnet'
  with pytest.raises(ValueError) as info:
    final_run.run(config, str(tmp_path / 'never'))
  assert str(info.value) == (
    "config.model.network='nds_resnet': space 'nds_resnet' has no final network; the spaces "
    'with one are chain_test (chain), nb201 (nb201), nb301 (darts_cifar or darts_imagenet)'
  )
  assert not (tmp_path / 'never').exists()
  # A network name must select one network: a second space reusing one is refused at lookup.
  clash = dataclasses.replace(
    CHAIN,
    name='chain_clash',
    final_networks=(dataclasses.replace(CHAIN.final_networks[0], name='nb201'),),
  )
  spaces.register(clash)
  try:
    with pytest.raises(ValueError, match=r"'nb201' is defined by spaces 'chain_clash' and 'nb201'"):
      final_networks.lookup('nb201')
  finally:
    spaces.unregister(clash.name)


def test_unregistering_removes_the_space(chain_space, tmp_path):
  spaces.unregister(CHAIN.name)
  assert CHAIN.name not in spaces.names()
  with pytest.raises(ValueError, match=r"config.space='chain_test' is not supported"):
    train.train_and_evaluate(chain_config(''), str(tmp_path))
  with pytest.raises(ValueError, match=r"config.model.network='chain': expected one of"):
    final_networks.lookup('chain')


def test_an_older_config_gets_the_spaces_default_sampler(chain_space):
  config = chain_config('unused.csv')
  assert 'train_sampler' not in config
  assert config_check.fill_later_keys(config).train_sampler == 'uniform'
  nb201 = nb201_config.get_config('smoke')
  del nb201['train_sampler']
  assert config_check.fill_later_keys(nb201).train_sampler == 'valid'  # NB201's official one


def test_a_malformed_space_is_refused_when_it_is_defined():
  with pytest.raises(ValueError, match=r"default_sampler='valid' is not one of its samplers"):
    dataclasses.replace(CHAIN, default_sampler='valid')
  with pytest.raises(ValueError, match=r'shape_keyer and specialise come together'):
    dataclasses.replace(CHAIN, shape_keyer=lambda network: None)
  with pytest.raises(ValueError, match=r"conv3x3_op='conv5' is not one of its op_names"):
    dataclasses.replace(CHAIN, conv3x3_op='conv5')
  with pytest.raises(ValueError, match=r'2 op_names for num_ops=3'):
    dataclasses.replace(CHAIN, op_names=OPS[:2], conv3x3_op='')
