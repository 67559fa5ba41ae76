"""The sweep experiment end to end, in plain steps, all writing one workdir through `results`:

  plan     build the data, every (parameterization, depth, width) model and the device mesh; nothing is written, and
           anything that cannot run is a ConfigError (the config itself was validated before)
  open     claim the workdir (one live writer: results.WorkdirLock), refuse a resume under another config, and find
           the newest intact checkpoint
  start    a fresh workdir (config.json), or one cut back to the checkpoint
  train    each group: one compiled, vmapped sweep over its lanes, checkpointed between chunks
  extend   where some seed's best rate is censored (sweep.extend_rounds > 0): more rates beyond the grid's edge,
           as new lanes of every group of that parameterization, appended to metrics.csv (grid_extensions.json)
  finish   the coordinate check, summary.json (best rates by best_rate.py) and the plots

Checkpoints are identified by (group, chunks done in it); `CheckpointId.step` turns that into orbax's integer step.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import best_rate
from superconsistency import checkpoint
from superconsistency import compile_cache
from superconsistency import config as config_lib
from superconsistency import coord_check
from superconsistency import data as data_lib
from superconsistency import distributed
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import results
from superconsistency import spectra
from superconsistency import lanes as lanes_lib
from superconsistency import train

OUTPUTS = ('metrics.csv', 'density.csv', 'coord_check.csv', 'coord_check_slopes.csv', 'summary.json', 'config.json',
           'sharpness.png', 'transfer.png', 'coord_check.png', 'spectra.png', 'density.png', 'analysis.json',
           'analysis_*.png', 'grid_extensions.json')
EXTENSIONS = 'grid_extensions.json'


def param_of(cfg, name) -> pz.Parameterization:
  return pz.Parameterization(name, alpha=cfg.param.alpha, beta=cfg.param.beta, center=cfg.param.center,
                             lr_convention=cfg.param.lr_convention)


class Plan(NamedTuple):
  """Everything a run computes with, built before the workdir is touched."""
  cfg: object
  workdir: str
  data: data_lib.Data          # host copy (the coordinate check uses it)
  sweep_data: data_lib.Data    # its arrays placed on the mesh once, for every group
  models: dict                 # (parameterization, depth, width) -> models.Model
  mesh: object
  groups: list                 # [(parameterization, depth, width)] in run order
  hps: dict                    # parameterization -> train.LaneHparams
  resolved: dict               # config.json
  chunks: int                  # compiled chunks per group
  csv_names: tuple
  programs: dict               # (parameterization, depth, width) -> how its sweep was compiled (filled as it runs)


class CheckpointId(NamedTuple):
  """A checkpoint after `chunk` chunks of group `group` (chunk=None with group=len(groups): the sweep is done)."""
  group: int
  chunk: int | None

  def step(self, chunks: int) -> int:
    """orbax's integer step: grows by one per chunk over the whole run (the preemption service needs that)."""
    return self.group * (chunks + 1) + (self.chunk or 0)


def raise_writer_error(check) -> None:
  """`check()` on process 0; the ValueError it raised there is raised on every process as the same type."""
  err = distributed.on_writer(check)
  if err is None:
    return
  if err['type'] == 'WorkdirInUse':
    raise results.WorkdirInUse(err['message'])
  raise config_lib.ConfigError(err['field'] or 'workdir', err['message'])


def measure_set_size(cfg) -> int:
  """Examples held for measurements: enough for every batch a measurement or the coordinate check reads."""
  m = cfg.measure
  return max(m.loss_batch, m.sharpness_batch, cfg.coord_check.batch if cfg.coord_check.enabled else 0,
             m.ntk_batch if m.ntk_k else 0)


def groups_of(cfg) -> list:
  """[(parameterization, depth, width)] in run order: one compiled sweep each."""
  return [(p, depth, width) for p in cfg.parameterizations for depth in models.depths_of(cfg.model.name, cfg.depths)
          for width in cfg.widths]


