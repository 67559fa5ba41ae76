"""The BN-MLP of [BN] and its measurables: isometry gap, orthogonal init, the forward pass against numpy, and the
paper's result at init (first-layer gradients stay bounded in depth with orthogonal weights, grow with Gaussian)."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from superconsistency import bn_depth
from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz


def _gap_numpy(h):
  g = np.asarray(h, np.float64) @ np.asarray(h, np.float64).T
  n = g.shape[0]
  return math.log((np.trace(g) / n) / np.linalg.det(g) ** (1.0 / n))


def test_isometry_gap_against_numpy_zero_iff_isometric():
  h = jax.random.normal(jax.random.PRNGKey(0), (8, 16))
  assert float(bn_depth.isometry_gap(h)) == pytest.approx(_gap_numpy(h), rel=1e-4)
  assert float(bn_depth.isometry_gap(h)) > 0.1
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 8)))   # 16×8, orthonormal columns
  assert abs(float(bn_depth.isometry_gap(jnp.asarray(3.7 * q.T, jnp.float32)))) < 1e-5   # 8 orthogonal rows
  assert float(bn_depth.isometry_gap(jnp.asarray(q, jnp.float32))) > 5.0   # 16 samples in 8 dims: singular G
  conv = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 3, 2))   # trailing axes are flattened into features
  assert float(bn_depth.isometry_gap(conv)) == pytest.approx(_gap_numpy(np.asarray(conv).reshape(4, -1)), rel=1e-4)


@pytest.mark.parametrize('p_name', ['sp', 'ntk', 'mup'])
def test_orthogonal_init_gives_orthogonal_effective_weights(p_name):
  p = pz.Parameterization(p_name)
  n = 32
  m = models.bn_mlp(20, 10, n, 3, p, activation='linear')
  params = m.init(jax.random.PRNGKey(0))
  fan_in = {'input': 20, 'hidden': n, 'readout': n}
  eff = {k: np.asarray(w, np.float64) * pz.forward_multiplier(p, k, fan_in[k], n) for k, w in params.items()}
  assert eff['hidden'].shape == (3, n, n)
  for w in eff['hidden']:
    np.testing.assert_allclose(w.T @ w, np.eye(n), atol=1e-5)
  np.testing.assert_allclose(eff['input'] @ eff['input'].T, np.eye(20), atol=1e-5)      # 20×32: orthonormal rows
  readout_scale = 1.0 / n if p.mean_field else 1.0   # μP keeps its vanishing readout: semi-orthogonal / √N
  np.testing.assert_allclose(eff['readout'].T @ eff['readout'], readout_scale * np.eye(10), atol=1e-5)
  assert not np.allclose(eff['hidden'][0], eff['hidden'][1])
  gauss = models.bn_mlp(20, 10, n, 3, p, activation='linear', weight_init='gaussian').init(jax.random.PRNGKey(0))
  assert float(jnp.std(gauss['hidden'][0])) == pytest.approx(pz.init_std(p, 'hidden', n), rel=0.1)


def _reference_forward(params, x, p, n, activation, center, k):
  """The BN-MLP written out in numpy float64, from the definition in the docstring: a loop over the slices of the
  stacked hidden weights."""
  act = {'tanh': np.tanh, 'sin': np.sin, 'linear': lambda v: v, 'relu': lambda v: np.maximum(v, 0)}[activation]
  w = {name: np.asarray(v, np.float64) for name, v in params.items()}
  mult = lambda name: pz.forward_multiplier(p, name, w[name].shape[-2], n)   # the kinds are the names here
  h = np.asarray(x, np.float64) @ w['input'] * mult('input')
  depth = w['hidden'].shape[0]
  for l in range(1, depth + 1):
    z = h @ w['hidden'][l - 1] * mult('hidden')
    if center:
      z = z - z.mean(0)
    z = z / np.sqrt((z ** 2).mean(0) + 1e-5)
    h = act(l ** (-k) * z)
  return h @ w['readout'] * mult('readout')


@pytest.mark.parametrize('activation,center,k', [('tanh', False, 0.4), ('sin', True, 0.0), ('relu', True, 0.3)])
def test_forward_matches_numpy(activation, center, k):
  p = pz.Parameterization('ntk')
  m = models.bn_mlp(12, 5, 16, 4, p, activation=activation, bn_center=center, shaping_k=k, weight_init='gaussian')
  params = m.init(jax.random.PRNGKey(3))
  x = jax.random.normal(jax.random.PRNGKey(4), (10, 12))
  out, acts = m.apply(params, x, 2.0, with_activations=True)
  np.testing.assert_allclose(out, _reference_forward(params, x, p, 16, activation, center, k) / 2.0,
                             rtol=2e-4, atol=1e-5)
  assert list(acts) == ['input'] + [f'block_{l:03d}' for l in range(1, 5)] + ['readout']
  assert m.depth == 4 and m.kinds == {'input': 'input', 'hidden': 'hidden', 'readout': 'readout'}
  assert m.layers['hidden'].stacked == 4 and m.layers['hidden'].shape == (4, 16, 16)


def test_make_model_reads_the_config_and_refuses_what_cannot_run():
  cfg = ml_collections.ConfigDict(dict(name='bn_mlp', activation='sin', shaping_k=0.4))   # no weight_init/bn_center
  m = models.make_model(cfg, data_lib.DataSpec('mnist1d', (40,), 10), 32, 5, pz.Parameterization('mup'), jnp.float32)
  params = m.init(jax.random.PRNGKey(0))
  assert params['input'].shape == (40, 32) and params['readout'].shape == (32, 10) and m.depth == 5
  eff = params['hidden'][2] / math.sqrt(32)        # orthogonal by default
  np.testing.assert_allclose(eff.T @ eff, np.eye(32), atol=1e-5)
  with pytest.raises(ValueError, match='residual'):
    models.bn_mlp(40, 10, 32, 5, pz.Parameterization('depth_mup'))
  with pytest.raises(ValueError, match='allowed'):
    models.bn_mlp(40, 10, 32, 5, pz.Parameterization('mup'), weight_init='xavier')


def test_gradient_norms_are_of_the_effective_weights():
  """sp and ntk with the same key draw the same effective orthogonal weights, so the effective gradients agree and
  the raw ones differ by the multiplier."""
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 24))
  y = jnp.arange(16) % 10
  out = {}
  for name in ('sp', 'ntk'):
    m = models.bn_mlp(24, 10, 32, 3, pz.Parameterization(name), activation='tanh')
    params = m.init(jax.random.PRNGKey(0))
    out[name] = (bn_depth.layer_gradient_norms(m, params, x, y, models.cross_entropy),
                 bn_depth.layer_gradient_norms(m, params, x, y, models.cross_entropy, effective=False))
  pick = lambda norms, layer: norms[layer][1] if layer == 'hidden' else norms[layer]   # hidden: the second block's
  assert out['sp'][0]['hidden'].shape == (3,)                                       # one norm per block
  for layer, fan_in in (('input', 24), ('hidden', 32), ('readout', 32)):
    assert float(pick(out['ntk'][0], layer)) == pytest.approx(float(pick(out['sp'][0], layer)), rel=1e-3)
    assert float(pick(out['ntk'][1], layer)) == pytest.approx(float(pick(out['sp'][1], layer)) / math.sqrt(fan_in),
                                                              rel=1e-3)


def test_bn_depth_result_at_init():
  """[BN] at init: batch = width = 32, linear activations, BN without centering, linearly independent inputs.

  Measured (sp, mean over seeds 0 and 1, log‖∇_{W_1}‖ of the first BN block's effective weight) at depths
  10 / 50 / 100 / 200: orthogonal 0.01 / 0.03 / -0.01 / -0.02 (flat); Gaussian 0.42 / 0.53 / 1.05 / 2.64 (a slope of
  0.012 per layer). Isometry gap of correlated inputs (gap 2.87), blocks 1 → 50: orthogonal 2.23 → 0.60 (decays),
  Gaussian 4.45 → 10.4 (grows: rank collapse).
  """
  n, depths, seeds = 32, (10, 50, 100, 200), (0, 1)
  x = jax.random.normal(jax.random.PRNGKey(1), (n, n))
  y = jax.random.randint(jax.random.PRNGKey(2), (n,), 0, 10)
  p = pz.Parameterization('sp')
  log_norm = {'orthogonal': [], 'gaussian': []}
  for depth in depths:
    m = models.bn_mlp(n, 10, n, depth, p, activation='linear', weight_init='orthogonal')
    init_gauss = models.bn_mlp(n, 10, n, depth, p, activation='linear', weight_init='gaussian').init
    grad_w1 = jax.jit(lambda params: bn_depth.layer_gradient_norms(m, params, x, y, models.cross_entropy)['hidden'][0])
    for init, key in (('orthogonal', m.init), ('gaussian', init_gauss)):
      log_norm[init].append(np.mean([np.log(float(grad_w1(key(jax.random.PRNGKey(s))))) for s in seeds]))
  ortho, gauss = np.array(log_norm['orthogonal']), np.array(log_norm['gaussian'])
  assert ortho.max() - ortho.min() < 0.5, ortho
  assert np.polyfit(depths, gauss, 1)[0] > 0.005, gauss
  assert gauss[-1] - ortho[-1] > 1.0, (gauss, ortho)

  # in float64: the Gaussian network's Gram matrices approach singularity, where float32 rounding (which changes
  # with XLA's optimization level) can turn a finite log-det into -inf
  with jax.enable_x64(True):
    x_corr = (x + 2.0 * jax.random.normal(jax.random.PRNGKey(5), (1, n))).astype(jnp.float64)   # gap(x) ≈ 2.9
    gaps_by_init = {}
    for init in ('orthogonal', 'gaussian'):
      m = models.bn_mlp(n, 10, n, 50, p, jnp.float64, activation='linear', weight_init=init)
      gaps_by_init[init] = jax.jit(lambda params: bn_depth.layer_isometry_gaps(m, params, x_corr))(
          m.init(jax.random.PRNGKey(0)))
  for init, shrinks in (('orthogonal', True), ('gaussian', False)):
    gaps = gaps_by_init[init]
    assert sorted(gaps) == [f'block_{l:03d}' for l in range(1, 51)]
    first, last = float(gaps['block_001']), float(gaps['block_050'])
    assert (last < 0.5 * first) if shrinks else (last > first), (init, first, last)


def test_vmapped_orthogonal_init_has_no_lapack_call():
  """jaxlib 0.10's batched CPU LAPACK kernels can deadlock XLA's thread pool (a vmapped QR init hung a run here), so
  the Haar init is plain XLA ops."""
  m = models.bn_mlp(12, 10, 16, 3, pz.Parameterization('sp'), activation='linear', weight_init='orthogonal')
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  assert 'custom_call' not in jax.jit(jax.vmap(m.init)).lower(keys).as_text()
  q = np.asarray(jax.vmap(m.init)(keys)['hidden'][1, 0])
  q = q / np.linalg.norm(q[:, 0])
  np.testing.assert_allclose(q.T @ q, np.eye(16), atol=1e-5)


def test_stacked_weights_measurement_against_numpy():
  """measure.stacked_weights: the orthogonality gap (0 for orthogonal at any scale, ≈ 1 for Gaussian) and the
  first and last hidden weights' gradient norms, against numpy and jax.grad computed here."""
  import types
  from superconsistency import measurements
  with jax.enable_x64(True):
    _check_stacked_weights(measurements, types)


def _check_stacked_weights(measurements, types):
  model = models.bn_mlp(6, 3, 16, 4, pz.Parameterization('sp'), jnp.float64, activation='linear')
  params = model.init(jax.random.PRNGKey(0))
  params['hidden'] = params['hidden'].at[2].multiply(5.0)                 # BN makes the scale irrelevant
  rng = np.random.default_rng(0)
  gauss = rng.normal(size=(16, 16)) / 4.0
  params['hidden'] = params['hidden'].at[3].set(gauss)
  x, y = jnp.asarray(rng.normal(size=(16, 6))), jnp.asarray(rng.integers(0, 3, 16))
  loss_on = lambda p, xb, yb: models.cross_entropy(model.apply(p, xb), yb)
  ctx = types.SimpleNamespace(state=types.SimpleNamespace(params=params), loss_on=loss_on, loss_batch=(x, y))
  got = measurements._stacked_weights(ctx, {})

  def gap(w):
    g = w.T @ w
    return np.linalg.norm(g / (np.trace(g) / 16) - np.eye(16)) / 4.0

  gaps = [gap(np.asarray(w)) for w in params['hidden']]
  assert max(gaps[:3]) < 1e-12 and 0.5 < gaps[3] < 1.5                    # orthogonal ×3, one Gaussian
  assert float(got['orthogonality_gap']) == pytest.approx(np.mean(gaps), rel=1e-10)
  assert float(got['orthogonality_gap_max']) == pytest.approx(gaps[3], rel=1e-10)
  g = jax.grad(loss_on)(params, x, y)['hidden']
  assert float(got['log_grad_w1']) == pytest.approx(math.log(np.linalg.norm(np.asarray(g[0]))), rel=1e-10)
  assert float(got['log_grad_last']) == pytest.approx(math.log(np.linalg.norm(np.asarray(g[3]))), rel=1e-10)
