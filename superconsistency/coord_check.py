"""Coordinate check: does each layer's activation, and its change after a few steps, stay Θ(1) as width grows?

For every width, train `steps` optimizer steps from init (same machinery as a real run) and measure, per layer on a
fixed batch, the RMS of the layer's output at init and the RMS of its change since init. The log-log slope in
width says what the parameterization does: μP ≈ 0 for every layer; NTP hidden change ≈ −1/2; SP output change > 0
at a fixed learning rate. Averaged over seeds to tame noise.
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


def run(cfg, data, param: pz.Parameterization, depth: int):
  """Returns (rows, slopes) for one parameterization at the config's optimizer, over cfg.coord_check.widths."""
  cc = cfg.coord_check
  dtype = jnp.dtype(cfg.dtype)
  x = data.arrays['measure_x'][:cc.batch]
  rows = []
  for width in cc.widths:
    model = models.make_model(cfg.model, data.spec, width, depth, param, dtype)
    program = train.make_lane_program(model, data, cfg)

    @jax.jit
    def one_seed(seed):
      hp = train.LaneHparams(jnp.asarray(cc.lr[cfg.optimizer.name], dtype), jnp.asarray(1.0, dtype),
                             jnp.asarray(seed, jnp.int32))
      state = program.init(hp)
      _, acts0 = model.apply(state.params, x, hp.gamma0, with_activations=True)
      state = jax.lax.fori_loop(0, cc.steps, lambda _, s: program.step(s, hp, data.arrays), state)
      _, acts = model.apply(state.params, x, hp.gamma0, with_activations=True)
      return ({k: _rms(v) for k, v in acts0.items()}, {k: _rms(acts[k] - acts0[k]) for k in acts0})

    per_seed = [jax.device_get(one_seed(s)) for s in cc.seeds]
    for layer in per_seed[0][0]:
      rows.append(dict(parameterization=param.name, optimizer=cfg.optimizer.name, layer=layer,
                       kind=model.kinds.get(layer, 'block'), width=width,
                       act_rms=float(np.mean([a[layer] for a, _ in per_seed])),
                       delta_rms=float(np.mean([d[layer] for _, d in per_seed]))))
  return rows, slopes(rows)


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
