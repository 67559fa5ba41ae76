"""The model contract: every architecture's layer metadata against its params and the parameterization, the
registry's options, the branch multiplier as the forward pass applies it, scanned blocks against a plain loop, and
a residual conv net training through the real loop."""
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superconsistency import config as config_lib
from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import lanes
from superconsistency import layers as layers_lib
from superconsistency import train
from superconsistency import transformers
from conftest import shrunk_quickstart

SPECS = {   # a small input of the kind each architecture reads
    'mlp': data_lib.DataSpec('mnist1d', (40,), 10),
    'simple_convnet': data_lib.DataSpec('cifar10', (32, 32, 3), 10),
    'resnet': data_lib.DataSpec('cifar10', (16, 16, 3), 10),
    'res_mlp': data_lib.DataSpec('mnist1d', (40,), 10),
    'bn_mlp': data_lib.DataSpec('mnist1d', (40,), 10),
    'vit': data_lib.DataSpec('cifar10', (8, 8, 3), 10),
    'gpt2': data_lib.DataSpec('byte_text', (8,), 16, 'language', 'int'),
}
LOOKUPS = ('embed', 'pos_embed', 'cls')   # lookup tables: fan-in 1 whatever their shape


def _build(name, p_name='mup', width=8, depth=3, **options):
  return models.make_model(dict(name=name, **options), SPECS[name], width, depth, pz.Parameterization(p_name),
                           jnp.float32)


def test_every_architecture_is_registered_with_its_options():
  assert set(models.ARCHITECTURES) == set(SPECS) | {'flax'}   # a user's module: tests/flax_bridge_test.py
  assert models.model_options('mlp') == {'activation': 'relu'}
  assert models.model_options('resnet') == {'activation': 'relu', 'layers_per_block': 1, 'norm': 'none',
                                            'stem': 'auto'}
  assert set(models.model_options('gpt2')) == {'heads', 'mlp_ratio', 'positions', 'tied'}
  with pytest.raises(ValueError, match='allowed'):
    models.model_options('res_convnet')   # one name per builder
  # the builders' keyword defaults, for direct calls, are the registry's
  builders = {'simple_convnet': models.simple_convnet, 'resnet': models.resnet, 'bn_mlp': models.bn_mlp,
              'res_mlp': models.res_mlp,
              'vit': transformers.vit, 'gpt2': transformers.gpt2}
  for name, fn in builders.items():
    signature = inspect.signature(fn).parameters
    assert {k: signature[k].default for k in models.model_options(name)} == models.model_options(name), name

@pytest.mark.parametrize('name', sorted(SPECS))
@pytest.mark.parametrize('p_name', ['sp', 'ntk', 'mup'])
def test_layer_metadata_agrees_with_params_and_parameterization(name, p_name):
  width = 8
  m = _build(name, p_name, width)
  params = jax.eval_shape(m.init, jax.random.PRNGKey(0))
  assert set(params) == set(m.layers)
  assert m.kinds == {n: l.kind for n, l in m.layers.items()}
  p = pz.Parameterization(p_name)
  for n, l in m.layers.items():
    assert tuple(params[n].shape) == l.shape and params[n].dtype == jnp.float32, n
    assert l.kind in pz.LAYER_KINDS, n
    one = l.shape[1:] if l.stacked else l.shape
    assert not l.stacked or l.shape[0] == l.stacked, n
    assert l.fan_in == (1 if n in LOOKUPS else math.prod(one[:-1])), n
    assert l.multiplier == pz.forward_multiplier(p, l.kind, l.fan_in, width), n
  assert sum(l.kind == 'readout' for l in m.layers.values()) == 1
  # the blocks of the deep architectures are stacked: one parameter per role, whatever the depth
  deeper = _build(name, p_name, width, 6)
  if name in ('resnet', 'res_mlp', 'bn_mlp', 'vit', 'gpt2'):
    assert set(deeper.layers) == set(m.layers)
    assert any(l.stacked for l in m.layers.values())


