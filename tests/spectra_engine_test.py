"""The spectra engine against explicit matrices in float64: Hessian, Gauss-Newton, residual, NTK, Adam's
preconditioned Hessian; traces, densities, micro-batching, jit and vmap."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import spectra


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _problem(arch, loss):
  key = jax.random.PRNGKey(0)
  p = pz.Parameterization('mup')
  if arch == 'mlp':
    model = models.mlp(6, 4, 8, 3, 'tanh', p, jnp.float64)
    x = jax.random.normal(key, (10, 6), jnp.float64)
  else:
    model = models.simple_convnet((32, 32, 3), 4, 2, p, jnp.float64)
    x = jax.random.normal(key, (6, 32, 32, 3), jnp.float64)
  y = jax.random.randint(jax.random.PRNGKey(1), (x.shape[0],), 0, 4)
  params = model.init(jax.random.PRNGKey(2))
  # move away from init so the spectrum is not degenerate at the start
  loss_of = lambda prm: models.LOSSES[loss](model.apply(prm, x), y)
  for _ in range(5):
    params = jax.tree.map(lambda w, g: w - 2.0 * g, params, jax.grad(loss_of)(params))
  apply_fn = lambda prm, xb: model.apply(prm, xb)
  return apply_fn, models.LOSSES[loss], params, x, y


def _explicit(apply_fn, ell, params, x, y):
  flat, unravel = ravel_pytree(params)
  out_shape = apply_fn(params, x).shape
  f = lambda v: apply_fn(unravel(v), x).reshape(-1)
  # jitted: one compiled call each instead of thousands of eager primitive dispatches
  jac = jax.jit(jax.jacfwd(f))(flat)
  h_out = jax.jit(jax.hessian(lambda o: ell(o.reshape(out_shape), y)))(f(flat))
  hess = jax.jit(jax.hessian(lambda v: ell(apply_fn(unravel(v), x), y)))(flat)
  return np.asarray(hess), np.asarray(jac.T @ h_out @ jac), np.asarray(jac @ jac.T)


def _top(mat, k):
  return np.linalg.eigvalsh(mat)[::-1][:k]


@pytest.mark.parametrize('arch,loss', [('mlp', 'cross_entropy'), ('mlp', 'mse'), ('convnet', 'cross_entropy'),
                                       ('convnet', 'mse')])
def test_top5_of_hessian_gauss_newton_residual_and_ntk_match_eigh(arch, loss):
  apply_fn, ell, params, x, y = _problem(arch, loss)
  hess, gn, ntk = _explicit(apply_fn, ell, params, x, y)
  ops = spectra.operators(apply_fn, ell, params, x, y)
  key = jax.random.PRNGKey(3)
  lanczos = jax.jit(functools.partial(spectra.lanczos, num_iters=40, k=5), static_argnums=(0, 1))
  for name, op, exact, dim in [('hessian', ops.hessian, hess, ops.dim), ('gauss_newton', ops.gauss_newton, gn, ops.dim),
                               ('ntk', ops.ntk, ntk, ops.out_dim)]:
    got = np.asarray(lanczos(op, dim, key=key).eigenvalues)
    np.testing.assert_allclose(got, _top(exact, 5), rtol=1e-6, atol=1e-12 * abs(_top(exact, 1)[0]), err_msg=name)
  # R = H − G: its top eigenvalue
  r_top = float(spectra.lanczos(ops.residual, ops.dim, 40, key).eigenvalues[0])
  np.testing.assert_allclose(r_top, _top(hess - gn, 1)[0], rtol=1e-6, atol=1e-10)
  # G is positive semi-definite for convex losses of the outputs (CE, MSE)
  assert np.linalg.eigvalsh(gn).min() > -1e-10


def test_ntk_explicit_and_matrix_free_agree_with_explicit_jacobian():
  apply_fn, ell, params, x, y = _problem('mlp', 'mse')
  f = lambda prm: apply_fn(prm, x)
  _, _, ntk = _explicit(apply_fn, ell, params, x, y)
  np.testing.assert_allclose(np.asarray(spectra.ntk_gram(f, params)), ntk, rtol=1e-10, atol=1e-12)
  explicit = spectra.ntk_eigenvalues(f, params, k=5, method='explicit')
  free = spectra.ntk_eigenvalues(f, params, k=5, num_iters=40, method='matrix_free')
  np.testing.assert_allclose(np.asarray(explicit), _top(ntk, 5), rtol=1e-10)
  np.testing.assert_allclose(np.asarray(free), _top(ntk, 5), rtol=1e-6)
  with pytest.raises(ValueError, match='allowed'):
    spectra.ntk_eigenvalues(f, params, method='bogus')


def test_hessian_eigenvalues_entry_point_runs_under_jit_and_vmap_over_parameter_sets():
  apply_fn, ell, params, x, y = _problem('mlp', 'cross_entropy')
  stacked = jax.tree.map(lambda w: jnp.stack([w, 1.3 * w, 0.7 * w]), params)

  @jax.jit
  def top3(prm):
    return spectra.hessian_eigenvalues(lambda q: ell(apply_fn(q, x), y), prm, k=3, num_iters=40,
                                       key=jax.random.PRNGKey(0)).eigenvalues
  got = jax.vmap(top3)(stacked)
  for i in range(3):
    prm = jax.tree.map(lambda w: w[i], stacked)
    hess, _, _ = _explicit(apply_fn, ell, prm, x, y)
    np.testing.assert_allclose(np.asarray(got[i]), _top(hess, 3), rtol=1e-6)


def test_micro_batched_products_equal_the_full_batch():
  apply_fn, ell, params, x, y = _problem('mlp', 'mse')
  full = spectra.operators(apply_fn, ell, params, x, y)
  split = spectra.operators(apply_fn, ell, params, x, y, microbatches=5)
  v = jax.random.normal(jax.random.PRNGKey(4), (full.dim,), jnp.float64)
  np.testing.assert_allclose(np.asarray(split.hessian(v)), np.asarray(full.hessian(v)), rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(np.asarray(split.gauss_newton(v)), np.asarray(full.gauss_newton(v)), rtol=1e-10,
                             atol=1e-12)
  with pytest.raises(ValueError, match='equal micro-batches'):
    spectra.operators(apply_fn, ell, params, x, y, microbatches=3).hessian(v)


def test_adam_preconditioned_sharpness_matches_explicit_preconditioned_hessian():
  apply_fn, ell, params, x, y = _problem('mlp', 'cross_entropy')
  loss_of = lambda prm: ell(apply_fn(prm, x), y)
  tx = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
  state = tx.init(params)
  for _ in range(4):
    updates, state = tx.update(jax.grad(loss_of)(params), state)
    params = jax.tree.map(lambda w, u: w - 1e-2 * u, params, updates)
  lr = 1e-2
  d = spectra.adam_preconditioner(state, params, lr, 0.9, 0.999, 1e-8)
  hess, _, _ = _explicit(apply_fn, ell, params, x, y)
  # λ_max(P⁻¹H) with P = diag(sqrt(v̂)+ε)/η: eigenvalues of the non-symmetric P⁻¹H, computed directly
  nu_hat = jax.tree.map(lambda n: n / (1 - 0.999 ** 4), state.nu)
  p_inv = lr / (np.sqrt(np.asarray(ravel_pytree(nu_hat)[0])) + 1e-8)
  exact = np.max(np.linalg.eigvals(p_inv[:, None] * hess).real)
  matvec, flat = spectra.flat_hvp(loss_of, params)
  got = spectra.lanczos(spectra.weighted(matvec, d), flat.size, 40, jax.random.PRNGKey(0)).eigenvalues[0]
  np.testing.assert_allclose(float(got), exact, rtol=1e-6)
  entry = spectra.adam_preconditioned_eigenvalues(loss_of, params, state, lr=lr, k=2, num_iters=40)
  np.testing.assert_allclose(np.asarray(entry.eigenvalues),
                             np.sort(np.linalg.eigvals(p_inv[:, None] * hess).real)[::-1][:2], rtol=1e-6)
  assert spectra.adam_threshold(lr, 0.9) == pytest.approx(38.0)


def test_trace_estimators_are_within_three_standard_errors():
  apply_fn, ell, params, x, y = _problem('mlp', 'mse')
  hess, _, _ = _explicit(apply_fn, ell, params, x, y)
  exact = np.trace(hess)
  ops = spectra.operators(apply_fn, ell, params, x, y)
  for est in (spectra.hutchinson(ops.hessian, ops.dim, 300, jax.random.PRNGKey(5)),
              spectra.hutch_plus_plus(ops.hessian, ops.dim, 300, jax.random.PRNGKey(6))):
    assert abs(float(est.trace) - exact) < 3 * float(est.stderr), (float(est.trace), exact, float(est.stderr))
    assert float(est.stderr) > 0


def test_slq_density_integrates_to_one_and_its_mean_is_trace_over_p():
  apply_fn, ell, params, x, y = _problem('mlp', 'cross_entropy')
  hess, _, _ = _explicit(apply_fn, ell, params, x, y)
  ops = spectra.operators(apply_fn, ell, params, x, y)
  dens = spectra.slq_density(ops.hessian, ops.dim, 40, 30, jax.random.PRNGKey(7), grid_size=2048)
  grid, density = np.asarray(dens.grid), np.asarray(dens.density)
  np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, atol=1e-3)
  np.testing.assert_allclose(np.asarray(dens.weights).sum(1), 1.0, rtol=1e-10)
  per_vector_mean = (np.asarray(dens.nodes) * np.asarray(dens.weights)).sum(1)
  se = per_vector_mean.std(ddof=1) / np.sqrt(len(per_vector_mean))
  assert abs(per_vector_mean.mean() - np.trace(hess) / ops.dim) < 3 * se
  np.testing.assert_allclose(np.trapezoid(grid * density, grid), per_vector_mean.mean(), rtol=1e-3,
                             atol=1e-3 * np.abs(grid).max())
  # extreme Ritz values bracket the true spectrum's ends
  true = np.linalg.eigvalsh(hess)
  np.testing.assert_allclose(np.asarray(dens.nodes).max(), true.max(), rtol=1e-6)


def test_power_iteration_with_deflation_and_directional_sharpness():
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
  eigs = np.concatenate([[10.0, 6.0, 3.0], rng.uniform(0, 1, 37)])
  a = jnp.asarray(q @ np.diag(eigs) @ q.T)
  vals, vecs = spectra.power_iteration_top_k(lambda v: a @ v, jnp.ones((3, 40)) + jnp.eye(3, 40), 400)
  np.testing.assert_allclose(np.asarray(vals), [10.0, 6.0, 3.0], rtol=1e-6)
  g = jnp.asarray(rng.normal(size=40))
  np.testing.assert_allclose(float(spectra.directional_sharpness(lambda v: a @ v, g)),
                             float(g @ a @ g / (g @ g)), rtol=1e-12)


@pytest.mark.parametrize('n', [1, 2, 7, 20, 41])
def test_small_eigh_matches_numpy_eigh_and_keeps_multiplicities(n):
  rng = np.random.default_rng(n)
  q, _ = np.linalg.qr(rng.standard_normal((n, n)))
  d = np.round(rng.standard_normal(n), 1)          # rounding makes repeated eigenvalues likely
  d[: min(3, n)] = 2.5                               # and forces a triple one
  a = q @ np.diag(d) @ q.T
  w, v = jax.jit(spectra.small_eigh)(jnp.asarray(a))
  np.testing.assert_allclose(np.asarray(w), np.linalg.eigh(a)[0], atol=1e-13 * np.abs(d).max())
  np.testing.assert_allclose(np.asarray(v.T @ v), np.eye(n), atol=1e-13)
  np.testing.assert_allclose(np.asarray(v.T @ a @ v), np.diag(np.asarray(w)), atol=1e-12 * np.abs(d).max())


def test_small_eigh_vmaps_over_tridiagonals():
  rng = np.random.default_rng(0)
  alphas, betas = rng.standard_normal((5, 12)), rng.random((5, 12))
  tri = jax.vmap(spectra._tridiagonal)(jnp.asarray(alphas), jnp.asarray(betas))
  w, _ = jax.jit(jax.vmap(spectra.small_eigh))(tri)
  np.testing.assert_allclose(np.asarray(w), np.linalg.eigh(np.asarray(tri))[0], atol=1e-13)
