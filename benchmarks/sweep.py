"""Benchmark: what vmapping a sweep buys, and what a Hessian-vector product costs relative to a gradient.

Measures, in one run on the current machine, and writes a Markdown report (also printed):

1. Vmapped sweep vs sequential lanes. MLP on MNIST-1D (widths 64 and 256, depth 3, SGD, μP), 16 lanes = 16 base learning
   rates log-spaced over 0.05..2.0, with the in-loop measurement (losses, λ_max by Lanczos on Hessian-vector
   products) every `measure_every` steps exactly as a real run does it.
   - vmapped:    one program over all 16 lanes, built as `lanes.run_sweep` builds it (jit(vmap(...)), chunk donated;
                 the lanes' data plans computed once per seed, `lanes.shared_plans`: they all shuffle alike).
   - sequential: the same lanes one after another, un-vmapped, as `train.run_lane` runs them (jit of the single-lane
                 functions). The learning rate is a traced argument, so one compiled single-lane executable serves
                 every lane; `train.run_lane` itself rebuilds the program on every call and so pays the compile once
                 per lane (the report gives that total too, computed from the measured single compile).
   Compile time (lower + compile, ahead of time) is reported apart from run time. Each executable is run once in
   full to warm up, then `rounds` (5) rounds of full runs are timed, every procedure once per round, interleaved,
   so that a change of the machine's load falls on all of them; the time is the median over the rounds (host sync
   after every chunk, as in a real run). Reported: time per lane-step for both, the ratio sequential / vmapped,
   and the max |Δ| between the vmapped and sequential lanes' final train_loss (and over all metrics); the run's
   matrix FLOPs (flops.py), the FLOP/s both achieve against the machine's matmul peak (machine.py, measured in the
   same run), and the rate the target ratio would need.
2. HVP / gradient time. The same model at widths 256 and 1024, cross-entropy on a batch of 256: a jitted gradient
   vs a jitted Hessian-vector product (forward-over-reverse, `spectra.hvp`); median of 20 timed calls after warm-up.

Command (from the repository root):
    python benchmarks/sweep.py                       # writes benchmarks/sweep.md; est. 1-2 min on 2 cores
    python benchmarks/sweep.py --quick --out /tmp/sweep.md   # smoke test, tiny sizes, < 30 s
Expected runtime of the full run: about 1-2 minutes on 2 CPU cores (an estimate, mostly XLA compilation: each
program takes several seconds to compile even at tiny sizes; `--quick` took ~17 s on 2 busy cores).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: the package

import jax  # noqa: E402
from machine import machine_info, machine_table, matmul_peak, write_report  # noqa: E402  (benchmarks/machine.py)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from superconsistency import config as C  # noqa: E402
from superconsistency import data as D  # noqa: E402
from superconsistency import flops as flops_lib  # noqa: E402
from superconsistency import models as M  # noqa: E402
from superconsistency import parameterization as pz  # noqa: E402
from superconsistency import spectra  # noqa: E402
from superconsistency import lanes
from superconsistency import train as T  # noqa: E402

FULL = dict(widths=(64, 256), depth=3, num_lanes=16, num_steps=100, measure_every=25, sharpness_batch=128, num_iters=10,
            loss_batch=512, rounds=5, num_train=4000, num_eval=1000,
            hvp_widths=(256, 1024), hvp_batch=256, hvp_reps=20)
QUICK = dict(widths=(32,), depth=3, num_lanes=4, num_steps=10, measure_every=5, sharpness_batch=32, num_iters=3,
             loss_batch=64, rounds=2, num_train=256, num_eval=64,
             hvp_widths=(32, 64), hvp_batch=64, hvp_reps=5)
LR_RANGE = (0.05, 2.0)


def make_config(s):
  c = C.defaults(model='mlp', optimizer='sgd')
  c.widths, c.depths, c.parameterizations = tuple(s['widths']), (s['depth'],), ('mup',)
  c.num_steps, c.measure_every = s['num_steps'], s['measure_every']
  c.measure.sharpness_batch, c.measure.num_iters = s['sharpness_batch'], s['num_iters']
  c.measure.loss_batch = s['loss_batch']
  c.data.num_train, c.data.num_eval = s['num_train'], s['num_eval']
  c.coord_check.enabled = False
  C.validate(c)
  return c


def make_model(c, data, width):
  param = pz.Parameterization(name='mup', **c.param.to_dict())
  return M.make_model(c.model, data.spec, width, c.depths[0], param, jnp.dtype(c.dtype))


# ---------------------------------------------------------------------------------------------------- part 1


def compile_lane_fns(program, hp, arrays, vmapped, how='vmap', group=0):
  """AOT-compiles init/measure/chunk as run_sweep (vmapped, or with `how='unroll'`/`'map'` the lanes unrolled or
  looped over, as lanes.batch_lanes does; `group` > 0: vmapped over groups of that many lanes, as lanes.Sweep
  builds it for ProgramChoice.lane_group; the measure is then the chunk with its steps skipped) or run_lane
  (single lane) jit them. Returns (executables, seconds lowering + compiling)."""
  if vmapped:
    batch = lambda f, in_axes=0: lanes.batch_lanes(f, how, in_axes, group)
    init = jax.jit(batch(program.init))
    # the chunk as lanes.Sweep builds it: lanes of one seed share their shuffle (lanes.shared_plans); it also
    # takes the step-0 measurement, its steps skipped (Sweep.first_measurement), so no measure program is compiled
    chunk = jax.jit(lanes.batched_chunk(program, how, group, lanes.distinct_shuffles(hp)), donate_argnums=0)
  else:
    init, measure, chunk = jax.jit(program.init), jax.jit(program.measure), jax.jit(program.chunk)
  t0 = time.perf_counter()
  init_c = init.lower(hp).compile()
  state_shape = jax.eval_shape(init, hp)
  if vmapped:
    chunk_c = chunk.lower(state_shape, hp, arrays, 0, True).compile()
    return (init_c, lambda state, hp, arrays: chunk_c(state, hp, arrays, 0, False),
            lambda state, hp, arrays: chunk_c(state, hp, arrays, 0, True)), time.perf_counter() - t0
  measure_c = measure.lower(state_shape, hp, arrays).compile()
  chunk_c = chunk.lower(state_shape, hp, arrays).compile()
  return (init_c, measure_c, chunk_c), time.perf_counter() - t0


def run_lanes(fns, hp, arrays, chunks):
  """One full run, the loop of run_sweep/run_lane: init, first measurement, then chunks with a host sync each."""
  init, measure, chunk = fns
  state, first = measure(init(hp), hp, arrays)
  rows = [jax.device_get(first)]
  for _ in range(chunks):
    state, metrics = chunk(state, hp, arrays)
    rows.append(jax.device_get(metrics))
  jax.block_until_ready(state)
  return {k: np.stack([np.asarray(r[k]) for r in rows], axis=-1) for k in T.METRICS}, np.asarray(state.diverged_step)


def nan_abs_diff(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d = np.abs(a - b)
  d = np.where(np.isnan(a) & np.isnan(b), 0.0, d)
  return float(np.max(np.where(np.isnan(d), np.inf, d)))


def bench_sweep(s, log):
  c = make_config(s)
  dtype = jnp.dtype(c.dtype)
  data = D.make_data(c.data, c.num_steps, max(c.measure.loss_batch, c.measure.sharpness_batch), dtype)
  model = make_model(c, data, s['width'])
  lrs = np.geomspace(*LR_RANGE, s['num_lanes'])
  hp = T.lane_grid(lrs, (1.0,), (0,), dtype, seed_offset=c.seed)
  n_lanes, n_chunks = len(lrs), c.num_steps // c.measure_every
  lane_steps = n_lanes * c.num_steps

  # vmapped: one program, all lanes
  # lanes over the mesh's `sweep` axis, as lanes.compile_sweep places them (a no-op on one device)
  from superconsistency import distributed
  mesh = distributed.make_mesh(c.mesh)
  hp_v = jax.device_put(hp, distributed.lane_sharding(mesh)) if n_lanes % mesh.shape['sweep'] == 0 else hp
  # vmapped in groups of lanes, as the run's auto choice does (lanes.choose_lane_group)
  group = lanes.choose_lane_group(model, c, jax.default_backend() == 'cpu', mesh.shape['sweep'] == 1)
  group = lanes.lanes_per_group(n_lanes, group)
  fns_v, compile_v = compile_lane_fns(T.make_lane_program(model, data, c), hp_v, data.arrays, vmapped=True,
                                      group=group)
  log(f'vmapped: compiled in {compile_v:.2f}s (lane groups of {group or "all lanes"})')
  # other programs for the same lanes: vmapped over all lanes at once (where the run groups them), every lane's
  # operations written out in turn (program.lanes='unroll'), one lane's program in a device loop over the lanes ('map')
  compiled = {}
  for how in (('vmap, all lanes at once',) if group else ()) + ('unroll', 'map'):
    compiled[how] = compile_lane_fns(T.make_lane_program(model, data, c), hp, data.arrays, vmapped=True,
                                     how=how.split(',')[0])
    log(f'{how}: compiled in {compiled[how][1]:.2f}s')
  # sequential: one un-vmapped executable, the lanes one after another
  lane_hp = [T.LaneHparams(hp.lr[i], hp.gamma0[i], hp.seed[i]) for i in range(n_lanes)]
  single = T.make_lane_program(model, data, c)
  fns_s, compile_s = compile_lane_fns(single, lane_hp[0], data.arrays, vmapped=False)
  log(f'sequential: compiled in {compile_s:.2f}s')
  # matrix FLOPs of one lane's run (flops.py on the single-lane programs; batching lanes does not change them)
  state1 = jax.eval_shape(single.init, lane_hp[0])
  lane_flops = (flops_lib.count(jax.jit(single.measure).trace(state1, lane_hp[0], data.arrays).jaxpr).flops
                + n_chunks * flops_lib.count(jax.jit(single.chunk).trace(state1, lane_hp[0], data.arrays).jaxpr).flops)

  def sequential():
    per_lane = [run_lanes(fns_s, h, data.arrays, n_chunks) for h in lane_hp]
    return ({k: np.stack([m[k] for m, _ in per_lane]) for k in T.METRICS},
            np.array([int(d) for _, d in per_lane]))
  runs = {'vmapped': lambda: run_lanes(fns_v, hp_v, data.arrays, n_chunks), 'sequential': sequential}
  runs.update({how: (lambda fns=fns: run_lanes(fns, hp, data.arrays, n_chunks)) for how, (fns, _) in compiled.items()})
  # one warm-up run each, then s['rounds'] timed rounds, the procedures interleaved within a round, so that a change
  # of the machine's load falls on all of them; time = the median over the rounds
  warm, times, out = {}, {name: [] for name in runs}, {}
  for name, fn in runs.items():
    t0 = time.perf_counter()
    fn()
    warm[name] = time.perf_counter() - t0
  for _ in range(s['rounds']):
    for name, fn in runs.items():
      t0 = time.perf_counter()
      out[name] = fn()
      times[name].append(time.perf_counter() - t0)
  run = {name: statistics.median(t) for name, t in times.items()}
  log('timed runs (s): ' + '; '.join(f'{n} ' + ', '.join(f'{x:.2f}' for x in t) for n, t in times.items()))
  (metrics_v, div_v), (metrics_s, div_s) = out['vmapped'], out['sequential']
  warm_v, warm_s, run_v, run_s = warm['vmapped'], warm['sequential'], run['vmapped'], run['sequential']
  other = {how: dict(compile=compiled[how][1], run=run[how], metrics=out[how][0]) for how in compiled}

  diff_final = nan_abs_diff(metrics_v['train_loss'][:, -1], metrics_s['train_loss'][:, -1])
  diff_all = max(nan_abs_diff(metrics_v[k], metrics_s[k]) for k in T.METRICS)
  per_v, per_s = run_v / lane_steps, run_s / lane_steps
  return dict(
      width=s['width'], settings=c, lrs=lrs, group=group,
      times_v=', '.join(f'{t:.3g}' for t in times['vmapped']), times_s=', '.join(f'{t:.3g}' for t in times['sequential']), n_lanes=n_lanes, lane_steps=lane_steps, n_params=sum(
          int(np.prod(w.shape)) for w in jax.eval_shape(model.init, jax.random.PRNGKey(0)).values()),
      compile_v=compile_v, compile_s=compile_s, warm_v=warm_v, warm_s=warm_s, run_v=run_v, run_s=run_s,
      per_v=per_v, per_s=per_s, ratio=per_s / per_v, diff_final=diff_final, diff_all=diff_all,
      run_flops=n_lanes * lane_flops,
      other={how: dict(compile=o['compile'], per=o['run'] / lane_steps, ratio=per_s / (o['run'] / lane_steps),
                       diff=max(nan_abs_diff(o['metrics'][k], metrics_s[k]) for k in T.METRICS))
             for how, o in other.items()},
      diverged_v=int((div_v >= 0).sum()), diverged_s=int((div_s >= 0).sum()),
      same_divergence=bool(np.array_equal(div_v, div_s)),
      final_train_loss_v=metrics_v['train_loss'][:, -1], final_train_loss_s=metrics_s['train_loss'][:, -1])


# ---------------------------------------------------------------------------------------------------- part 2


def median_time(fn, args, reps):
  jax.block_until_ready(fn(*args))   # compile
  jax.block_until_ready(fn(*args))   # warm-up
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bench_hvp(s, log):
  c = make_config(s)
  dtype = jnp.dtype(c.dtype)
  data = D.make_data(c.data, c.num_steps, max(c.measure.loss_batch, c.measure.sharpness_batch), dtype)
  x, y = data.arrays['train_x'][:s['hvp_batch']], data.arrays['train_y'][:s['hvp_batch']]
  assert x.shape[0] == s['hvp_batch'], 'num_train is smaller than the HVP batch'
  loss_fn = M.LOSSES[c.loss]
  rows = []
  for width in s['hvp_widths']:
    model = make_model(c, data, width)
    params = model.init(jax.random.PRNGKey(0))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    v = jax.tree.unflatten(treedef, [jax.random.normal(k, w.shape, w.dtype) for k, w in zip(keys, leaves)])

    def loss(p, x, y, model=model):
      return loss_fn(model.apply(p, x, 1.0), y)
    grad = jax.jit(jax.grad(loss))
    hvp = jax.jit(lambda p, v, x, y, loss=loss: spectra.hvp(lambda q: loss(q, x, y), p, v))
    t_grad = median_time(grad, (params, x, y), s['hvp_reps'])
    t_hvp = median_time(hvp, (params, v, x, y), s['hvp_reps'])
    n_params = sum(int(np.prod(w.shape)) for w in leaves)
    rows.append(dict(width=width, n_params=n_params, t_grad=t_grad, t_hvp=t_hvp, ratio=t_hvp / t_grad))
    log(f'width {width}: grad {t_grad * 1e3:.3f} ms, hvp {t_hvp * 1e3:.3f} ms, ratio {t_hvp / t_grad:.2f}')
  return rows


# ---------------------------------------------------------------------------------------------------- report


def target_ratio(width):
  """The issue's target for sequential / vmapped: ≥ 3× at width ≤ 64, never slower above."""
  return 3.0 if width <= 64 else 1.0