def plan(cfg, workdir: str) -> Plan:
  if cfg.dtype == 'float64':
    jax.config.update('jax_enable_x64', True)
  dtype = jnp.dtype(cfg.dtype)
  num_measure = measure_set_size(cfg)
  from superconsistency import tfds_data
  try:
    data = data_lib.make_data(cfg.data, cfg.num_steps, num_measure, dtype)
  except (tfds_data.DatasetNotPrepared, tfds_data.DatasetCorrupt, ValueError) as e:
    raise config_lib.ConfigError('data.name', str(e).replace('\n', ' ')) from None
  groups = groups_of(cfg)
  built = {}
  for p, depth, width in groups:
    try:
      built[p, depth, width] = models.make_model(cfg.model, data.spec, width, depth, param_of(cfg, p), dtype)
    except ValueError as e:
      raise config_lib.ConfigError('model', f'{p}, width={width}, depth={depth}: {e}') from None
  try:
    mesh = distributed.make_mesh(cfg.mesh)
  except distributed.MeshError as e:
    raise config_lib.ConfigError('mesh', str(e).split(': ', 1)[1]) from None
  resolved = cfg.to_dict()
  resolved['_data'] = dict(spec=data.spec._asdict(), info=_jsonable(data.info))   # what was actually trained on
  hps = {p: train.lane_grid(tuple(cfg.sweep.lrs[p]), cfg.sweep.gamma0s, cfg.sweep.seeds, dtype, cfg.seed)
         for p in cfg.parameterizations}
  sweep_data = data._replace(arrays=distributed.put_replicated(data.arrays, mesh))
  csv_names = ('metrics.csv',) + (('density.csv',) if cfg.measure.density_every else ())
  return Plan(cfg, workdir, data, sweep_data, built, mesh, groups, hps, resolved, cfg.num_steps // cfg.measure_every,
              csv_names, {})


class _Sweeps:
  """The compiled sweep of one group at a time (compiling is slow and a group's programs are large)."""

  def __init__(self, plan: Plan):
    self.plan, self.group, self.sweep = plan, None, None
    self._signatures = {}

  def clear(self) -> None:
    self.group, self.sweep = None, None

  def __call__(self, g) -> lanes_lib.Sweep:
    if g != self.group:
      self.sweep = None   # free the previous group's programs first
      p = self.plan
      self.sweep = lanes_lib.compile_sweep(p.models[p.groups[g]], p.sweep_data, p.cfg, p.hps[p.groups[g][0]], p.mesh,
                                           lanes_at_least=self.lanes_to_share(g))
      self.group = g
    return self.sweep

  def _signature(self, g):
    if g not in self._signatures:
      p = self.plan
      self._signatures[g] = lanes_lib.program_signature(p.models[p.groups[g]], p.sweep_data, p.cfg,
                                                        p.hps[p.groups[g][0]], p.mesh)
    return self._signatures[g]

  def lanes_to_share(self, g) -> int:
    """The lanes group g's sweep is compiled for: its own, or the most of any group at the same depth and width
    with at most `program.pad_to_share` (a fraction) more lanes whose programs are the same at a common lane count
    (lanes_lib.program_signature). Padded, the smaller group runs the larger's programs instead of compiling its
    own: the quickstart's μP (24 lanes) pads to NTP's 27."""
    p = self.plan
    count = lambda h: int(p.hps[p.groups[h][0]].lr.shape[0])
    mine, limit = count(g), p.cfg.program.pad_to_share
    peers = [h for h in range(len(p.groups)) if p.groups[h][1:] == p.groups[g][1:]
             and mine < count(h) <= mine * (1 + limit)]
    if not peers or self._signature(g) is None:
      return mine
    return max([count(h) for h in peers if self._signature(h) == self._signature(g)], default=mine)


