"""flax_model: a user's linen (or NNX) module put through the parameterization is the same function, with the same
initial weights, layer metadata, gradients and per-layer rates, as the project's own model of that architecture;
a whole sweep through `model.name = 'flax'` writes the same metrics; the coordinate check tells μP from SP on a
user's module with biases; modules with state or random streams are refused by name."""
import csv
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superconsistency as sc
from superconsistency import coord_check
from superconsistency import data as data_lib
from superconsistency import flax_bridge
from superconsistency import models
from superconsistency import parameterization as pz
import flax_modules
from superconsistency import api
from conftest import ROOT, load_config

MNIST1D = data_lib.DataSpec('mnist1d', (40,), 10)
IMAGES = data_lib.DataSpec('cifar10', (16, 16, 3), 10)


def _pair(name, p_name, width=8, depth=3):
  """(project model, flax model of the user module, {flax param: project param or (project param, slice)})."""
  p = pz.Parameterization(p_name)
  f64 = jnp.float64
  if name == 'mlp':
    ours = models.mlp(40, 10, width, depth, 'relu', p, f64)
    theirs = sc.flax_model(flax_modules.MLP(width, depth), jnp.zeros((2, 40), f64), p, width, depth, dtype=f64)
    names = {f'Dense_{i}.kernel': f'layer_{i:02d}' for i in range(depth)}
  elif name == 'convnet':
    ours = models.simple_convnet((32, 32, 3), 10, width, p, f64)
    theirs = sc.flax_model(flax_modules.ConvNet(width), jnp.zeros((2, 32, 32, 3), f64), p, width, dtype=f64)
    names = {'Conv_0.kernel': 'conv_0', 'Conv_1.kernel': 'conv_1', 'Dense_0.kernel': 'readout'}
  else:   # res_mlp with k layers per block: name 'res_mlp_k1' / 'res_mlp_k2'
    k = int(name[-1])
    ours = models.res_mlp(40, 10, width, depth, p, f64, layers_per_block=k)
    theirs = sc.flax_model(flax_modules.ResMLP(width, depth, k), jnp.zeros((2, 40), f64), p, width, depth,
                           kinds=(('block*', 'branch'),), branch_out=(f'block*_dense{k - 1}.kernel',), dtype=f64)
    names = {'Dense_0.kernel': 'input', 'Dense_1.kernel': 'readout'}
    names.update({f'block{b}_dense{l}.kernel': ('branch', b * k + l) for b in range(depth) for l in range(k)})
  return ours, theirs, names


def _theirs_from_ours(params, names):
  return {f: params[o] if isinstance(o, str) else params[o[0]][o[1]] for f, o in names.items()}


CASES = [('mlp', 'sp'), ('mlp', 'ntk'), ('mlp', 'mup'), ('convnet', 'mup'), ('convnet', 'ntk'),
         ('res_mlp_k1', 'depth_mup'), ('res_mlp_k2', 'depth_mup'), ('res_mlp_k1', 'mup')]


@pytest.mark.parametrize('name,p_name', CASES)
def test_a_linen_module_is_the_projects_model(name, p_name):
  """float64: the same initial weights from the same key (flax_model draws weights as layers.init_layers does), the
  same kinds, fan-ins, forward multipliers and SGD/Adam rates per weight, the same outputs at γ0 = 1 and 2, and the
  same gradients (so any optimizer that reads the layer metadata takes the same steps)."""
  with jax.enable_x64(True):
    ours, theirs, names = _pair(name, p_name)
    assert set(theirs.layers) == set(names) and theirs.depth == ours.depth
    key = jax.random.PRNGKey(3)
    p_ours, p_theirs = ours.init(key), theirs.init(key)
    mapped = _theirs_from_ours(p_ours, names)
    for f, o in names.items():
      o_name = o if isinstance(o, str) else o[0]
      a, b = theirs.layers[f], ours.layers[o_name]
      assert (a.kind, a.fan_in, a.multiplier) == (b.kind, b.fan_in, b.multiplier), f
      for opt in ('sgd', 'adam'):
        assert pz.lr_multiplier(theirs.param, a.kind, opt, 8, theirs.depth) == \
            pz.lr_multiplier(ours.param, b.kind, opt, 8, ours.depth), (f, opt)
      np.testing.assert_array_equal(p_theirs[f], mapped[f])
    x = jax.random.normal(jax.random.PRNGKey(4), (5, *((40,) if 'mlp' in name else (32, 32, 3))), jnp.float64)
    for gamma0 in (1.0, 2.0):
      np.testing.assert_allclose(theirs.apply(p_theirs, x, gamma0), ours.apply(p_ours, x, gamma0), rtol=1e-10,
                                 atol=1e-12)
    loss = lambda m: lambda params: jnp.sum(jnp.sin(m.apply(params, x, 1.0)))
    g_ours = _theirs_from_ours(jax.grad(loss(ours))(p_ours), names)
    g_theirs = jax.grad(loss(theirs))(p_theirs)
    for f in names:
      np.testing.assert_allclose(g_theirs[f], g_ours[f], rtol=1e-9, atol=1e-12, err_msg=f)


