"""Runs a config end to end: the sweep over parameterizations × depths × widths, the coordinate check, the
summary and the plots, all written into one workdir through `results`."""
from __future__ import annotations

import importlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import config as config_lib
from superconsistency import coord_check
from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import results
from superconsistency import spectra
from superconsistency import train

OUTPUTS = ('metrics.csv', 'density.csv', 'coord_check.csv', 'coord_check_slopes.csv', 'summary.json', 'config.json',
           'sharpness.png', 'transfer.png', 'coord_check.png', 'spectra.png', 'density.png', 'analysis.json',
           'analysis_*.png')


def _param(cfg, name):
  return pz.Parameterization(name, alpha=cfg.param.alpha, beta=cfg.param.beta, center=cfg.param.center,
                             lr_convention=cfg.param.lr_convention)


def _jsonable(value):
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return str(value)


def _progress_bar(total, enabled):
  if not enabled:
    return None, None
  from tqdm import tqdm
  bar = tqdm(total=total, unit='chunk', file=sys.stderr, dynamic_ncols=True)
  return bar, bar.update


def run(cfg, workdir: str, overwrite: bool = False, progress: bool = True, plots: bool = True) -> dict:
  """Validates everything before touching the workdir; returns the summary."""
  config_lib.validate(cfg)
  if cfg.experiment != 'sweep':   # computations of their own, with the same workdir contract
    module = importlib.import_module(f'superconsistency.{cfg.experiment}')
    return module.run_experiment(cfg, workdir, overwrite=overwrite, progress=progress, plots=plots)
  if os.path.exists(os.path.join(workdir, 'summary.json')) and not overwrite:
    config_lib.check_workdir(workdir, overwrite)   # fails fast, before any data is loaded
  if cfg.dtype == 'float64':
    jax.config.update('jax_enable_x64', True)
  dtype = jnp.dtype(cfg.dtype)
  start = time.time()
  num_measure = max(cfg.measure.loss_batch, cfg.measure.sharpness_batch, cfg.coord_check.batch,
                    cfg.measure.ntk_batch if cfg.measure.ntk_k else 0)
  depths = cfg.depths if cfg.model.name != 'simple_convnet' else (1,)
  # Data and every model's shapes are built before the workdir is touched: a dataset that is not prepared, or a
  # width the model cannot take, fails with one line and leaves nothing behind.
  from superconsistency import tfds_data
  try:
    data = data_lib.make_data(cfg.data, cfg.num_steps, num_measure, dtype)
  except (tfds_data.DatasetNotPrepared, tfds_data.DatasetCorrupt, ValueError) as e:
    raise config_lib.ConfigError('data.name', str(e).replace('\n', ' ')) from None
  built = {}   # (parameterization, depth, width) -> Model, reused by the sweep below
  for p_name in cfg.parameterizations:
    for depth in depths:
      for width in cfg.widths:
        try:
          built[p_name, depth, width] = models.make_model(cfg.model, data.spec, width, depth, _param(cfg, p_name),
                                                          dtype)
        except ValueError as e:
          raise config_lib.ConfigError('model', f'width={width}, depth={depth}: {e}') from None
  config_lib.check_workdir(workdir, overwrite)
  resolved = cfg.to_dict()
  resolved['_data'] = dict(spec=data.spec._asdict(), info=_jsonable(data.info))   # what was actually trained on
  # a rerun replaces an unfinished (or, with --overwrite, a finished) run entirely
  results.start_workdir(workdir, OUTPUTS, resolved)
  chunks = cfg.num_steps // cfg.measure_every
  bar, update = _progress_bar(len(cfg.parameterizations) * len(depths) * len(cfg.widths) * chunks, progress)
  metric_columns = train.metric_columns(cfg)
  writer = results.MetricsWriter(workdir, results.columns(metric_columns))
  density_writer = (results.MetricsWriter(workdir, results.DENSITY_COLUMNS, 'density.csv')
                    if cfg.measure.density_every else None)
  threshold = train.stability_threshold(cfg.optimizer)
  adam_threshold = spectra.adam_threshold(None, cfg.optimizer.b1)
  for p_name in cfg.parameterizations:
    lrs = tuple(cfg.sweep.lrs[p_name])
    hp = train.lane_grid(lrs, cfg.sweep.gamma0s, cfg.sweep.seeds, dtype, cfg.seed)
    for depth in depths:
      for width in cfg.widths:
        if bar:
          bar.set_description(f'{p_name} depth={depth} width={width}')
        model = built[p_name, depth, width]
        steps, metrics, diverged_step = train.run_sweep(model, data, cfg, hp, update)
        rows, density_rows = [], []
        for lane in range(hp.lr.shape[0]):
          for j, step in enumerate(steps):
            dstep = int(diverged_step[lane])
            diverged = dstep >= 0 and dstep < step
            meta = dict(parameterization=p_name, width=width, depth=depth, optimizer=cfg.optimizer.name,
                        lr_convention=cfg.param.lr_convention, lr=float(hp.lr[lane]), gamma0=float(hp.gamma0[lane]),
                        seed=int(hp.seed[lane]), step=int(step))
            row = dict(meta, lr_sharpness_threshold=threshold, adam_sharpness_threshold=adam_threshold,
                       diverged=int(diverged), diverged_step=dstep)
            values = train.flatten_metrics(metrics, lane, j)
            for k in metric_columns:   # a frozen lane's numbers describe its last good parameters: hide them
              row[k] = float('nan') if diverged else values.get(k, float('nan'))
            rows.append(row)
            if density_writer and not diverged and np.isfinite(metrics['density'][lane, j]).all():
              density_rows += [dict(meta, eigenvalue=float(e), density=float(d))
                               for e, d in zip(metrics['density_grid'][lane, j], metrics['density'][lane, j])]
        writer.write(rows)
        if density_writer:
          density_writer.write(density_rows)
  if bar:
    bar.close()
  train_time = time.time() - start

  if cfg.coord_check.enabled:
    cc_rows, cc_slopes = [], []
    for p_name in cfg.parameterizations:
      r, s = coord_check.run(cfg, data, _param(cfg, p_name), depths[0])
      cc_rows += r
      cc_slopes += s
    results.MetricsWriter(workdir, coord_check.ROW_COLUMNS, 'coord_check.csv').write(cc_rows)
    results.MetricsWriter(workdir, coord_check.SLOPE_COLUMNS, 'coord_check_slopes.csv').write(cc_slopes)

  summary = results.summarize(results.read_csv(os.path.join(workdir, 'metrics.csv')), cfg.select_by,
                              cfg.select_step)
  summary['wall_time_s'] = dict(sweep=round(train_time, 1), total=round(time.time() - start, 1))
  summary['lr_convention'] = cfg.param.lr_convention
  if plots:
    from superconsistency import plot
    plot.plot_workdir(workdir, summary)
  results.write_json(os.path.join(workdir, 'summary.json'), summary)   # last: marks the run finished
  return summary
