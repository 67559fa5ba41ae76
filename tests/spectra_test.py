"""The in-loop sharpness and the Lanczos solver against an explicit Hessian, in float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import spectra
from superconsistency import train
from conftest import shrunk_quickstart


def _exact_top(loss_fn, params):
  flat, unravel = ravel_pytree(params)
  h = jax.jit(jax.hessian(lambda v: loss_fn(unravel(v))))(flat)
  return np.linalg.eigvalsh(np.asarray(h))[::-1]


@pytest.mark.parametrize('p_name,loss', [('mup', 'cross_entropy'), ('ntk', 'mse')])
def test_in_loop_sharpness_matches_exact_hessian(p_name, loss):
  with jax.enable_x64(True):
    c = shrunk_quickstart()
    c.dtype, c.loss = 'float64', loss
    c.measure.num_iters = 60
    data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float64)
    model = models.make_model(c.model, data.spec, 6, 3, pz.Parameterization(p_name), jnp.float64)
    program = train.make_lane_program(model, data, c)
    hp = train.LaneHparams(jnp.asarray(0.5), jnp.asarray(1.0), jnp.asarray(0, jnp.int32))
    state = program.init(hp)
    for _ in range(3):   # away from init, where the Hessian is less degenerate
      state = program.step(state, hp, data.arrays)
    _, metrics = jax.jit(program.measure)(state, hp, data.arrays)
    xs = data.arrays['measure_x'][:c.measure.sharpness_batch]
    ys = data.arrays['measure_y'][:c.measure.sharpness_batch]
    loss_fn = lambda p: models.LOSSES[loss](model.apply(p, xs, 1.0), ys)
    exact = _exact_top(loss_fn, state.params)
    assert metrics['sharpness'].dtype == jnp.float64
    np.testing.assert_allclose(float(metrics['sharpness']), exact[0], rtol=1e-3)
    rate = 0.5 * pz.lr_multiplier(model.param, 'hidden', 'sgd', 6, 3)
    np.testing.assert_allclose(float(metrics['lr_sharpness']), rate * exact[0], rtol=1e-3)


def test_lanczos_top_k_with_repeated_and_clustered_eigenvalues():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    eigs = np.concatenate([[5.0, 5.0, 3.0, 3.0 - 1e-4, 3.0 - 2e-4], rng.uniform(-1, 1, 55)])
    a = jnp.asarray(q @ np.diag(eigs) @ q.T)
    res = spectra.lanczos(lambda v: a @ v, 60, 60, jax.random.PRNGKey(1), k=5, dtype=jnp.float64)
    np.testing.assert_allclose(np.asarray(res.eigenvalues), np.sort(eigs)[::-1][:5], rtol=1e-8)
    # Ritz vectors are eigenvectors: ‖A y − θ y‖ small
    for theta, y in zip(res.eigenvalues, res.eigenvectors):
      assert float(jnp.linalg.norm(a @ y - theta * y)) < 1e-6


def _iterations_to_converge(matvec, v0, exact, tol=1e-6, max_iters=3000):
  """Power-iteration steps from v0 until the eigenvalue is within tol (relative) of `exact`; each call continues
  from the vector the previous one returned, so this counts the iterations of one warm-started run."""
  step = jax.jit(lambda v: spectra.power_iteration(matvec, v, 1))
  v = v0
  for n in range(1, max_iters + 1):
    lam, v = step(v)
    if abs(float(lam) - exact) <= tol * abs(exact):
      return n
  return max_iters + 1


def test_power_iteration_warm_start_and_vmap():
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    tops = (1.0, 2.0, 4.0)
    mats = jnp.asarray(np.stack([q @ np.diag(np.linspace(0.1, s, 30)) @ q.T for s in tops]))
    a = mats[2]
    cold = _iterations_to_converge(lambda v: a @ v, jnp.ones(30), 4.0)
    assert 50 < cold < 3000, cold   # the gap is small (λ2/λ1 ≈ 0.97): a cold start needs hundreds of steps
    _, converged = spectra.power_iteration(lambda v: a @ v, jnp.ones(30), 2 * cold)
    assert _iterations_to_converge(lambda v: a @ v, converged, 4.0) <= 2
    # as in training, where the matrix moves a little between measurements: the last vector still saves most steps
    e = rng.normal(size=(30, 30))
    nearby = a + 1e-4 * jnp.asarray(e + e.T)
    exact = float(np.linalg.eigvalsh(np.asarray(nearby))[-1])
    warm = _iterations_to_converge(lambda v: nearby @ v, converged, exact)
    assert warm < cold / 4, (warm, cold)

    # vmapped over matrices (and their own start vectors) = one matrix at a time
    v0s = jnp.asarray(rng.normal(size=(3, 30)))
    run = lambda m, v0: spectra.power_iteration(lambda v: m @ v, v0, 2 * cold)
    lams, vecs = jax.jit(jax.vmap(run))(mats, v0s)
    for i, top in enumerate(tops):
      lam, vec = jax.jit(run)(mats[i], v0s[i])
      np.testing.assert_allclose(float(lams[i]), float(lam), rtol=1e-12)
      np.testing.assert_allclose(np.asarray(vecs[i]), np.asarray(vec), rtol=1e-9, atol=1e-12)
      np.testing.assert_allclose(float(lam), top, rtol=1e-6)


def test_vmapped_lanczos_equals_known_tops():
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    mats = jnp.asarray(np.stack([q @ np.diag(np.linspace(0.1, s, 30)) @ q.T for s in (1.0, 2.0, 4.0)]))
    top = jax.vmap(lambda m: spectra.lanczos(lambda v: m @ v, 30, 30, jax.random.PRNGKey(0)).eigenvalues[0])(mats)
    np.testing.assert_allclose(np.asarray(top), [1.0, 2.0, 4.0], rtol=1e-10)


def test_lanczos_restarts_after_breakdown_find_multiplicities_vmapped_as_alone():
  """Operators with few distinct eigenvalues exhaust the Krylov space within a few steps; each restart vector
  (orthogonalized with w in one pass, no branch) must keep the multiplicities, and a vmapped solve (where the old
  lax.cond ran both sides) equals the solve alone."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    spectra_ = [np.r_[3.0, 2.0, 1.0, np.zeros(37)], np.r_[2.0, 2.0, 2.0, 1.0, np.zeros(36)]]
    mats = jnp.asarray(np.stack([q @ np.diag(e) @ q.T for e in spectra_]))
    solve = lambda m: spectra.lanczos(lambda v: m @ v, 40, 12, jax.random.PRNGKey(7), k=4)
    batched = jax.jit(jax.vmap(solve))(mats)
    for i, e in enumerate(spectra_):
      alone = jax.jit(solve)(mats[i])
      np.testing.assert_allclose(np.asarray(alone.eigenvalues), np.sort(e)[::-1][:4], atol=1e-10)
      np.testing.assert_allclose(np.asarray(batched.eigenvalues[i]), np.asarray(alone.eigenvalues), atol=1e-12)
      for theta, y in zip(alone.eigenvalues, alone.eigenvectors):   # Ritz pairs are eigenpairs
        assert float(jnp.linalg.norm(mats[i] @ y - theta * y)) < 1e-8
    _, _, basis = jax.jit(lambda m: spectra.lanczos_tridiagonal(lambda v: m @ v, jnp.ones(40), 12,
                                                                jax.random.PRNGKey(7)))(mats[1])
    np.testing.assert_allclose(np.asarray(basis @ basis.T), np.eye(13), atol=1e-10)   # restarts stay orthonormal


