"""[G]'s analyses of a sweep over (η0, γ0): the phase plane and its scaling laws, plateaus, the collapse in
τ = η0·t/γ0, and λ_max at the best rate. Reads rows of metrics.csv only (no JAX).

A lane is one (η0, γ0, seed). It is *unstable* when it diverged (its loss stopped being finite), or when its last
loss is not PROGRESS below its first (it blew up without overflowing, or learned nothing: far above the edge a
ReLU network can die in its first steps and then sit just below its starting loss). Per seed and γ0:
- η* is the grid rate with the lowest last loss among the stable ones. Its quantisation cell is the half grid
  step on either side (in log η0). At the lowest grid rate it is censored and left out of the fits.
- the stability edge lies between η_max, the last stable rate before the first unstable one above η*, and that
  unstable rate; its point is the geometric midpoint of that cell, the cell its quantisation. With no unstable rate
  above η* it is censored.
Slopes of log η* and of log(edge) against log γ0, per regime, pool seeds and γ0 (`quantised_fit`): the OLS slope
through the cells' centres, and a 95% interval from a Monte Carlo in which every point is drawn uniformly inside its
cell and the OLS slope's own t-error is added, so the interval holds both the seeds' scatter and the grid's
quantisation. The worst case (every point at the end of its cell that tilts the line most) is reported beside it.
The fits are repeated with each regime's boundary moved half a decade either way (`boundaries`).

Plateaus and the τ-collapse use every lane that never diverged at γ0 ≥ the large regime's lower end, each seed its
own curve, measured at least MIN_CURVE_POINTS times:
- plateau length: the step at which the loss first falls PLATEAU_DROP below its start (interpolated in log t
  between measurements); fitted against γ0/η0 ([G]'s scalar chain escapes its plateau at t ∝ γ0/η0) and against
  γ0 and η0 separately. Lanes that never leave the plateau, or leave it before the first measurement, are counted
  as censored and left out.
- collapse: the times at which each curve reaches the loss levels COLLAPSE_LEVELS × its start; their spread (std of
  log time across curves, averaged over levels) in t, in τ = η0·t/γ0 and in η0·t, and a permutation null for τ.
- best loss: per seed, the lowest last loss at large γ0 against the lowest at smaller γ0.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np

from superconsistency import fits as fits_lib

MC_DRAWS = 4000
PROGRESS = 0.01                            # a stable lane ends at least 1% below its starting loss
PLATEAU_DROP = 0.2                         # the plateau ends when the loss falls 20% below its start
COLLAPSE_LEVELS = (0.9, 0.8, 0.7, 0.6)     # loss levels (fractions of the start) whose hitting times are compared
MIN_CURVES_PER_LEVEL = 5
PERMUTATIONS = 2000
MIN_CURVE_POINTS = 10                      # plateaus and collapse need curves measured at least this often


def _nan_list(a):
  return [None if not math.isfinite(float(v)) else float(v) for v in np.ravel(a)]


def seed_grids(rows, p, depth, width, value='train_loss'):
  """(lrs, gammas, seeds, last[s, i, j], first[s, i, j], unstable[s, i, j], (λ_max, η·λ_max) at the last step
  [2, s, i, j]), i over η0 and j over γ0. A lane without a row at the last step (it retired when it diverged) is
  unstable. η·λ_max is metrics.csv's lr_sharpness: λ_max weighted by the lane's raw per-layer rates."""
  sel = [r for r in rows if r['parameterization'] == p and r['depth'] == depth and r['width'] == width]
  lrs, gammas = sorted({r['lr'] for r in sel}), sorted({r['gamma0'] for r in sel})
  seeds = sorted({r['seed'] for r in sel})
  last_step = max(r['step'] for r in sel)
  shape = (len(seeds), len(lrs), len(gammas))
  last, first, sharp = np.full(shape, np.nan), np.full(shape, np.nan), np.full((2,) + shape, np.nan)
  diverged = np.zeros(shape, bool)
  for r in sel:
    key = (seeds.index(r['seed']), lrs.index(r['lr']), gammas.index(r['gamma0']))
    diverged[key] |= bool(r['diverged'])
    if r['step'] == 0:
      first[key] = r[value]
    if r['step'] == last_step:
      last[key] = r[value]
      sharp[(0,) + key] = r.get('sharpness', np.nan)
      sharp[(1,) + key] = r.get('lr_sharpness', np.nan)
  with np.errstate(invalid='ignore'):
    unstable = diverged | ~np.isfinite(last) | ~(last < (1 - PROGRESS) * first)
  return np.array(lrs), np.array(gammas), seeds, last, first, unstable, sharp


def _stable_mean(last, unstable):
  """The mean over seeds of the last loss where every seed is stable, nan elsewhere."""
  return np.where(unstable.any(0), np.nan, np.where(unstable, 0.0, last).mean(0))


def _cells(log_lrs, loss_col, unstable_col):
  """One seed and γ0: η* and edge as (centre, lo, hi, censored) in log10 η0, plus grid indices."""
  stable = np.nonzero(~unstable_col)[0]
  nan = (math.nan, math.nan, math.nan, True)
  if not len(stable):
    return nan, nan, None, None
  i_best = int(stable[np.argmin(loss_col[stable])])
  above = np.nonzero(unstable_col[i_best:])[0]
  i_max = i_best + int(above[0]) - 1 if len(above) else len(log_lrs) - 1
  x = log_lrs
  lo = x[i_best] - (x[i_best] - x[i_best - 1]) / 2 if i_best > 0 else x[i_best]
  hi = x[i_best] + (x[i_best + 1] - x[i_best]) / 2 if i_best + 1 < len(x) else x[i_best]
  star = (float(x[i_best]), float(lo), float(hi), i_best == 0)
  if i_max + 1 < len(x):
    edge = ((x[i_max] + x[i_max + 1]) / 2, float(x[i_max]), float(x[i_max + 1]), False)
  else:
    edge = (float(x[i_max]), float(x[i_max]), float(x[i_max]), True)
  return star, edge, i_best, i_max


def quantised_fit(x, centre, lo, hi, level=0.95, draws=MC_DRAWS, seed=0) -> dict:
  """OLS slope of `centre` on `x` with an interval that holds the points' quantisation cells [lo, hi] (see the
  module docstring); `ci95_ols` is the plain t-interval through the centres."""
  from scipy import stats
  x, centre, lo, hi = (np.asarray(v, float) for v in (x, centre, lo, hi))
  base = fits_lib.linear_fit(x, centre, level)
  out = dict(slope=base['slope'], intercept=base['intercept'], n=len(x), ci95_ols=base['ci95'],
             ci95=[math.nan, math.nan], slope_range_within_cells=[math.nan, math.nan],
             num_gammas=len(set(np.round(x, 9))))
  if len(x) < 3 or out['num_gammas'] < 2:
    return out
  dx = x - x.mean()
  sxx = float(dx @ dx)
  rng = np.random.default_rng(seed)
  y = rng.uniform(lo, hi, size=(draws, len(x)))
  slopes = (y - y.mean(1, keepdims=True)) @ dx / sxx
  resid = y - y.mean(1, keepdims=True) - slopes[:, None] * dx
  se = np.sqrt((resid ** 2).sum(1) / (len(x) - 2) / sxx)
  total = slopes + se * stats.t.rvs(len(x) - 2, size=draws, random_state=rng)
  tail = (1 - level) / 2 * 100
  out['ci95'] = [float(np.percentile(total, tail)), float(np.percentile(total, 100 - tail))]
  out['slope_range_within_cells'] = [float(np.where(dx > 0, lo, hi) @ dx / sxx),
                                     float(np.where(dx > 0, hi, lo) @ dx / sxx)]
  return out


def _regime_fit(points, sel_gamma):
  pts = [p for p in points if sel_gamma(p['gamma0']) and not p['censored']]
  return quantised_fit([math.log10(p['gamma0']) for p in pts], [p['centre'] for p in pts],
                       [p['lo'] for p in pts], [p['hi'] for p in pts])


def plane(rows, cfg) -> dict:
  """The γ–η plane per (parameterization, depth, width): η* and the stability edge per seed, their scaling fits in
  both regimes (and with the regime boundaries moved half a decade either way), how often η* sits at the edge,
  and λ_max at η* where the sweep measured the Hessian."""
  a = cfg.get('analysis', {})
  small_max, large_min = a.get('small_gamma_max', 0.1), a.get('large_gamma_min', 10.0)
  small_pred = 2.0 if cfg['loss'] == 'mse' else 1.0
  out = {}
  for p in dict.fromkeys(r['parameterization'] for r in rows):
    for depth in sorted({r['depth'] for r in rows if r['parameterization'] == p}):
      for width in sorted({r['width'] for r in rows if r['parameterization'] == p}):
        lrs, gammas, seeds, last, first, unstable, sharp = seed_grids(rows, p, depth, width)
        log_lrs = np.log10(lrs)
        star_pts, edge_pts, gap, lam_pts = [], [], [], []
        star_by_seed = {s: [None] * len(gammas) for s in seeds}
        edge_by_seed = {s: [None] * len(gammas) for s in seeds}
        for (k, s), j in itertools.product(enumerate(seeds), range(len(gammas))):
          star, edge, i_best, i_max = _cells(log_lrs, last[k, :, j], unstable[k, :, j])
          if i_best is None:
            continue
          g = float(gammas[j])
          star_pts.append(dict(gamma0=g, seed=s, centre=star[0], lo=star[1], hi=star[2], censored=star[3]))
          edge_pts.append(dict(gamma0=g, seed=s, centre=edge[0], lo=edge[1], hi=edge[2], censored=edge[3]))
          star_by_seed[s][j], edge_by_seed[s][j] = 10 ** star[0], float(lrs[i_max])
          gap.append(dict(gamma0=g, steps=i_max - i_best, decades=float(log_lrs[i_max] - log_lrs[i_best])))
          if math.isfinite(sharp[0, k, i_best, j]):
            lam_pts.append(dict(gamma0=g, seed=s, sharpness=float(sharp[0, k, i_best, j]),
                                lr_sharpness=float(sharp[1, k, i_best, j])))
        regimes = dict(small=lambda g: g <= small_max, large=lambda g: g >= large_min)
        fits = {f'{name}_{regime}': _regime_fit(pts, sel)
                for name, pts in (('eta_star', star_pts), ('eta_edge', edge_pts)) for regime, sel in regimes.items()}
        boundaries = dict(
            small=[dict(small_gamma_max=b, eta_star=_regime_fit(star_pts, lambda g, b=b: g <= b * (1 + 1e-9)),
                        eta_edge=_regime_fit(edge_pts, lambda g, b=b: g <= b * (1 + 1e-9)))
                   for b in (small_max / math.sqrt(10), small_max, small_max * math.sqrt(10))],
            large=[dict(large_gamma_min=b, eta_star=_regime_fit(star_pts, lambda g, b=b: g >= b * (1 - 1e-9)),
                        eta_edge=_regime_fit(edge_pts, lambda g, b=b: g >= b * (1 - 1e-9)))
                   for b in (large_min / math.sqrt(10), large_min, large_min * math.sqrt(10))])
        at_edge = {}
        for regime, sel in regimes.items():
          gs = [d for d in gap if sel(d['gamma0'])]
          at_edge[regime] = dict(cells=len(gs), within_one_step=sum(d['steps'] <= 1 for d in gs),
                                 median_gap_decades=float(np.median([d['decades'] for d in gs])) if gs else None)
        # the seed-mean plane, for the figure and the best cell: a cell is stable when every seed is
        mean_loss = _stable_mean(last, unstable)
        best = np.unravel_index(np.nanargmin(mean_loss), mean_loss.shape) if np.isfinite(mean_loss).any() else None
        med = lambda by: [float(np.median(v)) if v else None
                          for v in ([by[s][j] for s in seeds if by[s][j] is not None] for j in range(len(gammas)))]
        entry = dict(
            parameterization=p, depth=depth, width=width, loss=cfg['loss'], gamma0s=gammas.tolist(),
            lr_grid=lrs.tolist(), seeds=seeds, final_loss=[_nan_list(row) for row in mean_loss],
            unstable=unstable.any(0).tolist(), eta_star=med(star_by_seed), eta_max=med(edge_by_seed),
            eta_star_by_seed={str(s): v for s, v in star_by_seed.items()},
            eta_max_by_seed={str(s): v for s, v in edge_by_seed.items()},
            censored_eta_star=sum(p_['censored'] for p_ in star_pts), fits=fits, boundaries=boundaries,
            eta_star_at_edge=at_edge, prediction_small=small_pred, prediction_large=2.0 / depth,
            small_gamma_max=small_max, large_gamma_min=large_min,
            best_cell=(dict(lr=float(lrs[best[0]]), gamma0=float(gammas[best[1]]),
                            final_loss=float(mean_loss[best])) if best else None))
        if lam_pts:
          entry['sharpness_at_eta_star'] = lam_pts
          entry['sharpness_fits'] = {
              f'{name}_{regime}': fits_lib.linear_fit(
                  [math.log10(d['gamma0']) for d in lam_pts if sel(d['gamma0'])],
                  [math.log10(d[name]) for d in lam_pts if sel(d['gamma0'])])
              for name in ('sharpness', 'lr_sharpness') for regime, sel in regimes.items()}
        out[f'{p}/depth={depth}/width={width}'] = entry
  return out


# ----------------------------------------------------------------------------------------------- curves

def curves(rows, p, depth, width):
  """{(seed, η0, γ0): (steps, loss)} of the stable lanes (never diverged, last loss PROGRESS below the first),
  each its own measured points."""
  by = defaultdict(list)
  bad = set()
  for r in rows:
    if r['parameterization'] == p and r['depth'] == depth and r['width'] == width:
      key = (r['seed'], r['lr'], r['gamma0'])
      if r['diverged'] or not math.isfinite(r['train_loss']):
        bad.add(key)
      by[key].append((r['step'], r['train_loss']))
  out = {k: tuple(np.array(v, float) for v in zip(*sorted(pts))) for k, pts in by.items() if k not in bad}
  return {k: (t, y) for k, (t, y) in out.items() if y[-1] < (1 - PROGRESS) * y[0]}


def hitting_time(steps, loss, level):
  """The first time the curve is at or below `level`, linear in log t between the measurements around it; nan if
  it never is; 0 if it already is at step 0. (Measurements at t ≥ 1 after step 0.)"""
  below = np.nonzero(loss <= level)[0]
  if not len(below):
    return math.nan
  i = int(below[0])
  if i == 0:
    return 0.0
  t0, t1, y0, y1 = steps[i - 1], steps[i], loss[i - 1], loss[i]
  if t0 <= 0:
    return float(t1)      # crossed before the first measurement after the start: resolved only to ≤ t1
  frac = (y0 - level) / (y0 - y1) if y0 != y1 else 1.0
  return float(math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0))))


def _spread(log_times_by_level):
  return float(np.mean([np.std(v) for v in log_times_by_level])) if log_times_by_level else math.nan


def plateaus(rows, cfg) -> dict:
  """Plateau lengths at large γ0 against γ0 and η0, the collapse of early curves in τ = η0·t/γ0 with a permutation
  null, and the best online loss per γ0. Needs curves with ≥ MIN_CURVE_POINTS measurements."""
  a = cfg.get('analysis', {})
  large_min = a.get('large_gamma_min', 10.0)
  out = {}
  for p in dict.fromkeys(r['parameterization'] for r in rows):
    for depth in sorted({r['depth'] for r in rows if r['parameterization'] == p}):
      for width in sorted({r['width'] for r in rows if r['parameterization'] == p}):
        cs = curves(rows, p, depth, width)
        points = max((len(s) for s, _ in cs.values()), default=0)
        key = f'{p}/depth={depth}/width={width}'
        if points < MIN_CURVE_POINTS:
          out[key] = dict(skipped=f'{points} measurements per lane; plateaus need ≥ {MIN_CURVE_POINTS}')
          continue
        out[key] = dict(parameterization=p, depth=depth, width=width, large_gamma_min=large_min,
                        **_plateau_lengths(cs, large_min), collapse=_collapse(cs, large_min),
                        best_loss=_best_loss(rows, p, depth, width, large_min))
  return out


def _plateau_lengths(cs, large_min):
  lanes, censored = [], 0
  for (seed, lr, g), (steps, loss) in cs.items():
    if g < large_min:
      continue
    t = hitting_time(steps, loss, (1 - PLATEAU_DROP) * loss[0])
    if not math.isfinite(t) or t <= steps[1]:
      censored += 1       # never left the plateau in the run, or left it before the first measurement
      continue
    lanes.append(dict(seed=seed, lr=lr, gamma0=g, steps=t))
  out = dict(plateau_drop=PLATEAU_DROP, plateau_lanes=lanes, plateau_censored=censored)
  if len(lanes) < 4:
    return out
  log_t = np.log10([d['steps'] for d in lanes])
  log_g, log_lr = np.log10([d['gamma0'] for d in lanes]), np.log10([d['lr'] for d in lanes])
  out['plateau_vs_ratio'] = fits_lib.linear_fit(log_g - log_lr, log_t)       # [G]'s toy model: slope 1
  out['plateau_vs_gamma_and_lr'] = _two_variable_fit(log_g, log_lr, log_t)  # prediction: +1 and −1
  return out


def _two_variable_fit(x1, x2, y, level=0.95):
  from scipy import stats
  design = np.column_stack([np.ones_like(x1), x1, x2])
  coef, *_ = np.linalg.lstsq(design, y, rcond=None)
  dof = len(y) - 3
  if dof < 1:
    return dict(gamma0=math.nan, lr=math.nan, n=len(y))
  resid = y - design @ coef
  cov = float(resid @ resid) / dof * np.linalg.inv(design.T @ design)
  half = float(stats.t.ppf(0.5 + level / 2, dof)) * np.sqrt(np.diag(cov))
  return dict(gamma0=float(coef[1]), gamma0_ci95=[float(coef[1] - half[1]), float(coef[1] + half[1])],
              lr=float(coef[2]), lr_ci95=[float(coef[2] - half[2]), float(coef[2] + half[2])], n=len(y))


def _collapse(cs, large_min, seed=0):
  """Hitting times of the loss levels COLLAPSE_LEVELS × start, per curve at γ0 ≥ large_min. Spread (std of log) across
  curves in t, in τ = η0·t/γ0 and in η0·t (the rate alone), averaged over levels. The null: each curve keeps its
  own η0 but divides by another curve's γ0 (γ0 permuted among the curves at that level); p = the share of
  permutations that spread no more than the curves' own γ0. Small p: the γ0 in τ matters, beyond the rate."""
  per_level = []
  for frac in COLLAPSE_LEVELS:
    hits = []
    for (s, lr, g), (steps, loss) in cs.items():
      t = hitting_time(steps, loss, frac * loss[0])
      if g >= large_min and math.isfinite(t) and t > steps[1]:
        hits.append((math.log(t), math.log(lr), -math.log(g)))
    if len(hits) >= MIN_CURVES_PER_LEVEL:
      per_level.append(np.array(hits))
  if not per_level:
    nan = math.nan
    return dict(levels=[], curves_per_level=[], spread_t=nan, spread_tau=nan, spread_rate_only=nan, ratio=nan,
                ratio_rate_only=nan, null_spread_median=nan, null_spread_5pct=nan, p_value=nan,
                exponent=dict(slope=nan, ci95=[nan, nan], n=0))
  spread_t = _spread([h[:, 0] for h in per_level])
  spread_tau = _spread([h[:, 0] + h[:, 1] + h[:, 2] for h in per_level])
  spread_rate = _spread([h[:, 0] + h[:, 1] for h in per_level])
  rng = np.random.default_rng(seed)
  null = np.array([_spread([h[:, 0] + h[:, 1] + rng.permutation(h[:, 2]) for h in per_level])
                   for _ in range(PERMUTATIONS)])
  exponent = _common_slope([(-h[:, 1] - h[:, 2], h[:, 0]) for h in per_level])   # log t against log(γ0/η0)
  return dict(levels=[COLLAPSE_LEVELS[i] for i in range(len(per_level))],
              curves_per_level=[len(h) for h in per_level], spread_t=spread_t, spread_tau=spread_tau,
              spread_rate_only=spread_rate, ratio=spread_tau / spread_t if spread_t else math.nan,
              ratio_rate_only=spread_rate / spread_t if spread_t else math.nan,
              null_spread_median=float(np.median(null)), null_spread_5pct=float(np.percentile(null, 5)),
              p_value=float((np.sum(null <= spread_tau) + 1) / (PERMUTATIONS + 1)),
              exponent=exponent)


