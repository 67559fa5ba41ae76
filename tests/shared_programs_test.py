"""Programs shared across parameterizations: the lane programs take the parameterization's numbers (forward
multipliers, learning-rate factors) as inputs, so μP and NTP at one width trace to one program text and the second
group calls the first's executable. The training is that of programs that hold the numbers as constants, bit for
bit; the Hessian products agree to float rounding (XLA folds constant factors in them)."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superconsistency import data as data_lib
from superconsistency import distributed
from superconsistency import lanes
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import train
from conftest import shrunk_quickstart


def _project_mlp(c, data, p_name, width):
  return models.make_model(c.model, data.spec, width, 3, pz.Parameterization(p_name), jnp.float32)


def _linen_mlp_with_biases(c, data, p_name, width):
  """docs/examples/linen_mlp.py: a user's linen module with biases (its vectors are stored divided by their
  multipliers at init, so the init program reads them too)."""
  import os
  import sys
  from superconsistency import flax_bridge
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'examples'))
  from linen_mlp import MLP
  return flax_bridge.flax_model(MLP(width=width), data.arrays['eval_x'][:2], pz.Parameterization(p_name), width)


def _sweep(c, data, p_name, width, hp, make_model=_project_mlp):
  model = make_model(c, data, p_name, width)
  sweep = lanes.compile_sweep(model, data, c, hp, distributed.make_mesh(c.mesh))
  out = lanes.run_sweep(model, data, c, hp, sweep=sweep)
  return sweep.program_counts(), out


@pytest.mark.parametrize('make_model', [_project_mlp, _linen_mlp_with_biases], ids=['project_mlp', 'linen_module'])
def test_mup_and_ntk_at_one_width_share_every_program_with_the_same_numbers(make_model, monkeypatch):
  c = shrunk_quickstart()
  data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float32)
  hp = train.lane_grid((0.25, 1.0), (1.0,), (0,), jnp.float32)
  monkeypatch.setattr(lanes, '_EXECUTABLES', collections.OrderedDict())   # nothing from earlier tests
  mup, (_, m_mup, _) = _sweep(c, data, 'mup', 16, hp, make_model)
  ntk, (_, m_ntk, d_ntk) = _sweep(c, data, 'ntk', 16, hp, make_model)
  other_width, _ = _sweep(c, data, 'ntk', 8, hp, make_model)
  assert mup['compiled'] >= 2 and mup['shared'] == 0
  assert ntk == dict(compiled=0, shared=mup['compiled'])
  assert other_width['shared'] == 0   # other shapes: other programs

  # the reference: the same sweeps with the numbers as constants in the programs, which then differ
  monkeypatch.setattr(lanes, 'with_multipliers', lambda hp, *args: hp)
  monkeypatch.setattr(lanes, '_EXECUTABLES', collections.OrderedDict())
  ref_mup, (_, r_mup, _) = _sweep(c, data, 'mup', 16, hp, make_model)
  ref_ntk, (_, r_ntk, r_d_ntk) = _sweep(c, data, 'ntk', 16, hp, make_model)
  # with constants only the programs that never read them are shared (the project's init; none for a module whose
  # biases are stored divided by their multipliers)
  assert ref_ntk['compiled'] >= 1 and ref_ntk['shared'] < ntk['shared']
  np.testing.assert_array_equal(d_ntk, r_d_ntk)
  for k in train.METRICS:
    for got, ref in ((m_mup[k], r_mup[k]), (m_ntk[k], r_ntk[k])):
      if k in ('train_loss', 'batch_loss', 'eval_loss', 'eval_accuracy'):   # the training: bit for bit
        np.testing.assert_array_equal(got, ref, err_msg=k)
      else:   # Hessian products: XLA folds constant factors in them, so equal to float rounding (2.3e-7 seen)
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=0, err_msg=k)
  assert not np.allclose(m_mup['train_loss'][:, -1], m_ntk['train_loss'][:, -1])   # they are different runs


@pytest.mark.parametrize('name', pz.NAMES)
def test_learning_rate_from_lifted_factors_is_the_multiplier_bit_for_bit(name):
  """Every kind and optimizer, both γ0 conventions: the factors as a program's inputs give the rate that
  lr_multiplier's operations give one by one (eagerly: XLA may fold a chain of constants into one, rounding once,
  which is why a program with the factors as constants can differ in the last bit where a rate has several)."""
  gamma0 = jnp.asarray([0.3, 1.0, 7.0], jnp.float32)
  for convention in pz.LR_CONVENTIONS:
    p = pz.Parameterization(name=name, alpha=0.75, lr_convention=convention)
    for kind in pz.LAYER_KINDS:
      for optimizer in pz.OPTIMIZERS:
        exponent, factors = pz.lr_multiplier_lifted(p, kind, optimizer, 384, 6)
        got = jax.jit(jax.vmap(lambda g, f: pz.lr_from_lifted(g, exponent, f) * jnp.ones((), jnp.float32),
                               (0, None)))(gamma0, tuple(jnp.float32(f) for f in factors))
        for g, value in zip(gamma0, got):
          ref = jnp.asarray(pz.lr_multiplier(p, kind, optimizer, 384, 6, g), jnp.float32)
          assert np.asarray(value).tobytes() == np.asarray(ref).tobytes(), (name, convention, kind, optimizer, g)


def test_a_group_with_fewer_lanes_pads_to_run_the_programs_of_one_with_more(tmp_path, monkeypatch):
  """program.pad_to_share: μP's 2 lanes pad to NTP's 3 at the same width, so NTP compiles nothing; μP's rows are
  those of its unpadded run (the training bit for bit, the Hessian products to float rounding)."""
  import csv
  import superconsistency as sc
  runs, rows = {}, {}
  for share in (0.5, 0.0):
    monkeypatch.setattr(lanes, '_EXECUTABLES', collections.OrderedDict())
    c = shrunk_quickstart()
    c.widths, c.sweep.lrs.ntk, c.program.pad_to_share = (16,), (1.0, 2.0, 4.0), share
    c.coord_check.enabled = False
    summary = sc.run(c, str(tmp_path / str(share)), plots=False, progress=False)
    runs[share] = {g['parameterization']: g for g in summary['programs']}
    with open(tmp_path / str(share) / 'metrics.csv') as f:
      rows[share] = list(csv.DictReader(f))
  padded, alone = runs[0.5], runs[0.0]
  assert padded['mup']['padded_lanes'] == 1 and padded['ntk']['padded_lanes'] == 0
  assert padded['ntk']['compiled'] == 0 and padded['ntk']['shared'] == padded['mup']['compiled'] >= 2
  assert alone['mup']['padded_lanes'] == 0 and alone['ntk']['compiled'] >= 2 and alone['ntk']['shared'] == 0
  assert padded['mup']['lane_steps_run'] == 3 * c.num_steps and alone['mup']['lane_steps_run'] == 2 * c.num_steps
  assert len(rows[0.5]) == len(rows[0.0]) > 0
  for a, b in zip(rows[0.5], rows[0.0]):
    for key in ('parameterization', 'lr', 'seed', 'step', 'train_loss', 'batch_loss', 'eval_loss', 'eval_accuracy'):
      assert a[key] == b[key], key
    for key in ('sharpness', 'lr_sharpness'):
      np.testing.assert_allclose(float(a[key]), float(b[key]), rtol=2e-6, err_msg=key)
