"""`resnet` with batch/layer norm and a CIFAR or ImageNet stem. Shapes and dtypes, the norms against
numpy, batch statistics, and coordinate checks in width (μP) and in depth (Depth-μP against plain μP)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superconsistency import config as config_lib
from superconsistency import coord_check
from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz
from conftest import load_config


def _shapes(m, x):
  """Output and activation shapes and dtypes of init + apply, traced without compiling."""
  return jax.eval_shape(lambda k, x: m.apply(m.init(k), x, 1.0, with_activations=True), jax.random.PRNGKey(0), x)


@pytest.mark.parametrize('norm', models.NORMS)
def test_shapes_and_dtypes_for_both_stems(norm):
  p = pz.Parameterization('mup')
  for side, stem_side in ((32, 32), (64, 16)):   # 64×64 takes the ImageNet stem: stride 2, then 2×2 max-pool
    for dtype in (jnp.float32, jnp.float64):
      with jax.enable_x64(dtype == jnp.float64):
        m = models.resnet((side, side, 3), 10, 4, 1, p, dtype, norm=norm)
        out, acts = _shapes(m, jax.ShapeDtypeStruct((2, side, side, 3), dtype))
        assert out.shape == (2, 10) and out.dtype == dtype, (side, dtype)
        assert all(a.dtype == dtype for a in acts.values())
        assert acts['stem'].shape == (2, stem_side, stem_side, 4)
        assert acts['stage2_block00'].shape == (2, stem_side // 4, stem_side // 4, 16)
  with jax.enable_x64(True):   # and one real float64 forward pass through the ImageNet stem
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3), jnp.float64)
    out = jax.jit(m.apply)(m.init(jax.random.PRNGKey(0)), x)
    assert out.dtype == jnp.float64 and np.all(np.isfinite(out))
  _, acts = _shapes(models.resnet((64, 64, 3), 10, 4, 1, p, norm=norm, stem='cifar'),
                    jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  assert acts['stem'].shape == (1, 64, 64, 4)
  with pytest.raises(ValueError, match='allowed'):
    models.resnet((32, 32, 3), 10, 4, 1, p, norm='group')


def test_norm_helpers_against_numpy():
  x = 3.0 + 2.5 * jax.random.normal(jax.random.PRNGKey(0), (8, 5, 5, 6))
  x = x * jnp.arange(1, 7)                               # a different scale per channel
  xn = np.asarray(x, np.float64)
  bn = np.asarray(models.batch_norm(x))
  np.testing.assert_allclose(bn.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.sqrt((bn ** 2).mean(axis=(0, 1, 2))), 1.0, atol=1e-4)
  ref = (xn - xn.mean((0, 1, 2))) / np.sqrt(xn.var((0, 1, 2)) + 1e-5)
  np.testing.assert_allclose(bn, ref, rtol=1e-4, atol=1e-4)
  rms_only = np.asarray(models.batch_norm(x, center=False))   # [BN]'s form: divided by the RMS, mean kept
  np.testing.assert_allclose(np.sqrt((rms_only ** 2).mean(axis=(0, 1, 2))), 1.0, atol=1e-4)
  assert np.all(rms_only.mean(axis=(0, 1, 2)) > 0.1)
  ln = np.asarray(models.layer_norm(x, (1, 2, 3)))            # per example, over positions and channels
  np.testing.assert_allclose(ln.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(ln.std(axis=(1, 2, 3)), 1.0, atol=1e-4)


def test_batch_norm_uses_the_statistics_of_the_batch():
  """With BatchNorm an example's output depends on the rest of the batch; with LayerNorm or no norm it does not."""
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))
  x2 = x.at[1:].multiply(3.0)
  for norm, coupled in (('batch', True), ('layer', False), ('none', False)):
    m = models.resnet((16, 16, 3), 10, 4, 1, pz.Parameterization('mup'), norm=norm)
    params, apply = m.init(jax.random.PRNGKey(1)), jax.jit(m.apply)
    diff = float(jnp.max(jnp.abs(apply(params, x)[0] - apply(params, x2)[0])))
    assert (diff > 1e-4) if coupled else (diff < 1e-6), (norm, diff)


