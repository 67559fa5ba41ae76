"""Coordinate check: does each layer's activation, and its change after a few steps, stay Θ(1) as width grows?

For every width, train `steps` optimizer steps from init (same machinery as a real run) and measure, per layer on a
fixed batch, the RMS of the layer's output at init and the RMS of its change since init. The log-log slope in
width says what the parameterization does: μP ≈ 0 for every layer; NTP hidden change ≈ −1/2; SP output change > 0
at a fixed learning rate. Averaged over seeds to tame noise. `run_depth` does the same across depths at a fixed
width, fitting slopes in depth, which is how Depth-μP is checked.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import train

ROW_COLUMNS = ('parameterization', 'optimizer', 'layer', 'kind', 'width', 'act_rms', 'delta_rms')
SLOPE_COLUMNS = ('parameterization', 'optimizer', 'layer', 'kind', 'act_slope', 'delta_slope')


def _rms(x):
  return jnp.sqrt(jnp.mean(jnp.square(x)))


def _measure(cfg, data, model, x):
  """{layer: RMS at init} and {layer: RMS of the change after cc.steps steps}, each averaged over cc.seeds, with
  the layers in the model's forward order (a jitted dict comes back sorted by key, so the order is read while
  tracing)."""
  cc = cfg.coord_check
  dtype = jnp.dtype(cfg.dtype)
  program = train.make_lane_program(model, data, cfg)
  order = []

  @jax.jit
  def one_seed(seed):
    hp = train.LaneHparams(jnp.asarray(cc.lr[cfg.optimizer.name], dtype), jnp.asarray(1.0, dtype),
                           jnp.asarray(seed, jnp.int32))
    state = program.init(hp)
    _, acts0 = model.apply(state.params, x, hp.gamma0, with_activations=True)
    order[:] = list(acts0)
    state = jax.lax.fori_loop(0, cc.steps, lambda _, s: program.step(s, hp, data.arrays), state)
    _, acts = model.apply(state.params, x, hp.gamma0, with_activations=True)
    return ({k: _rms(v) for k, v in acts0.items()}, {k: _rms(acts[k] - acts0[k]) for k in acts0})

  per_seed = [jax.device_get(one_seed(s)) for s in cc.seeds]
  act_rms = {k: float(np.mean([a[k] for a, _ in per_seed])) for k in order}
  delta_rms = {k: float(np.mean([d[k] for _, d in per_seed])) for k in order}
  return act_rms, delta_rms


def run(cfg, data, param: pz.Parameterization, depth: int):
  """Returns (rows, slopes) for one parameterization at the config's optimizer, over cfg.coord_check.widths."""
  cc = cfg.coord_check
  x = data.arrays['measure_x'][:cc.batch]
  rows = []
  for width in cc.widths:
    model = models.make_model(cfg.model, data.spec, width, depth, param, jnp.dtype(cfg.dtype))
    act_rms, delta_rms = _measure(cfg, data, model, x)
    for layer in act_rms:
      rows.append(dict(parameterization=param.name, optimizer=cfg.optimizer.name, layer=layer,
                       kind=model.kinds.get(layer, 'block'), width=width,
                       act_rms=act_rms[layer], delta_rms=delta_rms[layer]))
  return rows, slopes(rows)


DEPTH_ROW_COLUMNS = ('parameterization', 'optimizer', 'position', 'layer', 'kind', 'width', 'depth', 'act_rms',
                     'delta_rms')
DEPTH_SLOPE_COLUMNS = ('parameterization', 'optimizer', 'position', 'act_slope', 'delta_slope')


def depth_positions(names, kinds) -> dict:
  """Layer names that play the same role at every depth: {'input', 'first_block', 'last_block', 'readout'}.

  Blocks are the activations that are not a weight layer's output (the residual stream after each block of
  resnet, vit and gpt2, the block outputs of bn_mlp: a scan's blocks are reported one name each, see layers.Model);
  a model without them (mlp) uses its first and last hidden layer."""
  names = list(names)
  blocks = [n for n in names if n not in kinds] or [n for n in names if kinds.get(n) == 'hidden']
  out = {'input': names[0]}
  if blocks:
    out['first_block'], out['last_block'] = blocks[0], blocks[-1]
  out['readout'] = names[-1]
  return out


def run_depth(cfg, data, param: pz.Parameterization, width: int, depths):
  """The coordinate check across depths at one width: returns (rows, slopes), slopes in log(Model.depth).

  `depths` are what make_model takes (blocks per stage for resnet); the fit uses Model.depth, the L of
  the branch multiplier, and a constant factor between the two leaves a log-log slope unchanged. Layers are
  matched across depths by position (depth_positions). Depth-μP is right when the change of the residual stream
  and of the readout after a few steps does not depend on depth (slope ≈ 0); without branch scaling (mup) it
  grows with depth.
  """
  if len(set(depths)) < 2:
    raise ValueError(f'run_depth needs at least two depths to fit a slope, got {tuple(depths)}')
  cc = cfg.coord_check
  x = data.arrays['measure_x'][:cc.batch]
  rows = []
  for depth in depths:
    model = models.make_model(cfg.model, data.spec, width, depth, param, jnp.dtype(cfg.dtype))
    act_rms, delta_rms = _measure(cfg, data, model, x)
    for position, layer in depth_positions(act_rms, model.kinds).items():
      rows.append(dict(parameterization=param.name, optimizer=cfg.optimizer.name, position=position, layer=layer,
                       kind=model.kinds.get(layer, 'block'), width=width, depth=model.depth,
                       act_rms=act_rms[layer], delta_rms=delta_rms[layer]))
  out = []
  for position in dict.fromkeys(r['position'] for r in rows):
    rs = sorted((r for r in rows if r['position'] == position), key=lambda r: r['depth'])
    logd = np.log([r['depth'] for r in rs])
    fit = lambda ys: float(np.polyfit(logd, np.log(np.maximum(ys, 1e-30)), 1)[0])
    out.append(dict(parameterization=param.name, optimizer=cfg.optimizer.name, position=position,
                    act_slope=fit([r['act_rms'] for r in rs]), delta_slope=fit([r['delta_rms'] for r in rs])))
  return rows, out


def slopes(rows):
  out = []
  keys = sorted({(r['parameterization'], r['optimizer'], r['layer'], r['kind']) for r in rows})
  for p, opt, layer, kind in keys:
    rs = sorted((r for r in rows if (r['parameterization'], r['optimizer'], r['layer']) == (p, opt, layer)),
                key=lambda r: r['width'])
    logw = np.log([r['width'] for r in rs])
    fit = lambda ys: float(np.polyfit(logw, np.log(np.maximum(ys, 1e-30)), 1)[0])
    out.append(dict(parameterization=p, optimizer=opt, layer=layer, kind=kind,
                    act_slope=fit([r['act_rms'] for r in rs]), delta_slope=fit([r['delta_rms'] for r in rs])))
  return out
