"""CompleteP (Depth-μP at α = 1) passes a coordinate check across depth with SGD, and the same check catches the
rule it replaced (the depth factor L^(2α−1) on every layer, which at α = 1 multiplies the input and readout rates by
L).

Tolerance. The theory puts the slope of the change in log L at 0 under CompleteP, and at +1 for the old rule (its
input and readout rates grow like L, so does their change). Measured on this tiny network (width 8, 8×8 images, one
step, two seeds; L = 3…24): CompleteP −0.13…−0.02 (seeds 2, 3: −0.00…+0.13), the old rule +0.85…+0.98. A band of
±0.3 around each prediction holds about twice the seed-to-seed spread and leaves the two bands disjoint.
"""
import dataclasses
import functools

import jax.numpy as jnp

from superconsistency import coord_check
from superconsistency import data as data_lib
from superconsistency import parameterization as pz
from conftest import load_config

TOLERANCE = 0.3
WIDTH = 8
# The rule before the fix, as a row: CompleteP with the SGD depth factor on every layer.
EVERY_LAYER = dataclasses.replace(pz.COMPLETEP, name='completep_depth_factor_on_every_layer',
                                  sgd=pz.per_kind(pz.COMPLETEP.sgd['branch']))


def _config():
  """configs/depth_resnet.py (residual ConvNet, one conv per block, no norm, SGD, offline CIFAR-shaped images),
  shrunk to 8×8 images, batch 16, one step of lr 0.5 and two seeds."""
  c = load_config('depth_resnet')
  c.data.image_size, c.data.batch_size, c.data.num_train, c.data.num_eval = 8, 16, 64, 16
  c.coord_check.steps, c.coord_check.batch, c.coord_check.seeds, c.coord_check.lr.sgd = 1, 16, (0, 1), 0.5
  assert c.optimizer.name == 'sgd' and c.model.layers_per_block == 1
  return c


@functools.lru_cache(maxsize=None)
def _data():
  c = _config()
  return data_lib.make_data(c.data, 4, c.coord_check.batch, jnp.float32)


def _slopes(param, blocks_per_stage):
  _, slopes = coord_check.run_depth(_config(), _data(), param, WIDTH, blocks_per_stage)
  return {s['position']: s['delta_slope'] for s in slopes}


def test_completep_change_does_not_grow_with_depth():
  """Blocks per stage 1, 2, 4, 8: L = 3…24. Built as the runner builds it, with the config's α (0.5), which the
  completep row overrides to 1."""
  c = _config()
  param = pz.Parameterization('completep', alpha=c.param.alpha, beta=c.param.beta)
  assert param.alpha == 1.0
  slopes = _slopes(param, (1, 2, 4, 8))
  assert set(slopes) == {'input', 'first_block', 'last_block', 'readout'}
  for position, slope in slopes.items():
    assert abs(slope) < TOLERANCE, (position, slopes)


def test_the_check_fails_with_the_depth_factor_on_every_layer(monkeypatch):
  """The same check under the old rule: the change grows like L (slope ≈ 1). Depths 1 and 8 alone: every depth is
  a compile, and a slope of 1 needs no intermediate points."""
  monkeypatch.setattr(pz, 'ROWS', pz.ROWS + (EVERY_LAYER,))
  slopes = _slopes(pz.Parameterization(EVERY_LAYER.name), (1, 8))
  for position, slope in slopes.items():
    assert abs(slope - 1.0) < TOLERANCE, (position, slopes)
