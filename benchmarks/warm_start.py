"""Benchmark: Hessian-vector products that the in-loop λ_max needs with and without `measure.warm_start`.

Command (from the repository root):
    python benchmarks/warm_start.py                            # writes benchmarks/warm_start.md (and prints it)
    python benchmarks/warm_start.py --quick --out /tmp/w.md    # smoke test, tiny sizes, about 1 min
Runtime of the full run: about 2.5-4 minutes on 2 CPU cores shared with other jobs (137 s and 214 s measured at
load averages of 3.5 and 4.5, XLA compilation included; each rate is trained four times: the chain, its top-3
variant and the two num_iters checks). `--quick`: ~55 s.

What is measured. The quickstart's μP MLP (`configs/quickstart.py`: 3 weight layers 40→N→N→10, ReLU, MNIST-1D,
SGD with batch 64, cross-entropy, a measurement every 20 steps on the first 128 training examples) at width 256,
trained for 200 steps at base rates η0 = 2 (the edge of stability: η·λ_max reaches 2 within 150 steps and the top
of the spectrum keeps moving) and η0 = 1 (progressive sharpening), in float64 (`jax.enable_x64`). Training is the
project's own lane program (`train.make_lane_program`, un-vmapped and jitted: `init`, `measure`, then `chunk` per
20 steps) with `measure.warm_start=True` and the quickstart's `measure.num_iters` = 12, so the vector the lane
stores after each measurement (the top Ritz vector of that in-loop solve) is the one the next warm start uses.
At each of the 11 measurements (steps 0, 20, ..., 200), on the Hessian H of the loss on the measurement batch at
that step's weights (the operator the lane measures, `spectra.operators(...).hessian`):

- reference λ_max: `spectra.lanczos` with `ref_iters` iterations from a random vector (its residual bound
  ‖Hy − θy‖/θ is reported, and a warm-started `max_iters`-step run must agree with it);
- HVPs to 1e-3: one Lanczos run of `max_iters` steps (`spectra.lanczos_tridiagonal`) per start vector; after m
  steps (m HVPs) the estimate is the top eigenvalue of the leading m×m block of its tridiagonal matrix, which is
  what `spectra.lanczos(num_iters=m)` from that start returns (checked at one m per measurement). The count is the
  smallest m from which the estimate stays within 1e-3 (relative) of the reference.
  Start vectors: *random*: `cold_starts` Gaussian vectors (median, min and max of their counts); *warm*: the
  lane's stored vector, normalized, plus ε times a random unit vector (`measurements.warm_start_vector`), for
  ε = 0 (the Ritz vector alone) and ε = measurements.WARM_START_NOISE, what the lane program uses; *top-k sum*:
  the same training with `measure.hessian_k` = 3, whose lane stores the normalized sum of its top-3 Ritz vectors
  (plus the same ε), still counting HVPs to λ_max. Measurement 0 has nothing to warm-start from: its stored
  vector is `train.init`'s random one.
- the overlap |⟨s, u⟩| (absolute value) of the stored unit vector s with the reference top eigenvector u: how far
  the top eigenvector moved since the last measurement, plus how unconverged the last solve's Ritz vector was.

Which `measure.num_iters` a warm-started run could use: the largest warm count (ε = WARM_START_NOISE) over the
measurements after the first, against the largest random-start count over all measurements and starts. The
iteration count is static in the compiled program, so it also runs at the first measurement, which starts from a
random vector. Both choices are then checked by training again with `measure.num_iters` set to them (warm start
on and off) and comparing every in-loop `sharpness` with the reference (the measurement does not feed back into
training; the weights are checked to be the same bits, else the reference is computed again).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: the package

import jax  # noqa: E402
from machine import machine_info, machine_table, write_report  # noqa: E402  (benchmarks/machine.py)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from superconsistency import config as C  # noqa: E402
from superconsistency import data as D  # noqa: E402
from superconsistency import measurements as measurements_lib  # noqa: E402
from superconsistency import models as M  # noqa: E402
from superconsistency import runner  # noqa: E402
from superconsistency import spectra  # noqa: E402
from superconsistency import train as T  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-3
FULL = dict(width=256, lrs=(2.0, 1.0), num_steps=200, measure_every=20, num_train=None, max_iters=40, ref_iters=100,
            cold_starts=3, noises=(0.0, measurements_lib.WARM_START_NOISE), top_k=3)
QUICK = dict(width=32, lrs=(2.0,), num_steps=40, measure_every=10, num_train=512, max_iters=30, ref_iters=40,
             cold_starts=2, noises=(0.0, measurements_lib.WARM_START_NOISE), top_k=3)

_T0 = time.perf_counter()


def log(msg):
  print(f'[warm_start {time.perf_counter() - _T0:6.1f} s] {msg}', file=sys.stderr, flush=True)


def make_config(s, num_iters, warm_start, hessian_k=1):
  c = C.from_file(os.path.join(ROOT, 'configs', 'quickstart.py'))
  c.widths, c.parameterizations, c.dtype = (s['width'],), ('mup',), 'float64'
  c.num_steps, c.measure_every = s['num_steps'], s['measure_every']
  c.measure.num_iters, c.measure.warm_start, c.measure.hessian_k = num_iters, warm_start, hessian_k
  if s['num_train']:
    c.data.num_train = s['num_train']
  c.coord_check.enabled = False
  C.validate(c)
  return c


def train_run(c, model, data, lr):
  """Trains one lane with the lane program, measuring every measure_every steps. Returns per measurement: the
  flat weights, the vector stored before it (the warm start it used) and its in-loop metrics."""
  program = T.make_lane_program(model, data, c)
  hp = T.LaneHparams(jnp.asarray(lr, jnp.float64), jnp.asarray(1.0, jnp.float64), jnp.asarray(0, jnp.int32))
  init, measure, chunk = jax.jit(program.init), jax.jit(program.measure), jax.jit(program.chunk)
  state = init(hp)
  out = []
  for i in range(c.num_steps // c.measure_every + 1):
    stored = np.asarray(state.power_vec)
    state, metrics = measure(state, hp, data.arrays, 0) if i == 0 else chunk(state, hp, data.arrays, i)
    out.append(dict(step=int(state.step), params=state.params, stored=stored,
                    flat=np.asarray(ravel_pytree(state.params)[0]),
                    metrics={k: np.asarray(v) for k, v in metrics.items()}))
  if int(state.diverged_step) >= 0:
    raise RuntimeError(f'η0 = {lr} diverged at step {int(state.diverged_step)}')
  return out


def count(errs, tol=TOL):
  """Smallest m (1-based) from which errs[m-1:] all are <= tol; None if the last one is not."""
  ok = np.asarray(errs) <= tol
  if not ok[-1]:
    return None
  bad = np.nonzero(~ok)[0]
  return int(bad[-1] + 2) if bad.size else 1


def ritz_tops(alphas, betas):
  a, b = np.asarray(alphas), np.asarray(betas)
  return np.array([np.linalg.eigvalsh(np.diag(a[:m]) + np.diag(b[:m - 1], 1) + np.diag(b[:m - 1], -1))[-1]
                   for m in range(1, a.size + 1)])


class Tools:
  """The jitted solvers on the Hessian of the loss on the measurement batch (the operator the lane measures)."""

  def __init__(self, s, c, model, data):
    loss_fn = M.LOSSES[c.loss]
    xs = data.arrays['measure_x'][:c.measure.sharpness_batch]
    ys = data.arrays['measure_y'][:c.measure.sharpness_batch]
    hessian = lambda params: spectra.operators(lambda p, x: model.apply(p, x, 1.0), loss_fn, params, xs, ys).hessian
    self.s, self.hessian, self._lanczos_at = s, hessian, {}

    def reference(params, key):
      dim = ravel_pytree(params)[0].size
      res = spectra.lanczos(hessian(params), dim, s['ref_iters'], key, k=1, dtype=jnp.float64)
      return res.eigenvalues[0], res.eigenvectors[0], res.residuals[0]
    self.reference = jax.jit(reference)
    self.long_run = jax.jit(lambda params, v0: spectra.lanczos_tridiagonal(
        hessian(params), v0, s['max_iters'], jax.random.PRNGKey(9))[:2])
    self.start_vector = jax.jit(measurements_lib.warm_start_vector)

  def lanczos(self, params, v0, m):
    """spectra.lanczos(num_iters=m) from v0: the block equivalence check."""
    if m not in self._lanczos_at:
      self._lanczos_at[m] = jax.jit(lambda p, v: spectra.lanczos(self.hessian(p), v.size, m, jax.random.PRNGKey(9),
                                                                 dtype=jnp.float64, v0=v).eigenvalues[0])
    return float(self._lanczos_at[m](params, v0))

  def errors(self, params, v0, lam):
    return np.abs(ritz_tops(*self.long_run(params, v0)) - lam) / abs(lam)


def bench_rate(s, tools, c, model, data, lr):
  t0 = time.perf_counter()
  run = train_run(c, model, data, lr)
  log(f'η0 = {lr}: trained {c.num_steps} steps with warm_start=True, num_iters={c.measure.num_iters} '
      f'({time.perf_counter() - t0:.1f} s)')
  dim = int(run[0]['stored'].size)
  chosen = measurements_lib.WARM_START_NOISE
  # the same training, storing the normalized sum of the top-k Ritz vectors (measure.hessian_k = k)
  run_k = train_run(make_config(s, c.measure.num_iters, True, s['top_k']), model, data, lr)
  rows = []
  for i, (r, rk) in enumerate(zip(run, run_k)):
    assert np.array_equal(r['flat'], rk['flat'])   # the measurement does not feed back into training
    params = r['params']
    lam, u, resid = tools.reference(params, jax.random.PRNGKey(1000 + i))
    lam, u = float(lam), np.asarray(u)
    cold = [count(tools.errors(params, jax.random.normal(jax.random.PRNGKey(100 * i + j), (dim,), jnp.float64), lam))
            for j in range(s['cold_starts'])]
    warm, warm_errs = {}, {}
    for eps in s['noises']:
      v0 = tools.start_vector(jnp.asarray(r['stored']), jax.random.PRNGKey(7000 + i), eps)
      warm_errs[eps] = tools.errors(params, v0, lam)
      warm[eps] = count(warm_errs[eps])
    warm_k = count(tools.errors(params, tools.start_vector(jnp.asarray(rk['stored']), jax.random.PRNGKey(7000 + i),
                                                           chosen), lam))
    v0 = tools.start_vector(jnp.asarray(r['stored']), jax.random.PRNGKey(7000 + i), chosen)
    m_check = warm[chosen] or s['max_iters']
    check = abs(tools.lanczos(params, v0, m_check) - ritz_tops(*tools.long_run(params, v0))[m_check - 1]) / abs(lam)
    stored_unit = r['stored'] / np.linalg.norm(r['stored'])
    rows.append(dict(
        step=r['step'], lam=lam, lr_lam=float(r['metrics']['lr_sharpness']), resid=float(resid) / abs(lam),
        long_agree=float(warm_errs[chosen][-1]), overlap=float(abs(stored_unit @ u)), cold=cold, warm=warm,
        warm_k=warm_k, flat=r['flat'],
        in_loop_err=abs(float(r['metrics']['sharpness']) - lam) / abs(lam), block_check=check,
        train_loss=float(r['metrics']['train_loss'])))
    log(f'η0 = {lr}, step {r["step"]}: λ_max {lam:.6g}, overlap {rows[-1]["overlap"]:.4f}, cold {cold}, '
        f'warm {warm}, warm from the top-{s["top_k"]} sum {warm_k}')
  return dict(lr=lr, rows=rows, dim=dim)


def verify(s, tools, model, data, lr, rows, num_iters, warm_start):
  """Trains again with measure.num_iters = num_iters: each in-loop sharpness against the reference at its weights
  (the first run's reference where the weights are the same bits; computed again where they are not, as a program
  with another measurement may be compiled with other rounding in its steps). Returns (errors, the number of
  measurements whose weights differed from the first run's)."""
  c = make_config(s, num_iters, warm_start)
  run = train_run(c, model, data, lr)
  errs, differ = [], 0
  for i, (r, row) in enumerate(zip(run, rows)):
    same = np.array_equal(r['flat'], row['flat'])
    lam = row['lam'] if same else float(tools.reference(r['params'], jax.random.PRNGKey(1000 + i))[0])
    differ += not same
    errs.append(abs(float(r['metrics']['sharpness']) - lam) / abs(lam))
  return errs, differ


def fmt_count(c, cap):
  return f'>{cap}' if c is None else str(c)


def capped(c, cap):
  return cap + 1 if c is None else c


def report(args, s, info, c, results, checks, n_warm, n_cold, seconds):
  chosen = measurements_lib.WARM_START_NOISE
  cap = s['max_iters']
  L = ['# Warm-started Lanczos benchmark', '',
       f'Produced by `python benchmarks/warm_start.py{" --quick" if args.quick else ""}` in {seconds:.0f} s (wall '
       'time, compilation included). What every number means: the docstring of `benchmarks/warm_start.py`.', '',
       '## Summary', '',
       f'HVPs (= Lanczos iterations) to reach λ_max within {TOL:g} (relative) of the float64 reference, from a '
       f'random start vector and warm-started from the previous measurement\'s top Ritz vector (plus ε = {chosen:g} '
       'of a random unit vector, as `measure.warm_start=True` does). Random: the median over '
       f'{s["cold_starts"]} starts at each measurement. Measurements after the first (the first has nothing to '
       'warm-start from).', '',
       '| η0 | measurements | random: total | random: median | random: max (all starts) | warm: total | '
       f'warm: median | warm: max | saved | warm from the top-{s["top_k"]} sum (hessian_k={s["top_k"]}): total / '
       'median / max |',
       '|---|---|---|---|---|---|---|---|---|---|']
  k = c.measure.num_iters
  within = []
  for res in results:
    later = res['rows'][1:]
    cold_med = [statistics.median(capped(x, cap) for x in r['cold']) for r in later]
    cold_max = max(capped(x, cap) for r in later for x in r['cold'])
    warm = [capped(r['warm'][chosen], cap) for r in later]
    warm_k = [capped(r['warm_k'], cap) for r in later]
    L.append(f'| {res["lr"]:g} | {len(later)} | {sum(cold_med):g} | {statistics.median(cold_med):g} | {cold_max} | '
             f'{sum(warm)} | {statistics.median(warm):g} | {max(warm)} | '
             f'**{100 * (1 - sum(warm) / sum(cold_med)):.0f}%** | {sum(warm_k)} / {statistics.median(warm_k):g} / '
             f'{max(warm_k)} |')
    within.append((sum(capped(x, cap) <= k for r in later for x in r['cold']), len(later) * s['cold_starts'],
                   sum(r['in_loop_err'] <= TOL for r in later), len(later)))
  L.append('')
  L.append(f'At the quickstart\'s own `measure.num_iters` = {k}, later measurements within {TOL:g}: ' + '; '.join(
      f'η0 = {res["lr"]:g}: random starts {a} / {b}, warm-started (in-loop) {w} / {n}'
      for res, (a, b, w, n) in zip(results, within)) + '.')
  L.append('')
  firsts = [capped(x, cap) for res in results for x in res['rows'][0]['cold']]
  lane_first = max(capped(res['rows'][0]['warm'][chosen], cap) for res in results)
  L.append(f'`measure.num_iters` for {TOL:g} at every measurement: **{n_cold}** from random starts (the largest '
           f'count over all measurements and starts), **{n_warm}** warm-started (the largest warm count after the '
           'first measurement). The first measurement of a warm-started run still starts from a random vector (the '
           f'random starts needed {min(firsts)} to {max(firsts)} HVPs there, the lane\'s own start vector '
           f'{fmt_count(lane_first if lane_first <= cap else None, cap)}), and the count is static, so at num_iters '
           f'= {n_warm} the first measurement is less accurate. Check, by training again with these counts:')
  L.append('')
  L.append('| η0 | num_iters | warm_start | rel. error, measurement 0 | max rel. error, later measurements | '
           f'later measurements within {TOL:g} | measurements whose weights differ from the first run |')
  L.append('|---|---|---|---|---|---|---|')
  for (lr, n, warm), (errs, differ) in checks.items():
    later = errs[1:]
    L.append(f'| {lr:g} | {n} | {warm} | {errs[0]:.1e} | {max(later):.1e} | '
             f'{sum(e <= TOL for e in later)} / {len(later)} | {differ} |')
  L.append('')
  later = [r for res in results for r in res['rows'][1:]]
  differ = sum(len({r['warm'][e] for e in s['noises']}) > 1 for r in later)
  L.append(f'The random part of the warm start (ε = {chosen:g} against ε = 0) changed the count at {differ} of '
           f'{len(later)} later measurements. Starting from the normalized sum of the top-{s["top_k"]} Ritz vectors '
           f'(what the lane stores with hessian_k = {s["top_k"]}) took {sum(capped(r["warm_k"], cap) for r in later)} '
           f'HVPs to λ_max in all, against {sum(capped(r["warm"][chosen], cap) for r in later)} from the top one '
           'alone.')
  warm_sum = lambda rows: sum(capped(r['warm'][chosen], cap) for r in rows)
  cold_sum = lambda rows: sum(statistics.median(capped(x, cap) for x in r['cold']) for r in rows)
  turned, kept = [r for r in later if r['overlap'] < 0.2], [r for r in later if r['overlap'] >= 0.2]
  L[-1] += (f' At the {len(turned)} later measurements where the top eigenvector had turned since the last one '
            f'(overlap below 0.2): warm {warm_sum(turned)} HVPs against random {cold_sum(turned):g}; at the other '
            f'{len(kept)}: warm {warm_sum(kept)} against random {cold_sum(kept):g}.')
  L.append('')
  L += machine_table(info)
  L.append('')
  L.append('## Setup')
  L.append('')
  L.append(f'`configs/quickstart.py` at width {s["width"]} ({results[0]["dim"]:,} parameters), μP, depth 3, SGD, '
           f'batch {c.data.batch_size}, {c.num_steps} steps, a measurement every {c.measure_every} steps on '
           f'{c.measure.sharpness_batch} examples; float64. The lane stores the top Ritz vector of its in-loop solve '
           f'(warm_start=True, num_iters={c.measure.num_iters}). Reference: `spectra.lanczos`, {s["ref_iters"]} '
           f'iterations. Counts from Lanczos runs of up to {cap} steps (>{cap}: not reached). Warm starts: the '
           f'stored vector plus ε times a random unit vector; ε = {chosen:g} is `measurements.WARM_START_NOISE`.')
  L.append('')
  for res in results:
    rows = res['rows']
    L.append(f'## η0 = {res["lr"]:g}')
    L.append('')
    L.append(f'- reference residual bound ‖Hy − θy‖/θ: at most {max(r["resid"] for r in rows):.1e}; a '
             'warm-started '
             f'{cap}-step run agrees with the reference to {max(r["long_agree"] for r in rows):.1e} (relative)')
    L.append(f'- the Ritz value of the leading m×m block equals `spectra.lanczos(num_iters=m, v0=...)` to '
             f'{max(r["block_check"] for r in rows):.1e} (relative, m = the warm count)')
    L.append('')
    eps_cols = ' | '.join(f'warm, ε = {e:g}' + (' (in-loop)' if e == chosen else '') for e in s['noises'])
    L.append('| step | train loss | λ_max | η·λ_max | overlap ⟨s, u⟩ (abs.) | random (median [min, max]) | '
             f'{eps_cols} | '
             f'warm, top-{s["top_k"]} sum | in-loop error (num_iters={c.measure.num_iters}, warm) |')
    L.append('|' + '---|' * (8 + len(s['noises'])))
    for r in rows:
      cs = [capped(x, cap) for x in r['cold']]
      cold = (f'{statistics.median(cs):g} [{fmt_count(min(r["cold"], key=lambda x: capped(x, cap)), cap)}, '
              f'{fmt_count(max(r["cold"], key=lambda x: capped(x, cap)), cap)}]')
      warm = ' | '.join(fmt_count(r['warm'][e], cap) for e in s['noises'])
      L.append(f'| {r["step"]} | {r["train_loss"]:.4f} | {r["lam"]:.6g} | {r["lr_lam"]:.3f} | {r["overlap"]:.4f} | '
               f'{cold} | {warm} | {fmt_count(r["warm_k"], cap)} | {r["in_loop_err"]:.1e} |')
    L.append('')
    later = rows[1:]
    L.append('Totals over the measurements after the first: random (median per measurement) '
             f'{sum(statistics.median(capped(x, cap) for x in r["cold"]) for r in later):g}; ' + '; '.join(
                 f'ε = {e:g}: {sum(capped(r["warm"][e], cap) for r in later)}' for e in s['noises']) +
             f'; top-{s["top_k"]} sum: {sum(capped(r["warm_k"], cap) for r in later)}.')
    L.append('')
  return '\n'.join(L) + '\n'


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--quick', action='store_true', help='tiny sizes for a smoke test (about 1 min)')
  ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'warm_start.md'),
                  help='Markdown file to write (default: benchmarks/warm_start.md)')
  args = ap.parse_args(argv)
  s = QUICK if args.quick else FULL
  t0 = time.perf_counter()
  info = machine_info()
  jax.config.update('jax_enable_x64', True)
  c = make_config(s, C.from_file(os.path.join(ROOT, 'configs', 'quickstart.py')).measure.num_iters, True)
  m = c.measure
  data = D.make_data(c.data, c.num_steps, max(m.loss_batch, m.sharpness_batch), jnp.float64)
  model = M.make_model(c.model, data.spec, s['width'], c.depths[0], runner.param_of(c, 'mup'), jnp.float64)
  tools = Tools(s, c, model, data)
  results = [bench_rate(s, tools, c, model, data, lr) for lr in s['lrs']]
  cap, chosen = s['max_iters'], measurements_lib.WARM_START_NOISE
  n_warm = max(capped(r['warm'][chosen], cap) for res in results for r in res['rows'][1:])
  n_cold = max(capped(x, cap) for res in results for r in res['rows'] for x in r['cold'])
  checks = {}
  for res in results:
    for n, warm in ((n_warm, True), (n_cold, False)):
      checks[res['lr'], n, warm] = verify(s, tools, model, data, res['lr'], res['rows'], n, warm)
      log(f'η0 = {res["lr"]}: num_iters={n}, warm_start={warm}: errors ' +
          ' '.join(f'{e:.1e}' for e in checks[res['lr'], n, warm][0]))
  info.append(('load average at end (1 / 5 / 15 min)', ' / '.join(f'{x:.2f}' for x in os.getloadavg())))
  write_report(args.out, report(args, s, info, c, results, checks, n_warm, n_cold, time.perf_counter() - t0))


if __name__ == '__main__':
  main()
