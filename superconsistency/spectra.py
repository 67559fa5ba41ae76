"""Matrix-free curvature that jits and vmaps: Hessian, Gauss-Newton, residual and NTK operators, eigen-solvers,
trace estimators and spectral densities.

Operators act on flat vectors (`matvec: (dim,) -> (dim,)`). They are built from a model function
`f: params -> outputs[n, C]` and a loss of the outputs `ell: outputs -> scalar` (the loss of the parameters is
ell(f(params))). Every iteration count is static, so all of it runs inside `lax.scan` / `vmap` with no host
round-trip. Warm starts: `power_iteration` takes its start vector, `lanczos` an optional `v0` (e.g. the previous
solve's top Ritz vectors; measurements.py's `measure.warm_start`); a vector near the top eigenvector needs far
fewer products than a random one (benchmarks/warm_start.md).

  Hessian            H v = d/dε ∇(ell∘f)(θ + εv)                      (jvp of grad: forward-over-reverse)
  Gauss-Newton       G v = Jᵀ H_ℓ J v                                  (jvp of f, Hessian of ell in outputs, vjp)
  residual           R v = H v − G v
  empirical NTK      Θ u = J Jᵀ u on output space (n·C)                 (vjp, then jvp)
  weighted forms     D^½ M D^½ for a diagonal D (per-layer rates, or Adam's η/(sqrt(v̂)+ε))

Micro-batching: pass `microbatches > 1` to split the n examples into equal micro-batches whose products are
summed with weights n_b/n, so memory scales with the micro-batch, not the batch. For a mean loss this is exact.
(For a batch-norm model in train mode the loss itself depends on the split, since batch statistics are per
micro-batch.)
"""
from __future__ import annotations

import contextlib

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def _default_float():
  return jax.dtypes.canonicalize_dtype(jnp.float64)   # float64 when x64 is on, else float32


# ----------------------------------------------------------------------------------------------- operators


def hvp(loss_fn: Callable, params, v):
  """H(params)·v for a scalar loss_fn(params), by forward-over-reverse differentiation."""
  return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def flat_hvp(loss_fn: Callable, params, linearize: bool = True):
  """Returns (matvec on flat vectors, flat params) for the Hessian of loss_fn at params.

  linearize=True runs the forward and backward pass once (jax.linearize of the gradient) and each product then
  costs only the tangent pass: what an eigen-solver making many products at one point wants. It keeps the
  activations of that pass in memory; linearize=False recomputes them in every product.
  """
  flat, unravel = ravel_pytree(params)
  if linearize:
    _, tangent = jax.linearize(jax.grad(loss_fn), params)
    return (lambda v: ravel_pytree(tangent(unravel(v.astype(flat.dtype))))[0]), flat

  def matvec(v):
    return ravel_pytree(hvp(loss_fn, params, unravel(v.astype(flat.dtype))))[0]
  return matvec, flat