def _restore_target(sweeps: _Sweeps, meta):
  """The shapes a checkpoint's state restores to (None for one saved after the whole sweep)."""
  if meta['chunks_done'] is None:
    return None
  sweep = sweeps(meta['group'])
  state = lanes_lib.abstract_state(sweep)
  first = jax.eval_shape(sweep.measure.jitted, state, sweep.hp, sweep.arrays, 0)[1]
  saved = meta['lanes_padded']
  saved_all = meta.get('buffer_lanes', saved)   # the buffers hold every lane even after lanes retired
  buffers = {k: np.zeros((saved_all, sweep.num_chunks + 1) + v.shape[1:], v.dtype) for k, v in first.items()}
  if saved != sweep.hp.lr.shape[0]:   # another mesh's padding, or a batch of retired lanes: restored to the host
    state = jax.tree.map(lambda a: np.zeros((saved,) + a.shape[1:], a.dtype), state)
  return dict(lanes=state, buffers=buffers)


def open_checkpoints(plan: Plan, overwrite: bool, sweeps: _Sweeps):
  """The run's Checkpointer and the newest intact checkpoint to resume from ((step, meta, state), or None: start
  over). Refuses to resume under a config that computes something else, naming the fields."""
  workdir = plan.workdir
  ckpt_dir = os.path.join(workdir, checkpoint.DIRNAME)
  config_path = os.path.join(workdir, 'config.json')
  resumable = os.path.isdir(ckpt_dir) and os.path.exists(config_path) and not overwrite

  def same_config():
    with open(config_path) as f:
      saved = json.load(f)
    differ = checkpoint.config_differences(saved, plan.resolved)
    if differ:
      listed = '; '.join(f'{name}: {old} -> {new}' for name, old, new in differ)
      raise config_lib.ConfigError(
          'workdir', f'{workdir} holds an unfinished run of another config, which cannot be resumed with this one. '
          f'Fields that differ ({len(differ)}): {listed}. '
          f'Rerun with the saved config to resume, or pass --overwrite to start over')
  if resumable:
    raise_writer_error(same_config)
  if not resumable and distributed.is_writer() and os.path.isdir(ckpt_dir):
    shutil.rmtree(ckpt_dir)   # --overwrite, or leftovers without a config: they belong to no resumable run
    shutil.rmtree(ckpt_dir + '_unusable', ignore_errors=True)
  distributed.barrier('checkpoints-cleared')
  ckpt = checkpoint.Checkpointer(workdir, plan.cfg.checkpoint.keep)
  restored = ckpt.restore_latest(lambda meta: _restore_target(sweeps, meta)) if resumable else None
  return ckpt, restored


def start(plan: Plan, restored) -> None:
  """A fresh workdir, or one whose CSVs are cut back to their length at the checkpoint."""
  if restored is None:
    if distributed.is_writer():
      # a rerun without a usable checkpoint replaces an unfinished (or, with --overwrite, a finished) run entirely
      results.start_workdir(plan.workdir, OUTPUTS, plan.resolved)
  else:
    raise_writer_error(lambda: _truncate_to_checkpoint(plan.workdir, restored[1], plan.csv_names))
  distributed.barrier('workdir-ready')


def _truncate_to_checkpoint(workdir, meta, csv_names):
  """Cuts each CSV back to its length at the checkpoint (rows after it are computed again), and removes what is
  made after the sweep, so a resumed run writes every row exactly once."""
  kept = _extension_rounds_kept(workdir, meta)
  _cut_csvs(workdir, kept or meta['csv_bytes'], csv_names)
  keep = csv_names + ('config.json',) + ((EXTENSIONS,) if kept is not None else ())
  results.remove_outputs(workdir, [p for p in OUTPUTS if p not in keep])