def _metrics(workdir):
  with open(f'{workdir}/metrics.csv') as f:
    return list(csv.DictReader(f))


NUMERIC = ('train_loss', 'batch_loss', 'eval_loss', 'eval_accuracy', 'sharpness', 'lr_sharpness', 'feature_movement')


@pytest.mark.parametrize('which', ['mlp', pytest.param('res_mlp', marks=pytest.mark.slow),
                                   pytest.param('nnx_mlp', marks=pytest.mark.slow)])   # slow: ~40 s each
def test_a_sweep_of_the_user_module_writes_the_projects_metrics(which, tmp_path):
  """The whole path — config `model.name = 'flax'`, superconsistency.run, the vmapped lanes, the in-loop sharpness
  — on the quickstart's MLP (μP and NTP; as a linen and as an NNX module) and on depth_mlp's residual MLP
  (Depth-μP, 2 depths), float64: every
  metric of every row equals the project model's run to 1e-6. One exception: the residual MLP's parameters are one
  stacked array in the project and one array per block in the user's module, so Lanczos starts from a differently
  laid-out random vector and its 8-iteration λ_max estimate differs (measured up to 3% relative): sharpness to 1e-4
  there with Lanczos run to convergence (40 iterations). And feature_movement reads the activation before the
  readout's: the project's res_mlp reports the residual stream there, a linen module the last submodule's output
  (the last branch layer; the residual sum is not a module output), so it is compared on the MLP only."""
  from conftest import shrunk_quickstart
  from superconsistency import config as config_lib
  cfg = shrunk_quickstart()
  cfg.dtype = 'float64'
  cfg.coord_check.enabled = False
  if which == 'res_mlp':
    config_lib.set_model(cfg, 'res_mlp', layers_per_block=2)
    cfg.parameterizations, cfg.depths, cfg.widths = ('depth_mup',), (2, 4), (8,)
    cfg.sweep.lrs.depth_mup = (0.5, 2.0)
    cfg.measure.num_iters = 40   # Lanczos converged: its start vector's layout differs (see the docstring)
    ours = cfg
    theirs = api.config(cfg)
    config_lib.set_model(theirs, 'flax', module='flax_modules:ResMLP', kwargs={'k': 2}, depth_arg='depth',
                         kinds=(('block*', 'branch'),), branch_out=('block*_dense1.kernel',))
  else:
    ours = cfg
    theirs = api.config(cfg)
    config_lib.set_model(theirs, 'flax', module='flax_modules:' + ('NNXMLP' if which == 'nnx_mlp' else 'MLP'),
                         depth_arg='depth')
  sc.run(ours, str(tmp_path / 'ours'), plots=False)
  sc.run(theirs, str(tmp_path / 'theirs'), plots=False)
  a, b = _metrics(tmp_path / 'ours'), _metrics(tmp_path / 'theirs')
  assert len(a) == len(b) > 0
  for ra, rb in zip(a, b):
    for key in ('parameterization', 'width', 'depth', 'depth_L', 'lr', 'seed', 'step', 'diverged'):
      assert ra[key] == rb[key], key
    for key in NUMERIC:
      if which == 'res_mlp' and key == 'feature_movement':
        continue   # the representation it reads differs (see the docstring)
      x, y = float(ra[key]), float(rb[key])
      rel = 1e-4 if which == "res_mlp" and "sharpness" in key else 1e-6
      assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=rel, abs=1e-9), (key, ra, rb)
  # the Python API reads it back, with the analysis functions on it
  r = sc.load(str(tmp_path / 'theirs'))
  assert r.config['model']['name'] == 'flax' and len(r.rows) == len(b)
  assert set(r.column('parameterization')) == set(cfg.parameterizations)
  assert set(r.transfer()) == set(sc.load(str(tmp_path / 'ours')).transfer())


