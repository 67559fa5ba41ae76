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
