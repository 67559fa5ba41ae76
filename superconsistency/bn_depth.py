"""Measurables of [BN] (batch norm at depth): the isometry gap of a batch and per-layer gradient norms.

[BN] explains why a BN-MLP with orthogonal weights trains at any depth: BN pushes the batch's Gram matrix towards a
multiple of the identity (the isometry gap φ decays with depth), and once the representations are isometric the
gradients of the first layers stay bounded instead of growing exponentially in depth. These functions measure both
sides of that claim. All are pure JAX and jittable; the per-layer results are dicts keyed by layer name.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from superconsistency import parameterization as pz


def isometry_gap(h_BxN):
  """φ(h) = log((tr G / n) / det(G)^(1/n)) with G = h·hᵀ the n×n Gram matrix of the batch (n = batch size; any
  trailing axes are flattened into features). φ ≥ 0 by AM-GM on G's eigenvalues, and φ = 0 iff G ∝ I. Scale
  invariant, so it is computed as −log det(G / (tr G / n)) / n, whose eigenvalues are O(1). When G is singular
  (more examples than features, or collapsed representations) it is large, set by rounding, or +inf where the
  rounded determinant is not positive."""
  h = h_BxN.reshape(h_BxN.shape[0], -1)
  n = h.shape[0]
  gram = h @ h.T
  gram = gram / (jnp.trace(gram) / n)
  sign, logdet = jnp.linalg.slogdet(gram)
  return jnp.where(sign > 0, -logdet / n, jnp.inf)


def _weight_multipliers(model, params):
  """Forward multiplier of each layer, as the models of models.py compute it (fan-in = product of all but the last
  axis). A model whose layers use other fan-ins would need its own multipliers here."""
  return {n: pz.forward_multiplier(model.param, model.kinds[n], math.prod(w.shape[:-1]), model.width)
          for n, w in params.items()}


def layer_gradient_norms(model, params, x, y, loss_fn, gamma0=1.0, effective: bool = True):
  """{layer: ‖∇_{W_ℓ} loss‖_F} on the batch (x, y).

  effective=True (the default, and what the tests use): the gradient with respect to the effective weight
  W_ℓ = multiplier × raw, i.e. the matrix the forward pass applies, as in [BN]'s ‖∇_{W_ℓ}‖; it does not depend on
  how a parameterization splits W_ℓ into multiplier and raw weight. Since ∂/∂W_raw = multiplier·∂/∂W_eff, it is the
  raw gradient divided by the multiplier. effective=False: the raw gradient, what the optimizer sees. γ0 is part of
  the readout's forward pass, not of its weight."""
  grads = jax.grad(lambda p: loss_fn(model.apply(p, x, gamma0), y))(params)
  mults = _weight_multipliers(model, params) if effective else {n: 1.0 for n in params}
  return {n: jnp.sqrt(jnp.sum(jnp.square(g))) / mults[n] for n, g in grads.items()}


def layer_isometry_gaps(model, params, x):
  """{block: isometry_gap} of the batch representation after each block: the activations the model reports that
  are not a weight layer's output (bn_mlp's `block_001`…, after BN and activation; res_convnet's residual stream
  after each block)."""
  _, acts = model.apply(params, x, 1.0, with_activations=True)
  return {n: isometry_gap(a) for n, a in acts.items() if n not in model.kinds}


def run_experiment(cfg, workdir, overwrite=False, progress=True, plots=True) -> dict:
  """experiment='bn_depth' (the runner's entry): [BN] at init across depth, in bn_experiment.py."""
  from superconsistency import bn_experiment   # imports this module: import on use
  return bn_experiment.run_experiment(cfg, workdir, overwrite=overwrite, progress=progress, plots=plots)


def analyze(workdir) -> dict:
  """Figures and numbers of a bn_depth workdir (bn_experiment.analyze)."""
  from superconsistency import bn_experiment
  return bn_experiment.analyze(workdir)
