"""The sweep experiment's analysis: a finished sweep's files turned into the papers' figures and numbers.

Reads only the workdir (config.json, metrics.csv, or the CSVs of the bn_depth / toy_chain experiments) and writes
analysis.json and analysis_*.png next to them, so every figure is regenerated from committed files.

- transfer       best base learning rate per size, interpolated on the log grid (a parabola through the grid
                 minimum and its two neighbours), its shift across sizes in grid steps, and the loss penalty of
                 using the smallest model's best rate at the largest size.          [SC]
- consistency    the spread across sizes of the step-size-weighted sharpness at the trajectory rate, as a
                 coefficient of variation at each measured step, with the learning-rate-weighted NTK top
                 eigenvalue and the Gauss-Newton part beside it.                    [SC]
- gamma_eta      (γ0, η0) plane of the final online loss with diverged cells marked, η*(γ0), the largest stable
                 η0, log-log slopes of both against γ0 in the small- and large-γ regimes with 95% intervals next to
                 the predictions 2 (1 for cross-entropy) and 2/L; loss curves at large γ0 against steps and against
                 τ = η0·t/γ0, with a number for how much better they collapse in τ.      [G]
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from superconsistency import best_rate  # noqa: E402
from superconsistency import fits as fits_lib  # noqa: E402
from superconsistency import measurements  # noqa: E402
from superconsistency import plot  # noqa: E402
from superconsistency import results  # noqa: E402



# ----------------------------------------------------------------------------------------------- numbers

def _lr_weighted(r, name):
  """The learning-rate-weighted value of a measured quantity (sharpness-like ones scale with the step size); a
  measurement declared lr_weighted already carries the rate."""
  owner = measurements.column_owner(name)
  if owner is not None and owner.lr_weighted:
    return r.get(name, float('nan'))
  scale = r['lr_sharpness'] / r['sharpness'] if r['sharpness'] else float('nan')   # SGD: the one rate η
  return r.get(name, float('nan')) * scale


CONSISTENCY_QUANTITIES = measurements.consistency_quantities()   # (column, label), declared in measurements.py


def _curves(rows, p, lr, name, seed=None):
  """{(width, depth): (steps, mean over seeds/γ0 of the quantity)} at one trajectory rate (one seed's if given)."""
  acc = defaultdict(lambda: defaultdict(list))
  for r in rows:
    if (r['parameterization'] == p and plot.same_lr(r['lr'], lr) and name in r
        and (seed is None or r['seed'] == seed)):
      acc[r['width'], r['depth']][r['step']].append(_lr_weighted(r, name))
  out = {}
  for size, by_step in acc.items():
    steps = sorted(by_step)
    out[size] = (steps, [float(np.mean(by_step[s])) for s in steps])
  return out


def _cv_by_step(curves, steps):
  """std/|mean| across the curves (sizes) with a finite value at each step; nan with fewer than two."""
  cvs = []
  for s in steps:
    vals = np.array([v[st.index(s)] for st, v in curves.values() if s in st], float)
    vals = vals[np.isfinite(vals)]
    cvs.append(float(np.std(vals) / abs(np.mean(vals))) if len(vals) >= 2 and np.mean(vals) != 0 else float('nan'))
  return cvs


def _late_mean(steps, cvs):
  """Mean of the finite CVs over the second half of training (step 0 excluded)."""
  late = [c for s, c in zip(steps, cvs) if s >= steps[-1] / 2 and s > 0 and math.isfinite(c)]
  return float(np.mean(late)) if late else float('nan')


def _late_median_cv(steps, cvs):
  """Median of the finite CVs over the second half of training (step 0 excluded): robust to a single spike."""
  late = [c for s, c in zip(steps, cvs) if s >= steps[-1] / 2 and s > 0 and math.isfinite(c)]
  return float(np.median(late)) if late else float('nan')


def _late_median(steps, values):
  """Median of a curve's finite values over the second half of training (step 0 excluded)."""
  late = [v for s, v in zip(steps, values) if s >= steps[-1] / 2 and s > 0 and math.isfinite(v)]
  return float(np.median(late)) if late else float('nan')


def consistency(rows, cfg, summary) -> dict:
  """Coefficient of variation across sizes (std/|mean| over the sizes with a finite value) at each measured step,
  on the seed-averaged curves and, for the interval across seeds, on each seed's own curves; and each size's and
  seed's median over the second half (the level a quantity holds, e.g. η·λ_max at the edge of stability)."""
  out = {}
  have = set(rows[0]) if rows else set()
  for p in dict.fromkeys(r['parameterization'] for r in rows):
    lr = plot.trajectory_lr(cfg, summary, p)
    per_q = {}
    for name, label in CONSISTENCY_QUANTITIES:
      if name not in have or (name != 'lr_sharpness' and 'sharpness' not in have):
        continue
      curves = _curves(rows, p, lr, name)
      steps = sorted({s for st, _ in curves.values() for s in st})
      cvs = _cv_by_step(curves, steps)
      # the same without the smallest size, whose finite-size effects can dominate a laptop-scale spread
      rest = _cv_by_step({k: v for k, v in curves.items() if k != min(curves)}, steps) if len(curves) >= 3 else []
      late = _late_mean(steps, cvs)
      late_rest = _late_mean(steps, rest)
      by_seed, medians, first = {}, defaultdict(dict), defaultdict(dict)
      for seed in sorted({r['seed'] for r in rows if r['parameterization'] == p}):
        seed_curves = _curves(rows, p, lr, name, seed)
        if not seed_curves:
          continue
        by_seed[str(seed)] = _late_median_cv(steps, _cv_by_step(seed_curves, steps))
        for (w, d), (st, v) in sorted(seed_curves.items()):
          medians[f'{w}x{d}'][str(seed)] = _late_median(st, v)
          first[f'{w}x{d}'][str(seed)] = v[0]
      finite = [v for v in by_seed.values() if math.isfinite(v)]
      per_q[name] = dict(label=label, steps=steps, cv=cvs, cv_late_mean=late, cv_late_mean_without_smallest=late_rest,
                         cv_late_median=_late_median_cv(steps, cvs), cv_late_median_by_seed=by_seed,
                         cv_late_interval=[min(finite), max(finite)] if finite else [float('nan')] * 2,
                         late_median_by_size_seed=dict(medians), first_by_size_seed=dict(first),
                         threshold=rows[0].get('adam_sharpness_threshold') if name == 'adam_sharpness' else None,
                         cv_final=cvs[-1] if cvs else float('nan'),
                         final_by_size={f'{w}x{d}': v[-1] for (w, d), (_, v) in sorted(curves.items())})
    out[p] = dict(trajectory_lr=lr, quantities=per_q)
  return out


def _grid(rows, p, depth, width, value='train_loss', step=None):
  """(η0 grid, γ0 grid, mean-over-seeds matrix [η, γ] of `value` at `step` (last), diverged/unstable matrix)."""
  sel = [r for r in rows if r['parameterization'] == p and r['depth'] == depth and r['width'] == width]
  lrs, gammas = sorted({r['lr'] for r in sel}), sorted({r['gamma0'] for r in sel})
  step = max(r['step'] for r in sel) if step is None else step
  vals, init, div = defaultdict(list), defaultdict(list), defaultdict(bool)
  for r in sel:
    key = (lrs.index(r['lr']), gammas.index(r['gamma0']))
    if r['step'] == step:
      vals[key].append(r[value])
      div[key] |= bool(r['diverged'])
    if r['step'] == 0:
      init[key].append(r[value])
  loss = np.full((len(lrs), len(gammas)), np.nan)
  unstable = np.ones_like(loss, bool)
  for key, v in vals.items():
    v = np.asarray(v, float)
    ok = not div[key] and np.isfinite(v).all() and v.mean() < np.mean(init[key])   # it learned and stayed finite
    loss[key] = v.mean() if not div[key] and np.isfinite(v).all() else np.nan
    unstable[key] = not ok
  return np.array(lrs), np.array(gammas), loss, unstable


def gamma_eta(rows, cfg) -> dict:
  """The γ–η plane per (parameterization, depth, width), with the scaling fits of [G]."""
  a = cfg.get('analysis', {})
  small_max, large_min = a.get('small_gamma_max', 0.1), a.get('large_gamma_min', 10.0)
  small_pred = 2.0 if cfg['loss'] == 'mse' else 1.0
  out = {}
  for p in dict.fromkeys(r['parameterization'] for r in rows):
    for depth in sorted({r['depth'] for r in rows if r['parameterization'] == p}):
      for width in sorted({r['width'] for r in rows if r['parameterization'] == p}):
        lrs, gammas, loss, unstable = _grid(rows, p, depth, width)
        masked = np.where(unstable, np.nan, loss)
        eta_star, eta_max, edge = [], [], []
        for j in range(len(gammas)):
          best = fits_lib.interpolated_argmin(np.log(lrs), masked[:, j])
          eta_star.append(math.exp(best[0]) if best else float('nan'))
          edge.append(bool(best and best[2]))
          stable = np.nonzero(~unstable[:, j])[0]
          eta_max.append(float(lrs[stable.max()]) if len(stable) else float('nan'))
        fits = {}
        for name, series in (('eta_star', eta_star), ('eta_max', eta_max)):
          series = np.asarray(series)
          for regime, sel in (('small', gammas <= small_max), ('large', gammas >= large_min)):
            ok = sel & np.isfinite(series)
            fits[f'{name}_{regime}'] = fits_lib.linear_fit(np.log10(gammas[ok]), np.log10(series[ok]))
        best_j = np.unravel_index(np.nanargmin(masked), masked.shape) if np.isfinite(masked).any() else None
        out[f'{p}/depth={depth}/width={width}'] = dict(
            parameterization=p, depth=depth, width=width, loss=cfg['loss'], gamma0s=gammas.tolist(),
            lr_grid=lrs.tolist(), final_loss=[[None if not math.isfinite(v) else float(v) for v in row]
                                              for row in loss.tolist()],
            unstable=unstable.tolist(), eta_star=eta_star, eta_star_at_grid_edge=edge, eta_max=eta_max, fits=fits,
            prediction_small=small_pred, prediction_large=2.0 / depth,
            small_gamma_max=small_max, large_gamma_min=large_min,
            best_cell=(dict(lr=float(lrs[best_j[0]]), gamma0=float(gammas[best_j[1]]),
                            final_loss=float(masked[best_j])) if best_j else None),
            collapse=collapse(rows, p, depth, width, gammas[gammas >= large_min], eta_star, gammas, lrs))
  return out


def _dispersion(curves, grid_points):
  """Mean over a log-spaced grid, spanning the curves' common range, of the std across curves of log loss."""
  lo = max(min(x[x > 0]) for x, _ in curves)
  hi = min(max(x) for x, _ in curves)
  if not hi > lo:
    return float('nan'), None
  grid = np.geomspace(lo, hi, grid_points)
  logs = np.array([np.interp(np.log(grid), np.log(x[x > 0]), np.log(y[x > 0])) for x, y in curves])
  return float(np.mean(np.std(logs, axis=0))), [float(lo), float(hi)]


def loss_curve(rows, p, depth, width, lr, gamma0):
  sel = sorted((r for r in rows if r['parameterization'] == p and r['depth'] == depth and r['width'] == width
                and plot.same_lr(r['lr'], lr) and plot.same_lr(r['gamma0'], gamma0)), key=lambda r: r['step'])
  by_step = defaultdict(list)
  for r in sel:
    by_step[r['step']].append(r['train_loss'])
  steps = np.array(sorted(by_step), float)
  return steps, np.array([np.mean(by_step[s]) for s in steps], float)


def collapse(rows, p, depth, width, large_gammas, eta_star, gammas, lrs, grid_points=50) -> dict:
  """How well the loss curves at large γ0 (each at its own best grid rate) coincide in τ = η0·t/γ0 versus in
  steps t: the mean std of log loss across curves over their common range. ratio < 1: they collapse in τ."""
  curves = []
  for g in large_gammas:
    j = list(gammas).index(g)
    if not math.isfinite(eta_star[j]):
      continue
    lr = float(min(lrs, key=lambda v: abs(math.log(v / eta_star[j]))))
    steps, loss = loss_curve(rows, p, depth, width, lr, float(g))
    if np.isfinite(loss).all() and len(steps) > 2:
      curves.append(dict(gamma0=float(g), lr=lr, steps=steps, loss=loss))
  if len(curves) < 2:
    return dict(num_curves=len(curves), dispersion_t=float('nan'), dispersion_tau=float('nan'), ratio=float('nan'))
  d_t, range_t = _dispersion([(c['steps'], c['loss']) for c in curves], grid_points)
  d_tau, range_tau = _dispersion([(c['steps'] * c['lr'] / c['gamma0'], c['loss']) for c in curves], grid_points)
  return dict(num_curves=len(curves), curves=[(c['gamma0'], c['lr']) for c in curves], dispersion_t=d_t,
              dispersion_tau=d_tau, ratio=d_tau / d_t if d_t else float('nan'), range_t=range_t, range_tau=range_tau)


# ----------------------------------------------------------------------------------------------- figures

def plot_consistency(rows, cons, path):
  params = list(cons)
  names = [n for n, _ in CONSISTENCY_QUANTITIES if any(n in cons[p]['quantities'] for p in params)]
  fig, axes = plt.subplots(len(names) + 1, len(params), figsize=(5 * len(params), 2.8 * (len(names) + 1)),
                           squeeze=False)
  for col, p in enumerate(params):
    lr = cons[p]['trajectory_lr']
    for row_i, name in enumerate(names):
      ax = axes[row_i, col]
      q = cons[p]['quantities'].get(name)
      if q is None:
        ax.set_visible(False)
        continue
      curves = _curves(rows, p, lr, name)
      colors = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
      for c, ((w, d), (steps, v)) in zip(colors, sorted(curves.items())):
        ax.plot(steps, v, color=c, marker='.', label=f'N={w}, depth={d}')
      if name == 'lr_sharpness' and not any('adam_sharpness' in r for r in rows[:1]):
        ax.axhline(2.0, color='k', ls='--', lw=1, label='2 (edge of stability)')
      if name == 'adam_sharpness':
        threshold = rows[0].get('adam_sharpness_threshold', float('nan'))
        ax.axhline(threshold, color='k', ls='--', lw=1, label=f'(2+2β1)/(1−β1) = {threshold:.3g}')
      ax.set_title(f'{p}, η0 = {lr:g}: {q["label"]}', fontsize=9)
      ax.legend(fontsize=6)
    ax = axes[-1, col]
    for name in names:
      q = cons[p]['quantities'].get(name)
      if q:
        ax.plot(q['steps'], q['cv'], marker='.', label=f'{q["label"]} (late mean {q["cv_late_mean"]:.2f})')
    ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_ylabel('CV across sizes')
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def fit_text(f, pred):
  return f'{f["slope"]:.2f} [{f["ci95"][0]:.2f}, {f["ci95"][1]:.2f}] (theory {pred:.2g})'


def plot_gamma_eta(ge, path):
  keys = list(ge)
  fig, axes = plt.subplots(2, len(keys), figsize=(5.2 * len(keys), 9), squeeze=False)
  for col, key in enumerate(keys):
    g = ge[key]
    gammas, lrs = np.array(g['gamma0s']), np.array(g['lr_grid'])
    loss = np.array([[np.nan if v is None else v for v in row] for row in g['final_loss']], float)
    unstable = np.array(g['unstable'])
    ax = axes[0, col]
    shown = np.where(unstable, np.nan, np.log10(np.maximum(loss, 1e-12)))
    mesh = ax.pcolormesh(np.log10(gammas), np.log10(lrs), shown, shading='nearest', cmap='viridis')
    yy, xx = np.nonzero(unstable)
    ax.plot(np.log10(gammas[xx]), np.log10(lrs[yy]), 'x', color='0.6', ms=4, label='diverged / no progress')
    ax.plot(np.log10(gammas), np.log10(g['eta_star']), 'w*-', ms=8, label='η*')
    ax.plot(np.log10(gammas), np.log10(g['eta_max']), 'r.--', label='largest stable η0')
    fig.colorbar(mesh, ax=ax, label='log10 final online loss')
    ax.set_xlabel('log10 γ0')
    ax.set_ylabel('log10 η0')
    ax.set_title(f'{key}', fontsize=9)
    ax.legend(fontsize=7, loc='upper left')
    ax = axes[1, col]
    ax.loglog(gammas, g['eta_star'], 'o-', label='η*')
    ax.loglog(gammas, g['eta_max'], 's--', label='largest stable η0')
    for regime, pred, sel in (('small', g['prediction_small'], gammas <= g['small_gamma_max']),
                              ('large', g['prediction_large'], gammas >= g['large_gamma_min'])):
      f = g['fits'][f'eta_star_{regime}']
      if math.isfinite(f['slope']) and sel.any():
        xs = np.log10(gammas[sel])
        ax.loglog(10 ** xs, 10 ** (f['slope'] * xs + f['intercept']), 'k-', lw=1)
        ax.text(10 ** xs.mean(), 10 ** (f['slope'] * xs.mean() + f['intercept']),
                f'  η* slope {fit_text(f, pred)}', fontsize=7)
    ax.set_xlabel('γ0')
    ax.set_ylabel('η0')
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_plateaus(rows, ge, path):
  """Loss curves at large γ0 (each at its η*) against steps and against τ = η0·t/γ0."""
  keys = [k for k in ge if ge[k]['collapse'].get('curves')]
  if not keys:
    return
  fig, axes = plt.subplots(2, len(keys), figsize=(5 * len(keys), 7.5), squeeze=False)
  for col, key in enumerate(keys):
    g = ge[key]
    c = g['collapse']
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(c['curves'])))
    for color, (gamma0, lr) in zip(colors, c['curves']):
      steps, loss = loss_curve(rows, g['parameterization'], g['depth'], g['width'], lr, gamma0)
      axes[0, col].loglog(np.maximum(steps, 1), loss, color=color, label=f'γ0={gamma0:.3g}, η0={lr:.3g}')
      axes[1, col].loglog(np.maximum(steps, 1) * lr / gamma0, loss, color=color)
    axes[0, col].set_title(f'{key}: loss at large γ0\ndispersion in t {c["dispersion_t"]:.3f}', fontsize=9)
    axes[0, col].set_xlabel('step t')
    axes[1, col].set_title(f'against τ = η0·t/γ0: dispersion {c["dispersion_tau"]:.3f} '
                           f'(ratio {c["ratio"]:.2f})', fontsize=9)
    axes[1, col].set_xlabel('τ')
    for ax in axes[:, col]:
      ax.set_ylabel('online loss')
    axes[0, col].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# ----------------------------------------------------------------------------------------------- entry

