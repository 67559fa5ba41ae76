"""Benchmark: the Figure 1 run (`configs/figure1.py`) against the conventional procedure and the authors' script.

Times, one after the other in one process run, at the same settings, on synthetic CIFAR-shaped images (the
config's offline data), and writes a Markdown report (also printed):

1. ours: `configs/figure1.py` run through the project's API (`experiments.run(cfg, workdir, overwrite=True)`) into
   `--workdir`, with JAX's persistent compilation cache off, so compiling costs what it costs a user's first run.
   Time, compile time and matrix FLOPs are read from the run's summary.json (`wall_time_s`, `flops`). When
   `--workdir` is given, the workdir is then analyzed (`experiments.analyze`, not timed), so
   `--workdir results/figure1` also refreshes the gallery entry.
2. conventional: the same work done one run at a time, un-vmapped, as a training script usually does it. For each
   parameterization (μP, NTP) and width: for every sweep learning rate a fresh network trained for `select_step`
   steps by a jitted SGD step called from Python, with a host sync per step (`float(loss)`), and its loss on the
   `measure.loss_batch` measurement examples read at the end; then one trajectory run at the config's
   `plot.trajectory_lrs` rate for `num_steps` steps, measuring every `measure_every` steps (step 0 included) the
   loss on the measurement examples and λ_max by `measure.num_iters` power iterations on the
   `measure.sharpness_batch` examples, each iteration one jitted Hessian-vector product called from Python,
   warm-started from the previous measurement's vector. The model, data, per-layer learning-rate multipliers,
   initialization (`model.init(fold_in(PRNGKey(seed), 0))`) and batches (`data.plan` / `data.batch` with the data key
   `fold_in(PRNGKey(seed), 1)`) are the project's own, as a lane of seed `cfg.seed` gets them
   (`train.make_lane_program`), so its final sweep losses should match ours up to float rounding. Its matrix FLOPs
   are `flops.count` of each jitted function's jaxpr × its number of calls.
3. authors (with `--authors PATH`): the authors' public script `reproduce_jax.py`, run as a subprocess with its
   default settings (which `configs/figure1.py` copies) plus `--data`, `--out` (temporary folders) and `--device`;
   its input is the same synthetic images written as `data/cifar10_train.npz` (`images` uint8 N×32×32×3, `labels`
   int64 N), the cache file its `download_cifar10` reads first. Timed with the wall clock around the subprocess;
   the report also gives what starting Python with JAX and matplotlib alone costs. Its FLOPs are not counted (it
   is not traced here); the report uses the conventional procedure's count, the same work by construction.

The machine's float32 matmul peak (`machine.matmul_peak`) is measured in the same run, first; every utilization is
achieved matrix FLOP/s over it. The test suite's fast-compile XLA flags, if inherited, are removed (see below).

Command (from the repository root):
    python benchmarks/figure1.py --authors /path/to/reproduce_jax.py --workdir results/figure1   # all three
    python benchmarks/figure1.py --quick --out /tmp/figure1.md   # smoke test: width 16, 32 steps, < 2 min
    python benchmarks/figure1.py --skip conventional,authors     # ours only
Runtime of the full run: 1,911 s (32 min) on this 2-core CPU on 2026-12-03 (matmul peak 135 GFLOP/s; ours 168 s,
conventional 516 s, the authors' script 1,218 s, plus the peak measurement); 1,992 s earlier that day (peak 118);
1,279 s on 2026-12-02; the authors' script alone has taken 700-1,350 s on other days.
`--quick`: 50-95 s.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the package
# The test suite's fast-compile XLA flags (tests/conftest.py FAST_COMPILE, inherited by the subprocess it starts)
# make XLA's generated code several times slower (a chunk of the --quick run: ~3 s -> ~30 s), and that code is what
# this benchmark times: they are removed before JAX starts its backend. Any other XLA flag is kept.
FAST_COMPILE_FLAGS = ('--xla_backend_optimization_level=0', '--xla_cpu_use_fusion_emitters=false')


def drop_fast_compile_flags():
  flags = os.environ.get('XLA_FLAGS', '').split()
  dropped = [f for f in flags if f in FAST_COMPILE_FLAGS]
  kept = ' '.join(f for f in flags if f not in FAST_COMPILE_FLAGS)
  if dropped and kept:
    os.environ['XLA_FLAGS'] = kept
  elif dropped:
    del os.environ['XLA_FLAGS']
  return dropped


DROPPED_XLA_FLAGS = drop_fast_compile_flags()

import jax  # noqa: E402
from machine import machine_info, machine_table, matmul_peak, write_report  # noqa: E402  (benchmarks/machine.py)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from superconsistency import config as C  # noqa: E402
from superconsistency import data as D  # noqa: E402
from superconsistency import experiments  # noqa: E402
from superconsistency import flops as flops_lib  # noqa: E402
from superconsistency import models as M  # noqa: E402
from superconsistency import results  # noqa: E402
from superconsistency import runner  # noqa: E402
from superconsistency import spectra  # noqa: E402
from superconsistency import train as T  # noqa: E402

CONFIG = os.path.join(ROOT, 'configs', 'figure1.py')
QUICK = dict(widths=(16,), num_steps=32, select_step=16, measure_every=8)
PROCEDURES = ('ours', 'conventional', 'authors')
TARGET_SPEEDUP = 3.0         # figure1 at least this much faster than the authors' script and the conventional one
TARGET_UTILIZATION = 0.25    # of the matmul peak, over the whole figure1 run (compile included)
TARGET_UTILIZATION_N256 = 0.40   # of the matmul peak, over figure1's training chunks at N = 256
TARGET_MEASURE_SHARE = 0.25      # of a chunk's time: the in-loop measurements (summary.json programs' steps_s/measure_s)

# seconds tracing + lowering and compiling, by phase of this benchmark (JAX's monitoring events; the conventional
# procedure's compile time: ours reads its own from summary.json)
COMPILE_EVENTS = {'/jax/core/compile/jaxpr_trace_duration': 'trace',
                  '/jax/core/compile/jaxpr_to_mlir_module_duration': 'trace',
                  '/jax/core/compile/backend_compile_duration': 'compile'}
SPENT = collections.defaultdict(float)
PHASE = ['setup']


def _on_compile_event(event, duration, **kwargs):
  del kwargs
  if event in COMPILE_EVENTS:
    SPENT[PHASE[0], COMPILE_EVENTS[event]] += duration


def make_config(quick):
  """configs/figure1.py, shrunk through its fields for --quick; one seed on the fixed grid, as the authors' script
  runs (the gallery entry adds seeds and grid extension: more work, not a different program)."""
  c = C.from_file(CONFIG)
  c.sweep.seeds, c.sweep.extend_rounds = (0,), 0
  if quick:
    c.widths, c.num_steps = QUICK['widths'], QUICK['num_steps']
    c.select_step, c.measure_every = QUICK['select_step'], QUICK['measure_every']
  experiments.validate(c)
  return c


def select_step(cfg):
  return cfg.select_step or cfg.num_steps


def matching(lr, grid):
  """The grid rate that a metrics.csv rate (float32, printed as a double) stands for."""
  return min(grid, key=lambda g: abs(g - lr))


# ---------------------------------------------------------------------------------------------------- ours


def run_ours(cfg, workdir, analyze, log):
  jax.config.update('jax_enable_compilation_cache', False)   # a cold run: nothing loaded from disk
  t0 = time.perf_counter()
  experiments.run(cfg, workdir, overwrite=True, progress=False)
  wall = time.perf_counter() - t0
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  log(f'ours: {wall:.1f} s (summary.json: total {summary["wall_time_s"]["total"]} s, compile '
      f'{summary["wall_time_s"].get("compile")} s)')
  rows = results.read_csv(os.path.join(workdir, 'metrics.csv'))
  read_at = select_step(cfg)
  sweep, trajectory = {}, collections.defaultdict(list)
  for r in rows:
    p, width = r['parameterization'], int(r['width'])
    lr = matching(r['lr'], cfg.sweep.lrs[p])
    if int(r['step']) == read_at:
      sweep[p, width, lr] = r['train_loss']
    if abs(r['lr'] - cfg.plot.trajectory_lrs[p]) <= 1e-6 * cfg.plot.trajectory_lrs[p]:   # the trajectory's lane
      trajectory[p, width].append((int(r['step']), r['train_loss'], r['sharpness']))
  lanes = sum(len(cfg.sweep.lrs[p]) * len(cfg.sweep.gamma0s) * len(cfg.sweep.seeds) for p, _, _ in runner.groups_of(cfg))
  analyzed = None
  if analyze:
    t0 = time.perf_counter()
    experiments.analyze(workdir)
    analyzed = time.perf_counter() - t0
    log(f'ours: analyzed {workdir} in {analyzed:.1f} s (not timed)')
  recorded = summary.get('lane_steps', {})   # lanes retiring at their budget or at divergence run fewer steps
  return dict(wall=wall, summary=summary, lane_steps=recorded.get('run', lanes * cfg.num_steps),
              lane_steps_saved=recorded.get('saved'), lanes=lanes, sweep=sweep,
              trajectory={k: sorted(v) for k, v in trajectory.items()}, analyzed_s=analyzed)


# ---------------------------------------------------------------------------------------------------- conventional


def conventional_functions(cfg, data, model):
  """The jitted functions of one (parameterization, depth, width): init, SGD step, loss, power-iteration step."""
  loss_of_outputs = M.LOSSES[cfg.loss]
  _, lr_multipliers, _ = T.make_optimizer(cfg.optimizer, model)

  def loss(params, x, y, gamma0):
    return loss_of_outputs(model.apply(params, x, gamma0), y)

  def init(seed):
    return model.init(jax.random.fold_in(jax.random.PRNGKey(seed), 0))

  def sgd_step(params, lr, gamma0, arrays, data_key, step, idx):
    x, y = data.batch(arrays, data_key, step, idx)
    value, grads = jax.value_and_grad(loss)(params, x, y, gamma0)
    mults = lr_multipliers(gamma0)
    return {n: w - (lr * mults[n]) * grads[n] for n, w in params.items()}, value

  def power_step(params, v, x, y, gamma0):
    """One power iteration: Hv, the Rayleigh quotient vᵀHv (v has norm 1) and the next vector Hv/‖Hv‖."""
    hv = spectra.hvp(lambda q: loss(q, x, y, gamma0), params, v)
    dot = lambda a, b: sum(jnp.vdot(a[n], b[n]) for n in a)
    norm = jnp.sqrt(dot(hv, hv))
    return dot(v, hv), {n: h / norm for n, h in hv.items()}

  return dict(init=jax.jit(init), step=jax.jit(sgd_step), loss=jax.jit(loss), power=jax.jit(power_step),
              plan=jax.jit(data.plan, static_argnums=3))


def tree_normalized(tree):
  norm = jnp.sqrt(sum(jnp.vdot(leaf, leaf) for leaf in jax.tree.leaves(tree)))
  return jax.tree.map(lambda leaf: leaf / norm, tree)


def planned_calls(cfg, p):
  """Calls of each function in one group when no run diverges."""
  num_lrs, measurements = len(cfg.sweep.lrs[p]), cfg.num_steps // cfg.measure_every + 1
  return dict(step=num_lrs * select_step(cfg) + cfg.num_steps, loss=num_lrs + measurements,
              power=measurements * cfg.measure.num_iters)


def flops_per_call(fns, seed, arrays, data_key, gamma0, loss_batch, sharpness_batch):
  """Matrix FLOPs of one call of each jitted function (flops.py on its jaxpr; init and plan have none), and
  whether every count is exact."""
  params = jax.eval_shape(fns['init'], seed)
  idx = jax.eval_shape(lambda: fns['plan'](arrays, data_key, 0, 1)).shape[1:]
  args = dict(step=(params, gamma0, gamma0, arrays, data_key, 0, jax.ShapeDtypeStruct(idx, jnp.int32)),
              loss=(params, *loss_batch, gamma0), power=(params, params, *sharpness_batch, gamma0))
  counts = {name: flops_lib.count(fns[name].trace(*a).jaxpr) for name, a in args.items()}
  return {name: c.flops for name, c in counts.items()}, all(c.exact for c in counts.values())


def conventional_setup(cfg):
  dtype = jnp.dtype(cfg.dtype)
  m = cfg.measure
  data = D.make_data(cfg.data, cfg.num_steps, runner.measure_set_size(cfg), dtype)
  arrays = data.arrays
  seed = int(cfg.sweep.seeds[0]) + cfg.seed     # train.lane_grid's lane seed
  return dict(dtype=dtype, data=data, arrays=arrays, seed=seed, key=jax.random.PRNGKey(seed),
              data_key=jax.random.fold_in(jax.random.PRNGKey(seed), 1),   # train.make_lane_program's init
              gamma0=jnp.asarray(cfg.sweep.gamma0s[0], dtype),
              loss_batch=(arrays['measure_x'][:m.loss_batch], arrays['measure_y'][:m.loss_batch]),
              sharpness_batch=(arrays['measure_x'][:m.sharpness_batch], arrays['measure_y'][:m.sharpness_batch]))


def group_flops_per_call(s, fns):
  return flops_per_call(fns, s['seed'], s['arrays'], s['data_key'], s['gamma0'], s['loss_batch'],
                        s['sharpness_batch'])


def flops_of_calls(per_call, calls):
  return sum(per_call[name] * calls.get(name, 0) for name in per_call)


def conventional_planned_flops(cfg):
  """The conventional procedure's FLOPs without running it (traced only): the authors' script's work too."""
  s = conventional_setup(cfg)
  total = 0.0
  for p, depth, width in runner.groups_of(cfg):
    model = M.make_model(cfg.model, s['data'].spec, width, depth, runner.param_of(cfg, p), s['dtype'])
    per_call, _ = group_flops_per_call(s, conventional_functions(cfg, s['data'], model))
    total += flops_of_calls(per_call, planned_calls(cfg, p))
  return total