def _summed_over_microbatches(product, xs, microbatches):
  """Sums product(x_b) * (n_b / n) over equal micro-batches x_b of the leading axis of every leaf of xs."""
  if microbatches == 1:
    return product(xs)
  n = jax.tree.leaves(xs)[0].shape[0]
  if n % microbatches:
    raise ValueError(f'batch of {n} does not split into {microbatches} equal micro-batches')
  split = jax.tree.map(lambda a: a.reshape((microbatches, n // microbatches) + a.shape[1:]), xs)
  total = jax.lax.map(product, split)
  return jax.tree.map(lambda t: t.sum(0) / microbatches, total)


class Operators(NamedTuple):
  """Flat-vector operators of one model, batch and parameter point. `dim` = number of parameters."""
  hessian: Callable
  gauss_newton: Callable
  residual: Callable
  ntk: Callable          # on output space, dim n·C
  dim: int
  out_dim: int
  flat_params: jax.Array
  unravel: Callable


def operators(apply_fn: Callable, loss_of_outputs: Callable, params, x, y, microbatches: int = 1) -> Operators:
  """Builds the operators for `loss = loss_of_outputs(apply_fn(params, x), y)` (a mean over examples).

  apply_fn(params, x) -> outputs[n, C]; loss_of_outputs(outputs, y) -> scalar mean over the n examples.
  """
  flat, unravel = ravel_pytree(params)
  dtype = flat.dtype
  out_shape = jax.eval_shape(lambda p: apply_fn(p, x), params).shape

  f = lambda p: apply_fn(p, x)
  if microbatches == 1:
    # One forward/backward pass at this point, shared by every product (each then costs a tangent pass).
    _, h_tangent = jax.linearize(jax.grad(lambda p: loss_of_outputs(apply_fn(p, x), y)), params)
    out, j_tangent = jax.linearize(f, params)
    _, j_transpose = jax.vjp(f, params)
    _, hl_tangent = jax.linearize(jax.grad(lambda o: loss_of_outputs(o, y)), out)

    def hessian(v):
      return ravel_pytree(h_tangent(unravel(v.astype(dtype))))[0]

    def gauss_newton(v):
      return ravel_pytree(j_transpose(hl_tangent(j_tangent(unravel(v.astype(dtype)))))[0])[0]
  else:
    def h_microbatch(v_tree):
      def product(batch):
        xb, yb = batch
        return hvp(lambda p: loss_of_outputs(apply_fn(p, xb), yb), params, v_tree)
      return product

    def gn_microbatch(v_tree):
      def product(batch):
        xb, yb = batch
        fb = lambda p: apply_fn(p, xb)
        out_b, jv = jax.jvp(fb, (params,), (v_tree,))
        hjv = hvp(lambda o: loss_of_outputs(o, yb), out_b, jv)
        return jax.vjp(fb, params)[1](hjv)[0]
      return product

    def hessian(v):
      return ravel_pytree(_summed_over_microbatches(h_microbatch(unravel(v.astype(dtype))), (x, y), microbatches))[0]

    def gauss_newton(v):
      return ravel_pytree(_summed_over_microbatches(gn_microbatch(unravel(v.astype(dtype))), (x, y),
                                                    microbatches))[0]

  def residual(v):
    return hessian(v) - gauss_newton(v)

  _, ntk_tangent = jax.linearize(f, params)
  _, ntk_transpose = jax.vjp(f, params)

  def ntk(u):
    # Θ u = J (Jᵀ u) over the whole batch: the NTK couples all examples, so it is not micro-batched.
    return ntk_tangent(ntk_transpose(u.reshape(out_shape).astype(dtype))[0]).reshape(-1)

  return Operators(hessian, gauss_newton, residual, ntk, flat.size, math.prod(out_shape), flat, unravel)


def weighted(matvec: Callable, d) -> Callable:
  """v -> D^½ M D^½ v for a diagonal D given as a flat vector d >= 0."""
  d_sqrt = jnp.sqrt(d)
  return lambda v: d_sqrt * matvec(d_sqrt * v)


def ntk_weighted(apply_fn: Callable, params, x, d) -> Callable:
  """u -> J D Jᵀ u: the learning-rate-weighted kernel (the width-consistent object under μP)."""
  flat, unravel = ravel_pytree(params)
  f = lambda p: apply_fn(p, x)
  out, j_tangent = jax.linearize(f, params)
  _, j_transpose = jax.vjp(f, params)

  def matvec(u):
    jtu = ravel_pytree(j_transpose(u.reshape(out.shape).astype(flat.dtype))[0])[0]
    return j_tangent(unravel(d * jtu)).reshape(-1)
  return matvec


def adam_preconditioner(opt_state, params, lr, b1: float, b2: float, eps: float, lr_multipliers=None, grad_scale=None):
  """Flat D = η/(sqrt(v̂) + ε): Adam's effective per-parameter step, so λ_max(P⁻¹H) = λ_max(D^½ H D^½).

  Reads the second moment and the step count from an optax `scale_by_adam` state (found anywhere in the state
  tree). lr_multipliers / grad_scale: per-layer dicts as in train.make_optimizer (raw rate η·m; Adam saw g·s, so
  its v̂ is s²·E[g²] and the step on the raw gradient is η·m·s/(sqrt(v̂)+ε)).
  """
  adam = _find_adam_state(opt_state)
  count = jnp.maximum(adam.count, 1)   # before the first step v̂ = 0 and D = η/ε
  nu_hat = jax.tree.map(lambda n: n / (1 - b2 ** count), adam.nu)
  d = {}
  for name, nu in nu_hat.items():
    m = 1.0 if lr_multipliers is None else lr_multipliers[name]
    s = 1.0 if grad_scale is None else grad_scale[name]
    d[name] = lr * m * s / (jnp.sqrt(nu) + eps)
  return ravel_pytree(d)[0]


def adam_threshold(lr, b1: float):
  """Adaptive edge of stability (Cohen et al. 2022): λ_max(P⁻¹H) is compared with (2 + 2β1)/((1 − β1)η).

  With P⁻¹ already holding η (as adam_preconditioner's D does), the threshold on λ_max(D^½HD^½) is
  (2 + 2β1)/(1 − β1): 38 for β1 = 0.9."""
  del lr
  return (2 + 2 * b1) / (1 - b1)


def _find_adam_state(opt_state):
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, 'nu') and hasattr(s, 'count'))
           if hasattr(s, 'nu')]
  if not found:
    raise ValueError('no Adam state (with nu and count) in this optimizer state')
  return found[0]


