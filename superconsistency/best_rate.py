"""The best learning rate of each model, its uncertainty, and how far it moves across sizes: the one definition that
summary.json, the CLI's last lines, analysis.json, the gallery's verdicts and the README all read.

Rule (stated, and tested on synthetic loss-vs-rate curves with known optima in tests/best_rate_test.py):
- Reading. A lane's loss is read at `select_step` (0 = its last measured step) in the `select_by` column, in raw
  loss units, averaged over γ0. A rate at which a lane diverged is never that lane's best.
- Estimate, per seed. The vertex in ln η0 of a parabola through the grid minimum and its two neighbours
  (fits.interpolated_argmin). Its interval is the vertex ± ESTIMATOR_ERROR_STEPS of the local grid step: the largest
  error of the vertex over the test family (symmetric and skewed curves, every offset of the grid, grid ratios 2 to
  √10) is 0.30 steps, and the raw-loss and log-loss vertices differ by less than that, so the choice between them
  lies inside the interval. Where the minimum has a diverged neighbour the estimate is the grid rate and the
  interval runs to the neighbours. On the grid's edge, or next to a missing rate, the interval is open on that side:
  the optimum is *censored* ('below' or 'above'), never a number to compare.
- Across seeds. The best rate of a size is the median of its seeds' estimates; its interval spans all of its seeds'
  intervals. A seed fixes the data order at every size (common random numbers), so a drift between two sizes pairs
  each seed with itself: its value is the median of the seeds' differences and its interval runs from the smallest
  to the largest difference of their interval ends (every pair of seeds where the sizes' seeds differ).
- Transfer, by `classify`: `censored` if any size is; else, with tolerance = `analysis.transfer_tolerance_exponent`
  (default 0.5) × log10(largest / smallest size), `transfers` if the drift's interval lies inside ±tolerance,
  `shifts` if it lies wholly outside, `inconclusive` otherwise. The default is halfway between the two hypotheses
  a transfer experiment separates: a best rate independent of size (exponent 0, μP) and one proportional to it
  (exponent 1, NTP under SGD), so an interval on one side excludes the other.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from superconsistency import fits

ESTIMATOR_ERROR_STEPS = 0.3
TRANSFER_TOLERANCE_EXPONENT = 0.5   # config analysis.transfer_tolerance_exponent: halfway between η* ∝ size^0 and ^1
NAN = float('nan')


def nearest_on_grid(grid, wanted: float) -> float:
  """The grid rate nearest `wanted` on a log scale (how a configured trajectory rate names a lane)."""
  return min(grid, key=lambda lr: abs(math.log(lr / wanted)))


# ----------------------------------------------------------------------------------------------- reading the rows

def _lane_readings(rows, select_by, select_step):
  """{(param, depth, width, lr, γ0, seed): (loss at the selected step, diverged by then)}."""
  last = defaultdict(int)
  for r in rows:
    key = (r['parameterization'], r['depth'], r['width'], r['lr'], r['gamma0'], r['seed'])
    last[key] = select_step if select_step else max(last[key], r['step'])
  out = {}
  for r in rows:
    key = (r['parameterization'], r['depth'], r['width'], r['lr'], r['gamma0'], r['seed'])
    if r['step'] == last[key]:
      out[key] = (r[select_by], bool(r['diverged']))
  return out


def _average(vals):
  """(mean of the finite losses, any diverged); nan where one diverged or none is finite."""
  losses = [v for v, d in vals if not d and math.isfinite(v)]
  diverged = any(d for _, d in vals)
  return (float(np.mean(losses)) if losses and not diverged else NAN, diverged)


def final_losses(rows, select_by='train_loss', select_step=0):
  """{(param, depth, width): {lr: (mean over seeds and γ0 of the loss at the selected step, any lane diverged)}}.

  select_step > 0 reads the loss at that step instead of the last (a lane diverged by then counts as diverged)."""
  acc = defaultdict(lambda: defaultdict(list))
  for (p, depth, width, lr, _, _), v in _lane_readings(rows, select_by, select_step).items():
    acc[p, depth, width][lr].append(v)
  return {g: {lr: _average(vals) for lr, vals in sorted(by_lr.items())} for g, by_lr in acc.items()}


def seed_losses(rows, select_by='train_loss', select_step=0):
  """{(param, depth, width): {seed: {lr: (mean over γ0 of the loss, diverged)}}}: each seed's own curve."""
  acc = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
  for (p, depth, width, lr, _, seed), v in _lane_readings(rows, select_by, select_step).items():
    acc[p, depth, width][seed][lr].append(v)
  return {g: {s: {lr: _average(vals) for lr, vals in sorted(by_lr.items())} for s, by_lr in sorted(by_seed.items())}
          for g, by_seed in acc.items()}