def run_conventional(cfg, log):
  assert cfg.optimizer.name == 'sgd' and cfg.optimizer.momentum == 0 and cfg.optimizer.warmup_steps == 0, \
      'the conventional procedure here is plain SGD'
  assert not cfg.param.center and len(cfg.sweep.gamma0s) == 1 and len(cfg.sweep.seeds) == 1
  PHASE[0] = 'conventional'
  t_start = time.perf_counter()
  s = conventional_setup(cfg)
  m, arrays, gamma0, dtype = cfg.measure, s['arrays'], s['gamma0'], s['dtype']
  sweep, trajectory, diverged, done = {}, {}, [], []

  def train(fns, calls, lr, num_steps, measure_at=()):
    """A fresh network trained `num_steps` SGD steps, measured at the steps in `measure_at` (the loss on the
    measurement examples, λ_max by power iteration warm-started from the previous measurement). Returns (the
    final parameters, or None if the loss left [0, loss_cap], and [(step, loss, λ_max)])."""
    lr = jnp.asarray(lr, dtype)
    params = fns['init'](s['seed'])
    plan = np.asarray(fns['plan'](arrays, s['data_key'], 0, num_steps))   # every step's batch indices
    vector, measured = None, []
    for step in range(num_steps + 1):
      if step in measure_at:
        if vector is None:   # the lane's first power vector: normal(fold_in(key, 2)) over the flat parameters
          flat, unravel = ravel_pytree(params)
          vector = tree_normalized(unravel(jax.random.normal(jax.random.fold_in(s['key'], 2), flat.shape, dtype)))
        for _ in range(m.num_iters):
          eigenvalue, vector = fns['power'](params, vector, *s['sharpness_batch'], gamma0)
        calls['power'] += m.num_iters
        calls['loss'] += 1
        measured.append((step, float(fns['loss'](params, *s['loss_batch'], gamma0)), abs(float(eigenvalue))))
      if step == num_steps:
        break
      params, loss = fns['step'](params, lr, gamma0, arrays, s['data_key'], step, plan[step])
      calls['step'] += 1
      loss = float(loss)   # the host sync of every step
      if not np.isfinite(loss) or loss > cfg.loss_cap:
        return None, measured
    return params, measured

  for p, depth, width in runner.groups_of(cfg):
    t0 = time.perf_counter()
    model = M.make_model(cfg.model, s['data'].spec, width, depth, runner.param_of(cfg, p), dtype)
    fns, calls = conventional_functions(cfg, s['data'], model), collections.Counter()
    for lr in cfg.sweep.lrs[p]:
      params, _ = train(fns, calls, lr, select_step(cfg))
      if params is None:
        sweep[p, width, lr] = float('nan')
        diverged.append(f'{p} N={width} lr={lr}')
      else:
        sweep[p, width, lr] = float(fns['loss'](params, *s['loss_batch'], gamma0))
        calls['loss'] += 1
    lr = cfg.plot.trajectory_lrs[p]
    assert lr > 0, 'the config names its trajectory rates'
    params, trajectory[p, width] = train(fns, calls, lr, cfg.num_steps,
                                         set(range(0, cfg.num_steps + 1, cfg.measure_every)))
    if params is None:
      diverged.append(f'{p} N={width} lr={lr} (trajectory)')
    done.append((p, fns, calls))
    log(f'conventional: {p} width {width}: {time.perf_counter() - t0:.1f} s')
  wall = time.perf_counter() - t_start
  PHASE[0] = 'after'
  flops, planned, exact = 0.0, 0.0, True
  for p, fns, calls in done:   # traced after the clock stopped
    per_call, group_exact = group_flops_per_call(s, fns)
    flops, planned = flops + flops_of_calls(per_call, calls), planned + flops_of_calls(per_call, planned_calls(cfg, p))
    exact = exact and group_exact
  return dict(wall=wall, steps=sum(c['step'] for _, _, c in done), sweep=sweep, trajectory=trajectory,
              diverged=diverged, flops=flops, exact=exact, planned_flops=planned,
              events=dict(trace=SPENT['conventional', 'trace'], compile=SPENT['conventional', 'compile']))