def test_make_model_refuses_options_the_model_does_not_read():
  with pytest.raises(ValueError, match=r"model\.norm: not an option of model 'mlp'; its options: activation"):
    _build('mlp', norm='batch')
  with pytest.raises(ValueError, match=r'model\.activation: .*gpt2'):
    _build('gpt2', activation='relu')
  with pytest.raises(ValueError, match='allowed'):
    _build('resnet', norm='group')
  with pytest.raises(ValueError, match='allowed'):
    _build('mlp', activation='swish')
  # absent options take the declared defaults: the same layers as passing them all
  full = _build('resnet', **models.model_options('resnet'))
  assert _build('resnet').layers == full.layers
  assert _build('resnet', layers_per_block=2).layers['stage0_convs'].stacked == 2 * 3


@pytest.mark.parametrize('name', ['mlp', 'simple_convnet', 'bn_mlp'])
def test_models_without_residual_branches_refuse_depth_scaling(name):
  with pytest.raises(ValueError, match='no residual branches'):
    _build(name, 'depth_mup')


@pytest.mark.parametrize('p_name', ['mup', 'depth_mup'])
def test_resnet_forward_applies_the_branch_multiplier(p_name):
  """Each block adds branch · multiplier · conv(relu(z), W_b) to the residual stream z, with branch =
  pz.branch_multiplier(p, L), L = 3 blocks per stage × 3 stages; recomputed here with XLA's own convolution."""
  p = pz.Parameterization(p_name)
  with jax.enable_x64(True):
    m = models.resnet((8, 8, 3), 10, 4, 3, p, jnp.float64)
    params = m.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    _, acts = m.apply(params, x, 1.0, with_activations=True)
    conv = lambda z, w: jax.lax.conv_general_dilated(z, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    branch = pz.branch_multiplier(p, m.depth)
    assert m.depth == 9 and (branch == pytest.approx(1 / 3) if p_name == 'depth_mup' else branch == 1.0)
    mult = m.layers['stage1_convs'].multiplier
    before = [acts['down_1'], acts['stage1_block00'], acts['stage1_block01']]
    for b in range(3):
      update = acts[f'stage1_block{b:02d}'] - before[b]
      expected = branch * mult * conv(jax.nn.relu(before[b]), params['stage1_convs'][b])
      np.testing.assert_allclose(update, expected, rtol=1e-10, atol=1e-12)


def _resnet_loop(m, params, x, norm, blocks, k):
  """resnet's forward pass (CIFAR stem, ReLU) written as a Python loop over the slices of the stacked convs."""
  mult = {n: l.multiplier for n, l in m.layers.items()}
  branch = pz.branch_multiplier(m.param, m.depth)
  normalize = {'none': lambda z: z, 'layer': lambda z: models.layer_norm(z, (1, 2, 3)),
               'batch': models.batch_norm}[norm]
  pre = lambda z: jax.nn.relu(normalize(z))
  z = models._conv(params['stem'], x, mult['stem'], 1)
  for s in range(3):
    if s:
      z = models._conv(params[f'down_{s}'], pre(z), mult[f'down_{s}'], 2)
    for b in range(blocks):
      f = z
      for l in range(k):
        f = models._conv(params[f'stage{s}_convs'][b * k + l], pre(f), mult[f'stage{s}_convs'], 1)
      z = z + branch * f
  return models._dense(params['readout'], pre(z).mean(axis=(1, 2)), mult['readout'])


@pytest.mark.parametrize('norm,k', [('none', 2), ('layer', 1), ('batch', 1)])
def test_scanned_resnet_equals_a_python_loop_over_its_blocks(norm, k):
  with jax.enable_x64(True):
    m = models.resnet((8, 8, 3), 10, 4, 3, pz.Parameterization('depth_mup'), jnp.float64, norm=norm,
                      layers_per_block=k)
    params = m.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 3), jnp.float64)
    np.testing.assert_allclose(m.apply(params, x, 2.0), _resnet_loop(m, params, x, norm, 3, k) / 2.0,
                               rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize('p_name,k', [('depth_mup', 1), ('depth_mup', 2), ('mup', 2)])
def test_scanned_res_mlp_equals_a_python_loop_over_its_blocks(p_name, k):
  """res_mlp against its definition written out: z ← z + β·L^(−α)·F(z), F = k × [relu → dense], readout on relu(z),
  divided by γ0; each block's residual stream as reported in the activations."""
  blocks, p = 5, pz.Parameterization(p_name)
  with jax.enable_x64(True):
    m = models.res_mlp(40, 10, 6, blocks, p, jnp.float64, layers_per_block=k)
    assert m.depth == blocks and m.layers['branch'].stacked == blocks * k and m.layers['branch'].kind == 'branch'
    params = m.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 40), jnp.float64)
    out, acts = m.apply(params, x, 2.0, with_activations=True)
    mult = {n: l.multiplier for n, l in m.layers.items()}
    branch = 1 / math.sqrt(blocks) if p_name == 'depth_mup' else 1.0
    z = mult['input'] * x @ params['input']
    for b in range(blocks):
      f = z
      for l in range(k):
        f = mult['branch'] * jax.nn.relu(f) @ params['branch'][b * k + l]
      z = z + branch * f
      np.testing.assert_allclose(acts[f'block_{b:03d}'], z, rtol=1e-10, atol=1e-13)
    expected = mult['readout'] * jax.nn.relu(z) @ params['readout'] / 2.0
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-13)
    assert list(acts) == ['input'] + [f'block_{b:03d}' for b in range(blocks)] + ['readout']


