"""Coordinate-check slopes in width: μP Θ(1) with SGD and Adam, NTP hidden change ∝ N^-1/2, SP output grows."""
import functools

import jax.numpy as jnp
import pytest

from superconsistency import config as config_lib
from superconsistency import coord_check
from superconsistency import data as data_lib
from superconsistency import parameterization as pz
from conftest import load_config


@functools.lru_cache(maxsize=None)
def _slopes(p_name, optimizer):
  c = load_config('quickstart')
  c.coord_check.widths = (128, 256, 512, 1024)
  c.coord_check.seeds = (0, 1)
  config_lib.set_optimizer(c, optimizer)
  data = data_lib.make_data(c.data, c.num_steps, c.coord_check.batch, jnp.float32)
  _, slopes = coord_check.run(c, data, pz.Parameterization(p_name), 3)
  return {s['kind']: s for s in slopes}


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_mup_every_layer_is_width_independent(optimizer):
  s = _slopes('mup', optimizer)
  assert set(s) == {'input', 'hidden', 'readout'}
  for kind, row in s.items():
    assert abs(row['delta_slope']) < 0.15, (kind, row)
  for kind in ('input', 'hidden'):
    assert abs(s[kind]['act_slope']) < 0.15, (kind, s[kind])
  # μP's readout starts at O(1/sqrt(N)) (mean-field output vanishes at init), then moves by O(1)
  assert abs(s['readout']['act_slope'] + 0.5) < 0.15


def test_ntk_hidden_change_shrinks_like_inverse_sqrt_width():
  s = _slopes('ntk', 'sgd')
  assert abs(s['hidden']['delta_slope'] + 0.5) < 0.15, s['hidden']
  assert abs(s['readout']['delta_slope']) < 0.15, s['readout']


def test_sp_output_change_grows_with_width_at_fixed_lr():
  s = _slopes('sp', 'sgd')
  assert s['readout']['delta_slope'] > 0.3, s['readout']