def analyze_workdir(workdir: str, plots: bool = True) -> dict:
  """All analyses that apply to the sweep in `workdir` (figures written beside it); returns analysis.json's dict."""
  with open(os.path.join(workdir, 'config.json')) as f:
    cfg = json.load(f)
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  rows = results.read_csv(os.path.join(workdir, 'metrics.csv'))
  out = {}
  gammas = {r['gamma0'] for r in rows}
  lrs = {r['lr'] for r in rows}
  if len(gammas) > 1:
    out['gamma_eta'] = gamma_eta(rows, cfg)
    if plots:
      plot_gamma_eta(out['gamma_eta'], os.path.join(workdir, 'analysis_gamma_eta.png'))
      plot_plateaus(rows, out['gamma_eta'], os.path.join(workdir, 'analysis_plateaus.png'))
    return out
  if len(lrs) > 1 and best_rate.size_axes(rows):
    out['transfer'] = best_rate.transfer(rows, cfg['select_by'], cfg.get('select_step', 0),
                                         cfg.get('analysis', {}).get('transfer_tolerance_exponent',
                                                                     best_rate.TRANSFER_TOLERANCE_EXPONENT))
    if plots and out['transfer']:
      plot.plot_transfer(rows, cfg['select_by'], os.path.join(workdir, 'analysis_transfer.png'),
                         cfg.get('select_step', 0))
  if rows and np.isfinite([r['sharpness'] for r in rows]).any() and best_rate.size_axes(rows):
    out['consistency'] = consistency(rows, cfg, summary)
    if plots:
      plot_consistency(rows, out['consistency'], os.path.join(workdir, 'analysis_consistency.png'))
  return out