# ---------------------------------------------------------------------------------------------------- authors


def write_authors_data(cfg, data_dir):
  """The config's synthetic training images as the script's CIFAR-10 cache: data_dir/cifar10_train.npz with
  `images` (N, 32, 32, 3) uint8 and `labels` (N,) int64. The images (about unit variance) are mapped to pixels so
  that the script's normalization (x/127.5 − 1) gives them back divided by 3. Returns N."""
  data = D.make_data(cfg.data, cfg.num_steps, runner.measure_set_size(cfg), jnp.float32)
  x, y = np.asarray(data.arrays['train_x']), np.asarray(data.arrays['train_y'])
  images = np.clip(np.round((x / 3.0 + 1.0) * 127.5), 0, 255).astype(np.uint8)
  os.makedirs(data_dir, exist_ok=True)
  np.savez(os.path.join(data_dir, 'cifar10_train.npz'), images=images, labels=y.astype(np.int64))
  return images.shape[0]


def authors_settings(cfg, quick, num_images):
  """The script's flags besides --data/--out/--device: none (its defaults are configs/figure1.py's), or with --quick
  the shrunk config's widths and steps."""
  if not quick:
    return []
  return ['--widths', *map(str, cfg.widths), '--steps', str(cfg.num_steps), '--sweep-steps', str(select_step(cfg)),
          '--snapshots', str(cfg.num_steps // cfg.measure_every + 1), '--subset-size', str(num_images)]


def python_startup_seconds():
  """Wall time of a Python process that only imports JAX and matplotlib and starts the backend."""
  t0 = time.perf_counter()
  subprocess.run([sys.executable, '-c', 'import jax, jax.numpy, matplotlib.pyplot; jax.devices()'], check=True,
                 capture_output=True)
  return time.perf_counter() - t0


def run_authors(script, cfg, quick, log):
  device = {'cpu': 'cpu', 'gpu': 'cuda'}.get(jax.default_backend(), 'auto')
  with tempfile.TemporaryDirectory(prefix='figure1_authors_') as tmp:
    data_dir, out_dir = os.path.join(tmp, 'data'), os.path.join(tmp, 'out')
    num_images = write_authors_data(cfg, data_dir)
    settings = authors_settings(cfg, quick, num_images)
    cmd = [sys.executable, os.path.abspath(script), '--data', data_dir, '--out', out_dir, '--device', device,
           *settings]
    startup = python_startup_seconds()
    log(f'authors: {" ".join(shlex.quote(c) for c in cmd)}')
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
      raise RuntimeError(f'the authors\' script failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
    with open(os.path.join(out_dir, 'results.json')) as f:
      saved = json.load(f)
  log(f'authors: {wall:.1f} s')
  conf, runs = saved['config'], saved['results']
  dynamics = [k for k in runs if k.startswith('dynamic:')]
  sweeps = [k for k in runs if k.startswith('sweep:')]
  return dict(wall=wall, startup=startup, settings=settings, device=device, num_images=num_images,
              steps=len(dynamics) * conf['steps'] + len(sweeps) * conf['sweep_steps'], runs=len(dynamics) + len(sweeps),
              config={k: conf[k] for k in ('widths', 'steps', 'sweep_steps', 'snapshots', 'hessian_iters',
                                           'hessian_batch', 'batch_size', 'subset_size')})


# ---------------------------------------------------------------------------------------------------- comparison


def nan_abs_diff(pairs):
  """max |a − b| over pairs, both NaN counting 0 and one NaN ∞; nan if there are none."""
  diffs = [0.0 if np.isnan(a) and np.isnan(b) else abs(a - b) if np.isfinite(a - b) else float('inf')
           for a, b in pairs]
  return max(diffs) if diffs else float('nan')


def agreement(cfg, ours, conv):
  """max |Δ| ours vs conventional: the sweep losses read at select_step, the trajectory losses at every
  measurement, and the largest relative difference of the trajectories' λ_max."""
  sweep = nan_abs_diff([(ours['sweep'][k], conv['sweep'][k]) for k in conv['sweep'] if k in ours['sweep']])
  by_rate = {}   # (parameterization, rate) -> max |Δ| over the widths: where rounding grew
  for k in conv['sweep']:
    if k in ours['sweep']:
      p, _, lr = k
      by_rate[p, lr] = max(by_rate.get((p, lr), 0.0), nan_abs_diff([(ours['sweep'][k], conv['sweep'][k])]))
  loss_pairs, sharp_rel = [], []
  for k, measured in conv['trajectory'].items():
    theirs = {step: (loss, lam) for step, loss, lam in ours['trajectory'].get(k, [])}
    for step, loss, lam in measured:
      if step in theirs:
        loss_pairs.append((theirs[step][0], loss))
        sharp_rel.append(abs(theirs[step][1] - lam) / max(abs(lam), 1e-12))
  return dict(sweep=sweep, by_rate=by_rate, num_sweep=len(conv['sweep']), trajectory=nan_abs_diff(loss_pairs),
              num_trajectory=len(loss_pairs), sharpness_rel=max(sharp_rel) if sharp_rel else float('nan'))


def width_utilization(summary, width, peak_flops):
  """Utilization over ours' training at one width, from per-group costs in summary.json if it records them
  (`programs`: [{width, run_s, flops}, ...]); None if it does not."""
  groups = [g for g in summary.get('programs', []) if g.get('width') == width]
  if not groups or any('run_s' not in g or 'flops' not in g for g in groups):
    return None
  run_s = sum(g['run_s'] for g in groups)
  return sum(g['flops'] for g in groups) / run_s / peak_flops if run_s > 0 else None


def measurement_share(summary, width=None):
  """(by time, by FLOPs) of the in-loop measurements' share of ours' chunks (all groups, or one width), from
  summary.json's `programs` (steps_s/measure_s: host lanes with host steps; measure_fraction_flops × flops); None
  where it does not record them."""
  groups = [g for g in summary.get('programs', []) if width is None or g.get('width') == width]
  timed = [g for g in groups if 'measure_s' in g and 'steps_s' in g]
  total = sum(g['measure_s'] + g['steps_s'] for g in timed)
  by_time = sum(g['measure_s'] for g in timed) / total if timed and total > 0 else None
  flops = sum(g.get('flops', 0) for g in groups)
  by_flops = (sum(g['measure_fraction_flops'] * g['flops'] for g in groups) / flops
              if groups and flops and all('measure_fraction_flops' in g for g in groups) else None)
  return by_time, by_flops


# ---------------------------------------------------------------------------------------------------- report


def fmt_flops(x):
  return '—' if x is None else f'{x / 1e12:.3f} TFLOP' if x >= 1e11 else f'{x / 1e9:.2f} GFLOP'


def fmt_rate(x):
  return '—' if x is None else f'{x / 1e9:.2f} GFLOP/s'


def fmt_pct(x):
  return '—' if x is None else f'{100 * x:.1f}%'


def fmt_s(x):
  return '—' if x is None else f'{x:.1f} s'


def target_row(name, value, threshold, shown, below=False):
  """A row of the targets table: met when value ≥ threshold (≤ with `below`)."""
  if value is None:
    return f'| {name} | not measured | — |'
  met = value <= threshold if below else value >= threshold
  return f'| {name} | {shown} | {"**met**" if met else "**not met**"} |'


def programs_text(ours):
  """How ours compiled each group (summary.json `programs`, if recorded), in a few words."""
  programs = ours['summary'].get('programs', []) if ours else []
  return '; '.join(f'{g.get("parameterization")} N={g.get("width")}: lanes {g.get("lanes")}, steps {g.get("steps")}, '
                   f'{g.get("microbatches", 1)} micro-batch{"es" if g.get("microbatches", 1) > 1 else ""}'
                   + (f', {g["compiled"]} programs compiled, {g["shared"]} shared with an earlier group'
                      if 'shared' in g else '')
                   for g in programs)


def report(args, cfg, info, peak_rates, peak, ours, conv, auth, agree, total):
  peak_flops = peak * 1e9
  command = 'python benchmarks/figure1.py' + ''.join(
      f' {a}' for a in (['--quick'] if args.quick else []) + (['--skip', args.skip] if args.skip else []) +
      (['--authors', args.authors] if args.authors else []) + (['--workdir', args.workdir] if args.workdir else []))
  L = ['# Figure 1 benchmark: configs/figure1.py vs the conventional procedure and the authors\' script' +
       (' (--quick: tiny sizes, numbers not meaningful)' if args.quick else ''), '',
       f'Produced by `{command}` in {total:.0f} s (the three procedures one after the other in one process run).', '']
  L += machine_table(info)
  L += [f'| float32 matmul peak (measured in this run; n×n @ n×n) | **{peak:.1f} GFLOP/s** '
        f'({", ".join(f"n={n}: {r:.1f}" for n, r in peak_rates.items())}) |', '']

  groups = runner.groups_of(cfg)
  shrunk = ' shrunk by --quick: ' + ', '.join(f'{k}={v}' for k, v in QUICK.items()) if args.quick else ''
  L += ['## Settings', '',
        f'`configs/figure1.py`{shrunk}: '
        f'SimpleConvNet, {", ".join(cfg.parameterizations)} × widths {", ".join(map(str, cfg.widths))} '
        f'({len(groups)} groups); SGD, batch {cfg.data.batch_size}, {cfg.data.name} offline = synthetic CIFAR-shaped '
        f'images ({cfg.data.num_train} training examples, epoch mode); sweep rates μP '
        f'{tuple(cfg.sweep.lrs.mup)}, NTP {tuple(cfg.sweep.lrs.ntk)}, read at step {select_step(cfg)}; trajectory '
        f'rates μP {cfg.plot.trajectory_lrs.mup}, NTP {cfg.plot.trajectory_lrs.ntk}, {cfg.num_steps} steps, measured '
        f'every {cfg.measure_every} steps (step 0 included: {cfg.num_steps // cfg.measure_every + 1} measurements): '
        f'loss on {cfg.measure.loss_batch} examples, λ_max by {cfg.measure.num_iters} warm-started power iterations '
        f'on {cfg.measure.sharpness_batch}. XLA_FLAGS: `{os.environ.get("XLA_FLAGS") or "(unset)"}`' +
        (f' (removed: the test suite\'s fast-compile flags `{" ".join(DROPPED_XLA_FLAGS)}`, which slow down the '
         'code timed here)' if DROPPED_XLA_FLAGS else '') + '.', '',
        '- **ours**: one sweep per group, the sweep rates as its lanes (the trajectory is the lane at the '
        f'trajectory rate; sweep.lane_steps = {cfg.sweep.get("lane_steps", "(absent)")!r}); every lane is measured '
        'at every measurement it reaches (loss on the measurement and eval sets, accuracy, λ_max by power iteration = '
        'num_iters + 1 HVPs with the Rayleigh quotient). Run by `experiments.run` with the persistent compilation '
        'cache off.' + (f' How each group was compiled (summary.json `programs`): {programs_text(ours)}.'
                        if programs_text(ours) else ''),
        f'- **conventional**: one run at a time, un-vmapped: {sum(len(cfg.sweep.lrs[p]) for p, _, _ in groups)} sweep '
        f'runs of {select_step(cfg)} steps and {len(groups)} trajectory runs of {cfg.num_steps} steps; a jitted SGD '
        'step per call with `float(loss)` after it; at each measurement of a trajectory run, num_iters jitted HVPs '
        '(one call each) and a jitted loss. The project\'s model, data, per-layer learning-rate multipliers, '
        'initialization and batches (identical to ours\' lanes); each step over the whole batch (a conventional '
        'SGD step does not split it into micro-batches).',
        '- **authors**: `reproduce_jax.py` ' + (
            f'(`{args.authors}`), a subprocess with flags `{" ".join(auth["settings"]) or "(its defaults)"}` plus '
            f'`--data`, `--out` (temporary folders) and `--device {auth["device"]}`; its input: the same synthetic '
            f'images as `cifar10_train.npz` ({auth["num_images"]} images). Its settings as it recorded them: '
            f'{auth["config"]}. Its defaults also apply its random crop + flip augmentation on the host (NumPy), '
            'which ours and the conventional procedure do not do.' if auth else '— not run (`--authors PATH`).'), '']

  s = ours['summary'] if ours else None
  w = s['wall_time_s'] if s else {}
  fl = s.get('flops', {}) if s else {}
  ours_total = w.get('total') if s else None
  ours_flops = fl.get('total') if s else None
  conv_flops = conv['flops'] if conv else None
  auth_flops = conv['planned_flops'] if conv else (auth and auth.get('planned_flops'))
  cols = [('ours', ours), ('conventional', conv), ('authors', auth)]

  def cell(name, fn):
    proc = dict(cols)[name]
    if proc is None:
      return 'not run'
    try:
      value = fn(proc)
    except (KeyError, TypeError, ZeroDivisionError):
      return '—'
    return value

  L += ['## Results', '', '| | ours | conventional | authors |', '|---|---|---|---|']
  L.append('| **wall time** | ' + ' | '.join([
      cell('ours', lambda o: f'**{o["summary"]["wall_time_s"]["total"]:.1f} s** (summary.json `total`; '
           f'{o["wall"]:.1f} s around `experiments.run`)'),
      cell('conventional', lambda c: f'**{c["wall"]:.1f} s**'),
      cell('authors', lambda a: f'**{a["wall"]:.1f} s** (of which ~{a["startup"]:.1f} s starting Python with JAX '
           'and matplotlib)')]) + ' |')
  L.append('| compile | ' + ' | '.join([
      cell('ours', lambda o: f'{w["compile"]:.1f} s XLA + {w["trace"]:.1f} s tracing/lowering'),
      cell('conventional', lambda c: f'{c["events"]["compile"]:.1f} s XLA + {c["events"]["trace"]:.1f} s '
           'tracing/lowering (JAX\'s compile events)'),
      cell('authors', lambda a: 'not measured (inside the subprocess)')]) + ' |')
  L.append('| run (wall − compile) | ' + ' | '.join([
      cell('ours', lambda o: f'{w["run"]:.1f} s (summary.json `run`: the sweep minus its tracing and compiling; '
           f'sweep {w["sweep"]:.1f} s)'),
      cell('conventional', lambda c: f'{c["wall"] - c["events"]["compile"] - c["events"]["trace"]:.1f} s'),
      cell('authors', lambda a: '—')]) + ' |')
  L.append('| optimizer steps | ' + ' | '.join([
      cell('ours', lambda o: f'{o["lane_steps"]:,} lane-steps ({o["lanes"]} lanes' + (
          f'; {o["lane_steps_saved"]:,} saved by retiring lanes)' if o['lane_steps_saved'] is not None
          else f' × {cfg.num_steps})')),
      cell('conventional', lambda c: f'{c["steps"]:,}'),
      cell('authors', lambda a: f'{a["steps"]:,} ({a["runs"]} runs)')]) + ' |')
  L.append('| wall time per optimizer step | ' + ' | '.join([
      cell('ours', lambda o: f'{1e3 * ours_total / o["lane_steps"]:.2f} ms'),
      cell('conventional', lambda c: f'{1e3 * c["wall"] / c["steps"]:.2f} ms'),
      cell('authors', lambda a: f'{1e3 * a["wall"] / a["steps"]:.2f} ms')]) + ' |')
  L.append('| matrix FLOPs | ' + ' | '.join([
      cell('ours', lambda o: f'{fmt_flops(ours_flops)}' + ('' if fl.get('exact', True) else ' (a lower bound)')),
      cell('conventional', lambda c: f'{fmt_flops(conv_flops)}' + ('' if c['exact'] else ' (a lower bound)')),
      cell('authors', lambda a: f'{fmt_flops(auth_flops)} (the conventional count: the same work; not traced)'
           if auth_flops else 'not counted')]) + ' |')
  rate = lambda f, t: f / t if f and t else None
  L.append('| achieved FLOP/s over the wall time | ' + ' | '.join([
      cell('ours', lambda o: f'{fmt_rate(rate(ours_flops, ours_total))} (over `run` only: '
           f'{fmt_rate(fl.get("per_second_run"))})'),
      cell('conventional', lambda c: fmt_rate(rate(conv_flops, c['wall']))),
      cell('authors', lambda a: fmt_rate(rate(auth_flops, a['wall'])))]) + ' |')
  L.append('| utilization (achieved / peak) | ' + ' | '.join([
      cell('ours', lambda o: f'{fmt_pct(rate(ours_flops, ours_total) / peak_flops)} (over `run` only: '
           f'{fmt_pct(fl["per_second_run"] / peak_flops)})'),
      cell('conventional', lambda c: fmt_pct(rate(conv_flops, c['wall']) / peak_flops)),
      cell('authors', lambda a: fmt_pct(rate(auth_flops, a['wall']) / peak_flops))]) + ' |')
  conv_ratio = conv['wall'] / ours_total if conv and ours_total else None
  auth_ratio = auth['wall'] / ours_total if auth and ours_total else None
  L.append(f'| **wall time / ours** | 1 | {f"**{conv_ratio:.2f}×**" if conv_ratio else "—"} | '
           f'{f"**{auth_ratio:.2f}×**" if auth_ratio else "—"} |')
  L.append('')
  if conv and conv['diverged']:
    L += [f'Conventional runs stopped by a loss outside [0, loss_cap={cfg.loss_cap}]: {", ".join(conv["diverged"])}.',
          '']
  if ours and ours['analyzed_s'] is not None:
    L += [f'The workdir `{args.workdir}` was then analyzed (`experiments.analyze`, {ours["analyzed_s"]:.1f} s, not '
          'timed above), so it is a complete gallery entry.', '']

  util_whole = rate(ours_flops, ours_total) / peak_flops if ours_flops and ours_total else None
  util_n256 = width_utilization(s, 256, peak_flops) if s else None
  L += ['## Targets of the issue', '', '| target | measured | met? |', '|---|---|---|']
  L.append(target_row(f'figure1 ≥ {TARGET_SPEEDUP:.0f}× faster than the authors\' script', auth_ratio,
                      TARGET_SPEEDUP, f'{auth_ratio:.2f}×' if auth_ratio else ''))
  L.append(target_row(f'figure1 ≥ {TARGET_SPEEDUP:.0f}× faster than the conventional procedure', conv_ratio,
                      TARGET_SPEEDUP, f'{conv_ratio:.2f}×' if conv_ratio else ''))
  L.append(target_row(f'utilization ≥ {TARGET_UTILIZATION:.0%} of peak over the whole figure1 run (compile '
                      'included)', util_whole, TARGET_UTILIZATION, fmt_pct(util_whole)))
  L.append(target_row(f'utilization ≥ {TARGET_UTILIZATION_N256:.0%} of peak over figure1\'s training chunks at '
                      'N = 256', util_n256, TARGET_UTILIZATION_N256, fmt_pct(util_n256)))
  share_time, share_flops = measurement_share(s) if s else (None, None)
  L.append(target_row(f'in-loop measurements ≤ {TARGET_MEASURE_SHARE:.0%} of a chunk\'s time', share_time,
                      TARGET_MEASURE_SHARE,
                      f'{fmt_pct(share_time)} over all groups (N = ' + ', '.join(
                          f'{w}: {fmt_pct(measurement_share(s, w)[0])}' for w in cfg.widths) +
                      f'; by FLOPs {fmt_pct(share_flops)})' if s else '', below=True))
  L.append('')
  if util_n256 is None:
    L += ['The N = 256 utilization is not measured: summary.json gives the run time and FLOPs of the whole sweep '
          'only. It needs them per group (`programs`: [{parameterization, width, depth, run_s, flops}], run_s: '
          'the group\'s chunk time without its tracing and compiling).' +
          (' (Not at this size either: --quick has no width 256.)' if 256 not in cfg.widths else ''), '']
  if agree:
    L += ['## Ours vs conventional: the same numbers', '',
          'The conventional runs use the lanes\' initialization and batches, so they compute what ours computes, '
          'up to float rounding (ours\' compiled programs, whose steps sum micro-batch gradients, vs one jitted '
          'whole-batch step per call; 0 means bit for bit). Rounding differences grow fastest at the largest rates, '
          'which train beyond the edge of stability:', '',
          f'- max |Δ| of the final sweep losses (train_loss at step {select_step(cfg)}, {agree["num_sweep"]} runs): '
          f'**{agree["sweep"]:.3g}**; by rate (max over the widths): ' + ', '.join(
              f'{p} {lr:g}: {d:.2g}' for (p, lr), d in sorted(agree['by_rate'].items())),
          f'- max |Δ| of the trajectory losses ({agree["num_trajectory"]} measurements): {agree["trajectory"]:.3g}',
          f'- max relative |Δ| of the trajectories\' λ_max: {agree["sharpness_rel"]:.3g} (ours ends its '
          f'{cfg.measure.num_iters} power iterations with one more HVP, the Rayleigh quotient at the final vector; '
          'the conventional estimate is vᵀHv at the last iterate, as the authors\' script computes it)', '']
  L += ['## Notes', '',
        '- Ours measures every lane at every measurement it reaches (the others measure the trajectory runs only), '
        'and each measurement also computes the eval loss and accuracy; ours\' lane-steps are summary.json\'s '
        '`lane_steps.run` when it has them (else lanes × num_steps). The ratios are of wall time for the whole '
        'figure, not per step.',
        '- Ours\' times come from summary.json (`wall_time_s`: total = everything `experiments.run` does, the '
        'summary and plots included; sweep = from the start to the end of training, i.e. planning (generating the '
        'data, building the models), tracing, compiling, training and the final checkpoint; compile = XLA; run = '
        'sweep − trace − compile, so it includes the planning); its FLOPs from `flops.total` (flops.py on the '
        'compiled programs\' jaxprs × their calls).',
        '- The conventional FLOPs count the jitted SGD step, loss and HVP calls made (model initialization and batch '
        'plans have no matrix products). Compile times are JAX\'s own compile events during that phase.',
        '- The authors\' script runs in its own Python process; its wall time includes starting Python and importing '
        'JAX (given above), reading the .npz, its host-side augmentation and its plot.', '']
  return '\n'.join(L)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--quick', action='store_true', help=f'tiny sizes for a smoke test ({QUICK}; < 2 min)')
  ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'figure1.md'),
                  help='Markdown file to write (default: benchmarks/figure1.md)')
  ap.add_argument('--workdir', default='', help='workdir of the figure1 run (replaced; default: a temporary folder). '
                  'Given, it is also analyzed afterwards: --workdir results/figure1 refreshes the gallery entry')
  ap.add_argument('--authors', default='', help="path to the authors' reproduce_jax.py (default: not run)")
  ap.add_argument('--skip', default='', help=f'comma-separated procedures not to run, of: {", ".join(PROCEDURES[1:])}')
  args = ap.parse_args(argv)
  skip = {s for s in args.skip.split(',') if s}
  if skip - set(PROCEDURES[1:]):
    ap.error(f'--skip: unknown {", ".join(sorted(skip - set(PROCEDURES[1:])))}; allowed: {", ".join(PROCEDURES[1:])}')
  if args.authors and not os.path.isfile(args.authors):
    ap.error(f'--authors: no such file {args.authors}')
  log = lambda msg: print(f'[figure1] {msg}', file=sys.stderr, flush=True)
  jax.monitoring.register_event_duration_secs_listener(_on_compile_event)
  t0 = time.perf_counter()
  info = machine_info()
  peak_rates, peak = matmul_peak()
  log(f'matmul peak {peak:.1f} GFLOP/s')
  cfg = make_config(args.quick)
  with tempfile.TemporaryDirectory(prefix='figure1_') as tmp:
    ours = run_ours(cfg, args.workdir or os.path.join(tmp, 'figure1'), bool(args.workdir), log)
  conv = None if 'conventional' in skip else run_conventional(cfg, log)
  auth = None
  if args.authors and 'authors' not in skip:
    auth = run_authors(args.authors, cfg, args.quick, log)
    if conv is None:
      auth['planned_flops'] = conventional_planned_flops(cfg)
  agree = agreement(cfg, ours, conv) if conv else None
  write_report(args.out, report(args, cfg, info, peak_rates, peak, ours, conv, auth, agree, time.perf_counter() - t0))


if __name__ == '__main__':
  main()