# ----------------------------------------------------------------------------------------------- one curve

def best_of(grid, losses) -> dict:
  """The best rate of one model from its losses on the ascending rate grid (nan where diverged or missing)."""
  losses = np.asarray(losses, float)
  best = fits.interpolated_argmin(np.log(grid), losses)
  if best is None:
    return dict(best_lr=NAN, best_index=NAN, best_grid_lr=NAN, best_loss=NAN, at_grid_edge=None)
  i = int(np.nanargmin(losses))
  return dict(best_lr=math.exp(best[0]), best_index=best[1], best_grid_lr=float(grid[i]),
              best_loss=float(losses[i]), at_grid_edge=best[2])


def estimate(grid, losses, diverged=None) -> dict:
  """One curve's best rate with its interval, in log10 η0 (the module's rule). `diverged[i]`: rate i diverged (a
  bound on the optimum); a nan loss that did not diverge is missing (no bound). censored: None, 'below', 'above'."""
  x = np.log10(np.asarray(grid, float))
  losses = np.asarray(losses, float)
  diverged = np.zeros(len(x), bool) if diverged is None else np.asarray(diverged, bool)
  best = fits.interpolated_argmin(x, losses)
  if best is None:
    return dict(log10_lr=NAN, lo=NAN, hi=NAN, censored=None, grid_index=None)
  i = int(np.nanargmin(losses))
  x_best, _, not_fitted = best
  lo, hi, censored = -math.inf, math.inf, []
  if i > 0 and (math.isfinite(losses[i - 1]) or diverged[i - 1]):
    lo = x[i - 1] if not_fitted else max(x[i - 1], x_best - ESTIMATOR_ERROR_STEPS * (x[i] - x[i - 1]))
  else:
    censored.append('below')
  if i < len(x) - 1 and (math.isfinite(losses[i + 1]) or diverged[i + 1]):
    hi = x[i + 1] if not_fitted else min(x[i + 1], x_best + ESTIMATOR_ERROR_STEPS * (x[i + 1] - x[i]))
  else:
    censored.append('above')
  return dict(log10_lr=float(x_best), lo=float(lo), hi=float(hi), censored='+'.join(censored) or None,
              grid_index=i)


# ----------------------------------------------------------------------------------------------- across sizes

def shift(best_lrs, best_indices) -> dict:
  """How far the best rate moves across sizes (finite values only): in decades and in grid steps, and its signed
  drift from the first (smallest) size to the last."""
  pairs = [(lr, i) for lr, i in zip(best_lrs, best_indices) if math.isfinite(lr)]
  if not pairs:
    return dict(shift_decades=NAN, shift_grid_steps=NAN, drift_decades=NAN, drift_grid_steps=NAN)
  lrs, idx = zip(*pairs)
  ends = math.isfinite(best_lrs[0]) and math.isfinite(best_lrs[-1])
  return dict(shift_decades=math.log10(max(lrs) / min(lrs)), shift_grid_steps=max(idx) - min(idx),
              drift_decades=math.log10(best_lrs[-1] / best_lrs[0]) if ends else NAN,
              drift_grid_steps=best_indices[-1] - best_indices[0] if ends else NAN)