def _common_slope(groups, level=0.95):
  """One slope b for y = c_g + b·x over several groups (each its own intercept), with a t-interval: how the hitting
  times scale with γ0/η0 (b = 1 is a collapse in τ)."""
  from scipy import stats
  xs = np.concatenate([x - x.mean() for x, _ in groups])
  ys = np.concatenate([y - y.mean() for _, y in groups])
  dof = len(xs) - len(groups) - 1
  if dof < 1 or not xs @ xs > 0:
    return dict(slope=math.nan, ci95=[math.nan, math.nan], n=len(xs))
  b = float(xs @ ys / (xs @ xs))
  resid = ys - b * xs
  half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(float(resid @ resid) / dof / float(xs @ xs))
  return dict(slope=b, ci95=[b - half, b + half], n=len(xs))


def _argmin_over_columns(x_RxC):
  """The column holding the smallest finite value (a column with none, e.g. a γ0 whose lanes all diverged, never
  wins; np.nanmin would warn on it)."""
  return int(np.argmin(np.where(np.isfinite(x_RxC), x_RxC, np.inf).min(0)))


def _best_loss(rows, p, depth, width, large_min):
  """Per seed, the lowest last loss over stable lanes at γ0 ≥ large_min against that below it."""
  lrs, gammas, seeds, last, first, unstable, _ = seed_grids(rows, p, depth, width)
  masked = np.where(unstable, np.nan, last)
  large = gammas >= large_min
  by_seed = []
  for k, s in enumerate(seeds):
    lo, hi = masked[k][:, large], masked[k][:, ~large]
    if np.isfinite(lo).any() and np.isfinite(hi).any():
      by_seed.append(dict(seed=s, large=float(np.nanmin(lo)), small=float(np.nanmin(hi)),
                          large_gamma0=float(gammas[large][_argmin_over_columns(lo)]),
                          small_gamma0=float(gammas[~large][_argmin_over_columns(hi)])))
  mean = _stable_mean(last, unstable)
  best_per_gamma = [float(np.nanmin(mean[:, j])) if np.isfinite(mean[:, j]).any() else None
                    for j in range(len(gammas))]
  return dict(by_seed=by_seed, gamma0s=gammas.tolist(), best_mean_loss_per_gamma0=best_per_gamma)


