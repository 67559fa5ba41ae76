"""[BN] experiment 8 (bn_experiment.py): the scan network against bn_mlp, the isometry gap against the reference,
the paper's result at moderate depth, and the experiment through the real CLI."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superconsistency import bn_depth
from superconsistency import bn_experiment as be
from superconsistency import models
from superconsistency import parameterization as pz
from tests.conftest import ROOT


@pytest.mark.parametrize('p_name,activation,init,center,k,loss', [
    ('sp', 'linear', 'orthogonal', False, 0.0, 'cross_entropy'),
    ('ntk', 'tanh', 'gaussian', False, 0.4, 'mse'),
    ('mup', 'sin', 'orthogonal', True, 0.4, 'cross_entropy')])
def test_scan_forward_and_gradients_equal_bn_mlp(p_name, activation, init, center, k, loss):
  """Same weights (bn_mlp's init, as effective weights), float64: outputs, every layer's gradient norm and the Gram
  matrices of the recorded blocks agree with bn_mlp and bn_depth.layer_gradient_norms."""
  depth, loss_fn = 4, models.LOSSES[loss]
  with jax.enable_x64(True):
    m = models.bn_mlp(12, 5, 16, depth, pz.Parameterization(p_name), jnp.float64, activation=activation,
                      weight_init=init, bn_center=center, shaping_k=k)
    params = m.init(jax.random.PRNGKey(3))
    x = jax.random.normal(jax.random.PRNGKey(4), (16, 12), jnp.float64)
    y = jax.random.randint(jax.random.PRNGKey(5), (16,), 0, 5)
    weights = be.effective_weights(m, params)
    act_id = be.ACTIVATIONS.index(activation)
    slots = np.array([0, 3, 1, 3, 2])   # record blocks 0, 2, 4 (slot 3 is scratch)
    out, grams = be.forward(weights, x, act_id, k, center, slots)
    ref_out, acts = m.apply(params, x, 1.0, with_activations=True)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)
    for slot, name in enumerate(('input', 'block_002', 'block_004')):
      np.testing.assert_allclose(grams[slot], acts[name] @ acts[name].T, rtol=1e-10, atol=1e-12)
    value, (g_in, g_hidden, g_out), _ = be.gradients(weights, x, y, act_id, k, loss_fn, center, slots)
    ref = {n: np.asarray(v) for n, v in bn_depth.layer_gradient_norms(m, params, x, y, loss_fn).items()}
    ref_loss = float(loss_fn(ref_out, y))
    ours = {'input': be.frobenius(g_in), 'readout': be.frobenius(g_out), 'hidden': be.frobenius(g_hidden)}
  assert float(value) == pytest.approx(ref_loss, rel=1e-10)
  assert set(ours) == set(ref) and ref['hidden'].shape == (depth,)   # one norm per hidden weight
  for name in ref:
    np.testing.assert_allclose(ours[name], ref[name], rtol=1e-9, err_msg=name)


def test_isometry_gap_equals_the_reference():
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
  cases = [rng.normal(size=(8, 16)), rng.normal(size=(16, 16)),                      # generic; square (φ ≈ 1)
           q[:8] * 2.0 + 1e-3 * rng.normal(size=(8, 16)),                            # nearly isometric
           rng.normal(size=(6, 3)) @ rng.normal(size=(3, 10))]                       # rank 3 < 6: singular
  with jax.enable_x64(True):
    ref = [float(bn_depth.isometry_gap(jnp.asarray(h))) for h in cases]
  ours = [float(be.isometry_gap_from_gram(h @ h.T)) for h in cases[:3]]
  for a, b in zip(ours, ref[:3]):
    assert a == pytest.approx(b, rel=1e-7, abs=1e-14)
  assert 0 < ours[2] < 1e-4 and ref[2] < 1e-4
  g = cases[1] @ cases[1].T   # numpy definition, independently
  assert ours[1] == pytest.approx(math.log(np.trace(g) / 16) - np.linalg.slogdet(g)[1] / 16, rel=1e-10)
  assert be.isometry_gap_from_gram(cases[3] @ cases[3].T) == np.inf   # numerically singular
  assert ref[3] == np.inf or ref[3] > 5, ref[3]                       # slogdet: rounding decides det's sign
  np.testing.assert_allclose(be.isometry_gap_from_gram(np.eye(5) * 3.0), 0.0, atol=1e-15)


def test_orthogonal_stays_bounded_while_gaussian_grows():
  """Linear activations, width = batch = 32, independent inputs, depth 10 → 300, three seeds."""
  bc = be.defaults().bn_depth
  bc.depths, bc.seeds = (10, 300), (0, 1, 2)
  lanes = [dict(activation='linear', weight_init=init, inputs='independent', shaping_k=0.0, seed=s)
           for init in ('orthogonal', 'gaussian') for s in bc.seeds]
  (_, _, shallow), (_, blocks, deep) = be.compute(bc, lanes)
  growth = deep['log_grad_w1'] - shallow['log_grad_w1']   # per lane
  ortho, gauss = growth[:3], growth[3:]
  assert np.abs(ortho).max() < 0.3, ortho
  assert gauss.min() > 1.0, gauss
  gap = deep['isometry_gap']
  assert (gap[:3, blocks.index(300)] < 1e-3 * gap[:3, 0]).all(), gap[:3]   # orthogonal: φ decays towards isometry
  assert (gap[3:, blocks.index(10)] > gap[3:, 0]).all(), gap[3:]           # Gaussian: φ grows (rank collapse)


def _cli(workdir, *overrides):
  return subprocess.run([sys.executable, '-m', 'superconsistency', '--config=configs/bn_depth.py',
                         f'--workdir={workdir}', *overrides, '--noprogress'], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


def test_cli_writes_the_experiment_and_analyze_reads_it(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = _cli(workdir, '--config.bn_depth.depths=(4,12,30)', '--config.bn_depth.seeds=(0,)')
  assert proc.returncode == 0, proc.stderr
  assert f'wrote {workdir} in' in proc.stdout
  for name in ('config.json', 'bn_depth.csv', 'bn_isometry.csv', 'summary.json', 'analysis_bn_depth.png',
               'analysis_bn_depth_isometry.png'):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['wall_time_s']['total'] > 0
  os.remove(os.path.join(workdir, 'analysis_bn_depth.png'))
  numbers = be.analyze(workdir)
  assert os.path.exists(os.path.join(workdir, 'analysis_bn_depth.png'))
  assert len(numbers['gradient']['variant_order']) == 8
  for v in numbers['gradient']['variant_order']:
    g = numbers['gradient'][v]
    assert math.isfinite(g['slope_per_layer']['slope']) and all(map(math.isfinite, g['slope_per_layer']['ci95']))
    assert math.isfinite(g['growth'])
  ref = numbers['isometry'][be.REFERENCE]
  assert math.isfinite(ref['decay_rate_per_layer']) and ref['decay_rate_per_layer'] > 0
  assert numbers['gradient'][be.REFERENCE]['slope_per_layer'] == summary['gradient'][be.REFERENCE]['slope_per_layer']


def test_cli_bad_field_exits_2_naming_it_and_writes_nothing(tmp_path):
  workdir = str(tmp_path / 'never')
  proc = _cli(workdir, '--config.bn_depth.degenerate_rank=32')
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and 'bn_depth.degenerate_rank' in lines[0], proc.stderr
  assert not os.path.exists(workdir)