# ------------------------------------------------------------------------------------------------- solvers


_UNROLLED = [False]


@contextlib.contextmanager
def unrolled_loops(on: bool = True):
  """While tracing inside this block, the solvers' loops over operator products are written out instead of looped
  (for programs that must have no device loop around the model: XLA:CPU runs convolutions inside one many times
  slower). Iteration counts are static, so the numbers are the same; only the compiled program grows."""
  before = _UNROLLED[0]
  _UNROLLED[0] = on
  try:
    yield
  finally:
    _UNROLLED[0] = before


def _loop(n: int, body, init):
  if _UNROLLED[0]:
    for i in range(n):
      init = body(i, init)
    return init
  return jax.lax.fori_loop(0, n, body, init)


def _map(f, xs):
  if _UNROLLED[0]:
    outs = [f(jax.tree.map(lambda a: a[i], xs)) for i in range(jax.tree.leaves(xs)[0].shape[0])]
    return jax.tree.map(lambda *vs: jnp.stack(vs), *outs)
  return jax.lax.map(f, xs)


class LanczosResult(NamedTuple):
  eigenvalues: jax.Array    # (k,) descending Ritz values
  eigenvectors: jax.Array   # (k, dim) Ritz vectors, unit norm
  residuals: jax.Array      # (k,) |β_m · s_m| = ‖A y − θ y‖ for each Ritz pair (a posteriori error bound)


def _orthonormal_to(key, basis, mask):
  """A Gaussian vector from `key`, made orthonormal to the rows of `basis` that `mask` keeps."""
  candidate = jax.random.normal(key, basis.shape[1:], basis.dtype)
  for _ in range(2):  # classical Gram-Schmidt twice: enough to hold orthogonality to rounding
    candidate = candidate - basis.T @ (mask * (basis @ candidate))
  return candidate / jnp.linalg.norm(candidate)


@jax.custom_batching.custom_vmap
def _restart_vector(broke, key, basis, mask):
  """On a Lanczos breakdown (`broke`): a Gaussian vector from `key` made orthonormal to the basis; otherwise zeros,
  without drawing it or reading the basis. A real branch alone and under vmap: a `lax.cond` on a batched predicate
  runs both sides, and drawing and orthogonalizing at every step read each lane's basis four more times (a 16-lane
  width-256 MLP sweep's vmapped measurement took 25 ms per lane against 16 ms without it); the batching rule
  branches once on "any lane broke down" instead."""
  return jax.lax.cond(broke, _orthonormal_to, lambda k, q, m: jnp.zeros_like(q[0]), key, basis, mask)


