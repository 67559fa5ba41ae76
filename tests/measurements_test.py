"""Adding a measurement is one declaration: its columns appear in metric_columns, it runs inside the compiled,
vmapped lane program, and it changes no other number. Random keys go by name; the measurements that predate the
registry keep the streams they had."""
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from superconsistency import config as config_lib
from superconsistency import data as data_lib
from superconsistency import measurements
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import spectra
from superconsistency import sweep_analysis
from superconsistency import train
from conftest import shrunk_quickstart


def _param_sq_norm(ctx, done):
  return {'param_sq_norm': sum(jnp.sum(w * w) for w in jax.tree.leaves(ctx.state.params))}


def _top_abs(ctx, done):
  flat, _ = ravel_pytree(ctx.state.params)
  return {'top_abs': jax.lax.top_k(jnp.abs(flat), ctx.cfg.measure.hessian_k + 1)[0]}


def _probe(ctx, done):   # a draw from the measurement's own key, and a value read from an earlier measurement
  return {'probe': jax.random.normal(ctx.key, ()), 'probe_ratio': done['param_sq_norm'] / done['sharpness']}


TOYS = (
    measurements.Measurement('param_sq_norm', _param_sq_norm),
    measurements.Measurement('top_abs', _top_abs, size=lambda c: c.measure.hessian_k + 1),
    measurements.Measurement('probe', _probe, outputs=('probe', 'probe_ratio')),
)
EXTENDED = measurements.MEASUREMENTS + TOYS


def _setup(c):
  data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float32)
  model = models.make_model(c.model, data.spec, 8, 3, pz.Parameterization('mup'), jnp.float32)
  return data, model