def _curve(by_lr, grid):
  got = [by_lr.get(lr, (NAN, False)) for lr in grid]
  return [v for v, _ in got], [d for _, d in got]


def size_estimates(by_seed, grid) -> dict:
  """A size's best rate over its seeds: the median estimate, the interval spanning every seed's, and each seed's."""
  per_seed = {s: estimate(grid, *_curve(by_lr, grid)) for s, by_lr in by_seed.items()}
  found = [e for e in per_seed.values() if math.isfinite(e['log10_lr'])]
  censored = sorted({c for e in found if e['censored'] for c in e['censored'].split('+')})
  if not found:
    return dict(log10_lr=NAN, lo=NAN, hi=NAN, censored=None, per_seed=per_seed)
  return dict(log10_lr=float(np.median([e['log10_lr'] for e in found])), lo=min(e['lo'] for e in found),
              hi=max(e['hi'] for e in found), censored='+'.join(censored) or None, per_seed=per_seed)


def drift(small, large) -> dict:
  """The signed move of the best rate from one size to another (decades). A seed is the same data order at every
  size (train.py: the data key comes from the lane seed alone), so seeds are paired where both sizes have them
  (common random numbers: the noise they share cancels); otherwise every pair of seeds is taken."""
  a = {s: e for s, e in small['per_seed'].items() if math.isfinite(e['log10_lr'])}
  b = {s: e for s, e in large['per_seed'].items() if math.isfinite(e['log10_lr'])}
  if not a or not b:
    return dict(value=NAN, interval=[NAN, NAN], paired=False)
  paired = set(a) == set(b)
  pairs = [(a[s], b[s]) for s in a] if paired else [(ea, eb) for ea in a.values() for eb in b.values()]
  diffs = [eb['log10_lr'] - ea['log10_lr'] for ea, eb in pairs]
  lo = min(eb['lo'] - ea['hi'] for ea, eb in pairs)
  hi = max(eb['hi'] - ea['lo'] for ea, eb in pairs)
  return dict(value=float(np.median(diffs)), interval=[float(lo), float(hi)], paired=paired)


def tolerance_decades(sizes, exponent=TRANSFER_TOLERANCE_EXPONENT) -> float:
  """The drift that separates 'transfers' from 'shifts' over a size range: `exponent` × log10(largest / smallest)."""
  return exponent * math.log10(max(sizes) / min(sizes))


def classify(entry, tolerance_decades) -> str:
  """censored / transfers / shifts / inconclusive: the module's rule on a transfer entry."""
  if any(entry['censored']):
    return 'censored'
  lo, hi = (float('nan') if v is None else float(v) for v in entry['drift_interval_decades'])   # as read back
  if not (math.isfinite(lo) and math.isfinite(hi)):
    return 'inconclusive'
  if -tolerance_decades <= lo and hi <= tolerance_decades:
    return 'transfers'
  if lo > tolerance_decades or hi < -tolerance_decades:
    return 'shifts'
  return 'inconclusive'


def per_model(rows, select_by='train_loss', select_step=0) -> list[dict]:
  """One entry per (parameterization, depth, width): its grid, best rate (seed-averaged curve; and the median of its
  seeds' estimates with their interval) and the rates that diverged."""
  out = []
  curves = seed_losses(rows, select_by, select_step)
  for (p, depth, width), by_lr in sorted(final_losses(rows, select_by, select_step).items()):
    grid = sorted(by_lr)
    entry = dict(parameterization=p, depth=depth, width=width, lr_grid=grid, select_by=select_by,
                 diverged_lrs=[lr for lr in grid if by_lr[lr][1]])
    entry.update(best_of(grid, [by_lr[lr][0] for lr in grid]))
    if len(grid) > 1:
      est = size_estimates(curves[p, depth, width], grid)
      entry.update(best_lr_median=10 ** est['log10_lr'], best_lr_interval=[10 ** est['lo'], 10 ** est['hi']],
                   censored=est['censored'])
    out.append(entry)
  return out