def _ritz_errors(matvec, v0, num_iters, exact):
  """Relative error of the top Ritz value after m = 1..num_iters Lanczos steps from v0 (leading m×m blocks of one
  run's tridiagonal matrix)."""
  alphas, betas, _ = jax.jit(lambda v: spectra.lanczos_tridiagonal(matvec, v, num_iters, jax.random.PRNGKey(5)))(v0)
  a, b = np.asarray(alphas), np.asarray(betas)
  tops = [np.linalg.eigvalsh(np.diag(a[:m]) + np.diag(b[:m - 1], 1) + np.diag(b[:m - 1], -1))[-1]
          for m in range(1, num_iters + 1)]
  return np.abs(np.asarray(tops) - exact) / abs(exact)


def test_lanczos_warm_start_from_the_top_eigenvector_needs_far_fewer_iterations():
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    n = 300
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigs = np.concatenate([[1.0, 0.99, 0.98], rng.uniform(-0.5, 0.97, n - 3)])   # small gaps at the top
    a = q @ np.diag(eigs) @ q.T
    u = q[:, 0]   # the exact top eigenvector
    e = rng.normal(size=(n, n))
    nearby = a + 1e-4 * (e + e.T) / np.sqrt(n)   # the matrix a few steps later (‖Δ‖ ≈ 3e-4): u is no longer exact
    key = jax.random.PRNGKey(0)
    for mat in (a, nearby):
      w, _ = np.linalg.eigh(mat)
      exact, mv = w[-1], (lambda v, m=jnp.asarray(mat): m @ v)
      cold = _ritz_errors(mv, jax.random.normal(key, (n,), jnp.float64), 60, exact)
      warm = _ritz_errors(mv, jnp.asarray(u), 60, exact)
      first = lambda errs: int(np.argmax(errs <= 1e-8)) + 1 if np.any(errs <= 1e-8) else 61
      assert first(warm) <= 8 and first(cold) >= 40, (first(warm), first(cold))   # measured: 1 and 5; 55 and 55
      # the same through spectra.lanczos: 8 iterations from u reach 1e-8; from the random start they are far off
      top = jax.jit(lambda v0: spectra.lanczos(mv, n, 8, key, v0=v0).eigenvalues[0])
      assert abs(float(top(jnp.asarray(u))) - exact) <= 1e-8 * exact
      assert abs(float(jax.jit(lambda k: spectra.lanczos(mv, n, 8, k).eigenvalues[0])(key)) - exact) > 1e-3 * exact
    # from an exact eigenvector the Krylov space is invariant after one step: the solver restarts with a random
    # orthogonal vector and still finds the rest of the top-k
    res = jax.jit(lambda v0: spectra.lanczos(lambda v: jnp.asarray(a) @ v, n, 120, key, k=3, v0=v0))(jnp.asarray(u))
    np.testing.assert_allclose(np.asarray(res.eigenvalues), [1.0, 0.99, 0.98], rtol=1e-10)


def test_lanczos_default_start_is_the_drawn_vector_bit_for_bit():
  """v0=None draws the start from split(key)[0]; passing that vector gives the same numbers, bit for bit (so the
  default path did not change when v0 was added; its stream is also pinned by measurements_test)."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(4)
    m = rng.normal(size=(40, 40))
    a = jnp.asarray(m + m.T)
    key = jax.random.PRNGKey(7)
    # both inside one compiled function of the key, as in the lane program (a start vector passed in as an argument
    # instead would be compiled with other fusions: equal to rounding, not bits)
    run = lambda shift: jax.jit(lambda k: spectra.lanczos(
        lambda v: a @ v, 40, 10, k, k=3, v0=jax.random.normal(jax.random.split(k)[0], (40,), jnp.float64) + shift))
    default = jax.jit(lambda k: spectra.lanczos(lambda v: a @ v, 40, 10, k, k=3))(key)
    for got, want in zip(run(0.0)(key), default):
      np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert not np.array_equal(np.asarray(run(1.0)(key).eigenvalues), np.asarray(default.eigenvalues))
