"""Runs a config end to end: the sweep over parameterizations × depths × widths, the coordinate check, the
summary and the plots, all written into one workdir through `results`."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import checkpoint
from superconsistency import config as config_lib
from superconsistency import coord_check
from superconsistency import data as data_lib
from superconsistency import distributed
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
    if jax.process_count() > 1:
      raise config_lib.ConfigError('experiment', f'{cfg.experiment!r} is one compiled computation on one process: '
                                   'run it without --multihost')
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
  try:
    mesh = distributed.make_mesh(cfg.mesh)
  except distributed.MeshError as e:
    raise config_lib.ConfigError('mesh', str(e).split(': ', 1)[1]) from None
  _writer_checks(lambda: config_lib.check_workdir(workdir, overwrite))
  resolved = cfg.to_dict()
  resolved['_data'] = dict(spec=data.spec._asdict(), info=_jsonable(data.info))   # what was actually trained on
  groups = [(p, depth, width) for p in cfg.parameterizations for depth in depths for width in cfg.widths]
  hps = {p: train.lane_grid(tuple(cfg.sweep.lrs[p]), cfg.sweep.gamma0s, cfg.sweep.seeds, dtype, cfg.seed)
         for p in cfg.parameterizations}
  # the dataset is placed on the mesh once for all groups (the coordinate check keeps the process-local copy)
  sweep_data = data._replace(arrays=distributed.put_replicated(data.arrays, mesh))
  sweeps = {}

  def sweep_of(g):   # compiled lazily, once per group (a resumed run needs one to know what to restore)
    if g not in sweeps:
      sweeps.clear()
      p_name, depth, width = groups[g]
      sweeps[g] = train.compile_sweep(built[groups[g]], sweep_data, cfg, hps[p_name], mesh)
    return sweeps[g]

  def restore_target(meta):
    if meta['chunks_done'] is None:
      return None
    sweep = sweep_of(meta['group'])
    state = train.abstract_state(sweep)
    first = jax.eval_shape(sweep.measure, state, sweep.hp, sweep.arrays, 0)[1]
    saved = meta['lanes_padded']
    buffers = {k: np.zeros((saved, sweep.num_chunks + 1) + v.shape[1:], v.dtype) for k, v in first.items()}
    if saved != sweep.hp.lr.shape[0]:   # saved on a mesh that pads lanes otherwise: restored to the host, re-padded
      state = jax.tree.map(lambda a: np.zeros((saved,) + a.shape[1:], a.dtype), state)
    return dict(lanes=state, buffers=buffers)

  ckpt, restored = _open_checkpoints(cfg, workdir, overwrite, resolved, restore_target)
  csv_names = ('metrics.csv',) + (('density.csv',) if cfg.measure.density_every else ())
  if restored is None:
    if distributed.is_writer():
      # a rerun without a usable checkpoint replaces an unfinished (or, with --overwrite, a finished) run entirely
      results.start_workdir(workdir, OUTPUTS, resolved)
  else:
    _writer_checks(lambda: _truncate_to_checkpoint(workdir, restored[1], csv_names))
  distributed.barrier('workdir-ready')
  chunks = cfg.num_steps // cfg.measure_every
  bar, update = _progress_bar(len(groups) * chunks, progress and distributed.is_writer())
  metric_columns = train.metric_columns(cfg)
  writers = {}
  if distributed.is_writer():
    writers['metrics.csv'] = results.MetricsWriter(workdir, results.columns(metric_columns))
    if cfg.measure.density_every:
      writers['density.csv'] = results.MetricsWriter(workdir, results.DENSITY_COLUMNS, 'density.csv')
  first_group, resume_state = 0, None
  if restored is not None:
    ckpt_step, meta, state = restored
    first_group = meta['group']
    if state is not None:
      lanes, buffers = state['lanes'], state['buffers']
      sweep = sweep_of(first_group)
      if meta['lanes_padded'] != sweep.hp.lr.shape[0]:
        lanes, buffers = distributed.put_lanes(train.repad(sweep, lanes), mesh), train.repad(sweep, buffers)
      resume_state = (lanes, buffers, meta['chunks_done'])
    checkpoint.note(f'resuming {workdir} from checkpoint {ckpt_step}: ' + (
        f'group {first_group + 1} of {len(groups)} {groups[first_group]}, {meta["chunks_done"] or 0} of its {chunks} '
        f'chunks done' if first_group < len(groups) else 'the sweep is done; making the coordinate check, summary '
        'and plots'))
    if bar:
      bar.update(first_group * chunks + (meta['chunks_done'] or 0))
  ckpt_id = lambda g, done: g * (chunks + 1) + (done if done is not None else 0)
  policy = _SavePolicy(cfg)

  def save(g, done, state=None, buffers=None, reason=''):
    meta = dict(group=g, chunks_done=done, reason=reason,
                lanes_padded=None if state is None else int(sweep_of(g).hp.lr.shape[0]),
                csv_bytes={n: os.path.getsize(os.path.join(workdir, n)) for n in csv_names}
                if distributed.is_writer() else {})
    ckpt.save(ckpt_id(g, done), meta, None if state is None else dict(lanes=state, buffers=buffers))
    policy.saved()

  sigterm = checkpoint.sigterm
  for g in range(first_group, len(groups)):
    p_name, depth, width = groups[g]
    if bar:
      bar.set_description(f'{p_name} depth={depth} width={width}')

    def after_chunk(done, state, buffers, g=g):
      stop = distributed.preempted(ckpt_id(g, done), sigterm.received)
      if stop or policy.due(done):
        save(g, done, state, buffers, 'sigterm' if stop else 'interval')
      if stop:
        raise checkpoint.Preempted(_preempted_message(workdir, ckpt_id(g, done)))

    resume = resume_state if g == first_group else None
    steps, metrics, diverged_step = train.run_sweep(None, data, cfg, None, update, resume=resume,
                                                    after_chunk=after_chunk, sweep=sweep_of(g))
    if distributed.is_writer():
      rows, density_rows = _rows(cfg, p_name, depth, width, hps[p_name], steps, metrics, diverged_step,
                                 metric_columns)
      writers['metrics.csv'].write(rows)
      if 'density.csv' in writers:
        writers['density.csv'].write(density_rows)
  sweeps.clear()
  if restored is None or first_group < len(groups):
    save(len(groups), None, reason='sweep finished')   # a rerun after this goes straight to the analysis
  if bar:
    bar.close()
  train_time = time.time() - start
  if not distributed.is_writer():
    ckpt.close()
    return {}
  summary = _finish(cfg, workdir, data, depths, train_time, start, plots)
  if sigterm.received:
    raise checkpoint.Preempted(_preempted_message(workdir, ckpt_id(len(groups), None)))
  results.write_json(os.path.join(workdir, 'summary.json'), summary)   # last: marks the run finished
  if cfg.checkpoint.keep_after_finish:
    ckpt.close()
  else:
    ckpt.remove()
  return summary


def _rows(cfg, p_name, depth, width, hp, steps, metrics, diverged_step, metric_columns):
  """metrics.csv and density.csv rows of one group: lane by lane, step by step."""
  threshold = train.stability_threshold(cfg.optimizer)
  adam_threshold = spectra.adam_threshold(None, cfg.optimizer.b1)
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
      if cfg.measure.density_every and not diverged and np.isfinite(metrics['density'][lane, j]).all():
        density_rows += [dict(meta, eigenvalue=float(e), density=float(d))
                         for e, d in zip(metrics['density_grid'][lane, j], metrics['density'][lane, j])]
  return rows, density_rows


class _SavePolicy:
  """When to checkpoint between chunks: every `every_steps` optimizer steps and/or every `every_minutes`. The clock
  is read by process 0 only, so all processes decide alike."""

  def __init__(self, cfg):
    self.every_chunks = cfg.checkpoint.every_steps // cfg.measure_every
    self.every_s = 60.0 * cfg.checkpoint.every_minutes
    self.chunks_since = 0
    self.last = time.time()

  def due(self, done) -> bool:
    if done == 0:
      return False   # nothing trained yet: a rerun recomputes the first measurement as fast
    self.chunks_since += 1
    by_steps = self.every_chunks > 0 and self.chunks_since >= self.every_chunks
    by_time = self.every_s > 0 and bool(distributed.agree_with_writer(time.time() - self.last >= self.every_s))
    return by_steps or by_time

  def saved(self):
    self.chunks_since, self.last = 0, time.time()


def _preempted_message(workdir, step):
  return (f'SIGTERM: saved checkpoint {step} in {os.path.join(workdir, checkpoint.DIRNAME)}; '
          f'rerun the same command to resume')


def _open_checkpoints(cfg, workdir, overwrite, resolved, restore_target):
  """The run's Checkpointer and the newest intact checkpoint to resume from (None: start over). Refuses to resume
  under a config that computes something else, naming the fields."""
  ckpt_dir = os.path.join(workdir, checkpoint.DIRNAME)
  config_path = os.path.join(workdir, 'config.json')
  resumable = os.path.isdir(ckpt_dir) and os.path.exists(config_path) and not overwrite

  def same_config():
    with open(config_path) as f:
      saved = json.load(f)
    differ = checkpoint.config_differences(saved, resolved)
    if differ:
      listed = '; '.join(f'{name}: {old} -> {new}' for name, old, new in differ)
      raise config_lib.ConfigError(
          'workdir', f'{workdir} holds an unfinished run of another config, which cannot be resumed with this one. '
          f'Fields that differ ({len(differ)}): {listed}. '
          f'Rerun with the saved config to resume, or pass --overwrite to start over')
  if resumable:
    _writer_checks(same_config)
  if not resumable and distributed.is_writer() and os.path.isdir(ckpt_dir):
    shutil.rmtree(ckpt_dir)   # --overwrite, or leftovers without a config: they belong to no resumable run
    shutil.rmtree(ckpt_dir + '_unusable', ignore_errors=True)
  distributed.barrier('checkpoints-cleared')
  ckpt = checkpoint.Checkpointer(workdir, cfg.checkpoint.keep)
  return ckpt, (ckpt.restore_latest(restore_target) if resumable else None)   # None: corrupt ones are removed


def _writer_checks(check):
  """`check()` on process 0, its ConfigError raised on every process (see distributed.on_writer)."""
  text = distributed.on_writer(check)
  if text:
    field, message = text.split('\0', 1)
    raise config_lib.ConfigError(field, message.split(': ', 1)[1] if message.startswith('config.') else message)


def _truncate_to_checkpoint(workdir, meta, csv_names):
  """Cuts each CSV back to its length at the checkpoint (rows after it are computed again), and removes what is
  made after the sweep, so a resumed run writes every row exactly once."""
  for name in csv_names:
    path, size = os.path.join(workdir, name), meta['csv_bytes'].get(name)
    have = os.path.getsize(path) if os.path.exists(path) else -1
    if size is None or have < size:
      raise config_lib.ConfigError('workdir', f'{path} has {max(have, 0)} bytes but checkpoint records {size}: '
                                   f'the results were changed after the checkpoint; pass --overwrite to start over')
    with open(path, 'r+b') as f:
      f.truncate(size)
      f.flush()
      os.fsync(f.fileno())
  results.remove_outputs(workdir, [p for p in OUTPUTS if p not in csv_names + ('config.json',)])


def _finish(cfg, workdir, data, depths, train_time, start, plots):
  """The coordinate check, the summary and the plots (process 0; all from the files already written)."""
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
  return summary