def _cut_csvs(workdir, sizes, csv_names):
  for name in csv_names:
    path, size = os.path.join(workdir, name), sizes.get(name)
    have = os.path.getsize(path) if os.path.exists(path) else -1
    if size is None or have < size:
      raise config_lib.ConfigError('workdir', f'{path} has {max(have, 0)} bytes but checkpoint records {size}: '
                                   f'the results were changed after the checkpoint; pass --overwrite to start over')
    with open(path, 'r+b') as f:
      f.truncate(size)
      f.flush()
      os.fsync(f.fileno())


def _read_extensions(workdir) -> dict:
  path = os.path.join(workdir, EXTENSIONS)
  if not os.path.exists(path):
    return dict(rounds=[])
  with open(path) as f:
    return json.load(f)


def _extension_rounds_kept(workdir, meta):
  """After the sweep's final checkpoint, the grid-extension rounds that finished are kept: the CSVs' lengths after
  the last of them (None: nothing to keep, cut back to the checkpoint). An unfinished round is redone."""
  if meta['chunks_done'] is not None:
    return None
  done = [r for r in _read_extensions(workdir)['rounds'] if r['done']]
  return done[-1]['csv_bytes_after'] if done else None


class Spent(NamedTuple):
  """What the sweep's programs cost: seconds tracing and lowering them, seconds compiling them (XLA, or a cache
  hit), the matrix FLOPs their calls computed (flops.py; exact unless a while loop was counted once), and the
  lane-steps run and saved by retiring lanes (lanes.LaneSteps)."""
  trace_s: float = 0.0
  compile_s: float = 0.0
  flops: float = 0.0
  exact: bool = True
  lane_steps_run: int = 0
  lane_steps_saved: int = 0

  def plus(self, other: 'Spent') -> 'Spent':
    return Spent(self.trace_s + other.trace_s, self.compile_s + other.compile_s, self.flops + other.flops,
                 self.exact and other.exact, self.lane_steps_run + other.lane_steps_run,
                 self.lane_steps_saved + other.lane_steps_saved)


class _Saver:
  """Checkpoints between chunks: every `every_steps` optimizer steps and/or every `every_minutes`, and on SIGTERM.
  The clock is read by process 0 only, so all processes decide alike."""

  def __init__(self, plan: Plan, ckpt, sweeps: _Sweeps):
    self.plan, self.ckpt, self.sweeps = plan, ckpt, sweeps
    self.every_chunks = plan.cfg.checkpoint.every_steps // plan.cfg.measure_every
    self.every_s = 60.0 * plan.cfg.checkpoint.every_minutes
    self.chunks_since, self.last = 0, time.time()

  def due(self, done) -> bool:
    if done == 0:
      return False   # nothing trained yet: a rerun recomputes the first measurement as fast
    self.chunks_since += 1
    by_steps = self.every_chunks > 0 and self.chunks_since >= self.every_chunks
    by_time = self.every_s > 0 and bool(distributed.agree_with_writer(time.time() - self.last >= self.every_s))
    return by_steps or by_time

  def save(self, at: CheckpointId, state=None, buffers=None, reason='', retired=None) -> None:
    workdir = self.plan.workdir
    meta = dict(group=at.group, chunks_done=at.chunk, reason=reason,
                lanes_padded=None if state is None else int(state.step.shape[0]),
                buffer_lanes=None if buffers is None else int(next(iter(buffers.values())).shape[0]),
                retired=None if retired is None else retired._asdict(),
                csv_bytes={n: os.path.getsize(os.path.join(workdir, n)) for n in self.plan.csv_names}
                if distributed.is_writer() else {})
    self.ckpt.save(at.step(self.plan.chunks), meta, None if state is None else dict(lanes=state, buffers=buffers))
    self.chunks_since, self.last = 0, time.time()

  def after_chunk(self, g):
    """The sweep's hook after each chunk of group g: save when due or on SIGTERM (then stop the run)."""
    def hook(done, state, buffers, retired):
      at = CheckpointId(g, done)
      stop = distributed.preempted(at.step(self.plan.chunks), checkpoint.sigterm.received)
      if stop or self.due(done):
        self.save(at, state, buffers, 'sigterm' if stop else 'interval', retired)
      if stop:
        raise checkpoint.Preempted(_preempted_message(self.plan.workdir, at))
    return hook