def test_coordinate_check_on_a_user_module_with_biases_passes_under_mup_and_fails_under_sp():
  """The example's linen MLP with biases (docs/examples/linen_mlp.py; the project's models have none) through the
  width coordinate check at a fixed rate: under μP
  the change of every layer's output after a few SGD steps is width-independent; under SP the readout's change
  grows with width. Measured slopes in log N (widths 128–1024): μP −0.03, +0.00, −0.03 (input, hidden, readout);
  SP −0.59, +0.23, +0.56. Before vectors took their module's kind, μP's readout bias (trained at the hidden rule's
  η·N) made the readout's change grow like N^2.1: this check caught it."""
  from superconsistency import config as config_lib
  cfg = load_config('quickstart')
  config_lib.set_model(cfg, 'flax', module=os.path.join(ROOT, 'docs/examples/linen_mlp.py:MLP'))
  cfg.coord_check.widths, cfg.coord_check.seeds, cfg.coord_check.steps = (128, 256, 512, 1024), (0, 1), 3
  data = data_lib.make_data(cfg.data, 0, cfg.coord_check.batch, jnp.float32)
  slopes = {p: {s['layer']: s for s in coord_check.run(cfg, data, pz.Parameterization(p), 1)[1]}
            for p in ('mup', 'sp')}
  assert set(slopes['mup']) == {'Dense_0.kernel', 'Dense_1.kernel', 'Dense_2.kernel'}
  for layer, s in slopes['mup'].items():
    assert abs(s['delta_slope']) < 0.2, s
  assert slopes['sp']['Dense_2.kernel']['delta_slope'] > 0.4, slopes['sp']['Dense_2.kernel']


def test_an_nnx_module_goes_through_the_same_entry_point():
  """NNX: split, its Param state as the parameter tree, merged back in apply; the same initial weights, outputs
  and per-layer activations (nnx.capture) as the project's MLP."""
  from flax import nnx
  p = pz.Parameterization('mup')
  with jax.enable_x64(True):
    ours = models.mlp(40, 10, 8, 3, 'relu', p, jnp.float64)
    theirs = sc.flax_model(flax_modules.NNXMLP(8, rngs=nnx.Rngs(0)), jnp.zeros((2, 40)), p, 8, 3, dtype=jnp.float64)
    assert list(theirs.layers) == ['layers.0.kernel', 'layers.1.kernel', 'layers.2.kernel']
    assert [l.kind for l in theirs.layers.values()] == ['input', 'hidden', 'readout']
    key, x = jax.random.PRNGKey(0), jax.random.normal(jax.random.PRNGKey(1), (4, 40), jnp.float64)
    p_ours, p_theirs = ours.init(key), theirs.init(key)
    np.testing.assert_array_equal(p_theirs['layers.1.kernel'], p_ours['layer_01'])
    np.testing.assert_allclose(theirs.apply(p_theirs, x, 2.0), ours.apply(p_ours, x, 2.0), rtol=1e-10)
    out, acts = theirs.apply(p_theirs, x, 1.0, with_activations=True)
    _, acts_ours = ours.apply(p_ours, x, 1.0, with_activations=True)
    assert list(acts) == ['layers.0.kernel', 'layers.1.kernel', 'layers.2.kernel']   # in forward order
    for a, b in zip(acts.values(), acts_ours.values()):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize('module,match', [
    (flax_modules.WithBatchNorm(8), "batch_stats"),
    (flax_modules.WithDropout(8), "dropout"),
])
def test_linen_modules_with_state_or_random_streams_are_refused_by_name(module, match):
  with pytest.raises(ValueError, match=match):
    sc.flax_model(module, jnp.zeros((2, 40)), pz.Parameterization('mup'), 8)


def test_an_nnx_module_with_batch_statistics_is_refused():
  from flax import nnx
  with pytest.raises(ValueError, match='state besides nnx.Param'):
    sc.flax_model(flax_modules.NNXWithBatchNorm(8, rngs=nnx.Rngs(0)), jnp.zeros((2, 40)), pz.Parameterization('mup'), 8)


