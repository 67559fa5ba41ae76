"""Plots of a workdir, drawn from its files only: `python -m superconsistency.plot WORKDIR`.

sharpness.png    per parameterization: (η/η0)·λ_max over training, one curve per width, with the 2/η0 line
                 (the edge of stability in η0 units), and the train loss below; at one learning rate per panel
spectra.png      the panels that measurements.py declares, for the columns metrics.csv has: feature movement,
                 Adam's preconditioned sharpness, Gauss-Newton share of λ_max, top eigenvalue of R = H − G, raw and
                 learning-rate-weighted NTK top eigenvalue
density.png      when measured: SLQ spectral density of the Hessian at the measured steps (the `density`
                 measurement's own file)
transfer.png     final loss against base learning rate, one curve per width (learning-rate transfer)
coord_check.png  RMS of each layer's change after a few steps against width, log-log
"""
from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from superconsistency import best_rate  # noqa: E402
from superconsistency import measurements  # noqa: E402
from superconsistency import results  # noqa: E402


def _size_label(width, depth, depths):
  return f'N={width}' + (f', depth={depth}' if len(depths) > 1 else '')


def same_lr(a, b):
  """Rates read back from metrics.csv are the run's dtype (0.064 in float32 is 0.06400000303983688)."""
  return abs(a - b) <= 1e-6 * abs(b)


def trajectory_lr(cfg, summary, p):
  """The configured trajectory rate (nearest grid value), else the best grid rate at the smallest width."""
  grid = sorted(cfg['sweep']['lrs'][p])
  wanted = cfg['plot']['trajectory_lrs'].get(p, 0.0)
  if not wanted:
    finite = lambda v: v is not None and math.isfinite(v)   # summary.json writes nan as null
    groups = sorted((g for g in summary['groups'] if g['parameterization'] == p and finite(g['best_grid_lr'])),
                    key=lambda g: (g['width'], g['depth']))
    wanted = groups[0]['best_grid_lr'] if groups else grid[len(grid) // 2]
  return best_rate.nearest_on_grid(grid, wanted)


def plot_sharpness(rows, cfg, summary, path):
  params = list(dict.fromkeys(r['parameterization'] for r in rows))
  depths = sorted({r['depth'] for r in rows})
  fig, axes = plt.subplots(2, len(params), figsize=(5 * len(params), 7), squeeze=False, sharex=True)
  for col, p in enumerate(params):
    lr = trajectory_lr(cfg, summary, p)
    sel = [r for r in rows if r['parameterization'] == p and same_lr(r['lr'], lr)]
    sizes = sorted({(r['width'], r['depth']) for r in sel})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    threshold = sel[0]['lr_sharpness_threshold'] if sel else 2.0
    for c, (w, d) in zip(colors, sizes):
      by_step = defaultdict(list)
      for r in sel:
        if (r['width'], r['depth']) == (w, d):
          by_step[r['step']].append(r)
      steps = sorted(by_step)
      sharp = [np.nanmean([r['lr_sharpness'] / r['lr'] for r in by_step[s]]) for s in steps]
      loss = [np.nanmean([r['train_loss'] for r in by_step[s]]) for s in steps]
      axes[0, col].plot(steps, sharp, color=c, marker='.', label=_size_label(w, d, depths))
      axes[1, col].plot(steps, loss, color=c, marker='.')
    if math.isfinite(threshold):
      axes[0, col].axhline(threshold / lr, color='k', ls='--', lw=1, label=f'{threshold:g}/η0')
    axes[0, col].set_title(f'{p}, η0 = {lr:g}')
    axes[0, col].set_ylabel('(η/η0)·λ_max')
    axes[1, col].set_ylabel('train loss')
    axes[1, col].set_xlabel('step')
    axes[0, col].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_transfer(rows, select_by, path, select_step=0):
  """Loss at the selected step against the base rate, one curve per size: ★ the best grid rate, a dotted line at
  the best rate (best_rate.py), × diverged rates, and under the curves each size's best rate with its interval over
  seeds; each panel's title gives the drift of the best rate with its interval and verdict."""
  finals = best_rate.final_losses(rows, select_by, select_step)
  best = {g: best_rate.best_of(sorted(by_lr), [by_lr[lr][0] for lr in sorted(by_lr)]) for g, by_lr in finals.items()}
  shifts = best_rate.transfer(rows, select_by, select_step)
  params = list(dict.fromkeys(r['parameterization'] for r in rows))
  depths = sorted({r['depth'] for r in rows})
  fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), squeeze=False)
  for col, p in enumerate(params):
    ax = axes[0, col]
    groups = sorted((g for g in finals if g[0] == p), key=lambda g: (g[2], g[1]))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(groups)))
    for c, g in zip(colors, groups):
      lrs = sorted(finals[g])
      losses = np.array([finals[g][lr][0] for lr in lrs])
      ax.plot(lrs, losses, color=c, marker='o', label=_size_label(g[2], g[1], depths))
      if np.isfinite(losses).any():
        i = int(np.nanargmin(losses))
        ax.plot([lrs[i]], [losses[i]], marker='*', ms=14, color=c, mec='k')
        ax.axvline(best[g]['best_lr'], color=c, ls=':', lw=1)
      div = [lr for lr in lrs if finals[g][lr][1]]
      if div:
        top = np.nanmax(losses) if np.isfinite(losses).any() else 1.0
        ax.plot(div, [top] * len(div), 'x', color=c)
    _best_rate_intervals(ax, [t for t in shifts.values() if t['parameterization'] == p], colors, groups)
    ax.set_xscale('log')
    ax.set_xlabel('base learning rate η0')
    ax.set_ylabel(f'{select_by} at step {select_step}' if select_step else f'final {select_by}')
    def drift_text(t):
      part = t.get('over_trained_sizes')   # the largest sizes train at no rate: the drift where some rate trains
      d = part or t
      where = f' over {t["size_axis"]} {part["sizes"][0]}–{part["sizes"][-1]}' if part else ''
      return (f'drift{where} {d["drift_decades"]:+.2f} decades [{d["drift_interval_decades"][0]:+.2f}, '
              f'{d["drift_interval_decades"][1]:+.2f}], {len(t["seeds"])} seed(s): {d["verdict"]}')
    shift = '; '.join(drift_text(t) for t in shifts.values() if t['parameterization'] == p)
    ax.set_title(f'{p} (★ best grid rate, ⋮ best rate, × diverged)' + (f'\n{shift}' if shift else ''), fontsize=9)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _best_rate_intervals(ax, entries, colors, groups):
  """Under the curves: each size's best rate (median over seeds) with its interval (best_rate.py); an arrow where
  it is censored."""
  if not entries:
    return
  t = entries[0]
  color_of = {(g[2] if t['size_axis'] == 'width' else g[1]): c for c, g in zip(colors, groups)}
  y0, y1 = ax.get_ylim()
  for k, (size, lr, (lo, hi), cens) in enumerate(zip(t['sizes'], t['best_lrs'], t['best_lr_intervals'],
                                                      t['censored'])):
    if not math.isfinite(lr):
      continue
    y = y0 + (y1 - y0) * (0.02 + 0.03 * k)
    lo, hi = max(lo, ax.get_xlim()[0]), min(hi, ax.get_xlim()[1])
    ax.plot([lo, hi], [y, y], color=color_of.get(size, 'k'), lw=2, alpha=0.7)
    ax.plot([lr], [y], '|', color=color_of.get(size, 'k'), ms=8)
    if cens:
      ax.annotate('censored', (hi if 'above' in cens else lo, y), fontsize=6, color=color_of.get(size, 'k'))
  ax.set_ylim(y0, y1)