def _preempted_message(workdir, at: CheckpointId):
  where = 'after the sweep' if at.chunk is None else f'group {at.group + 1}, chunk {at.chunk}'
  return (f'SIGTERM: saved a checkpoint ({where}) in {os.path.join(workdir, checkpoint.DIRNAME)}; '
          f'rerun the same command to resume')


def _resume_note(plan: Plan, ckpt_step, meta):
  g, done = meta['group'], meta['chunks_done']
  if g < len(plan.groups):
    checkpoint.note(f'resuming {plan.workdir} from checkpoint {ckpt_step}: group {g + 1} of {len(plan.groups)} '
                    f'{plan.groups[g]}, {done or 0} of its {plan.chunks} chunks done')
  else:
    checkpoint.note(f'resuming {plan.workdir} from checkpoint {ckpt_step}: the sweep is done; making the coordinate '
                    'check, summary and plots')


def train_group(plan: Plan, g: int, sweeps: _Sweeps, saver: _Saver, writers: dict, resume=None, progress=None):
  """One (parameterization, depth, width) group: its compiled sweep from `resume` (or the start) to the end, then
  its rows appended to the CSVs. Returns what its programs cost (Spent)."""
  p_name = plan.groups[g][0]
  budgets = lanes_lib.lane_budgets(plan.cfg, plan.hps[p_name], p_name)
  start = time.time()
  steps, metrics, diverged_step = lanes_lib.run_sweep(None, plan.data, plan.cfg, None, progress, resume=resume,
                                                  after_chunk=saver.after_chunk(g), sweep=sweeps(g), budgets=budgets)
  if distributed.is_writer():
    rows, density_rows = _rows(plan, g, steps, metrics, diverged_step, budgets)
    writers['metrics.csv'].write(rows)
    if 'density.csv' in writers:
      writers['density.csv'].write(density_rows)
  sweep = sweeps(g)
  trace_s, compile_s = sweep.compile_seconds()
  done, lane_steps = sweep.flops_done(), sweep.lane_steps()
  # run_s: this group's training without its tracing and compiling (and, if resumed, this process's part)
  plan.programs[plan.groups[g]] = dict(lanes=sweep.choice.lanes, steps=sweep.choice.steps, why=sweep.choice.why,
                                       microbatches=sweep.choice.microbatches,
                                       lane_group=sweep.lane_group,
                                       measure_fraction_flops=sweep.measure_fraction(), flops=done.flops,
                                       **sweep.measure_time_split(),
                                       run_s=round(time.time() - start - trace_s - compile_s, 2),
                                       lane_steps_run=lane_steps.run, **sweep.program_counts(),
                                       padded_lanes=int(sweep.hp_host.lr.shape[0]) - sweep.num_lanes)
  return Spent(trace_s, compile_s, done.flops, done.exact, lane_steps.run, lane_steps.saved)


class _StopOnSigterm:
  """A grid-extension round's hook after each chunk: no interval checkpoints (an interrupted round is redone from
  its start on the rerun); SIGTERM stops the run."""

  def __init__(self, plan: Plan, first_id: int):
    self.plan, self.next_id = plan, first_id

  def after_chunk(self, g):
    def hook(done, state, buffers, retired):
      self.next_id += 1
      if distributed.preempted(self.next_id, checkpoint.sigterm.received):
        raise checkpoint.Preempted(f'SIGTERM during a grid-extension round of {self.plan.workdir}: rerun the same '
                                   'command to resume (that round is redone)')
    return hook