# ----------------------------------------------------------------------------------------------- figures

def fit_text(f, pred):
  return f'{f["slope"]:.2f} [{f["ci95"][0]:.2f}, {f["ci95"][1]:.2f}] (theory {pred:.2g})'


def plot_plane(ge, path):
  import matplotlib.pyplot as plt
  keys = list(ge)
  has_lambda = any('sharpness_at_eta_star' in g for g in ge.values())
  nrows = 3 if has_lambda else 2
  fig, axes = plt.subplots(nrows, len(keys), figsize=(5.2 * len(keys), 4.5 * nrows), squeeze=False)
  for col, key in enumerate(keys):
    g = ge[key]
    gammas, lrs = np.array(g['gamma0s']), np.array(g['lr_grid'])
    loss = np.array([[np.nan if v is None else v for v in row] for row in g['final_loss']], float)
    unstable = np.array(g['unstable'])
    ax = axes[0, col]
    mesh = ax.pcolormesh(np.log10(gammas), np.log10(lrs), np.log10(np.maximum(loss, 1e-12)), shading='nearest',
                         cmap='viridis')
    yy, xx = np.nonzero(unstable)
    ax.plot(np.log10(gammas[xx]), np.log10(lrs[yy]), 'x', color='0.6', ms=3, label='unstable in some seed')
    fig.colorbar(mesh, ax=ax, label='log10 last online loss (seed mean)')
    ax.set(xlabel='log10 γ0', ylabel='log10 η0', title=key)
    ax.legend(fontsize=7, loc='upper left')
    ax = axes[1, col]
    for s, marker in zip(g['eta_star_by_seed'], 'o^sv'):
      ax.loglog(gammas, [np.nan if v is None else v for v in g['eta_star_by_seed'][s]], marker, color='C0', ms=4,
                alpha=0.7, label='η* (per seed)' if marker == 'o' else None)
      ax.loglog(gammas, [np.nan if v is None else v for v in g['eta_max_by_seed'][s]], marker, color='C3', ms=3,
                mfc='none', alpha=0.7, label='largest stable η0' if marker == 'o' else None)
    for regime, pred, sel in (('small', g['prediction_small'], gammas <= g['small_gamma_max']),
                              ('large', g['prediction_large'], gammas >= g['large_gamma_min'])):
      f = g['fits'][f'eta_star_{regime}']
      if math.isfinite(f['slope']) and sel.any():
        xs = np.log10(gammas[sel])
        ax.loglog(10 ** xs, 10 ** (f['slope'] * xs + f['intercept']), 'k-', lw=1)
        ax.text(10 ** xs.mean(), 10 ** (f['slope'] * xs.mean() + f['intercept']), f'  {fit_text(f, pred)}',
                fontsize=7)
    ax.set(xlabel='γ0', ylabel='η0', title='η* and the stability edge; lines: η* fits with intervals incl. grid')
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    if has_lambda and 'sharpness_at_eta_star' in g:
      ax = axes[2, col]
      pts = g['sharpness_at_eta_star']
      ax.loglog([d['gamma0'] for d in pts], [d['sharpness'] for d in pts], 'o', ms=4, label='λ_max(H) at η*')
      ax.loglog([d['gamma0'] for d in pts], [d['lr_sharpness'] for d in pts], 's', ms=3, mfc='none',
                label='η·λ_max at η* (raw rate)')
      ax.set(xlabel='γ0', title='the Hessian at the best rate, last step')
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_plateaus(rows, pl, path):
  """Per depth: plateau length against γ0/η0, and the large-γ0 curves of seed 0 against t and against τ."""
  import matplotlib.pyplot as plt
  keys = [k for k in pl if 'plateau_lanes' in pl[k]]
  if not keys:
    return
  fig, axes = plt.subplots(3, len(keys), figsize=(5.5 * len(keys), 13), squeeze=False)
  for col, key in enumerate(keys):
    d = pl[key]
    lanes = d['plateau_lanes']
    ratio = np.array([x['gamma0'] / x['lr'] for x in lanes])
    ax = axes[0, col]
    if lanes:
      sc = ax.scatter(ratio, [x['steps'] for x in lanes], c=np.log10([x['gamma0'] for x in lanes]), s=12)
      fig.colorbar(sc, ax=ax, label='log10 γ0')
      ax.set(xscale='log', yscale='log')
    else:
      ax.text(0.5, 0.5, 'no lane left its plateau inside the run', ha='center', transform=ax.transAxes)
    f = d.get('plateau_vs_ratio')
    if f and math.isfinite(f['slope']):
      xs = np.log10(np.sort(ratio))
      ax.plot(10 ** xs, 10 ** (f['intercept'] + f['slope'] * xs), 'k-', lw=1,
              label=f'slope {f["slope"]:.2f} [{f["ci95"][0]:.2f}, {f["ci95"][1]:.2f}] (toy model 1)')
      ax.legend(fontsize=7)
    ax.set(xlabel='γ0 / η0', ylabel=f'steps until the loss is {1 - PLATEAU_DROP:.0%} '
           'of its start', title=f'{key}: plateau length at γ0 ≥ {d["large_gamma_min"]:g}')
    c = d['collapse']
    cs = curves(rows, d['parameterization'], d['depth'], d['width'])
    shown = sorted(k for k in cs if k[2] >= d['large_gamma_min'] and k[0] == min(x[0] for x in cs))
    cmap = plt.cm.viridis
    logs = np.log10([lr / g for _, lr, g in shown]) if shown else np.zeros(0)
    norm = plt.Normalize(logs.min(), logs.max()) if len(logs) else None
    for (s, lr, g), v in zip(shown, logs):
      steps, loss = cs[(s, lr, g)]
      axes[1, col].plot(np.maximum(steps, 1), loss, color=cmap(norm(v)), lw=0.8)
      axes[2, col].plot(np.maximum(steps, 1) * lr / g, loss, color=cmap(norm(v)), lw=0.8)
    if shown:
      top = 1.2 * max(cs[k][1][0] for k in shown)     # catapults above the start would hide the plateaus
      for ax in axes[1:, col]:
        ax.set(xscale='log', yscale='log', ylim=(None, top))
    axes[1, col].set(xlabel='step t', ylabel='online loss', title=f'seed {shown[0][0] if shown else "-"}, every '
                     f'stable lane at γ0 ≥ {d["large_gamma_min"]:g} (colour: log10 η0/γ0)')
    axes[2, col].set(xlabel='τ = η0·t/γ0', ylabel='online loss',
                     title=f'spread of log hitting time: t {c.get("spread_t", math.nan):.2f}, '
                           f'τ {c.get("spread_tau", math.nan):.2f}, null {c.get("null_spread_median", math.nan):.2f} '
                           f'(p = {c.get("p_value", math.nan):.3g})')
    for ax in axes[:, col]:
      ax.title.set_fontsize(8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
