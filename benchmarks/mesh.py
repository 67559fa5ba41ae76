"""Benchmark: scaling a sweep out over a (sweep, data) device mesh, and how its memory grows with the lane count.

Measures, in one run on the current machine, and writes a Markdown report (also printed):

1. 8 simulated devices vs 1 device, the same 64-lane sweep. The quickstart MLP on MNIST-1D (`configs/quickstart.py`,
   μP, width 128, depth 3, SGD, batch 64), 64 lanes = 16 base learning rates log-spaced 0.0625..8 × 4 seeds
   (`train.lane_grid`), 60 steps with a measurement (losses, λ_max by Lanczos) every 20, run exactly as a real run
   runs it: `distributed.make_mesh(cfg.mesh)`, `lanes.compile_sweep`, `lanes.run_sweep(..., sweep=sweep)`.
   Each device count runs in its own subprocess, started one after the other (never concurrently): the 1-device
   one without, the 8-device one with `XLA_FLAGS=--xla_force_host_platform_device_count=8` (it must be set before
   JAX starts). Meshes on 8 devices: sweep=8 × data=1 (8 lanes per device), sweep=4 × data=2 (16 lanes per device,
   each batch split in two), sweep=1 × data=8 (all lanes on every device, each batch split in eight).
   Compile = lower + compile of init and chunk (the chunk also takes the step-0 measurement), ahead of time
   (`sweep.chunk.jitted.lower(...).compile()`; the jitted functions then reuse the executables: checked with
   `jax_log_compiles`, no compile inside the runs). Run =
   one full `lanes.run_sweep` call (init, first measurement, every chunk with a host sync after it): one warm-up
   call, then two timed calls; the faster of the two is reported (both are listed), with its CPU time (all threads,
   `time.process_time`) / wall time = the cores kept busy. Agreement: max |Δ| between each 8-device mesh and the
   1-device run of the final train_loss and sharpness, and over all metrics and measurements; where it comes from:
   |Δ train_loss| at every measurement and per learning rate, and a check that the lanes of one device of the sweep=8
   mesh, run as an 8-lane sweep on 1 device, give bit-identical numbers (so the differences are float32 rounding of a
   64-lane vs an 8-lane program, grown by the dynamics of the largest learning rates).
   The 8 "devices" are XLA host-platform devices that share this machine's cores (2 here): there is no new
   hardware, so expect little or no gain; what this section shows is that the sharded program computes the same
   numbers (up to float32 rounding) and what the partitioning costs or saves on the same cores.
2. Per-lane memory. On 1 device, for L lanes in (1, 2, 4, 8, 16, 32, 64) (the first L lanes of the grid), the
   chunk program (the largest: 20 steps + a measurement) is compiled and XLA's `compiled.memory_analysis()` read:
   arguments, outputs, aliased (the donated state: outputs written in place of the inputs) and temporaries. Total
   = arguments + outputs − aliased + temporaries, i.e. the buffers one call needs at once (XLA's static figure, not
   a measured RSS); a least-squares line total = fixed + per-lane × L. State per lane = the LaneState leaves'
   bytes (`jax.eval_shape` of init) / L. These programs vmap all L lanes at once (as on GPU/TPU and sharded
   meshes); the 1-device program a run builds, in groups of lanes (`lanes.choose_lane_group`), is measured at the
   largest L beside them. On the 8-device meshes the same figures per device, 64 lanes.
   The peak RSS of each subprocess (`resource.getrusage`, `ru_maxrss`) is reported too; it is dominated by JAX
   and XLA themselves (compilation), not by the sweep's buffers.

Command (from the repository root):
    python benchmarks/mesh.py                        # writes benchmarks/mesh.md; about 2.5-4 min on 2 cores
    python benchmarks/mesh.py --quick --out /tmp/mesh.md   # smoke test, tiny sizes, < 60 s
Expected runtime of the full run: about 2.5-4 minutes on 2 CPU cores (140 s measured on a quiet machine, 242 s on
a busy one; mostly XLA compilation of ~20 programs and the slow sweep=1 × data=8 mesh; the report header gives
the measured time). `--quick`: about 55 s, ~22 s under the test suite's fast-compile XLA flags.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: the package

import jax  # noqa: E402
from machine import machine_info, machine_table, write_report  # noqa: E402  (benchmarks/machine.py)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from superconsistency import config as C  # noqa: E402
from superconsistency import data as D  # noqa: E402
from superconsistency import distributed  # noqa: E402
from superconsistency import models as M  # noqa: E402
from superconsistency import parameterization as pz  # noqa: E402
from superconsistency import lanes
from superconsistency import train as T  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_FLAG = '--xla_force_host_platform_device_count'
NUM_DEVICES = 8
FULL = dict(width=128, depth=3, num_lrs=16, seeds=(0, 1, 2, 3), lr_range=(0.0625, 8.0), num_steps=60,
            measure_every=20, meshes=((8, 1), (4, 2), (1, 8)), mem_lanes=(1, 2, 4, 8, 16, 32, 64), timed_runs=2,
            shrink={})
QUICK = dict(width=32, depth=3, num_lrs=4, seeds=(0, 1, 2, 3), lr_range=(0.0625, 8.0), num_steps=6,
             measure_every=3, meshes=((8, 1), (4, 2)), mem_lanes=(1, 4, 16), timed_runs=1,
             shrink=dict(num_train=256, num_eval=64, batch_size=16, loss_batch=64, sharpness_batch=32, num_iters=4))

_T0 = time.perf_counter()


def log(msg):
  print(f'[mesh {os.getpid()} {time.perf_counter() - _T0:6.1f} s] {msg}', file=sys.stderr, flush=True)


def make_config(s):
  c = C.from_file(os.path.join(ROOT, 'configs', 'quickstart.py'))
  c.widths, c.depths, c.parameterizations = (s['width'],), (s['depth'],), ('mup',)
  c.sweep.lrs.mup = tuple(float(x) for x in np.geomspace(*s['lr_range'], s['num_lrs']))
  c.sweep.seeds = tuple(s['seeds'])
  c.num_steps, c.measure_every = s['num_steps'], s['measure_every']
  c.coord_check.enabled = False
  for k, v in s['shrink'].items():
    if k in ('num_train', 'num_eval', 'batch_size'):
      c.data[k] = v
    else:
      c.measure[k] = v
  C.validate(c)
  return c


def tree_bytes(tree):
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def memory(compiled):
  ma = compiled.memory_analysis()
  m = dict(argument=ma.argument_size_in_bytes, output=ma.output_size_in_bytes, alias=ma.alias_size_in_bytes,
           temp=ma.temp_size_in_bytes)
  m['total'] = m['argument'] + m['output'] - m['alias'] + m['temp']
  return m


def peak_rss_bytes():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux: KiB


# ---------------------------------------------------------------------------------------------------- child


def build(s):
  c = make_config(s)
  dtype = jnp.dtype(c.dtype)
  num_measure = max(c.measure.loss_batch, c.measure.sharpness_batch)
  data = D.make_data(c.data, c.num_steps, num_measure, dtype)
  model = M.make_model(c.model, data.spec, s['width'], s['depth'], pz.Parameterization('mup'), dtype)
  hp = T.lane_grid(tuple(c.sweep.lrs.mup), c.sweep.gamma0s, c.sweep.seeds, dtype, seed_offset=c.seed)
  return c, data, model, hp


def aot_compile(sweep):
  """Lower + compile init and chunk (which also takes the step-0 measurement, Sweep.first_measurement) ahead of
  time; the jitted functions reuse the executables afterwards."""
  t0 = time.perf_counter()
  sweep.init.jitted.lower(sweep.hp).compile()
  state = jax.eval_shape(sweep.init.jitted, sweep.hp)
  chunk = sweep.chunk.jitted.lower(state, sweep.hp, sweep.arrays, 1, True).compile()
  return time.perf_counter() - t0, chunk, state


def time_mesh(s, c, data, model, hp, sweep_axis, data_axis):
  c.mesh.sweep, c.mesh.data = sweep_axis, data_axis
  mesh = distributed.make_mesh(c.mesh)
  sweep = lanes.compile_sweep(model, data, c, hp, mesh)
  compile_s, chunk, state = aot_compile(sweep)
  log(f'mesh {sweep_axis}x{data_axis}: compiled in {compile_s:.2f}s')
  t0 = time.perf_counter()
  lanes.run_sweep(None, data, c, None, sweep=sweep)
  warm = time.perf_counter() - t0
  runs, cpus = [], []
  for _ in range(s['timed_runs']):
    t0, c0 = time.perf_counter(), time.process_time()
    _, metrics, diverged = lanes.run_sweep(None, data, c, None, sweep=sweep)
    runs.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)   # CPU time of all the process's threads
  log(f'mesh {sweep_axis}x{data_axis}: warm-up run {warm:.2f}s, timed runs {", ".join(f"{r:.2f}s" for r in runs)}')
  padded = int(sweep.hp.lr.shape[0])
  return dict(sweep=sweep_axis, data=data_axis, lanes=sweep.num_lanes, padded_lanes=padded,
              lanes_per_device=padded // sweep_axis, compile=compile_s, warm=warm, runs=runs, run=min(runs),
              cores_busy=cpus[int(np.argmin(runs))] / min(runs),
              memory=memory(chunk), state_bytes=tree_bytes(state), arrays_bytes=tree_bytes(sweep.arrays),
              metrics={k: np.asarray(v).tolist() for k, v in metrics.items()},
              diverged=np.asarray(diverged).tolist())


def last_device_lanes(c, data, model, hp):
  """The last lanes/NUM_DEVICES lanes run alone on 1 device: the program one device of the sweep=8 mesh runs."""
  k = int(hp.lr.shape[0]) // NUM_DEVICES
  c.mesh.sweep, c.mesh.data = 1, 1
  sub = jax.tree.map(lambda a: a[-k:], hp)
  _, metrics, diverged = lanes.run_sweep(model, data, c, sub, mesh=distributed.make_mesh(c.mesh))
  log(f'the last {k} lanes alone on 1 device: done')
  return dict(lanes=k, metrics={n: np.asarray(v).tolist() for n, v in metrics.items()},
              diverged=np.asarray(diverged).tolist())


def memory_by_lanes(s, c, data, model, hp):
  c.mesh.sweep, c.mesh.data = 1, 1
  mesh = distributed.make_mesh(c.mesh)
  rows = []
  # all lanes vmapped at once, as GPUs, TPUs and sharded sweeps run them; on one CPU device the run's own program
  # vmaps groups of lanes (lanes.choose_lane_group), measured apart at the largest count (grouped=True)
  all_at_once = lanes.choose_program(model, data, c, mesh)._replace(lane_group=0)
  for n, grouped in [(n, False) for n in s['mem_lanes']] + [(s['mem_lanes'][-1], True)]:
    sub = jax.tree.map(lambda a, n=n: a[:n], hp)
    sweep = lanes.compile_sweep(model, data, c, sub, mesh, choice=None if grouped else all_at_once)
    state = jax.eval_shape(sweep.init.jitted, sweep.hp)
    t0 = time.perf_counter()
    chunk = sweep.chunk.jitted.lower(state, sweep.hp, sweep.arrays, 1, True).compile()
    t = time.perf_counter() - t0
    parts = {f: tree_bytes(getattr(state, f)) for f in ('params', 'params0', 'opt_state', 'power_vec')}
    rows.append(dict(lanes=n, memory=memory(chunk), state_bytes=tree_bytes(state), state_parts=parts,
                     arrays_bytes=tree_bytes(sweep.arrays), compile=t, group=sweep.lane_group if grouped else None))
    log(f'{n} lanes{" (auto lane groups)" if grouped else ""}: chunk compiled in {t:.2f}s, {rows[-1]["memory"]}')
  return rows


def child(s, devices, out):
  t0 = time.perf_counter()
  load = os.getloadavg()
  assert jax.device_count() == devices, f'expected {devices} devices, JAX sees {jax.device_count()}'
  c, data, model, hp = build(s)
  meshes = s['meshes'] if devices > 1 else ((1, 1),)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  res = dict(devices=devices, device_list=', '.join(f'{d.platform}:{d.id}' for d in jax.devices()),
             xla_flags=os.environ.get('XLA_FLAGS', '(unset)'), load=load,
             n_params=int(sum(np.prod(w.shape) for w in jax.tree.leaves(params))),
             batch=c.data.batch_size, loss_batch=c.measure.loss_batch, sharpness_batch=c.measure.sharpness_batch,
             num_iters=c.measure.num_iters, solver=c.measure.solver, num_eval=c.data.num_eval,
             lrs=list(c.sweep.lrs.mup), seeds=list(c.sweep.seeds))
  res['timing'] = [time_mesh(s, c, data, model, hp, *m) for m in meshes]
  res['rss_after_timing'] = peak_rss_bytes()
  if devices == 1:   # the lanes of the last device of the sweep=8 mesh, as a sweep of their own on 1 device
    res['last_device'] = last_device_lanes(c, data, model, hp)
  res['memory_by_lanes'] = memory_by_lanes(s, c, data, model, hp) if devices == 1 else []
  res['rss_end'] = peak_rss_bytes()
  res['wall'] = time.perf_counter() - t0
  with open(out, 'w') as f:
    json.dump(res, f)


# ---------------------------------------------------------------------------------------------------- parent


def child_env(devices):
  env = dict(os.environ)
  flags = re.sub(DEVICE_FLAG + r'=\S*', '', env.get('XLA_FLAGS', '')).split()
  if devices > 1:
    flags.append(f'{DEVICE_FLAG}={devices}')
  if flags:
    env['XLA_FLAGS'] = ' '.join(flags)
  else:
    env.pop('XLA_FLAGS', None)
  return env


def run_child(quick, devices, tmp):
  out = os.path.join(tmp, f'devices{devices}.json')
  cmd = [sys.executable, os.path.abspath(__file__), '--child', str(devices), '--child-out', out] + (
      ['--quick'] if quick else [])
  log(f'starting the {devices}-device subprocess')
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, cwd=ROOT, env=child_env(devices))   # blocks: the children never overlap
  if proc.returncode != 0:
    raise SystemExit(f'the {devices}-device subprocess failed (exit {proc.returncode})')
  with open(out) as f:
    res = json.load(f)
  res['process_wall'] = time.perf_counter() - t0
  return res


def nan_abs_diff(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d = np.abs(a - b)
  d = np.where(np.isnan(a) & np.isnan(b), 0.0, d)
  return float(np.max(np.where(np.isnan(d), np.inf, d)))


def nan_rel_diff(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d = np.abs(a - b) / np.maximum(np.abs(b), 1e-30)
  d = np.where(np.isnan(a) & np.isnan(b), 0.0, d)
  return float(np.max(np.where(np.isnan(d), np.inf, d)))


def compare(run, ref, num_seeds):
  m, r = run['metrics'], ref['metrics']
  d_loss = np.abs(np.asarray(m['train_loss'], np.float64) - np.asarray(r['train_loss'], np.float64))
  return dict(per_step=np.nanmax(d_loss, axis=0), per_lr=np.nanmax(d_loss[:, -1].reshape(-1, num_seeds), axis=1),
              train_loss=nan_abs_diff(np.asarray(m['train_loss'])[:, -1], np.asarray(r['train_loss'])[:, -1]),
              sharpness=nan_abs_diff(np.asarray(m['sharpness'])[:, -1], np.asarray(r['sharpness'])[:, -1]),
              sharpness_rel=nan_rel_diff(np.asarray(m['sharpness'])[:, -1], np.asarray(r['sharpness'])[:, -1]),
              all=max(nan_abs_diff(m[k], r[k]) for k in r),
              worst=max(r, key=lambda k: nan_abs_diff(m[k], r[k])),
              same_divergence=run['diverged'] == ref['diverged'])


def fit_line(xs, ys):
  slope, intercept = np.polyfit(np.asarray(xs, np.float64), np.asarray(ys, np.float64), 1)
  pred = intercept + slope * np.asarray(xs, np.float64)
  return float(slope), float(intercept), float(np.max(np.abs(pred - ys) / np.asarray(ys, np.float64)))


def kib(b):
  return f'{b / 1024:,.1f} KiB'


def mib(b):
  return f'{b / 2 ** 20:,.2f} MiB'


def report(quick, s, info, one, eight, total):
  ref = one['timing'][0]
  steps = s['num_steps']
  L = []
  L.append('# Mesh benchmark' + (' (--quick: tiny sizes, numbers not meaningful)' if quick else ''))
  L.append('')
  L.append('Produced by `python benchmarks/mesh.py' + (' --quick' if quick else '') + f'` in {total:.1f} s '
           '(wall time, both subprocesses and all compilation included). What every number means: the docstring '
           'of `benchmarks/mesh.py`.')
  L.append('')
  L += machine_table(info)
  L.append('')
  L.append('Subprocesses (run one after the other):')
  L.append('')
  L.append('| | devices | XLA_FLAGS | load average at start (1 / 5 / 15 min) | wall time | peak RSS (after the timed runs / at exit) |')
  L.append('|---|---|---|---|---|---|')
  for name, r in (('1 device', one), (f'{NUM_DEVICES} devices', eight)):
    L.append(f'| {name} | {r["device_list"]} | `{r["xla_flags"]}` | {" / ".join(f"{x:.2f}" for x in r["load"])} | '
             f'{r["process_wall"]:.1f} s | {mib(r["rss_after_timing"])} / {mib(r["rss_end"])} |')
  L.append('')

  L.append(f'## 1. {NUM_DEVICES} simulated devices vs 1 device, the same {ref["lanes"]}-lane sweep')
  L.append('')
  L.append(f'MLP on MNIST-1D (quickstart config), μP, width {s["width"]}, depth {s["depth"]} '
           f'({one["n_params"]:,} parameters per lane), SGD, batch {one["batch"]}; {ref["lanes"]} lanes = '
           f'{len(one["lrs"])} learning rates log-spaced {one["lrs"][0]:g}..{one["lrs"][-1]:g} × {len(one["seeds"])} '
           f'seeds; {steps} steps, a measurement every {s["measure_every"]} (train loss on {one["loss_batch"]}, eval '
           f'on {one["num_eval"]}, λ_max by {one["solver"]} with {one["num_iters"]} HVPs on {one["sharpness_batch"]} '
           f'examples). Run = one full `lanes.run_sweep` call after a warm-up call, the fastest of '
           f'{s["timed_runs"]}; lane-steps = {ref["lanes"]} × {steps} = {ref["lanes"] * steps}.')
  L.append('')
  L.append('| devices | mesh (sweep × data) | lanes per device | compile | warm-up run | timed runs | **run** | CPU time / run (cores busy) | per lane-step | **run / 1-device run** | compile / 1-device compile |')
  L.append('|---|---|---|---|---|---|---|---|---|---|---|')
  rows = [(1, ref)] + [(NUM_DEVICES, t) for t in eight['timing']]
  for n, t in rows:
    L.append(f'| {n} | {t["sweep"]} × {t["data"]} | {t["lanes_per_device"]} | {t["compile"]:.2f} s | '
             f'{t["warm"]:.2f} s | {", ".join(f"{x:.2f}" for x in t["runs"])} s | **{t["run"]:.2f} s** | '
             f'{t["cores_busy"]:.2f} | {t["run"] / (t["lanes"] * steps) * 1e3:.3f} ms | '
             f'**{t["run"] / ref["run"]:.2f}×** | '
             f'{t["compile"] / ref["compile"]:.2f}× |')
  L.append('')
  L.append(f'Agreement with the 1-device run ({ref["lanes"]} lanes, final measurement at step {steps}; '
           f'max over all metrics = over every metric of `train.METRICS` and every measurement):')
  L.append('')
  L.append('| mesh (sweep × data) | max \\|Δ final train_loss\\| | max \\|Δ final sharpness\\| (relative) | max \\|Δ\\| over all metrics (worst metric) | same divergence steps |')
  L.append('|---|---|---|---|---|')
  num_seeds, lrs = len(one['seeds']), one['lrs']
  cmps = []
  for t in eight['timing']:
    d = compare(t, ref, num_seeds)
    cmps.append(d)
    L.append(f'| {t["sweep"]} × {t["data"]} | {d["train_loss"]:.3g} | {d["sharpness"]:.3g} '
             f'({d["sharpness_rel"]:.2g}) | '
             f'{d["all"]:.3g} ({d["worst"]}) | {"yes" if d["same_divergence"] else "NO"} |')
  L.append('')
  L.append('Where the differences come from: max over lanes of |Δ train_loss| at each measurement, and per learning '
           'rate (max over its seeds) at the last one:')
  L.append('')
  msteps = [i * s['measure_every'] for i in range(len(cmps[0]['per_step']))]
  L.append('| mesh (sweep × data) | ' + ' | '.join(f'step {x}' for x in msteps) + ' |')
  L.append('|---|' + '---|' * len(msteps))
  for t, d in zip(eight['timing'], cmps):
    L.append(f'| {t["sweep"]} × {t["data"]} | ' + ' | '.join(f'{x:.3g}' for x in d['per_step']) + ' |')
  L.append('')
  ref_final = np.asarray(ref['metrics']['train_loss'])[:, -1].reshape(-1, num_seeds)
  ref_fm = np.nanmax(np.asarray(ref['metrics']['feature_movement']), axis=1).reshape(-1, num_seeds)
  L.append('| base lr | final train_loss, 1 device (over seeds) | max feature_movement, 1 device | '
           + ' | '.join(f'max \\|Δ final train_loss\\|, {t["sweep"]} × {t["data"]}' for t in eight['timing']) + ' |')
  L.append('|---|---|---|' + '---|' * len(cmps))
  for i, lr in enumerate(lrs):
    L.append(f'| {lr:.4g} | {np.nanmin(ref_final[i]):.4f}..{np.nanmax(ref_final[i]):.4f} | '
             f'{np.nanmax(ref_fm[i]):.3g} | '
             + ' | '.join(f'{d["per_lr"][i]:.3g}' for d in cmps) + ' |')
  L.append('')
  per_lr = np.max([d['per_lr'] for d in cmps], axis=0)
  n_ok = next((i for i, x in enumerate(per_lr) if not x <= 1e-4), len(per_lr))
  last = one['last_device']
  sweep8_run = next((t for t in eight['timing'] if t['data'] == 1 and t['sweep'] == NUM_DEVICES), None)
  if sweep8_run is not None:
    k = last['lanes']
    same = max(nan_abs_diff(np.asarray(sweep8_run['metrics'][n])[-k:], last['metrics'][n]) for n in last['metrics'])
    L.append(f'Check: the last {k} lanes (the lanes of the last device of the {NUM_DEVICES} × 1 mesh) run as a '
             f'sweep of their own on 1 device, vs the same lanes of the {NUM_DEVICES} × 1 mesh: max |Δ| over all '
             f'metrics and measurements = **{same:.3g}**' + (' (bit-identical)' if same == 0 else '') + '.')
    L.append('')
  div = sum(x >= 0 for x in ref['diverged'])
  final = np.asarray(ref['metrics']['train_loss'])[:, -1]
  sharp = np.asarray(ref['metrics']['sharpness'])[:, -1]
  L.append(f'1-device run: {div} of {ref["lanes"]} lanes diverged; final train_loss {np.nanmin(final):.4g}..'
           f'{np.nanmax(final):.4g}, final sharpness {np.nanmin(sharp):.4g}..{np.nanmax(sharp):.4g}.')
  L.append('')
  best = min(eight['timing'], key=lambda t: t['run'])
  L.append(f'- **Best {NUM_DEVICES}-device mesh: {best["sweep"]} × {best["data"]}, run {best["run"]:.2f} s vs '
           f'{ref["run"]:.2f} s on 1 device ({best["run"] / ref["run"]:.2f}×).** The {NUM_DEVICES} devices are '
           f'simulated on the {os.cpu_count()} cores of this machine (XLA host-platform devices: one process, the '
           f'same cores), so no hardware is added and no scale-out speed-up is to be expected. What the ratios do '
           f'show is the cost or saving of the partitioning on these cores: smaller per-device programs (fewer '
           f'lanes each, run by {NUM_DEVICES} device threads; CPU time / run, i.e. cores busy: '
           f'{ref["cores_busy"]:.2f} on 1 device vs {best["cores_busy"]:.2f} on {best["sweep"]} × {best["data"]}), '
           f'and, for data > 1, collectives '
           f'in every step around a batch of '
           f'only {one["batch"]} examples split {" or ".join(str(t["data"]) for t in eight["timing"] if t["data"] > 1)}'
           f' ways. These are not what {NUM_DEVICES} real devices would give. Timings on a shared '
           f'machine move by tens of percent from run to run (load averages above).')
  L.append(f'- Agreement: after the first chunk (step {msteps[1] if len(msteps) > 1 else 0}) every lane agrees with '
           f'the 1-device run to {max(d["per_step"][min(1, len(msteps) - 1)] for d in cmps):.2g} in train_loss '
           f'(float32 rounding). At the end, the lanes with base lr ≤ {lrs[max(n_ok - 1, 0)]:.4g} agree to '
           f'{(per_lr[:n_ok].max() if n_ok else float("nan")):.2g}; '
           + (f'the {len(lrs) - n_ok} largest learning rates ({", ".join(f"{x:.4g}" for x in lrs[n_ok:])}), '
              f'the unstable end of the grid (see their feature movement), amplify '
              f'the rounding differences step after step to up to {per_lr[n_ok:].max():.3g} by step {steps}: '
              f'sensitive dynamics, not a different computation. ' if n_ok < len(lrs) else 'no lane departs further. ')
           + f'The rounding differences come from the number of lanes one device runs, not from the mesh: a sweep '
           f'of {last["lanes"]} lanes on 1 device reproduces the {NUM_DEVICES} × 1 mesh\'s lanes exactly (check '
           f'above), and XLA compiles the vmap over {last["lanes"]} lanes and the one over {ref["lanes"]} into code '
           f'that rounds differently; with data > 1 each lane\'s batch sums are also split.')
  L.append('')

  L.append('## 2. Per-lane memory')
  L.append('')
  L.append('Chunk program (the largest), XLA `compiled.memory_analysis()`; total = arguments + outputs − aliased '
           '(the donated state) + temporaries. State = the LaneState leaves (params, params0, optimizer state, '
           'power-iteration vector, scalars). Arguments include the replicated data arrays '
           f'({mib(ref["arrays_bytes"])}).')
  L.append('')
  L.append('| lanes | arguments | outputs | aliased | temporaries | **total** | total per lane | temporaries per lane | state per lane |')
  L.append('|---|---|---|---|---|---|---|---|---|')
  mrows = [r for r in one['memory_by_lanes'] if r.get('group') is None]
  grouped = next((r for r in one['memory_by_lanes'] if r.get('group') is not None), None)
  for r in mrows:
    m, n = r['memory'], r['lanes']
    L.append(f'| {n} | {mib(m["argument"])} | {mib(m["output"])} | {mib(m["alias"])} | {mib(m["temp"])} | '
             f'**{mib(m["total"])}** | {kib(m["total"] / n)} | {kib(m["temp"] / n)} | {kib(r["state_bytes"] / n)} |')
  L.append('')
  parts = mrows[-1]['state_parts']
  n_last = mrows[-1]['lanes']
  L.append('State per lane by field: ' + ', '.join(f'{k} {kib(v / n_last)}' for k, v in parts.items()) + '.')
  L.append('')
  slope, fixed, err = fit_line([r['lanes'] for r in mrows], [r['memory']['total'] for r in mrows])
  t_slope, t_fixed, t_err = fit_line([r['lanes'] for r in mrows], [r['memory']['temp'] for r in mrows])
  L.append(f'Per device on the {NUM_DEVICES}-device meshes, {ref["lanes"]} lanes (same program, partitioned; XLA '
           f'reports one device\'s buffers):')
  L.append('')
  L.append('| mesh (sweep × data) | lanes per device | arguments | outputs | aliased | temporaries | **total per device** | × devices | state per device |')
  L.append('|---|---|---|---|---|---|---|---|---|')
  for n, t in rows:
    m = t['memory']
    L.append(f'| {t["sweep"]} × {t["data"]} ({n} device{"s" if n > 1 else ""}) | {t["lanes_per_device"]} | '
             f'{mib(m["argument"])} | {mib(m["output"])} | {mib(m["alias"])} | {mib(m["temp"])} | '
             f'**{mib(m["total"])}** | {mib(m["total"] * n)} | {mib(t["state_bytes"] / t["sweep"])} |')
  L.append('')
  sweep8 = next((t for t in eight['timing'] if t['data'] == 1), eight['timing'][0])
  n_last = mrows[-1]['lanes']
  state_lane, param_lane = mrows[-1]['state_bytes'] / n_last, mrows[-1]['state_parts']['params'] / n_last
  L.append(f'- **Memory grows linearly with the lanes: {kib(slope)} per lane plus a fixed {mib(fixed)}** '
           f'(least-squares line through the totals for {mrows[0]["lanes"]}..{n_last} lanes, largest relative '
           f'deviation {err:.1%}). Of the per-lane part, {kib(state_lane)} is the lane\'s state (kept between '
           f'chunks) and {kib(t_slope)} temporaries: one call\'s working buffers, ≈ {t_slope / param_lane:.0f} '
           f'parameter-sized vectors (gradients, Hessian-vector products, the Lanczos basis of '
           f'{one["num_iters"] + 1} vectors) plus activations. The replicated data arrays are '
           f'{mib(ref["arrays_bytes"])} of the fixed part.')
  if grouped and not grouped['group']:
    L.append(f'- On one CPU device the run\'s own program vmaps all {grouped["lanes"]} lanes at once too: their '
             'Krylov bases fit one lane group (`lanes.choose_lane_group`).')
  elif grouped:
    full = mrows[-1]
    L.append(f'- That line is for all lanes vmapped at once, as GPUs, TPUs and sharded sweeps run them. On one CPU '
             f'device the run vmaps groups of lanes in a device loop (`lanes.choose_lane_group`): '
             f'{grouped["lanes"]} lanes in groups of {grouped["group"]} take '
             f'{mib(grouped["memory"]["total"])} (temporaries {mib(grouped["memory"]["temp"])}) against '
             f'{mib(full["memory"]["total"])} (temporaries {mib(full["memory"]["temp"])}) all at once: the '
             'temporaries are one group\'s, and only the state grows with every lane.')
  L.append(f'- On {NUM_DEVICES} devices with sweep = {sweep8["sweep"]}, {ref["lanes"]} lanes take '
           f'{mib(sweep8["memory"]["total"])} per device vs {mib(ref["memory"]["total"])} on 1 device (its run\'s '
           'program, in lane groups) '
           f'({sweep8["memory"]["total"] / ref["memory"]["total"]:.3f}×): the sweep axis divides the per-lane memory. '
           + ' '.join(f'With sweep = {t["sweep"]} × data = {t["data"]}: {mib(t["memory"]["total"])} per device '
                      f'({t["memory"]["total"] / ref["memory"]["total"]:.3f}×).' for t in eight['timing']
                      if t['data'] > 1)
           + ' The data axis splits only the batch (activations); each device keeps the full state and the '
           'parameter-sized temporaries of its lanes.')
  L.append(f'- Peak RSS of the processes: {mib(one["rss_end"])} (1 device) and {mib(eight["rss_end"])} '
           f'({NUM_DEVICES} devices). It is mostly JAX, XLA and compilation, well above the compiled buffers, so it '
           f'says little about per-lane memory.')
  L.append('')
  return '\n'.join(L)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--quick', action='store_true', help='tiny sizes for a smoke test (< 60 s)')
  ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mesh.md'),
                  help='Markdown file to write (default: benchmarks/mesh.md)')
  ap.add_argument('--child', type=int, default=0, help=argparse.SUPPRESS)       # internal: device count
  ap.add_argument('--child-out', default='', help=argparse.SUPPRESS)           # internal: its JSON result
  args = ap.parse_args(argv)
  s = QUICK if args.quick else FULL
  if args.child:
    child(s, args.child, args.child_out)
    return
  t0 = time.perf_counter()
  info = machine_info()
  with tempfile.TemporaryDirectory() as tmp:
    one = run_child(args.quick, 1, tmp)
    eight = run_child(args.quick, NUM_DEVICES, tmp)
  info.append(('load average at end (1 / 5 / 15 min)', ' / '.join(f'{x:.2f}' for x in os.getloadavg())))
  text = report(args.quick, s, info, one, eight, time.perf_counter() - t0)
  write_report(args.out, text)


if __name__ == '__main__':
  main()