def _measurement_base_key(seed, step):
  """The lane's measurement key at a step, as the lane program derives it (seed, stream 3, step)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 3), step)


def test_added_measurement_has_columns_and_runs_in_the_vmapped_program():
  c = shrunk_quickstart()
  cols = train.metric_columns(c, EXTENDED)
  assert cols == train.metric_columns(c) + ('param_sq_norm', 'top_abs_1', 'top_abs_2', 'probe', 'probe_ratio')
  data, model = _setup(c)
  program = train.make_lane_program(model, data, c, measurements=EXTENDED)
  hp = train.lane_grid((0.25, 1.0), (1.0,), (0, 1), jnp.float32)
  state = jax.jit(jax.vmap(program.init))(hp)
  # one compiled chunk (measure_every steps, then the measurement), vmapped over four lanes, as compile_sweep builds
  chunk = jax.jit(jax.vmap(program.chunk, (0, 0, None, None)))
  state, metrics = chunk(state, hp, data.arrays, 1)
  assert int(state.step[0]) == c.measure_every
  for lane in range(4):
    params = [np.asarray(w[lane], np.float64) for w in jax.tree.leaves(state.params)]
    np.testing.assert_allclose(metrics['param_sq_norm'][lane], sum(np.sum(w * w) for w in params), rtol=1e-5)
    flat = np.concatenate([np.asarray(w[lane]).ravel() for w in jax.tree.leaves(state.params)])
    np.testing.assert_array_equal(metrics['top_abs'][lane], np.sort(np.abs(flat))[::-1][:2])
    key = jax.random.fold_in(_measurement_base_key(int(hp.seed[lane]), c.measure_every), zlib.crc32(b'probe'))
    np.testing.assert_allclose(metrics['probe'][lane], jax.random.normal(key, ()), rtol=1e-6)
    np.testing.assert_allclose(metrics['probe_ratio'][lane],
                               metrics['param_sq_norm'][lane] / metrics['sharpness'][lane], rtol=1e-6)
    row = train.flatten_metrics({k: v[:, None] for k, v in metrics.items()}, lane, 0, EXTENDED)
    assert set(row) == set(cols)
  assert metrics['probe'][0] != metrics['probe'][1]   # seeds 0 and 1: different keys, so the check above can fail


def test_adding_a_measurement_changes_no_other_number():
  """The toys go in first, before every existing measurement: with keys by position this would hand them the
  existing streams. Equal to float rounding, not bits: XLA compiles a program with more outputs with other
  fusions (seen: 1 ulp in sharpness when only a parameter norm is added)."""
  c = shrunk_quickstart()
  data, model = _setup(c)
  hp = train.lane_grid((0.25, 1.0), (1.0,), (0,), jnp.float32)
  results = []
  for registry in (measurements.MEASUREMENTS, TOYS[:2] + measurements.MEASUREMENTS + TOYS[2:]):
    program = train.make_lane_program(model, data, c, measurements=registry)
    state = jax.jit(jax.vmap(program.init))(hp)
    results.append(jax.jit(jax.vmap(program.chunk, (0, 0, None, None)))(state, hp, data.arrays, 1))
  (state_a, a), (state_b, b) = results
  assert set(b) - set(a) == {'param_sq_norm', 'top_abs', 'probe', 'probe_ratio'}
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5), state_a, state_b)


def test_measurements_that_predate_the_registry_keep_their_random_streams():
  """sharpness draws its Lanczos start from split(base key, 8)[0], as the hand-indexed code did."""
  c = shrunk_quickstart()
  c.measure.num_iters = 3   # unconverged, so the start vector shows in the result
  data, model = _setup(c)
  program = train.make_lane_program(model, data, c)
  hp = train.LaneHparams(jnp.float32(0.5), jnp.float32(1.0), jnp.int32(3))
  state = jax.jit(program.init)(hp)
  _, metrics = jax.jit(program.measure)(state, hp, data.arrays, 0)
  xs = data.arrays['measure_x'][:c.measure.sharpness_batch]
  ys = data.arrays['measure_y'][:c.measure.sharpness_batch]
  ops = spectra.operators(lambda p, x: model.apply(p, x, 1.0), models.LOSSES[c.loss], state.params, xs, ys)
  keys = jax.random.split(_measurement_base_key(3, 0), 8)
  top = lambda key: float(jax.jit(lambda k: spectra.lanczos(ops.hessian, ops.dim, 3, k).eigenvalues[0])(key))
  legacy, other = top(keys[0]), top(keys[1])
  assert abs(float(metrics['sharpness']) - legacy) < 1e-2 * abs(legacy - other), (metrics['sharpness'], legacy, other)
  for name, slot in measurements.LEGACY_KEY_SLOTS.items():
    np.testing.assert_array_equal(measurements.measurement_key(_measurement_base_key(3, 0), name), keys[slot])


def test_column_order_and_the_registry_readers():
  c = shrunk_quickstart()
  config_lib.set_optimizer(c, 'adam')
  m = c.measure
  m.hessian_k, m.gauss_newton, m.ntk_k, m.trace_samples, m.directional, m.density_every = 2, True, 2, 4, True, 1
  # metrics.csv's column order from before the registry: files written by either code read the same
  assert train.metric_columns(c) == (
      'train_loss', 'batch_loss', 'eval_loss', 'eval_accuracy', 'sharpness', 'lr_sharpness', 'feature_movement',
      'hessian_eig_1', 'hessian_eig_2', 'adam_sharpness', 'gn_eig_1', 'gn_eig_2', 'residual_top', 'ntk_eig_1',
      'ntk_eig_2', 'ntk_lr_eig_1', 'ntk_lr_eig_2', 'hessian_trace', 'hessian_trace_se', 'directional_sharpness')
  for col in train.metric_columns(c):
    assert col in measurements.column_owner(col).columns(c), col
  # analysis: a declared learning-rate-weighted column is taken as it is, any other is scaled by the rate η
  row = dict(sharpness=4.0, lr_sharpness=2.0, ntk_lr_eig_1=3.0, gn_eig_1=3.0, adam_sharpness=3.0)
  weighted = [n for n, _ in sweep_analysis.CONSISTENCY_QUANTITIES if measurements.column_owner(n).lr_weighted]
  assert sorted(weighted) == ['adam_sharpness', 'lr_sharpness', 'ntk_lr_eig_1']
  assert sweep_analysis._lr_weighted(row, 'ntk_lr_eig_1') == 3.0
  assert sweep_analysis._lr_weighted(row, 'gn_eig_1') == 1.5