def censored_sides(rows, select_by='train_loss', select_step=0) -> dict:
  """{param: sorted sides ('below', 'above') on which some seed of some size has its optimum censored}: where a
  sweep's grid must grow (runner's grid extension)."""
  out = defaultdict(set)
  for (p, _, _), by_seed in seed_losses(rows, select_by, select_step).items():
    grid = sorted({lr for by_lr in by_seed.values() for lr in by_lr})
    if len(grid) < 2:
      continue
    for by_lr in by_seed.values():
      e = estimate(grid, *_curve(by_lr, grid))
      out[p].update(e['censored'].split('+') if e['censored'] else ())
  return {p: sorted(s) for p, s in out.items() if s}


def extension_rates(grid, sides, points: int) -> list:
  """`points` new rates beyond each censored side of the ascending grid, continuing its end ratio geometrically."""
  grid = sorted(grid)
  new = []
  if 'above' in sides:
    r = grid[-1] / grid[-2]
    new += [grid[-1] * r ** k for k in range(1, points + 1)]
  if 'below' in sides:
    r = grid[1] / grid[0]
    new += [grid[0] / r ** k for k in range(1, points + 1)]
  return sorted(float(v) for v in new)


def size_axes(rows):
  """Which sizes a transfer is measured across: width (at each depth), and depth (at each width) where swept."""
  axes = []
  if len({r['width'] for r in rows}) > 1:
    axes.append(('width', 'depth'))
  if len({r['depth'] for r in rows}) > 1:
    axes.append(('depth', 'width'))
  return axes


def _penalties(small_rate, seeds_large, grid):
  """The loss at the largest size, per seed, at the smallest size's best grid rate (seed-averaged curve) minus that
  seed's own best grid loss; inf where that rate diverged."""
  if not math.isfinite(small_rate):
    return {}
  out = {}
  for s, by_lr in seeds_large.items():
    losses, _ = _curve(by_lr, grid)
    if not np.isfinite(losses).any():
      continue
    at = losses[grid.index(small_rate)]
    out[s] = (at - float(np.nanmin(losses))) if math.isfinite(at) else math.inf
  return out


