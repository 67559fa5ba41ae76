"""Shapes, dtypes and multipliers of the three architectures; a conv net trains through the real loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import train
from conftest import shrunk_quickstart


@pytest.mark.parametrize('p_name', pz.NAMES)
def test_res_convnet_shapes_and_branch_multiplier(p_name):
  p = pz.Parameterization(p_name, alpha=0.5, beta=1.0)
  m = models.res_convnet((16, 16, 3), 10, 4, 2, 2, p)
  params = m.init(jax.random.PRNGKey(0))
  out, acts = m.apply(params, jnp.ones((3, 16, 16, 3)), 1.0, with_activations=True)
  assert out.shape == (3, 10) and out.dtype == jnp.float32
  assert m.depth == 6 and params['stage2_block01_conv1'].shape == (3, 3, 16, 16)
  assert sum(k == 'branch' for k in m.kinds.values()) == 3 * 2 * 2
  expected = 6 ** -0.5 if p_name == 'depth_mup' else 1.0
  assert pz.branch_multiplier(p, m.depth) == pytest.approx(expected)


def test_simple_convnet_and_mlp_shapes_and_float64():
  p = pz.Parameterization('mup')
  conv = models.simple_convnet((32, 32, 3), 10, 8, p)
  assert conv.apply(conv.init(jax.random.PRNGKey(0)), jnp.ones((2, 32, 32, 3))).shape == (2, 10)
  with pytest.raises(ValueError, match='too small'):
    models.simple_convnet((8, 8, 3), 10, 8, p)
  with jax.enable_x64(True):
    mlp = models.mlp(40, 10, 16, 4, 'tanh', p, jnp.float64)
    params = mlp.init(jax.random.PRNGKey(0))
    assert params['layer_03'].shape == (16, 10)
    assert mlp.apply(params, jnp.ones((5, 40), jnp.float64)).dtype == jnp.float64


def test_mup_readout_multiplier_and_gamma0():
  p = pz.Parameterization('mup')
  mlp = models.mlp(40, 10, 64, 3, 'relu', p)
  params = mlp.init(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 40))
  np.testing.assert_allclose(mlp.apply(params, x, 4.0), mlp.apply(params, x, 1.0) / 4.0, rtol=1e-6)
  assert pz.forward_multiplier(p, 'readout', 64, 64) == pytest.approx(1 / 64)
  assert pz.lr_multiplier(p, 'hidden', 'sgd', 64, 3, gamma0=2.0) == pytest.approx(4 * 64)
  assert pz.lr_multiplier(pz.Parameterization('mup', lr_convention='g'), 'hidden', 'sgd', 64, 3, 2.0) == 64


def test_unknown_names_are_refused():
  with pytest.raises(ValueError, match='allowed'):
    pz.Parameterization('mu-p')
  with pytest.raises(ValueError, match='allowed'):
    pz.lr_multiplier(pz.Parameterization('mup'), 'hidden', 'lion', 8, 1)


def test_res_convnet_trains_under_depth_mup_on_synthetic_images():
  c = shrunk_quickstart()
  c.model.name, c.model.layers_per_block = 'res_convnet', 1
  c.data.name = 'synthetic_images'
  c.measure.loss_batch, c.measure.sharpness_batch, c.measure.num_iters = 16, 8, 4
  c.data.num_eval = 16
  data = data_lib.make_data(c.data, c.num_steps, 16, jnp.float32)
  assert data.spec.input_shape == (32, 32, 3)
  model = models.make_model(c.model, data.spec, 4, 1, pz.Parameterization('depth_mup'), jnp.float32)
  _, metrics, diverged = train.run_sweep(model, data, c, train.lane_grid((0.05, 0.2), (1.0,), (0,), jnp.float32))
  assert np.all(diverged == -1)
  assert np.all(np.isfinite(metrics['sharpness'])) and np.all(metrics['sharpness'][:, -1] > 0)
  assert np.all(metrics['train_loss'][:, -1] < metrics['train_loss'][:, 0])


@pytest.mark.parametrize('stride', [1, 2, 4])
@pytest.mark.parametrize('size', [32, 7, 8])
def test_conv_by_slicing_equals_lax_conv(stride, size):
  """models._conv (im2col by strided slices, one matmul) against XLA's own SAME convolution, values and gradients."""
  import numpy as np
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, size, size, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 5, 7)), jnp.float32)
  ref = lambda w, x: jax.lax.conv_general_dilated(x, w, (stride, stride), 'SAME',
                                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  ours = lambda w, x: models._conv(w, x, 1.0, stride)
  np.testing.assert_allclose(ours(w, x), ref(w, x), rtol=1e-5, atol=1e-4)
  g_ours = jax.grad(lambda w, x: jnp.sum(jnp.sin(ours(w, x))), argnums=(0, 1))(w, x)
  g_ref = jax.grad(lambda w, x: jnp.sum(jnp.sin(ref(w, x))), argnums=(0, 1))(w, x)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