def _extension_rates(plan: Plan, record) -> dict:
  """{param: new rates} for the next round (process 0 reads metrics.csv; every process gets its answer)."""
  cfg = plan.cfg

  def decide():
    rows = results.read_csv(os.path.join(plan.workdir, 'metrics.csv'))
    sides = best_rate.censored_sides(rows, cfg.select_by, cfg.select_step)
    out = {}
    for p in cfg.parameterizations:
      if p in sides:
        grid = list(cfg.sweep.lrs[p]) + [lr for r in record['rounds'] for lr in r['rates'].get(p, [])]
        out[p] = dict(rates=best_rate.extension_rates(grid, sides[p], cfg.sweep.extend_points), censored=sides[p])
    return json.dumps(out)
  return json.loads(distributed.agree_with_writer(decide() if distributed.is_writer() else ''))


def extend_grid(plan: Plan, writers: dict) -> tuple:
  """The grid-extension rounds (sweep.extend_rounds): while some seed of some size has its best rate censored,
  `extend_points` rates beyond that edge run as new lanes of every group of the parameterization, rows appended to
  metrics.csv. grid_extensions.json records each round (rates, censored sides, the CSVs' lengths before and after)
  so that a rerun keeps the rounds that finished. Returns (Spent, the rounds)."""
  cfg, workdir = plan.cfg, plan.workdir
  spent = Spent()
  record = _read_extensions(workdir) if distributed.is_writer() else dict(rounds=[])
  record = json.loads(distributed.agree_with_writer(json.dumps(record)))
  sizes = lambda: {n: os.path.getsize(os.path.join(workdir, n)) for n in plan.csv_names}
  stop = _StopOnSigterm(plan, (len(plan.groups) + 1) * (plan.chunks + 1))
  for k in range(cfg.sweep.extend_rounds):
    if k < len(record['rounds']) and record['rounds'][k]['done']:
      continue
    if k < len(record['rounds']):   # interrupted: cut its rows and run it again
      decided = record['rounds'][k]['added']
      if distributed.is_writer():
        _cut_csvs(workdir, record['rounds'][k]['csv_bytes_before'], plan.csv_names)
    else:
      decided = _extension_rates(plan, record)
      if not decided:
        break
      record['rounds'].append(dict(round=k + 1, added=decided, rates={p: d['rates'] for p, d in decided.items()},
                                   csv_bytes_before=sizes() if distributed.is_writer() else {}, done=False))
      if distributed.is_writer():
        results.write_json(os.path.join(workdir, EXTENSIONS), record)
    checkpoint.note(f'grid extension round {k + 1}: ' + '; '.join(
        f'{p}: best rate censored {"/".join(d["censored"])}, adding {", ".join(f"{lr:g}" for lr in d["rates"])}'
        for p, d in decided.items()))
    hps = {p: train.lane_grid(tuple(d['rates']), cfg.sweep.gamma0s, cfg.sweep.seeds, jnp.dtype(cfg.dtype), cfg.seed)
           for p, d in decided.items()}
    sub = plan._replace(groups=[g for g in plan.groups if g[0] in decided], hps=hps, programs={})
    sweeps = _Sweeps(sub)
    for g in range(len(sub.groups)):
      spent = spent.plus(train_group(sub, g, sweeps, stop, writers))
    sweeps.clear()
    for key, v in sub.programs.items():
      plan.programs[key + (k + 1,)] = dict(v, grid_extension_round=k + 1)
    record['rounds'][k].update(done=True, csv_bytes_after=sizes() if distributed.is_writer() else {})
    if distributed.is_writer():
      results.write_json(os.path.join(workdir, EXTENSIONS), record)
  return spent, record['rounds']


