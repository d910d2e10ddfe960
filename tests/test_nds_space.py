"""NDS ResNet / ResNeXt-A: text and JSON forms, sampling, and one-line errors for bad input."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from close_jax.spaces import nds

FAMILIES = [nds.RESNET, nds.RESNEXTA]


def nds_json(path, nets, errors):
  """A file in the NDS release layout: entry 0 of each list is the stem's (aw_nas skips it)."""
  models = [
    {'net': {k: [16 if k == 'ws' else 1] + list(v) for k, v in net.items()}, 'min_test_top1': e}
    for net, e in zip(nets, errors, strict=True)
  ]
  path.write_text(json.dumps(models))
  return str(path)


@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.name)
def test_round_trip_over_sampled_architectures(family):
  archs = np.asarray(nds.sample(family, jax.random.key(0), 300))
  assert archs.shape == (300, 3, 4) and archs.dtype == np.int32
  for arch in archs:
    text = nds.to_str(family, arch)
    np.testing.assert_array_equal(nds.parse(family, text), arch)
  if family is nds.RESNET:
    assert (archs[:, :, 2:] == 0).all()


def test_readable_forms():
  arch = nds.parse(nds.RESNEXTA, 'ds=[1,4,16] ws=[16,64,256] bot_muls=[0.25,1,0.5] num_gs=[4,1,2]')
  assert arch.tolist() == [[0, 0, 0, 2], [2, 2, 2, 0], [4, 4, 1, 1]]
  assert nds.to_str(nds.RESNEXTA, arch) == (
    'ds=[1,4,16] ws=[16,64,256] bot_muls=[0.25,1,0.5] num_gs=[4,1,2]'
  )
  resnet = nds.parse(nds.RESNET, 'ds=[24,1,3] ws=[256,16,40]')
  assert nds.values_of(nds.RESNET, resnet) == {
    'ds': [24, 1, 3],
    'ws': [256, 16, 40],
    'bot_muls': [1.0] * 3,
    'num_gs': [1] * 3,
  }
  assert nds.RESNET.num_positions == 23 and nds.RESNEXTA.num_positions == 15


@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.name)
def test_sampling_is_uniform_per_decision(family):
  archs = np.asarray(nds.sample(family, jax.random.key(1), 20000))
  for column, decision in enumerate(family.decisions):
    counts = np.bincount(archs[:, :, column].ravel(), minlength=len(family.choices(decision)))
    expected = archs.shape[0] * 3 / len(counts)
    assert len(counts) == len(family.choices(decision))
    assert np.abs(counts / expected - 1).max() < 0.06, (decision, counts)


@pytest.mark.parametrize(
  ('family', 'text', 'message'),
  [
    (nds.RESNET, 'ds=[1,2,5] ws=[16,16,16]', r'ds\[2\]=5 is not in nds_resnet'),
    (nds.RESNET, 'ds=[1,2] ws=[16,16,16]', 'expected 3 values'),
    (nds.RESNET, 'ws=[16,16,16]', "missing 'ds'"),
    (nds.RESNET, 'ds=[1,2,3] ws=[16,16,16] num_gs=[1,1,1]', "field 'num_gs' unknown"),
    (nds.RESNET, 'ds=[1,2,3] ws=[16,16,16] extra', 'expected the form'),
    (nds.RESNET, 'resnet-20', 'expected the form'),
    (nds.RESNET, 'ds=[1,x,3] ws=[16,16,16]', 'not a list of numbers'),
    (nds.RESNEXTA, 'ds=[1,2,4] ws=[16,32,64] bot_muls=[0.3,1,1] num_gs=[1,1,1]', r'bot_muls\[0\]'),
    (nds.RESNEXTA, 'ds=[1,2,4] ws=[16,32,64]', "missing 'bot_muls'"),
  ],
)
def test_malformed_architectures_are_one_line_errors(family, text, message):
  with pytest.raises(ValueError, match=message) as error:
    nds.parse(family, text)
  assert '\n' not in str(error.value) and repr(text) in str(error.value)


def test_groups_must_divide_the_bottleneck_width():
  family = dataclasses.replace(nds.RESNEXTA, ws=(16, 24))  # 24 x 0.25 = 6 channels
  with pytest.raises(ValueError, match='6 channels, not divisible by num_gs=4'):
    nds.parse(family, 'ds=[1,1,1] ws=[16,24,16] bot_muls=[1,0.25,1] num_gs=[1,4,1]')
  nds.parse(family, 'ds=[1,1,1] ws=[16,24,16] bot_muls=[1,0.25,1] num_gs=[1,2,1]')


def test_json_reader(tmp_path):
  nets = [
    {'ds': [1, 2, 4], 'ws': [16, 32, 64], 'bot_muls': [0.25, 0.5, 1.0], 'num_gs': [1, 2, 4]},
    {'ds': [16, 8, 1], 'ws': [256, 128, 16], 'bot_muls': [1, 1, 1], 'num_gs': [4, 4, 4]},
  ]
  path = nds_json(tmp_path / 'ResNeXt-A.json', nets, [5.25, 7.5])
  archs, accuracy = nds.load_json(nds.RESNEXTA, path)
  np.testing.assert_allclose(accuracy, [94.75, 92.5])
  assert [nds.to_str(nds.RESNEXTA, a) for a in archs] == [
    'ds=[1,2,4] ws=[16,32,64] bot_muls=[0.25,0.5,1] num_gs=[1,2,4]',
    'ds=[16,8,1] ws=[256,128,16] bot_muls=[1,1,1] num_gs=[4,4,4]',
  ]


@pytest.mark.parametrize(
  ('content', 'message'),
  [
    (None, 'no such file'),
    ('{not json', 'not JSON'),
    ('{}', 'expected a non-empty list'),
    ('[]', 'expected a non-empty list'),
    ('[{"net": {"ds": [1, 1, 2, 3], "ws": [16, 16, 16, 16]}}]', 'model 0: expected a dict'),
    (
      '[{"net": {"ds": [1, 2, 3], "ws": [16, 16, 16, 16]}, "min_test_top1": 5}]',
      r'net.ds=\[1, 2, 3\]',
    ),
    ('[{"net": {"ds": [1, 1, 2, 5], "ws": [16, 16, 16, 16]}, "min_test_top1": 5}]', r'ds\[2\]=5'),
  ],
)
def test_malformed_json_is_a_one_line_error(tmp_path, content, message):
  path = tmp_path / 'ResNet.json'
  if content is not None:
    path.write_text(content)
  with pytest.raises(ValueError, match=message) as error:
    nds.load_json(nds.RESNET, str(path))
  assert '\n' not in str(error.value) and str(path) in str(error.value)


def test_json_ground_truth_averages_duplicates_in_file_order(tmp_path):
  from close_jax import spaces

  a = {'ds': [1, 2, 3], 'ws': [16, 24, 32]}
  b = {'ds': [24, 1, 1], 'ws': [256, 16, 16]}
  path = nds_json(tmp_path / 'ResNet.json', [b, a, b], [10.0, 5.0, 6.0])
  archs, accuracy, _ = spaces.get('nds_resnet').load_ground_truth(path)
  assert [nds.to_str(nds.RESNET, x) for x in archs] == [
    'ds=[24,1,1] ws=[256,16,16]',
    'ds=[1,2,3] ws=[16,24,32]',
  ]
  np.testing.assert_allclose(accuracy, [92.0, 95.0])