def test_kinds_branches_and_module_specs_are_checked():
  x, mup = jnp.zeros((2, 40)), pz.Parameterization('mup')
  m = sc.flax_model(flax_modules.MLP(8), x, mup, 8, kinds=(('Dense_1.kernel', 'readout'), ('Dense_2.kernel', 'hidden')))
  assert m.kinds['Dense_1.kernel'] == 'readout' and m.kinds['Dense_2.kernel'] == 'hidden'
  with pytest.raises(ValueError, match="matches no parameter"):
    sc.flax_model(flax_modules.MLP(8), x, mup, 8, kinds=(('Conv_*', 'hidden'),))
  with pytest.raises(ValueError, match="unknown kind 'deep'"):
    sc.flax_model(flax_modules.MLP(8), x, mup, 8, kinds=(('Dense_1.kernel', 'deep'),))
  with pytest.raises(ValueError, match='exactly one weight must be the readout'):
    sc.flax_model(flax_modules.MLP(8), x, mup, 8, kinds=(('Dense_1.kernel', 'readout'),))
  with pytest.raises(ValueError, match='mark the last layer of each branch'):
    sc.flax_model(flax_modules.ResMLP(8, 2), x, pz.Parameterization('depth_mup'), 8, 2)
  with pytest.raises(ValueError, match='is not'):
    flax_bridge.import_module_class('flax_modules.MLP')
  with pytest.raises(ValueError, match='has no'):
    flax_bridge.import_module_class('flax_modules:Transformer')
  with pytest.raises(ValueError, match='cannot import'):
    flax_bridge.import_module_class('no_such_package_xyz:MLP')
  with pytest.raises(ValueError, match='no file'):
    flax_bridge.import_module_class('nowhere/model.py:MLP')
  with pytest.raises(ValueError, match='cannot construct'):
    flax_bridge.build_from_config(MNIST1D, 8, 1, mup, jnp.float32, module='flax_modules:MLP',
                                  kwargs={'hidden': 3}, width_arg='width', depth_arg='', kinds=(), branch_out=())


def test_a_flax_config_is_checked_before_any_work():
  from superconsistency import config as config_lib
  cfg = load_config('flax_example')
  config_lib.validate(cfg)
  for field, value, match in (('module', '', 'is empty'), ('module', 'docs/examples/missing.py:MLP', 'no file'),
                              ('module', 'docs/examples/linen_mlp.py:Transformer', 'has no')):
    bad = api.config(cfg, {f'model.{field}': value})
    with pytest.raises(config_lib.ConfigError, match=f'config.model.{field}: .*{match}'):
      config_lib.validate(bad)
  with pytest.raises(config_lib.ConfigError, match='model.depth_arg: is empty, but depths'):
    config_lib.validate(api.config(cfg, {'depths': (1, 2)}))
  with pytest.raises(config_lib.ConfigError, match="model.kwargz: unknown field"):
    api.config(cfg, {'model.kwargz': {}})


def test_an_embedding_table_is_a_lookup_of_fan_in_one():
  """nn.Embed's table is read by index, not multiplied: fan-in 1 (as the project's gpt2 embeds), so under μP its
  forward multiplier is 1 and its init is O(1), whatever the vocabulary size."""
  from flax import linen as nn

  class TokenModel(nn.Module):
    width: int

    @nn.compact
    def __call__(self, ids):
      h = nn.Embed(50, self.width)(ids).mean(axis=1)
      return nn.Dense(50, use_bias=False)(nn.relu(nn.Dense(self.width, use_bias=False)(h)))

  m = sc.flax_model(TokenModel(16), jnp.zeros((2, 8), jnp.int32), pz.Parameterization('mup'), 16)
  table = m.layers['Embed_0.embedding']
  assert (table.kind, table.fan_in) == ('input', 1)
  assert table.multiplier == pz.forward_multiplier(pz.Parameterization('mup'), 'input', 1, 16)
  # linen names the readout Dense_0 (constructed first) but creates its weight last (called last): the kinds follow
  # the order in which the parameters were created, the forward order, not the names
  assert m.kinds['Dense_1.kernel'] == 'hidden' and m.kinds['Dense_0.kernel'] == 'readout'
  out = m.apply(m.init(jax.random.PRNGKey(0)), jnp.arange(16).reshape(2, 8) % 50)
  assert out.shape == (2, 50) and bool(jnp.isfinite(out).all())