def test_resnet_shapes_activations_and_features_order():
  m = models.resnet((16, 16, 3), 10, 4, 2, pz.Parameterization('mup'), layers_per_block=2)
  params = m.init(jax.random.PRNGKey(0))
  out, acts = m.apply(params, jnp.ones((3, 16, 16, 3)), 1.0, with_activations=True)
  assert out.shape == (3, 10) and out.dtype == jnp.float32
  assert m.depth == 6 and params['stage2_convs'].shape == (4, 3, 3, 16, 16)
  assert sum(l.stacked for l in m.layers.values() if l.kind == 'branch') == 3 * 2 * 2
  assert list(acts) == ['stem', 'stage0_block00', 'stage0_block01', 'down_1', 'stage1_block00', 'stage1_block01',
                        'down_2', 'stage2_block00', 'stage2_block01', 'readout']
  # the entry before the readout is what the readout reads (before norm and pooling): the last residual stream
  assert acts['stage2_block01'].shape == (3, 4, 4, 16)


def test_simple_convnet_and_mlp_shapes_and_float64():
  p = pz.Parameterization('mup')
  conv = models.simple_convnet((32, 32, 3), 10, 8, p)
  assert conv.apply(conv.init(jax.random.PRNGKey(0)), jnp.ones((2, 32, 32, 3))).shape == (2, 10)
  with pytest.raises(ValueError, match='too small'):
    models.simple_convnet((8, 8, 3), 10, 8, p)
  with jax.enable_x64(True):
    mlp = models.mlp(40, 10, 16, 4, 'tanh', p, jnp.float64)
    params = mlp.init(jax.random.PRNGKey(0))
    assert list(params) == ['layer_00', 'layer_01', 'layer_02', 'layer_03']
    assert params['layer_03'].shape == (16, 10)
    assert mlp.apply(params, jnp.ones((5, 40), jnp.float64)).dtype == jnp.float64


