"""The sweep experiment's analysis: a finished sweep's files turned into the papers' figures and numbers.

Reads only the workdir (config.json, metrics.csv, or the CSVs of the bn_depth / toy_chain experiments) and writes
analysis.json and analysis_*.png next to them, so every figure is regenerated from committed files.

- transfer       best base learning rate per size, interpolated on the log grid (a parabola through the grid
                 minimum and its two neighbours), its shift across sizes in grid steps, and the loss penalty of
                 using the smallest model's best rate at the largest size.          [SC]
- consistency    the spread across sizes of the step-size-weighted sharpness at the trajectory rate, as a
                 coefficient of variation at each measured step, with the learning-rate-weighted NTK top
                 eigenvalue and the Gauss-Newton part beside it.                    [SC]
- stacked_weights  [BN] in training (measure.stacked_weights): per depth at its best rate, the hidden weights'
                 orthogonality gap and log‖∇W1‖ over training, and the slope of log‖∇W1‖ in depth at each step.
- gamma_eta      a sweep over γ0 goes to gamma_analysis.py: the (γ0, η0) plane, the scaling of η* and of the
                 stability edge with quantisation-aware intervals, plateaus and the collapse in τ = η0·t/γ0.   [G]
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
from superconsistency import gamma_analysis  # noqa: E402
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


def stacked_weights(rows) -> dict:
  """[BN] during training (measure.stacked_weights): per parameterization and width, each depth at its best rate
  (the lowest last train loss, averaged over seeds, among rates no seed diverged at): the orthogonality gap,
  log‖∇W1‖ and log(‖∇W1‖/‖∇W_L‖) over training, and at every measured step the slopes of both against depth
  (seeds pooled; `w1`, `ratio`). The ratio is the explosion through the network itself: ‖∇W1‖ alone also falls as
  the loss falls, and shallower networks reach lower losses. At init (step 0) every lane counts."""
  out = {}
  for p, width in sorted({(r['parameterization'], r['width']) for r in rows}):
    sel = [r for r in rows if r['parameterization'] == p and r['width'] == width]
    last = max(r['step'] for r in sel)
    by_depth = {}
    for depth in sorted({r['depth'] for r in sel}):
      lanes = defaultdict(list)
      for r in sel:
        if r['depth'] == depth:
          lanes[r['lr']].append(r)
      final = {}
      for lr, rs in lanes.items():
        ends = [r['train_loss'] for r in rs if r['step'] == last and not r['diverged']]
        if ends and len(ends) == len({r['seed'] for r in rs}) and np.isfinite(ends).all():
          final[lr] = float(np.mean(ends))
      diverged = sorted(lr for lr, rs in lanes.items() if any(r['diverged'] for r in rs))
      if not final:
        by_depth[depth] = dict(best_lr=None, diverged_lrs=diverged)
        continue
      lr = min(final, key=final.get)
      steps = sorted({r['step'] for r in lanes[lr]})
      series = {name: [float(np.mean([r[name] for r in lanes[lr] if r['step'] == s])) for s in steps]
                for name in ('orthogonality_gap', 'orthogonality_gap_max', 'log_grad_w1', 'log_grad_last',
                             'train_loss')}
      series['log_grad_ratio'] = [a - b for a, b in zip(series['log_grad_w1'], series['log_grad_last'])]
      per_seed = {s: {r['seed']: (r['log_grad_w1'], r['log_grad_w1'] - r['log_grad_last'])
                      for r in lanes[lr] if r['step'] == s} for s in steps}
      by_depth[depth] = dict(best_lr=lr, final_train_loss=final[lr], steps=steps, diverged_lrs=diverged, **series,
                             log_grads_by_seed={str(s): v for s, v in per_seed.items()})
    trained = {d: v for d, v in by_depth.items() if v['best_lr'] is not None}
    slopes = []
    for step in sorted(set.intersection(*(set(v['steps']) for v in trained.values()))) if len(trained) > 1 else ():
      pts = [(d, g) for d, v in trained.items() for g in v['log_grads_by_seed'][str(step)].values()]
      slopes.append(dict(step=step, w1=fits_lib.linear_fit([d for d, _ in pts], [g[0] for _, g in pts]),
                         ratio=fits_lib.linear_fit([d for d, _ in pts], [g[1] for _, g in pts])))
    at_init = {(r['depth'], r['seed']): (r['log_grad_w1'], r['log_grad_w1'] - r['log_grad_last'])
               for r in sel if r['step'] == 0}   # the same for every rate
    depths = [d for d, _ in at_init]
    init = dict(w1=fits_lib.linear_fit(depths, [g[0] for g in at_init.values()]),
                ratio=fits_lib.linear_fit(depths, [g[1] for g in at_init.values()]))
    out[f'{p}/width={width}'] = dict(by_depth={str(d): v for d, v in by_depth.items()}, grad_slope_by_step=slopes,
                                     grad_slope_at_init=init)
  return out


def plot_stacked_weights(sw, path):
  fig, axes = plt.subplots(len(sw), 3, figsize=(15, 4.2 * len(sw)), squeeze=False)
  for row, (key, entry) in enumerate(sw.items()):
    for depth, v in entry['by_depth'].items():
      if v['best_lr'] is None:
        continue
      label = f'L = {depth}, η = {v["best_lr"]:g}'
      axes[row, 0].plot(v['steps'], v['train_loss'], marker='.', label=label)
      axes[row, 1].plot(v['steps'], v['orthogonality_gap'], marker='.', label=label)
      axes[row, 2].plot(v['steps'], v['log_grad_ratio'], marker='.', label=label)
    titles = ('train loss (best rate per depth)', 'orthogonality gap of the hidden weights (mean over layers)',
              'log ‖∇W1 loss‖ / ‖∇W_L loss‖')
    for ax, title in zip(axes[row], titles):
      ax.set(xlabel='step', title=f'{key}: {title}')
      ax.title.set_fontsize(9)
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
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
    out['gamma_eta'] = gamma_analysis.plane(rows, cfg)
    out['plateaus'] = gamma_analysis.plateaus(rows, cfg)
    if plots:
      gamma_analysis.plot_plane(out['gamma_eta'], os.path.join(workdir, 'analysis_gamma_eta.png'))
      gamma_analysis.plot_plateaus(rows, out['plateaus'], os.path.join(workdir, 'analysis_plateaus.png'))
    return out
  if len(lrs) > 1 and best_rate.size_axes(rows):
    out['transfer'] = best_rate.transfer(rows, cfg['select_by'], cfg.get('select_step', 0),
                                         cfg.get('analysis', {}).get('transfer_tolerance_exponent',
                                                                     best_rate.TRANSFER_TOLERANCE_EXPONENT))
    if plots and out['transfer']:
      plot.plot_transfer(rows, cfg['select_by'], os.path.join(workdir, 'analysis_transfer.png'),
                         cfg.get('select_step', 0))
  if rows and 'orthogonality_gap' in rows[0]:
    out['stacked_weights'] = stacked_weights(rows)
    if plots:
      plot_stacked_weights(out['stacked_weights'], os.path.join(workdir, 'analysis_stacked_weights.png'))
  if rows and np.isfinite([r['sharpness'] for r in rows]).any() and best_rate.size_axes(rows):
    out['consistency'] = consistency(rows, cfg, summary)
    if plots:
      plot_consistency(rows, out['consistency'], os.path.join(workdir, 'analysis_consistency.png'))
  return out