@_restart_vector.def_vmap
def _restart_vector_batched(axis_size, in_batched, broke, key, basis, mask):
  broke, key, basis, mask = (a if batched else jnp.broadcast_to(a, (axis_size,) + a.shape)
                             for a, batched in zip((broke, key, basis, mask), in_batched))
  each = jax.vmap(lambda b, k, q, m: jnp.where(b, _orthonormal_to(k, q, m), 0.0))
  fresh = jax.lax.cond(jnp.any(broke), each, lambda b, k, q, m: jnp.zeros_like(q[:, 0]), broke, key, basis, mask)
  return fresh, True


def lanczos_tridiagonal(matvec: Callable, v0, num_iters: int, key):
  """m = num_iters steps of Lanczos with full reorthogonalization from v0 (normalized here, so any nonzero norm;
  a zero or non-finite v0 gives NaN). Returns (alphas, betas, basis).

  When the Krylov space is exhausted (an invariant subspace is found), the next basis vector is a fresh random
  vector orthogonal to the basis and the coupling is set to 0, so repeated eigenvalues appear with their
  multiplicity instead of being skipped, and no ghost copies appear. The fresh vector at step i is drawn from
  fold_in(key, i), only when step i breaks down (`_restart_vector`).
  """
  m, dim, dtype = num_iters, v0.shape[0], v0.dtype
  basis = jnp.zeros((m + 1, dim), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
  eps = jnp.finfo(dtype).eps

  def body(i, carry):
    basis, alphas, betas, scale = carry
    v = basis[i]
    w = matvec(v).astype(dtype)
    alpha = jnp.vdot(v, w)
    # three-term recurrence, then one full reorthogonalization pass against the whole basis (reading the basis,
    # not the arithmetic, is the solver's cost on large models)
    w = w - alpha * v - jnp.where(i > 0, betas[jnp.maximum(i - 1, 0)], 0.0) * basis[jnp.maximum(i - 1, 0)]
    mask = (jnp.arange(m + 1) <= i).astype(dtype)
    w = w - basis.T @ (mask * (basis @ w))
    beta = jnp.linalg.norm(w)
    scale = jnp.maximum(scale, jnp.abs(alpha) + beta)
    ok = beta > 100 * eps * scale
    fresh = _restart_vector(~ok, jax.random.fold_in(key, i), basis, mask)
    v_next = jnp.where(ok, w / jnp.where(ok, beta, 1.0), fresh)
    beta = jnp.where(ok, beta, 0.0)
    return basis.at[i + 1].set(v_next), alphas.at[i].set(alpha), betas.at[i].set(beta), scale

  init = (basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), jnp.zeros((), dtype))
  basis, alphas, betas, _ = _loop(m, body, init)
  return alphas, betas, basis


def _tridiagonal(alphas, betas):
  return jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)