def plot_coord_check(rows, path):
  """Top: RMS of each layer's output at init; bottom: RMS of its change after a few steps; both against width."""
  params = list(dict.fromkeys(r['parameterization'] for r in rows))
  fig, axes = plt.subplots(2, len(params), figsize=(5 * len(params), 7), squeeze=False, sharex=True)
  for col, p in enumerate(params):
    sel = [r for r in rows if r['parameterization'] == p]
    for layer in dict.fromkeys(r['layer'] for r in sel):
      rs = sorted((r for r in sel if r['layer'] == layer), key=lambda r: r['width'])
      widths = [r['width'] for r in rs]
      label = f'{layer} ({rs[0]["kind"]})'
      axes[0, col].plot(widths, [r['act_rms'] for r in rs], marker='o', label=label)
      axes[1, col].plot(widths, [r['delta_rms'] for r in rs], marker='o', label=label)
    axes[0, col].set_title(f'{p}, {sel[0]["optimizer"]}' if sel else p)
    axes[0, col].set_ylabel('RMS of layer output at init')
    axes[1, col].set_ylabel('RMS of change since init')
    axes[1, col].set_xlabel('width N')
    for ax in axes[:, col]:
      ax.set_xscale('log', base=2)
      ax.set_yscale('log')
    axes[1, col].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


SPECTRA_PANELS = measurements.spectra_panels()   # declared by each measurement, in registry order


def _panel_value(r, panel):
  return panel.value(r) if panel.value else r[panel.column]