def test_init_layers_draws_each_weight_from_its_own_key():
  """Weight i (a stack's slices counted one by one) is init_std · normal(split(key, count)[i]) bit for bit, however
  the draws are batched (weights of different sizes share a draw); a stacked layer's slices are independent draws.
  The same with jax_threefry_partitionable off, where every size is drawn on its own."""
  p = pz.Parameterization('sp')
  layers = {'a': models.layer(p, 4, 'input', (3, 4)), 'b': models.layer(p, 4, 'branch', (2, 4, 4), stacked=2),
            'c': models.layer(p, 4, 'readout', (4, 3)), 'd': models.layer(p, 4, 'hidden', (50, 4))}
  assert len(layers_lib._draw_groups([12, 16, 16, 12, 200])) == 2   # 12 and 16 share a draw, 200 draws alone
  for partitionable in (True, False):
    with jax.threefry_partitionable(partitionable):
      params = models.init_layers(jax.random.PRNGKey(7), layers, p, jnp.float32)
      keys = jax.random.split(jax.random.PRNGKey(7), 5)
      expected = {'a': jax.random.normal(keys[0], (3, 4)) / math.sqrt(3),
                  'b': jnp.stack([jax.random.normal(keys[i], (4, 4)) / 2.0 for i in (1, 2)]),
                  'c': jax.random.normal(keys[3], (4, 3)) / 2.0,
                  'd': jax.random.normal(keys[4], (50, 4)) / math.sqrt(50)}
      for n in layers:
        np.testing.assert_array_equal(np.asarray(params[n]), np.asarray(expected[n]))


def test_mup_readout_multiplier_and_gamma0():
  p = pz.Parameterization('mup')
  mlp = models.mlp(40, 10, 64, 3, 'relu', p)
  params = mlp.init(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 40))
  np.testing.assert_allclose(mlp.apply(params, x, 4.0), mlp.apply(params, x, 1.0) / 4.0, rtol=1e-6)
  assert mlp.layers['layer_02'].multiplier == pytest.approx(1 / 64)
  assert pz.lr_multiplier(p, 'hidden', 'sgd', 64, 3, gamma0=2.0) == pytest.approx(4 * 64)
  assert pz.lr_multiplier(pz.Parameterization('mup', lr_convention='g'), 'hidden', 'sgd', 64, 3, 2.0) == 64


def test_unknown_names_are_refused():
  with pytest.raises(ValueError, match='allowed'):
    pz.Parameterization('mu-p')
  with pytest.raises(ValueError, match='allowed'):
    pz.lr_multiplier(pz.Parameterization('mup'), 'hidden', 'lion', 8, 1)


def test_resnet_trains_under_depth_mup_on_synthetic_images():
  c = shrunk_quickstart()
  config_lib.set_model(c, 'resnet', layers_per_block=1)
  config_lib.set_data(c, 'synthetic_images', num_eval=16, image_size=8)   # 8×8: a 16th of 32×32's work, same code
  c.measure.loss_batch, c.measure.sharpness_batch, c.measure.num_iters = 16, 8, 4
  data = data_lib.make_data(c.data, c.num_steps, 16, jnp.float32)
  assert data.spec.input_shape == (8, 8, 3)
  model = models.make_model(c.model, data.spec, 4, 1, pz.Parameterization('depth_mup'), jnp.float32)
  _, metrics, diverged = lanes.run_sweep(model, data, c, train.lane_grid((0.05, 0.2), (1.0,), (0,), jnp.float32))
  assert np.all(diverged == -1)
  assert np.all(np.isfinite(metrics['sharpness'])) and np.all(metrics['sharpness'][:, -1] > 0)
  assert np.all(metrics['train_loss'][:, -1] < metrics['train_loss'][:, 0])


@pytest.mark.parametrize('stride', [1, 2, 4])
@pytest.mark.parametrize('size', [32, 7, 8])
def test_conv_by_slicing_equals_lax_conv(stride, size):
  """models._conv (im2col by strided slices, one matmul) against XLA's own SAME convolution, values and gradients."""
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