def ms(t):
  return f'{t * 1e3:.3f} ms'


def report(quick, s, info, sws, hv, total, peak):
  L = []
  L.append('# Sweep benchmark' + (' (--quick: tiny sizes, numbers not meaningful)' if quick else ''))
  L.append('')
  L.append('Produced by `python benchmarks/sweep.py' + (' --quick' if quick else '') + f'` in {total:.1f} s.')
  L.append('')
  L += machine_table(info)
  L.append('')
  L.append('## 1. Vmapped sweep vs sequential lanes')
  L.append('')
  L.append('"vmapped" is the program a run builds for these lanes by default (`program.lanes=\'auto\'`: vmap; on '
           'one CPU device over groups of lanes, in a device loop over the groups, where all lanes\' Krylov bases '
           'would overflow the caches: `lanes.choose_lane_group`).')
  L.append('')
  L.append('| width | vmapped per lane-step | lanes per group | sequential per lane-step | sequential / vmapped | '
           'target | vmapped compile + run | sequential compile + run (shared / per-lane compile) |')
  L.append('|---|---|---|---|---|---|---|---|')
  for sw in sws:
    target = target_ratio(sw['width'])
    L.append(f'| {sw["width"]} | {ms(sw["per_v"])} | {sw["group"] or "all lanes"} | {ms(sw["per_s"])} | '
             f'**{sw["ratio"]:.2f}×** | ≥ {target:g}×: {"met" if sw["ratio"] >= target else "**not met**"} | '
             f'{sw["compile_v"] + sw["run_v"]:.1f} s | {sw["compile_s"] + sw["run_s"]:.1f} s / '
             f'{sw["n_lanes"] * sw["compile_s"] + sw["run_s"]:.1f} s |')
  L.append('')
  L.append('Other programs for the same lanes: vmapped over all lanes at once (where the run groups them), and '
           'plain matmuls instead of batched ones: each lane\'s operations '
           'written out (`program.lanes=\'unroll\'`), or one lane\'s program in a device loop over the lanes '
           '(`program.lanes=\'map\'`, `lax.map`):')
  L.append('')
  L.append('| width | program.lanes | per lane-step | sequential / it | compile | '
           'max |Δ| vs sequential (all metrics) |')
  L.append('|---|---|---|---|---|---|')
  L += [f'| {sw["width"]} | {how} | {ms(o["per"])} | **{o["ratio"]:.2f}×** | {o["compile"]:.1f} s | '
        f'{o["diff"]:.3g} |' for sw in sws for how, o in sw['other'].items()]
  L.append('')
  for sw in sws:
    c = sw['settings']
    L.append(f'### width {sw["width"]}')
    L.append('')
    L.append(f'MLP on MNIST-1D, width {sw["width"]}, depth {s["depth"]} ({sw["n_params"]:,} parameters), SGD, μP, '
             f'batch {c.data.batch_size}; {sw["n_lanes"]} lanes = learning rates log-spaced '
             f'{LR_RANGE[0]}..{LR_RANGE[1]}; {c.num_steps} steps, a measurement every {c.measure_every} steps '
             f'(train loss on {c.measure.loss_batch}, eval on {c.data.num_eval}, λ_max by {c.measure.solver} with '
             f'{c.measure.num_iters} HVPs on {c.measure.sharpness_batch} examples). Run time = median of '
             f'{s["rounds"]} full runs, the procedures interleaved (after a warm-up run each), host sync after every chunk; lane-steps = {sw["n_lanes"]} × {c.num_steps} '
             f'= {sw["lane_steps"]}.')
    L.append('')
    L.append('| | vmapped (1 program; all lanes, or the auto lane groups) | sequential (un-vmapped, lane by lane) |')
    L.append('|---|---|---|')
    L.append(f'| compile (lower + compile; vmapped: init/chunk, sequential: init/measure/chunk) | {sw["compile_v"]:.2f} s | {sw["compile_s"]:.2f} s '
             f'(one executable, shared by the lanes) |')
    L.append(f'| warm-up run | {sw["warm_v"]:.3f} s | {sw["warm_s"]:.3f} s |')
    L.append(f'| timed run (median of {s["rounds"]}; all) | {sw["run_v"]:.3f} s ({sw["times_v"]}) | '
             f'{sw["run_s"]:.3f} s ({sw["times_s"]}) |')
    L.append(f'| **time per lane-step** | **{ms(sw["per_v"])}** | **{ms(sw["per_s"])}** |')
    L.append(f'| compile + timed run | {sw["compile_v"] + sw["run_v"]:.2f} s | {sw["compile_s"] + sw["run_s"]:.2f} s |')
    L.append(f'| compile + timed run, compiling once per lane as `train.run_lane` does (computed) | — | '
             f'{sw["n_lanes"] * sw["compile_s"] + sw["run_s"]:.2f} s |')
    L.append(f'| lanes diverged | {sw["diverged_v"]} | {sw["diverged_s"]} |')
    L.append('')
    L.append(f'- **ratio sequential / vmapped (time per lane-step): {sw["ratio"]:.2f}×**')
    target = target_ratio(sw['width'])
    rate_v, rate_s = sw['run_flops'] / sw['run_v'], sw['run_flops'] / sw['run_s']
    L.append(f'- matrix FLOPs of the timed run (flops.py; the same for both): {sw["run_flops"] / 1e9:.2f} GFLOP, '
             f'{sw["run_flops"] / sw["lane_steps"] / 1e6:.2f} MFLOP per lane-step with the measurements; achieved: '
             f'vmapped {rate_v / 1e9:.1f} GFLOP/s ({rate_v / peak:.0%} of the matmul peak), sequential '
             f'{rate_s / 1e9:.1f} GFLOP/s ({rate_s / peak:.0%}); {target:g}× would need the vmapped lanes at '
             f'{target * rate_s / 1e9:.1f} GFLOP/s ({target * rate_s / peak:.0%} of the peak)')
    L.append(f'- max |Δ final train_loss|, vmapped vs sequential: {sw["diff_final"]:.3g} '
             f'(over all metrics and measurements: {sw["diff_all"]:.3g}); '
             f'same divergence steps: {"yes" if sw["same_divergence"] else "NO"}')
    L.append('')
    L.append('| lr | final train_loss (vmapped) | final train_loss (sequential) |')
    L.append('|---|---|---|')
    L += [f'| {lr:.4g} | {a:.6g} | {b:.6g} |'
          for lr, a, b in zip(sw['lrs'], sw['final_train_loss_v'], sw['final_train_loss_s'])]
    L.append('')
  L.append('## 2. Hessian-vector product vs gradient')
  L.append('')
  L.append(f'Same MLP (depth {s["depth"]}, μP), cross-entropy on a batch of {s["hvp_batch"]}; jitted `jax.grad` vs '
           f'jitted `spectra.hvp` (forward-over-reverse); median of {s["hvp_reps"]} calls after warm-up.')
  L.append('')
  L.append('| width | parameters | gradient | HVP | HVP / gradient |')
  L.append('|---|---|---|---|---|')
  L += [f'| {r["width"]} | {r["n_params"]:,} | {ms(r["t_grad"])} | {ms(r["t_hvp"])} | {r["ratio"]:.2f} |' for r in hv]
  L.append('')
  return '\n'.join(L)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--quick', action='store_true', help='tiny sizes for a smoke test (< 30 s)')
  ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sweep.md'),
                  help='Markdown file to write (default: benchmarks/sweep.md)')
  args = ap.parse_args(argv)
  s = QUICK if args.quick else FULL
  log = lambda msg: print(f'[sweep] {msg}', file=sys.stderr, flush=True)
  t0 = time.perf_counter()
  info = machine_info()
  rates, peak = matmul_peak(repeats=1 if args.quick else 5)   # GFLOP/s, measured in this run
  log(f'matmul peak {peak:.1f} GFLOP/s')
  info.append(('float32 matmul peak (measured in this run; n×n @ n×n)',
               f'**{peak:.1f} GFLOP/s** (' + ', '.join(f'n={n}: {r:.1f}' for n, r in rates.items()) + ')'))
  sws = [bench_sweep(dict(s, width=w), log) for w in s['widths']]
  hv = bench_hvp(s, log)
  text = report(args.quick, s, info, sws, hv, time.perf_counter() - t0, peak * 1e9)
  write_report(args.out, text)


if __name__ == '__main__':
  main()