def _round_robin(n: int):
  """Pairings of 0..n−1 (n even) into n−1 rounds of n/2 disjoint pairs, every pair once (circle method)."""
  players = list(range(n))
  rounds = []
  for _ in range(n - 1):
    rounds.append([(min(players[i], players[n - 1 - i]), max(players[i], players[n - 1 - i]))
                   for i in range(n // 2)])
    players = [players[0], players[-1]] + players[1:-1]
  return jnp.asarray(rounds, jnp.int32)   # (n−1, n/2, 2)


def small_eigh(a, max_sweeps: int = 30):
  """Eigendecomposition of a small symmetric matrix (the Lanczos tridiagonal) in plain XLA ops: cyclic Jacobi
  with round-robin ordering, so each round applies n/2 disjoint rotations at once. Returns (w ascending, V).

  Why not `jnp.linalg.eigh`: on CPU, jaxlib 0.10's batched LAPACK kernels split their batch over XLA's intra-op
  thread pool and block until it is done; when as many independent batched eigh calls as the pool has threads
  run at once (several vmapped Lanczos solves in one measurement, on a 2-core machine), every pool thread waits
  on work queued behind it and the program deadlocks. Jacobi is also accurate to a few ulps relative to ‖A‖.
  """
  n0 = a.shape[-1]
  n = n0 + (n0 % 2)
  if n != n0:   # pad to even with a decoupled entry: its rotations have zero angle, so it never mixes in
    a = jnp.pad(a, ((0, 1), (0, 1)))
  dtype, h = a.dtype, n // 2
  rounds = _round_robin(n)
  perms = jnp.concatenate([rounds[:, :, 0], rounds[:, :, 1]], axis=1)   # (n−1, n): the p's, then the q's
  inverse = jnp.argsort(perms, axis=1)
  off_diagonal = 1 - jnp.eye(n, dtype=dtype)
  tol = jnp.finfo(dtype).eps * jnp.sqrt(jnp.sum(a * a))

  def rotate(r, carry):
    a, v = carry
    perm, inv = perms[r], inverse[r]
    b = a[perm][:, perm]               # pairs (i, h + i) of the permuted matrix are this round's (p, q)
    app, aqq, apq = jnp.diag(b)[:h], jnp.diag(b)[h:], jnp.diag(b, h)
    nonzero = apq != 0
    tau = (aqq - app) / (2 * jnp.where(nonzero, apq, 1.0))
    t = jnp.where(nonzero, jnp.sign(tau + (tau == 0)) / (jnp.abs(tau) + jnp.sqrt(1 + tau * tau)), 0.0)
    c = 1 / jnp.sqrt(1 + t * t)
    s = t * c
    def rows(m):   # Jᵀ m, on the permuted rows
      top, bot = m[:h], m[h:]
      return jnp.concatenate([c[:, None] * top - s[:, None] * bot, s[:, None] * top + c[:, None] * bot])
    b = rows(rows(b).T).T              # Jᵀ b J (b is symmetric)
    vp = v[:, perm]
    vp = rows(vp.T).T                  # v J
    return b[inv][:, inv], vp[:, inv]

  def cond(carry):
    a, _, sweep = carry
    return (sweep < max_sweeps) & (jnp.sqrt(jnp.sum((a * off_diagonal) ** 2)) > tol)

  def sweep(carry):
    a, v, i = carry
    a, v = jax.lax.fori_loop(0, n - 1, rotate, (a, v))
    return a, v, i + 1

  a, v, _ = jax.lax.while_loop(cond, sweep, (a, jnp.eye(n, dtype=dtype), 0))
  w = jnp.diag(a)[:n0]
  v = v[:n0, :n0]   # the padded coordinate stayed decoupled: its column and row are e_n
  order = jnp.argsort(w)
  return w[order], v[:, order]


def lanczos(matvec: Callable, dim: int, num_iters: int, key, k: int = 1, dtype=None, v0=None) -> LanczosResult:
  """Top-k eigenpairs of a symmetric operator by Lanczos with full reorthogonalization (num_iters static,
  capped at dim).

  v0: the start vector (any nonzero norm; e.g. the previous solve's top Ritz vectors, to warm-start). None draws
  a Gaussian one from `key`; either way the rest of `key` seeds the breakdown restarts, so passing the vector that
  None would draw gives the same numbers bit for bit."""
  dtype = dtype or _default_float()
  m = min(num_iters, dim)
  k = min(k, m)
  k0, key = jax.random.split(key)
  start = jax.random.normal(k0, (dim,), dtype) if v0 is None else jnp.asarray(v0).astype(dtype)
  alphas, betas, basis = lanczos_tridiagonal(matvec, start, m, key)
  theta, s = small_eigh(_tridiagonal(alphas, betas))
  theta, s = theta[::-1][:k], s[:, ::-1][:, :k]
  vectors = (basis[:m].T @ s).T
  residuals = jnp.abs(betas[-1] * s[-1])
  return LanczosResult(theta, vectors, residuals)


def power_iteration(matvec: Callable, v0, num_iters: int):
  """Largest-magnitude eigenpair by power iteration from v0 (warm-startable). Returns (eigenvalue, vector)."""
  def body(_, v):
    w = matvec(v)
    return w / jnp.linalg.norm(w)
  v = _loop(num_iters, body, v0 / jnp.linalg.norm(v0))
  return jnp.vdot(v, matvec(v)), v


def power_iteration_top_k(matvec: Callable, v0s, num_iters: int):
  """Top-k (by magnitude) eigenpairs by power iteration with deflation: pair i runs on
  A − Σ_{j<i} λ_j v_j v_jᵀ. v0s: (k, dim) starting vectors (pass the last result to warm-start).
  Returns (eigenvalues (k,), vectors (k, dim))."""
  k = v0s.shape[0]
  vals, vecs = [], []
  for i in range(k):
    def deflated(v, vals=tuple(vals), vecs=tuple(vecs)):
      w = matvec(v)
      for lam, u in zip(vals, vecs):
        w = w - lam * jnp.vdot(u, v) * u
      return w
    lam, vec = power_iteration(deflated, v0s[i], num_iters)
    vals.append(lam)
    vecs.append(vec)
  return jnp.stack(vals), jnp.stack(vecs)


# ------------------------------------------------------------------------------------- traces and densities


class TraceEstimate(NamedTuple):
  trace: jax.Array
  stderr: jax.Array    # standard error of the estimate


def _rademacher(key, shape, dtype):
  return jax.random.rademacher(key, shape, dtype=dtype)


def hutchinson(matvec: Callable, dim: int, num_samples: int, key, dtype=None) -> TraceEstimate:
  """tr(A) ≈ mean zᵀAz over Rademacher z."""
  dtype = dtype or _default_float()
  zs = _rademacher(key, (num_samples, dim), dtype)
  samples = _map(lambda z: jnp.vdot(z, matvec(z)), zs)
  return TraceEstimate(samples.mean(), samples.std(ddof=1) / jnp.sqrt(num_samples))


def hutch_plus_plus(matvec: Callable, dim: int, num_matvecs: int, key, dtype=None) -> TraceEstimate:
  """Hutch++ (Meyer et al. 2021): exact trace on a sketched top subspace Q plus Hutchinson on the rest.
  Uses num_matvecs products in thirds. The standard error is that of the Hutchinson part."""
  dtype = dtype or _default_float()
  s = max(num_matvecs // 3, 1)
  k1, k2 = jax.random.split(key)
  sketch = _map(matvec, _rademacher(k1, (s, dim), dtype))         # (s, dim): rows are A s_i
  q, _ = jnp.linalg.qr(sketch.T)                                           # (dim, s)
  aq = _map(matvec, q.T)                                            # (s, dim)
  top = jnp.sum(q.T * aq)
  zs = _rademacher(k2, (s, dim), dtype)
  zs = zs - (zs @ q) @ q.T                                                 # project out Q
  samples = _map(lambda z: jnp.vdot(z, matvec(z)), zs)        # zᵀ(I−QQᵀ)A(I−QQᵀ)z
  return TraceEstimate(top + samples.mean(), samples.std(ddof=1) / jnp.sqrt(s))


class Density(NamedTuple):
  grid: jax.Array       # (G,) eigenvalue grid
  density: jax.Array    # (G,) smoothed spectral density on the grid; integrates to ~1 over the grid
  nodes: jax.Array      # (num_vectors, m) Ritz values
  weights: jax.Array    # (num_vectors, m) quadrature weights; each row sums to 1


def slq_density(matvec: Callable, dim: int, num_iters: int, num_vectors: int, key, grid_size: int = 256,
                sigma: float | None = None, dtype=None) -> Density:
  """Spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019): Gaussian-smoothed mixture of the
  Ritz values of `num_vectors` Lanczos runs from random unit vectors, weighted by the squared first components
  of the Ritz vectors. Its mean Σ wθ equals the average of v0ᵀAv0, an unbiased estimate of tr(A)/dim."""
  dtype = dtype or _default_float()
  m = min(num_iters, dim)

  def one(k):
    k0, k1 = jax.random.split(k)
    v0 = _rademacher(k0, (dim,), dtype)
    alphas, betas, _ = lanczos_tridiagonal(matvec, v0, m, k1)
    theta, s = small_eigh(_tridiagonal(alphas, betas))
    return theta, s[0] ** 2

  nodes, weights = _map(one, jax.random.split(key, num_vectors))
  lo, hi = nodes.min(), nodes.max()
  width = jnp.maximum(hi - lo, 1e-12)
  sig = (sigma if sigma is not None else 0.01) * width
  grid = jnp.linspace(lo - 5 * sig, hi + 5 * sig, grid_size)
  kern = jnp.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sig) ** 2) / (sig * jnp.sqrt(2 * jnp.pi))
  density = (kern * weights[None]).sum((1, 2)) / num_vectors
  return Density(grid, density, nodes, weights)


def directional_sharpness(matvec: Callable, g):
  """gᵀHg/‖g‖²: the curvature along the gradient (what a gradient step actually feels)."""
  return jnp.vdot(g, matvec(g)) / jnp.vdot(g, g)


# ----------------------------------------------------------------------------------------- entry points


def hessian_eigenvalues(loss_fn: Callable, params, *, k: int = 1, num_iters: int = 30, key=None) -> LanczosResult:
  """Top-k Hessian eigenvalues of loss_fn: params -> scalar at params, descending (Lanczos). Returns a
  LanczosResult (eigenvalues, Ritz vectors, residual bounds)."""
  matvec, flat = flat_hvp(loss_fn, params)
  key = jax.random.PRNGKey(0) if key is None else key
  return lanczos(matvec, flat.size, num_iters, key, k=k, dtype=flat.dtype)


def adam_preconditioned_eigenvalues(loss_fn: Callable, params, opt_state, *, lr, b1: float = 0.9,
                                    b2: float = 0.999, eps: float = 1e-8, k: int = 1, num_iters: int = 30, key=None,
                                    lr_multipliers=None, grad_scale=None) -> LanczosResult:
  """Top-k eigenvalues of P⁻¹H for an Adam state (P = diag(sqrt(v̂)+ε)/η), as those of the symmetric D^½HD^½.
  Compare eigenvalues[0] with adam_threshold(lr, b1). Ritz vectors are those of D^½HD^½."""
  matvec, flat = flat_hvp(loss_fn, params)
  d = adam_preconditioner(opt_state, params, lr, b1, b2, eps, lr_multipliers, grad_scale)
  key = jax.random.PRNGKey(0) if key is None else key
  return lanczos(weighted(matvec, d), flat.size, num_iters, key, k=k, dtype=flat.dtype)


def ntk_gram(f: Callable, params):
  """The explicit empirical NTK Θ = J Jᵀ (n·C × n·C) by Jacobian contraction, one parameter leaf at a time."""
  jac = jax.jacrev(f)(params)
  leaves = [j.reshape(j.shape[0] * j.shape[1], -1) for j in jax.tree.leaves(jac)]
  return sum(j @ j.T for j in leaves)


def ntk_eigenvalues(f: Callable, params, *, k: int = 1, num_iters: int = 30, key=None,
                    method: str = 'matrix_free') -> jax.Array:
  """Top-k eigenvalues (descending) of the empirical NTK of f: params -> outputs[n, C].

  method='matrix_free': Lanczos on u -> J Jᵀ u (memory O(P + n·C)); 'explicit': eigh of the contracted Gram
  matrix (memory O(n·C·max leaf size)), exact, for n·C up to a few thousand.
  """
  if method == 'explicit':
    return jnp.linalg.eigvalsh(ntk_gram(f, params))[::-1][:k]
  if method != 'matrix_free':
    raise ValueError(f'unknown NTK method {method!r}; allowed: matrix_free, explicit')
  flat, _ = ravel_pytree(params)
  out, j_tangent = jax.linearize(f, params)
  _, j_transpose = jax.vjp(f, params)

  def matvec(u):
    return j_tangent(j_transpose(u.reshape(out.shape).astype(flat.dtype))[0]).reshape(-1)
  out_shape = out.shape
  key = jax.random.PRNGKey(0) if key is None else key
  return lanczos(matvec, out_shape[0] * out_shape[1], num_iters, key, k=k, dtype=flat.dtype).eigenvalues