def plot_spectra(rows, cfg, summary, path):
  """One row per available spectral quantity, one column per parameterization, one curve per width."""
  have = set(rows[0]) if rows else set()
  panels = [p for p in SPECTRA_PANELS if p.column in have]
  params = list(dict.fromkeys(r['parameterization'] for r in rows))
  depths = sorted({r['depth'] for r in rows})
  fig, axes = plt.subplots(len(panels), len(params), figsize=(5 * len(params), 3 * len(panels)), squeeze=False,
                           sharex=True)
  for col, p in enumerate(params):
    lr = trajectory_lr(cfg, summary, p)
    sel = [r for r in rows if r['parameterization'] == p and same_lr(r['lr'], lr)]
    sizes = sorted({(r['width'], r['depth']) for r in sel})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for row_i, panel in enumerate(panels):
      ax = axes[row_i, col]
      for c, (w, d) in zip(colors, sizes):
        by_step = defaultdict(list)
        for r in sel:
          if (r['width'], r['depth']) == (w, d):
            by_step[r['step']].append(_panel_value(r, panel))
        steps = sorted(by_step)
        means = [np.mean(v) if np.isfinite(v).any() and not np.isnan(v).all() else np.nan
                 for v in (np.asarray(by_step[s], float) for s in steps)]
        ax.plot(steps, means, color=c, marker='.', label=_size_label(w, d, depths))
      if panel.reference and sel:
        column, label = panel.reference
        ax.axhline(sel[0].get(column, float('nan')), color='k', ls='--', lw=1, label=label)
      ax.set_title(f'{p}, η0 = {lr:g}: {panel.label}', fontsize=9)
      if row_i == 0:
        ax.legend(fontsize=7)
    axes[-1, col].set_xlabel('step')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_density(rows, cfg, summary, path):
  """SLQ spectral density of the Hessian at the measured steps, for the trajectory learning rate (first seed)."""
  params = list(dict.fromkeys(r['parameterization'] for r in rows))
  sizes = sorted({(r['width'], r['depth']) for r in rows})
  fig, axes = plt.subplots(len(sizes), len(params), figsize=(5 * len(params), 2.6 * len(sizes)), squeeze=False)
  for col, p in enumerate(params):
    lr = trajectory_lr(cfg, summary, p)
    for row_i, (w, d) in enumerate(sizes):
      ax = axes[row_i, col]
      sel = [r for r in rows if r['parameterization'] == p and same_lr(r['lr'], lr) and (r['width'], r['depth']) == (w, d)]
      if sel:
        seed = min(r['seed'] for r in sel)
        sel = [r for r in sel if r['seed'] == seed and r['gamma0'] == sel[0]['gamma0']]
      steps = sorted({r['step'] for r in sel})
      colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(steps), 1)))
      for c, s in zip(colors, steps):
        rs = [r for r in sel if r['step'] == s]
        ax.semilogy([r['eigenvalue'] for r in rs], np.maximum([r['density'] for r in rs], 1e-8), color=c,
                    label=f'step {s}')
      ax.set_title(f'{p}, N={w}, η0 = {lr:g}', fontsize=9)
      ax.set_xlabel('Hessian eigenvalue')
      ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


DENSITY_FILE = next(m.writes for m in measurements.MEASUREMENTS if m.name == 'density')


def plot_workdir(workdir, summary=None):
  with open(os.path.join(workdir, 'config.json')) as f:
    cfg = json.load(f)
  if summary is None:
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  rows = results.read_csv(os.path.join(workdir, 'metrics.csv'))
  hessian = cfg['measure'].get('hessian', True)   # False: loss curves only, nothing spectral to draw
  if hessian:
    plot_sharpness(rows, cfg, summary, os.path.join(workdir, 'sharpness.png'))
  plot_transfer(rows, cfg['select_by'], os.path.join(workdir, 'transfer.png'), cfg.get('select_step', 0))
  if rows and hessian:
    plot_spectra(rows, cfg, summary, os.path.join(workdir, 'spectra.png'))
  dens = os.path.join(workdir, DENSITY_FILE)
  if os.path.exists(dens):
    plot_density(results.read_csv(dens), cfg, summary, os.path.join(workdir, 'density.png'))
  cc = os.path.join(workdir, 'coord_check.csv')
  if os.path.exists(cc):
    plot_coord_check(results.read_csv(cc), os.path.join(workdir, 'coord_check.png'))


def main(argv):
  workdirs = results.finished_workdirs(
      argv, 'python -m superconsistency.plot', "Redraw a finished run's plots (sharpness, transfer, coordinate "
      'check, spectra, density) from the files in its workdir.')
  if workdirs is None:
    return 2
  for workdir in workdirs:
    plot_workdir(workdir)
    print(f'wrote plots to {workdir}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