def transfer(rows, select_by='train_loss', select_step=0, tolerance_exponent=TRANSFER_TOLERANCE_EXPONENT) -> dict:
  """Per parameterization and fixed other size ('mup/depth=3'): the best rate at each size with its interval over
  seeds, its drift (smallest to largest size) with an interval, censoring, and the penalty of using the smallest
  size's best grid rate at the largest size (per seed: loss there minus that seed's best grid loss)."""
  finals = final_losses(rows, select_by, select_step)
  curves = seed_losses(rows, select_by, select_step)
  out = {}
  for size, fixed in size_axes(rows):
    for p in dict.fromkeys(r['parameterization'] for r in rows):
      for fixed_value in sorted({k[1 if fixed == 'depth' else 2] for k in finals if k[0] == p}):
        keys = {(width if size == 'width' else depth): (pp, depth, width) for (pp, depth, width) in finals
                if pp == p and (depth if fixed == 'depth' else width) == fixed_value}
        if len(keys) < 2:
          continue
        sizes = sorted(keys)
        grid = sorted({lr for s in sizes for lr in finals[keys[s]]})
        if len(grid) < 2:   # one rate: nothing to transfer (a trajectory-only run)
          continue
        est = [size_estimates(curves[keys[s]], grid) for s in sizes]
        x = np.log10(grid)
        best_lrs = [10 ** e['log10_lr'] for e in est]
        best_indices = [float(np.interp(e['log10_lr'], x, np.arange(len(x)))) if math.isfinite(e['log10_lr'])
                        else NAN for e in est]
        mean_curve = {s: [finals[keys[s]].get(lr, (NAN, True))[0] for lr in grid] for s in sizes}
        mean_best = {s: best_of(grid, mean_curve[s]) for s in sizes}   # the seed-averaged curves' grid minima
        small_rate = mean_best[sizes[0]]['best_grid_lr']
        penalties = _penalties(small_rate, curves[keys[sizes[-1]]], grid)
        pen = list(penalties.values())
        d = drift(est[0], est[-1])
        entry = dict(parameterization=p, size_axis=size, sizes=sizes, lr_grid=grid, select_by=select_by,
                     seeds=sorted({s for k in keys.values() for s in curves[k]}),
                     best_lrs=best_lrs, best_indices=best_indices,
                     best_lr_intervals=[[10 ** e['lo'], 10 ** e['hi']] for e in est],
                     best_lrs_by_seed={str(s): [10 ** e['per_seed'][s]['log10_lr'] if s in e['per_seed'] else NAN
                                                for e in est] for s in sorted(curves[keys[sizes[0]]])},
                     censored=[e['censored'] for e in est],
                     best_at_grid_edge=[bool(e['censored']) for e in est],
                     best_grid_lrs=[mean_best[s]['best_grid_lr'] for s in sizes],
                     drift_interval_decades=d['interval'],
                     penalty_rate=small_rate,
                     penalty_at_largest=float(np.median(pen)) if pen else NAN,
                     penalty_interval=[float(min(pen)), float(max(pen))] if pen else [NAN, NAN],
                     penalty_by_seed={str(s): v for s, v in penalties.items()},
                     losses={str(s): mean_curve[s] for s in sizes})
        entry['penalty_relative'] = (entry['penalty_at_largest'] / mean_best[sizes[-1]]['best_loss']
                                     if math.isfinite(entry['penalty_at_largest']) else entry['penalty_at_largest'])
        entry.update(shift(best_lrs, best_indices))
        entry['drift_decades'] = d['value'] if math.isfinite(d['value']) else entry['drift_decades']
        entry.update(drift_paired_by_seed=d['paired'], tolerance_exponent=tolerance_exponent,
                     tolerance_decades=tolerance_decades(sizes, tolerance_exponent))
        entry['verdict'] = classify(entry, entry['tolerance_decades'])
        trained = [i for i, e in enumerate(est) if math.isfinite(e['log10_lr'])]
        if trained[:1] == [0] and 0 < trained[-1] < len(sizes) - 1:
          # the largest sizes train at no rate of the grid (e.g. μP's unscaled residual stream overflows at depth):
          # the drift up to the largest size that trains, so the sizes that do train still give a verdict
          last = trained[-1]
          d_trained = drift(est[0], est[last])
          part = dict(sizes=sizes[:last + 1], untrained_sizes=sizes[last + 1:], drift_decades=d_trained['value'],
                      drift_interval_decades=d_trained['interval'], censored=entry['censored'][:last + 1],
                      tolerance_decades=tolerance_decades(sizes[:last + 1], tolerance_exponent))
          part['verdict'] = classify(part, part['tolerance_decades'])
          entry['over_trained_sizes'] = part
        out[f'{p}/{fixed}={fixed_value}'] = entry
  return out


def _interval(lo, hi, fmt='.3g'):
  show = lambda v: ('−∞' if v < 0 else '∞') if math.isinf(v) else f'{v:{fmt}}'
  return f'[{show(lo)}, {show(hi)}]'


def describe(key, t) -> str:
  """One line per transfer entry: what the CLI prints and the gallery quotes."""
  best = ', '.join(f'{s}: {lr:.3g} {_interval(*iv)}' + (f' censored {c}' if c else '')
                   for s, lr, iv, c in zip(t['sizes'], t['best_lrs'], t['best_lr_intervals'], t['censored']))
  lo, hi = t['drift_interval_decades']
  return (f'{key}: best lr by {t["size_axis"]} over {len(t["seeds"])} seed(s) {{{best}}}; drift '
          f'{t["drift_decades"]:+.2f} decades {_interval(lo, hi, "+.2f")} ({t["shift_grid_steps"]:.2f} grid steps): '
          f'{t["verdict"]}')
