"""Measurables of [BN] (batch norm at depth): the isometry gap of a batch and per-layer gradient norms.

[BN] explains why a BN-MLP with orthogonal weights trains at any depth: BN pushes the batch's Gram matrix towards a
multiple of the identity (the isometry gap φ decays with depth), and once the representations are isometric the
gradients of the first layers stay bounded instead of growing exponentially in depth. These functions measure both
sides of that claim. All are pure JAX and jittable; the per-layer results are dicts keyed by layer name.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


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


def _weight_multipliers(model):
  """{layer: the forward multiplier the model applies to it} (Model.layers)."""
  return {name: l.multiplier for name, l in model.layers.items()}


def layer_gradient_norms(model, params, x, y, loss_fn, gamma0=1.0, effective: bool = True):
  """{layer: ‖∇_{W_ℓ} loss‖_F} on the batch (x, y); a stacked layer (Layer.stacked, e.g. bn_mlp's `hidden`) gives
  the vector of its slices' norms, entry i for block i + 1.

  effective=True (the default, and what the tests use): the gradient with respect to the effective weight
  W_ℓ = multiplier × raw, i.e. the matrix the forward pass applies, as in [BN]'s ‖∇_{W_ℓ}‖; it does not depend on
  how a parameterization splits W_ℓ into multiplier and raw weight. Since ∂/∂W_raw = multiplier·∂/∂W_eff, it is the
  raw gradient divided by the multiplier. effective=False: the raw gradient, what the optimizer sees. γ0 is part of
  the readout's forward pass, not of its weight."""
  grads = jax.grad(lambda p: loss_fn(model.apply(p, x, gamma0), y))(params)
  mults = _weight_multipliers(model) if effective else {n: 1.0 for n in params}

  def norm(name, g):
    per_slice = tuple(range(1 if model.layers[name].stacked else 0, g.ndim))
    return jnp.sqrt(jnp.sum(jnp.square(g), per_slice)) / mults[name]
  return {n: norm(n, g) for n, g in grads.items()}


def layer_isometry_gaps(model, params, x):
  """{block: isometry_gap} of the batch representation after each block: the activations the model reports that
  are not a weight layer's output (bn_mlp's `block_001`…, after BN and activation; resnet's residual stream
  after each block)."""
  _, acts = model.apply(params, x, 1.0, with_activations=True)
  return {n: isometry_gap(a) for n, a in acts.items() if n not in model.kinds}
