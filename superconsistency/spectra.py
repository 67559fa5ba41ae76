"""Matrix-free curvature: Hessian-vector products and fixed-iteration eigen-solvers that jit and vmap.

Everything here works on flat vectors through `matvec: (dim,) -> (dim,)`; `flat_hvp` turns a loss on a parameter
pytree into such a matvec (forward-over-reverse: jvp of grad). Iteration counts are static, so the solvers run
inside `lax.scan` / `vmap` with no host round-trip.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def hvp(loss_fn: Callable, params, v):
  """H(params)·v for a scalar loss_fn(params), by forward-over-reverse differentiation."""
  return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def flat_hvp(loss_fn: Callable, params):
  """Returns (matvec on flat vectors, flat params) for the Hessian of loss_fn at params."""
  flat, unravel = ravel_pytree(params)

  def matvec(v):
    return ravel_pytree(hvp(loss_fn, params, unravel(v.astype(flat.dtype))))[0]
  return matvec, flat


class LanczosResult(NamedTuple):
  eigenvalues: jax.Array    # (k,) descending Ritz values
  eigenvectors: jax.Array   # (k, dim) Ritz vectors, unit norm
  residuals: jax.Array      # (k,) |β_m · s_m|: ‖A y − θ y‖ for each Ritz pair (a posteriori error bound)


def _orthogonalize(w, basis, mask):
  for _ in range(2):  # classical Gram-Schmidt twice: enough to hold orthogonality to rounding
    w = w - basis.T @ (mask * (basis @ w))
  return w


def lanczos(matvec: Callable, dim: int, num_iters: int, key, k: int = 1, dtype=None) -> LanczosResult:
  """Top-k eigenpairs of a symmetric operator by Lanczos with full reorthogonalization.

  num_iters is static (capped at dim). When the Krylov space is exhausted (an invariant subspace is found), the
  next basis vector is a fresh random vector orthogonal to the basis and the coupling is set to 0, so repeated
  eigenvalues appear with their multiplicity instead of being skipped or duplicated by ghost copies.
  """
  dtype = dtype or jax.dtypes.canonicalize_dtype(jnp.float64)   # float64 when x64 is on, else float32
  m = min(num_iters, dim)
  k = min(k, m)
  k0, key = jax.random.split(key)
  v0 = jax.random.normal(k0, (dim,), dtype)
  basis = jnp.zeros((m + 1, dim), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
  eps = jnp.finfo(dtype).eps

  def body(i, carry):
    basis, alphas, betas, scale, key = carry
    v = basis[i]
    w = matvec(v).astype(dtype)
    alpha = jnp.vdot(v, w)
    mask = (jnp.arange(m + 1) <= i).astype(dtype)
    w = _orthogonalize(w, basis, mask)
    beta = jnp.linalg.norm(w)
    scale = jnp.maximum(scale, jnp.abs(alpha) + beta)
    key, sub = jax.random.split(key)
    r = _orthogonalize(jax.random.normal(sub, (dim,), dtype), basis, mask)
    ok = beta > 100 * eps * scale
    v_next = jnp.where(ok, w / jnp.where(ok, beta, 1.0), r / jnp.linalg.norm(r))
    beta = jnp.where(ok, beta, 0.0)
    return basis.at[i + 1].set(v_next), alphas.at[i].set(alpha), betas.at[i].set(beta), scale, key

  init = (basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), jnp.zeros((), dtype), key)
  basis, alphas, betas, _, _ = jax.lax.fori_loop(0, m, body, init)
  tri = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
  theta, s = jnp.linalg.eigh(tri)
  theta, s = theta[::-1][:k], s[:, ::-1][:, :k]
  vectors = (basis[:m].T @ s).T
  residuals = jnp.abs(betas[-1] * s[-1])
  return LanczosResult(theta, vectors, residuals)


def power_iteration(matvec: Callable, v0, num_iters: int):
  """Largest-magnitude eigenpair by power iteration from v0 (warm-startable). Returns (eigenvalue, vector)."""
  def body(_, v):
    w = matvec(v)
    return w / jnp.linalg.norm(w)
  v = jax.lax.fori_loop(0, num_iters, body, v0 / jnp.linalg.norm(v0))
  return jnp.vdot(v, matvec(v)), v


def top_eigenvalue(matvec: Callable, dim: int, *, solver: str, num_iters: int, key, dtype=None, v0=None):
  """λ_max with the configured solver; returns (eigenvalue, vector) so power iteration can warm-start."""
  if solver == 'lanczos':
    res = lanczos(matvec, dim, num_iters, key, k=1, dtype=dtype)
    return res.eigenvalues[0], res.eigenvectors[0]
  if solver == 'power':
    if v0 is None:
      v0 = jax.random.normal(key, (dim,), dtype or jax.dtypes.canonicalize_dtype(jnp.float64))
    return power_iteration(matvec, v0, num_iters)
  raise ValueError(f'unknown sharpness solver {solver!r}; allowed: lanczos, power')


def hessian_eigenvalues(loss_fn: Callable, params, *, k: int = 1, num_iters: int = 30, key=None):
  """Top-k Hessian eigenvalues of loss_fn at params (descending), by Lanczos. Returns a LanczosResult."""
  matvec, flat = flat_hvp(loss_fn, params)
  key = jax.random.PRNGKey(0) if key is None else key
  return lanczos(matvec, flat.size, num_iters, key, k=k, dtype=flat.dtype)