def _rows(plan: Plan, g, steps, metrics, diverged_step, budgets):
  """metrics.csv and density.csv rows of one group: lane by lane, step by step."""
  cfg = plan.cfg
  p_name, depth, width = plan.groups[g]
  hp = plan.hps[p_name]
  threshold = train.stability_threshold(cfg.optimizer)
  adam = cfg.optimizer.name == 'adam'
  adam_threshold = spectra.adam_threshold(None, cfg.optimizer.b1) if adam else float('nan')
  metric_columns = train.metric_columns(cfg)
  rows, density_rows = [], []
  for lane in range(hp.lr.shape[0]):
    for j, step in enumerate(steps):
      if step > budgets[lane]:   # a lane that retired at its budget has no rows after it
        break
      dstep = int(diverged_step[lane])
      diverged = dstep >= 0 and dstep < step
      meta = dict(parameterization=p_name, width=width, depth=depth, depth_L=plan.models[plan.groups[g]].depth,
                  optimizer=cfg.optimizer.name, lr_convention=cfg.param.lr_convention, lr=float(hp.lr[lane]),
                  gamma0=float(hp.gamma0[lane]), seed=int(hp.seed[lane]), step=int(step))
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


def finish(plan: Plan, train_time: float, spent: Spent, start_time: float, plots: bool, extensions,
           cache: dict) -> dict:
  """The coordinate check, the summary and the plots (process 0; all from the files already written)."""
  cfg, workdir = plan.cfg, plan.workdir
  if cfg.coord_check.enabled:
    cc_rows, cc_slopes = [], []
    depth = models.depths_of(cfg.model.name, cfg.depths)[0]
    for p_name in cfg.parameterizations:
      r, s = coord_check.run(cfg, plan.data, param_of(cfg, p_name), depth)
      cc_rows += r
      cc_slopes += s
    results.MetricsWriter(workdir, coord_check.ROW_COLUMNS, 'coord_check.csv').write(cc_rows)
    results.MetricsWriter(workdir, coord_check.SLOPE_COLUMNS, 'coord_check_slopes.csv').write(cc_slopes)
  rows = results.read_csv(os.path.join(workdir, 'metrics.csv'))
  run_time = train_time - spent.trace_s - spent.compile_s
  summary = dict(groups=best_rate.per_model(rows, cfg.select_by, cfg.select_step),
                 transfer=best_rate.transfer(rows, cfg.select_by, cfg.select_step,
                                             cfg.analysis.transfer_tolerance_exponent),
                 # sweep: planning, tracing, compiling and training (this process's part, if resumed); trace and
                 # compile: the sweep's programs, ahead of their first call (compile: XLA, or a persistent-cache
                 # hit); run: the rest of the sweep
                 wall_time_s=dict(sweep=round(train_time, 1), trace=round(spent.trace_s, 2),
                                  compile=round(spent.compile_s, 2), run=round(run_time, 1),
                                  total=round(time.time() - start_time, 1)),
                 # matrix FLOPs of the sweep's compiled programs (flops.py), and per second of `run` time: set
                 # that against the machine's matmul peak (benchmarks/machine.py) for the utilization
                 flops=dict(total=spent.flops, per_second_run=spent.flops / max(run_time, 1e-9), exact=spent.exact),
                 # this run's compiles that consulted the persistent cache, and those it answered (0 and 0 with the
                 # cache off)
                 compile_cache=cache,
                 # optimizer steps summed over the lanes of each compiled batch (padding included), and those that
                 # lanes retiring at divergence or at their budget (sweep.lane_steps) saved
                 lane_steps=dict(run=spent.lane_steps_run, saved=spent.lane_steps_saved),
                 programs=[dict(parameterization=k[0], depth=k[1], width=k[2], **v) for k, v in plan.programs.items()],
                 # the grid-extension rounds: the rates each added and the censored sides that asked for them
                 grid_extensions=[dict(round=r['round'], added=r['added']) for r in extensions],
                 lr_convention=cfg.param.lr_convention)
  if plots:
    from superconsistency import plot
    plot.plot_workdir(workdir, summary)
  return summary


