"""Every spectral quantity measured inside the compiled, vmapped training program, against explicit matrices in
float64: Hessian top-k, Gauss-Newton and residual, raw and learning-rate-weighted NTK, trace, directional
sharpness, feature movement, Adam's preconditioned sharpness; and the density file through the real runner."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from superconsistency import config as config_lib
from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import results
from superconsistency import runner
from superconsistency import train
from conftest import shrunk_quickstart

def _config(optimizer):
  c = shrunk_quickstart()
  c.dtype = 'float64'
  config_lib.set_optimizer(c, optimizer)
  m = c.measure
  m.num_iters, m.hessian_k, m.gauss_newton, m.ntk_k, m.ntk_batch = 60, 3, True, 3, 8
  m.trace_samples, m.directional, m.microbatches = 64, True, 2
  return c


def _explicit(model, params, x, y, loss_fn):
  flat, unravel = ravel_pytree(params)
  f = lambda v: model.apply(unravel(v), x).reshape(-1)
  out_shape = model.apply(params, x).shape
  # jitted: one compiled call each instead of thousands of eager primitive dispatches
  jac = np.asarray(jax.jit(jax.jacfwd(f))(flat))
  h_out = np.asarray(jax.jit(jax.hessian(lambda o: loss_fn(o.reshape(out_shape), y)))(f(flat)))
  hess = np.asarray(jax.jit(jax.hessian(lambda v: loss_fn(model.apply(unravel(v), x), y)))(flat))
  grad = np.asarray(jax.jit(jax.grad(lambda v: loss_fn(model.apply(unravel(v), x), y)))(flat))
  return hess, jac.T @ h_out @ jac, grad


def _top(mat, k):
  return np.linalg.eigvalsh(mat)[::-1][:k]


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_in_loop_spectra_match_explicit_float64(optimizer):
  with jax.enable_x64(True):
    c = _config(optimizer)
    data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float64)
    model = models.make_model(c.model, data.spec, 6, 3, pz.Parameterization('mup'), jnp.float64)
    program = train.make_lane_program(model, data, c)
    lr = 0.5 if optimizer == 'sgd' else 0.01
    hp = train.lane_grid((lr, 2 * lr), (1.0,), (0,), jnp.float64)
    state = jax.vmap(program.init)(hp)
    steps = jax.jit(jax.vmap(lambda s, h: jax.lax.fori_loop(0, 4, lambda _, t: program.step(t, h, data.arrays), s)))
    state = steps(state, hp)
    _, metrics = jax.jit(jax.vmap(program.measure, in_axes=(0, 0, None, None)))(state, hp, data.arrays, 1)
    loss_fn = models.LOSSES[c.loss]
    xs, ys = data.arrays['measure_x'][:c.measure.sharpness_batch], data.arrays['measure_y'][:c.measure.sharpness_batch]
    xn = data.arrays['measure_x'][:c.measure.ntk_batch]
    _, lr_mults, grad_scale = train.make_optimizer(c.optimizer, model)
    for lane in range(2):
      params = jax.tree.map(lambda w: w[lane], state.params)
      hess, gn, grad = _explicit(model, params, xs, ys, loss_fn)
      got = lambda k: np.asarray(metrics[k][lane])
      np.testing.assert_allclose(got('hessian_eig'), _top(hess, 3), rtol=1e-6)
      np.testing.assert_allclose(got('sharpness'), _top(hess, 1)[0], rtol=1e-6)
      np.testing.assert_allclose(got('gn_eig'), _top(gn, 3), rtol=1e-6)
      np.testing.assert_allclose(got('residual_top'), _top(hess - gn, 1)[0], rtol=1e-6)
      flat, unravel = ravel_pytree(params)
      jac = np.asarray(jax.jit(jax.jacfwd(lambda v: model.apply(unravel(v), xn).reshape(-1)))(flat))
      np.testing.assert_allclose(got('ntk_eig'), _top(jac @ jac.T, 3), rtol=1e-6)
      mults = lr_mults(1.0)
      d = np.asarray(ravel_pytree({n: float(hp.lr[lane]) * mults[n] * jnp.ones_like(w)
                                   for n, w in params.items()})[0])
      np.testing.assert_allclose(got('ntk_lr_eig'), _top((jac * d) @ jac.T, 3), rtol=1e-6)
      np.testing.assert_allclose(got('lr_sharpness'), _top(np.sqrt(d)[:, None] * hess * np.sqrt(d)[None], 1)[0],
                                 rtol=1e-6)
      assert abs(got('hessian_trace') - np.trace(hess)) < 3 * got('hessian_trace_se')
      np.testing.assert_allclose(got('directional_sharpness'), grad @ hess @ grad / (grad @ grad), rtol=1e-8)
      _, a0 = model.apply(jax.tree.map(lambda w: w[lane], state.params0), xs, 1.0, with_activations=True)
      _, a1 = model.apply(params, xs, 1.0, with_activations=True)
      np.testing.assert_allclose(got('feature_movement'),
                                 np.linalg.norm(a1['layer_01'] - a0['layer_01']) / np.linalg.norm(a0['layer_01']),
                                 rtol=1e-8)
      if optimizer == 'adam':
        nu = jax.tree.map(lambda v: v[lane], state.opt_state.nu)
        count = int(state.opt_state.count[lane])
        d_adam = np.asarray(ravel_pytree({
            n: float(hp.lr[lane]) * mults[n] * grad_scale[n] / (jnp.sqrt(v / (1 - 0.999 ** count)) + 1e-8)
            for n, v in nu.items()})[0])
        exact = np.max(np.linalg.eigvals(d_adam[:, None] * hess).real)   # λ_max(P⁻¹H)
        np.testing.assert_allclose(got('adam_sharpness'), exact, rtol=1e-6)
      else:
        assert 'adam_sharpness' not in metrics


def test_runner_writes_spectra_columns_and_density(tmp_path):
  c = shrunk_quickstart()
  c.widths, c.parameterizations = (8,), ('mup',)
  c.sweep.lrs.mup = (0.5,)
  m = c.measure
  m.gauss_newton, m.ntk_k, m.ntk_batch, m.density_every, m.density_grid = True, 2, 4, 2, 64
  c.coord_check.enabled = False
  runner.run(c, str(tmp_path / 'w'), progress=False)
  rows = results.read_csv(str(tmp_path / 'w' / 'metrics.csv'))
  for col in ('gn_eig_1', 'residual_top', 'ntk_eig_1', 'ntk_eig_2', 'ntk_lr_eig_2', 'feature_movement'):
    assert all(np.isfinite(r[col]) for r in rows), col
  dens = results.read_csv(str(tmp_path / 'w' / 'density.csv'))
  # measurements 0 and 2 of 0..2 (density_every=2), 64 grid points each; each integrates to ~1
  assert sorted({r['step'] for r in dens}) == [0, 6]
  for step in (0, 6):
    rs = [r for r in dens if r['step'] == step]
    assert len(rs) == 64
    assert abs(np.trapezoid([r['density'] for r in rs], [r['eigenvalue'] for r in rs]) - 1) < 0.02
  for name in ('spectra.png', 'density.png'):
    assert (tmp_path / 'w' / name).stat().st_size > 0


def test_compiled_measurement_has_no_lapack_call():
  """The vmapped measurement must not call jaxlib's CPU LAPACK kernels: with jaxlib 0.10 several batched LAPACK
  calls running at once can deadlock XLA's CPU thread pool (seen here: this file's test hung for 15 minutes in
  CI). The Lanczos tridiagonal is solved by spectra.small_eigh instead."""
  c = _config('adam')
  c.dtype, c.measure.density_every = 'float32', 1
  data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float32)
  model = models.make_model(c.model, data.spec, 6, 3, pz.Parameterization('mup'), jnp.float32)
  program = train.make_lane_program(model, data, c)
  hp = train.lane_grid((0.01, 0.02), (1.0,), (0,), jnp.float32)
  state = jax.vmap(program.init)(hp)
  hlo = jax.jit(jax.vmap(program.measure, in_axes=(0, 0, None, None))).lower(state, hp, data.arrays, 0).as_text()
  assert 'custom_call' not in hlo, [l for l in hlo.splitlines() if 'custom_call' in l][:3]
  # and the check can fail: the LAPACK eigh does appear in such a program
  assert 'custom_call' in jax.jit(jax.vmap(jnp.linalg.eigh)).lower(jnp.ones((2, 3, 3))).as_text()


def test_warm_started_lanczos_matches_explicit_hessian_along_training():
  """measure.warm_start: each λ_max solve starts from the last one's top-k Ritz vectors (train.init's random vector
  at step 0). The in-loop top-2 equals eigh of the explicit float64 Hessian at every measurement of two vmapped
  lanes, and the stored start vector lies in the top-2 eigenspace of the Hessian it was measured on."""
  with jax.enable_x64(True):
    c = shrunk_quickstart()
    c.dtype, c.num_steps = 'float64', 12   # measurements at steps 0, 3, 6, 9, 12
    c.measure.num_iters, c.measure.hessian_k, c.measure.warm_start = 30, 2, True
    config_lib.validate(c)
    data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float64)
    model = models.make_model(c.model, data.spec, 6, 3, pz.Parameterization('mup'), jnp.float64)
    program = train.make_lane_program(model, data, c)
    hp = train.lane_grid((0.5, 2.0), (1.0,), (0,), jnp.float64)
    state = jax.jit(jax.vmap(program.init))(hp)
    start = np.asarray(state.power_vec)
    measure = jax.jit(jax.vmap(program.measure, (0, 0, None, None)))
    chunk = jax.jit(jax.vmap(program.chunk, (0, 0, None, None)))
    xs, ys = data.arrays['measure_x'][:c.measure.sharpness_batch], data.arrays['measure_y'][:c.measure.sharpness_batch]
    loss_fn = models.LOSSES[c.loss]
    unravel = ravel_pytree(jax.tree.map(lambda w: w[0], state.params))[1]
    hessian = jax.jit(jax.hessian(lambda v: loss_fn(model.apply(unravel(v), xs), ys)))
    for i in range(c.num_steps // c.measure_every + 1):
      state, metrics = measure(state, hp, data.arrays, 0) if i == 0 else chunk(state, hp, data.arrays, i)
      for lane in range(2):
        w, vecs = np.linalg.eigh(np.asarray(hessian(ravel_pytree(jax.tree.map(lambda a: a[lane], state.params))[0])))
        np.testing.assert_allclose(metrics['sharpness'][lane], w[-1], rtol=1e-9, err_msg=f'measurement {i}')
        np.testing.assert_allclose(metrics['hessian_eig'][lane], w[::-1][:2], rtol=1e-9, err_msg=f'measurement {i}')
        stored = np.asarray(state.power_vec[lane]) / np.linalg.norm(state.power_vec[lane])
        assert np.linalg.norm(vecs[:, -2:].T @ stored) > 1 - 1e-9, i
    assert not np.allclose(start, np.asarray(state.power_vec))


def test_warm_start_validation():
  c = shrunk_quickstart()
  c.measure.warm_start = True
  config_lib.validate(c)
  for field, value in (('solver', 'power'), ('hessian', False)):
    bad = shrunk_quickstart()
    bad.measure.warm_start, bad.measure[field] = True, value
    with pytest.raises(config_lib.ConfigError, match='measure.warm_start'):
      config_lib.validate(bad)
  bad = shrunk_quickstart()   # ConfigDict refuses a str for a bool field; a block built from a dict does not
  bad.measure = dict(bad.measure.to_dict(), warm_start=1)
  with pytest.raises(config_lib.ConfigError, match='measure.warm_start'):
    config_lib.validate(bad)


def test_lr_sharpness_weights_each_layer_by_its_own_sgd_rate_under_completep():
  """CompleteP gives residual branches an SGD rate × L, so η·λ_max(H) is not λ_max(D½HD½): the in-loop value must
  be the latter (float64, explicit Hessian of a tiny resnet)."""
  with jax.enable_x64(True):
    c = shrunk_quickstart()
    c.dtype = 'float64'
    config_lib.set_model(c, 'resnet', layers_per_block=1)
    config_lib.set_data(c, 'synthetic_images', image_size=8, num_classes=4, batch_size=8, num_train=32, num_eval=8)
    c.measure.num_iters, c.measure.sharpness_batch, c.measure.loss_batch = 40, 8, 8
    data = data_lib.make_data(c.data, c.num_steps, 8, jnp.float64)
    model = models.make_model(c.model, data.spec, 2, 1, pz.Parameterization('completep'), jnp.float64)
    _, lr_mults, _ = train.make_optimizer(c.optimizer, model)
    assert len({float(v) for v in lr_mults(1.0).values()}) > 1   # the case this test is about
    program = train.make_lane_program(model, data, c)
    hp = train.lane_grid((0.05,), (1.0,), (0,), jnp.float64)
    state = jax.vmap(program.init)(hp)
    _, metrics = jax.jit(jax.vmap(program.measure, in_axes=(0, 0, None, None)))(state, hp, data.arrays, 0)
    params = jax.tree.map(lambda w: w[0], state.params)
    xs, ys = data.arrays['measure_x'][:8], data.arrays['measure_y'][:8]
    hess, _, _ = _explicit(model, params, xs, ys, models.LOSSES[c.loss])
    mults = lr_mults(1.0)
    d = np.asarray(ravel_pytree({n: 0.05 * mults[n] * jnp.ones_like(w) for n, w in params.items()})[0])
    exact = _top(np.sqrt(d)[:, None] * hess * np.sqrt(d)[None], 1)[0]
    np.testing.assert_allclose(float(metrics['lr_sharpness'][0]), exact, rtol=1e-6)
    uniform = 0.05 * float(next(iter(mults.values()))) * _top(hess, 1)[0]
    assert abs(uniform - exact) > 1e-3 * exact   # the one-rate shortcut would have been wrong here