def _config(norm):
  """A tiny resnet coordinate check: 16×16 synthetic images, batch 16, one SGD step (lr 0.5), two seeds."""
  c = load_config('quickstart')
  config_lib.set_model(c, 'resnet', norm=norm, layers_per_block=1)
  config_lib.set_data(c, 'synthetic_images', image_size=16, num_classes=10, batch_size=16, num_train=64, num_eval=16)
  c.coord_check.steps, c.coord_check.batch, c.coord_check.seeds, c.coord_check.lr.sgd = 1, 16, (0, 1), 0.5
  return c


@functools.lru_cache(maxsize=None)
def _data():   # the same data for every check: generating it compiles its sampler, so once per file
  return data_lib.make_data(_config('none').data, 4, 16, jnp.float32)


@pytest.mark.parametrize('norm', ['batch', 'layer'])
def test_width_coord_check_under_mup(norm):
  """Widths 16/32/64 (at 8 the smallest stage has too few channels: slopes up to −0.5 there). Measured slopes of
  the change: batch −0.05…−0.01, layer −0.11…−0.03."""
  c = _config(norm)
  c.coord_check.widths = (16, 32, 64)
  _, slopes = coord_check.run(c, _data(), pz.Parameterization('mup'), 1)
  assert {s['layer'] for s in slopes} >= {'stem', 'down_1', 'down_2', 'stage0_block00', 'stage2_block00', 'readout'}
  for s in slopes:
    assert abs(s['delta_slope']) < 0.15, s


def _depth_slopes(p_name, blocks_per_stage):
  _, slopes = coord_check.run_depth(_config('none'), _data(), pz.Parameterization(p_name), 8, blocks_per_stage)
  return {s['position']: s for s in slopes}


def test_depth_coord_check_depth_mup_is_flat_and_mup_grows():
  """Blocks per stage 1/2/4/8 (L = 3…24) at width 8, no norm. Measured slopes of the change in log L: depth_mup
  input +0.04, first block −0.04, last block +0.07, readout −0.02; mup +1.87, +1.85, +3.23, +2.79 over the same
  depths, and +1.87, +1.83, +3.16, +2.76 over 1 and 8 alone, which is what runs here: every depth is a compile
  of the training step (4–8 s on 2 cores), and mup's growth needs no intermediate points."""
  flat, grows = _depth_slopes('depth_mup', (1, 2, 4, 8)), _depth_slopes('mup', (1, 8))
  assert set(flat) == {'input', 'first_block', 'last_block', 'readout'}
  for position in flat:
    assert abs(flat[position]['delta_slope']) < 0.25, flat[position]
    assert grows[position]['delta_slope'] > 1.0, grows[position]


def test_res_mlp_depth_coord_check_depth_mup_is_flat_and_mup_grows():
  """configs/depth_mlp.py's residual MLP (k = 1) at width 64, 3 SGD steps. Under Depth-μP the change of every
  position is depth-independent from L = 2 to 32 (measured slopes in log L −0.08 … +0.08); under μP it grows
  (L = 2 and 8: measured +0.78 input, +0.80 first block, +2.80 last block, +2.47 readout; at L = 32 it is already
  infinite)."""
  cfg = load_config('depth_mlp', 'k1')
  cfg.coord_check.steps, cfg.coord_check.seeds = 3, (0, 1)
  data = data_lib.make_data(cfg.data, 0, cfg.coord_check.batch, jnp.float32)
  slopes = {p: {s['position']: s for s in coord_check.run_depth(cfg, data, pz.Parameterization(p), 64, depths)[1]}
            for p, depths in (('depth_mup', (2, 32)), ('mup', (2, 8)))}
  assert set(slopes['depth_mup']) == {'input', 'first_block', 'last_block', 'readout'}
  for position in slopes['depth_mup']:
    assert abs(slopes['depth_mup'][position]['delta_slope']) < 0.25, slopes['depth_mup'][position]
    assert slopes['mup'][position]['delta_slope'] > 0.5, slopes['mup'][position]