def run(cfg, workdir: str, overwrite: bool = False, progress: bool = True, plots: bool = True) -> dict:
  """The sweep experiment, on a config that experiments.run has validated. Returns the summary."""
  if os.path.exists(os.path.join(workdir, 'summary.json')) and not overwrite:
    config_lib.check_workdir(workdir, overwrite)   # fails fast, before any data is loaded
  start_time = time.time()
  the_plan = plan(cfg, workdir)
  raise_writer_error(lambda: config_lib.check_workdir(workdir, overwrite))
  lock = []
  raise_writer_error(lambda: lock.append(results.WorkdirLock(workdir)))
  try:
    return _run_locked(the_plan, overwrite, progress, plots, start_time)
  finally:
    for held in lock:
      held.release()


def _run_locked(plan: Plan, overwrite, progress, plots, start_time):
  cache_before = compile_cache.counts()
  sweeps = _Sweeps(plan)
  ckpt, restored = open_checkpoints(plan, overwrite, sweeps)
  start(plan, restored)
  total = len(plan.groups) * plan.chunks
  bar = None
  if progress and distributed.is_writer():
    from tqdm import tqdm
    bar = tqdm(total=total, unit='chunk', file=sys.stderr, dynamic_ncols=True)
  writers = {}
  if distributed.is_writer():
    writers['metrics.csv'] = results.MetricsWriter(plan.workdir, results.columns(train.metric_columns(plan.cfg)))
    if 'density.csv' in plan.csv_names:
      writers['density.csv'] = results.MetricsWriter(plan.workdir, results.DENSITY_COLUMNS, 'density.csv')
  first_group, resume = 0, None
  if restored is not None:
    ckpt_step, meta, state = restored
    first_group = meta['group']
    if state is not None:
      lanes, buffers = state['lanes'], state['buffers']
      sweep = sweeps(first_group)
      retired = lanes_lib.Retired(**meta['retired']) if meta.get('retired') else None
      live = sweep.num_lanes if retired is None or retired.live is None else len(retired.live)
      if meta['lanes_padded'] != sweep.hp.lr.shape[0] or live != sweep.num_lanes:
        lanes = distributed.put_lanes(lanes_lib.repad(sweep, lanes, max(live, 1)), plan.mesh)
      if meta.get('buffer_lanes', meta['lanes_padded']) != sweep.hp.lr.shape[0]:
        buffers = lanes_lib.repad(sweep, buffers)
      resume = (lanes, buffers, meta['chunks_done'], retired)
    _resume_note(plan, ckpt_step, meta)
    if bar:
      bar.update(first_group * plan.chunks + (meta['chunks_done'] or 0))
  saver = _Saver(plan, ckpt, sweeps)
  spent = Spent()
  for g in range(first_group, len(plan.groups)):
    if bar:
      p_name, depth, width = plan.groups[g]
      bar.set_description(f'{p_name} depth={depth} width={width}')
    spent = spent.plus(train_group(plan, g, sweeps, saver, writers, resume if g == first_group else None,
                                   bar.update if bar else None))
  sweeps.clear()
  done = CheckpointId(len(plan.groups), None)
  if restored is None or first_group < len(plan.groups):
    saver.save(done, reason='sweep finished')   # a rerun after this goes straight to the extension and analysis
  extension_spent, extensions = extend_grid(plan, writers)
  spent = spent.plus(extension_spent)
  if bar:
    bar.close()
  train_time = time.time() - start_time
  if not distributed.is_writer():
    ckpt.close()
    return {}
  summary = finish(plan, train_time, spent, start_time, plots, extensions, compile_cache.counts_since(cache_before))
  if checkpoint.sigterm.received:
    raise checkpoint.Preempted(_preempted_message(plan.workdir, done))
  results.write_json(os.path.join(plan.workdir, 'summary.json'), results.json_safe(summary))   # last: marks the run finished
  if plan.cfg.checkpoint.keep_after_finish:
    ckpt.close()
  else:
    ckpt.remove()
  return summary


def _jsonable(value):
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return str(value)
