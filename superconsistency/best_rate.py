"""The best learning rate of each model and how far it moves across sizes: the one definition that summary.json,
the CLI's last lines, analysis.json, the gallery and the README all read.

Rule. A lane's loss is read at `select_step` (0 = its last measured step) in the `select_by` column and averaged over
seeds and γ0. A rate at which any lane diverged is never best. The best rate of a (parameterization, depth, width)
model is the vertex of a parabola in log η0 through the grid minimum and its two neighbours (fits.interpolated_argmin);
on the grid's edge, or next to a diverged or missing rate, it is the grid point itself and is flagged `at_grid_edge`.
Its shift across sizes is reported two ways:
  shift_decades     log10(largest best rate / smallest best rate): comparable across grids of any ratio;
  shift_grid_steps  the same distance in (fractional) positions of the grid, for reading a plot.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from superconsistency import fits


def nearest_on_grid(grid, wanted: float) -> float:
  """The grid rate nearest `wanted` on a log scale (how a configured trajectory rate names a lane)."""
  return min(grid, key=lambda lr: abs(math.log(lr / wanted)))


def final_losses(rows, select_by='train_loss', select_step=0):
  """{(param, depth, width): {lr: (mean over seeds and γ0 of the loss at the selected step, any lane diverged)}}.

  select_step > 0 reads the loss at that step instead of the last (a lane diverged by then counts as diverged)."""
  last = defaultdict(int)
  for r in rows:
    key = (r['parameterization'], r['depth'], r['width'], r['lr'], r['gamma0'], r['seed'])
    last[key] = select_step if select_step else max(last[key], r['step'])
  acc = defaultdict(lambda: defaultdict(list))
  for r in rows:
    key = (r['parameterization'], r['depth'], r['width'], r['lr'], r['gamma0'], r['seed'])
    if r['step'] == last[key]:
      acc[(r['parameterization'], r['depth'], r['width'])][r['lr']].append((r[select_by], r['diverged']))
  out = {}
  for group, by_lr in acc.items():
    out[group] = {}
    for lr, vals in sorted(by_lr.items()):
      losses = [v for v, d in vals if not d and math.isfinite(v)]
      diverged = any(d for _, d in vals)
      out[group][lr] = (float(np.mean(losses)) if losses and not diverged else float('nan'), diverged)
  return out


def best_of(grid, losses) -> dict:
  """The best rate of one model from its losses on the ascending rate grid (nan where diverged or missing)."""
  losses = np.asarray(losses, float)
  best = fits.interpolated_argmin(np.log(grid), losses)
  if best is None:
    nan = float('nan')
    return dict(best_lr=nan, best_index=nan, best_grid_lr=nan, best_loss=nan, at_grid_edge=None)
  i = int(np.nanargmin(losses))
  return dict(best_lr=math.exp(best[0]), best_index=best[1], best_grid_lr=float(grid[i]),
              best_loss=float(losses[i]), at_grid_edge=best[2])


def shift(best_lrs, best_indices) -> dict:
  """How far the best rate moves across sizes (finite values only): in decades and in grid steps, and its signed
  drift from the first (smallest) size to the last."""
  pairs = [(lr, i) for lr, i in zip(best_lrs, best_indices) if math.isfinite(lr)]
  if not pairs:
    nan = float('nan')
    return dict(shift_decades=nan, shift_grid_steps=nan, drift_decades=nan, drift_grid_steps=nan)
  lrs, idx = zip(*pairs)
  ends = math.isfinite(best_lrs[0]) and math.isfinite(best_lrs[-1])
  return dict(shift_decades=math.log10(max(lrs) / min(lrs)), shift_grid_steps=max(idx) - min(idx),
              drift_decades=math.log10(best_lrs[-1] / best_lrs[0]) if ends else float('nan'),
              drift_grid_steps=best_indices[-1] - best_indices[0] if ends else float('nan'))


def per_model(rows, select_by='train_loss', select_step=0) -> list[dict]:
  """One entry per (parameterization, depth, width): its grid, best rate and the rates that diverged."""
  out = []
  for (p, depth, width), by_lr in sorted(final_losses(rows, select_by, select_step).items()):
    grid = sorted(by_lr)
    entry = dict(parameterization=p, depth=depth, width=width, lr_grid=grid, select_by=select_by,
                 diverged_lrs=[lr for lr in grid if by_lr[lr][1]])
    entry.update(best_of(grid, [by_lr[lr][0] for lr in grid]))
    out.append(entry)
  return out


def size_axes(rows):
  """Which sizes a transfer is measured across: width (at each depth), and depth (at each width) where swept."""
  axes = []
  if len({r['width'] for r in rows}) > 1:
    axes.append(('width', 'depth'))
  if len({r['depth'] for r in rows}) > 1:
    axes.append(('depth', 'width'))
  return axes


def transfer(rows, select_by='train_loss', select_step=0) -> dict:
  """Per parameterization and fixed other size ('mup/depth=3'): the best rate at each size, its shift, and the
  penalty of using the smallest size's best grid rate at the largest size (loss there minus the best loss)."""
  finals = final_losses(rows, select_by, select_step)
  out = {}
  for size, fixed in size_axes(rows):
    for p in dict.fromkeys(r['parameterization'] for r in rows):
      for fixed_value in sorted({k[1 if fixed == 'depth' else 2] for k in finals if k[0] == p}):
        by_size = {(width if size == 'width' else depth): by_lr for (pp, depth, width), by_lr in finals.items()
                   if pp == p and (depth if fixed == 'depth' else width) == fixed_value}
        if len(by_size) < 2:
          continue
        sizes = sorted(by_size)
        grid = sorted(by_size[sizes[0]])
        if len(grid) < 2:   # one rate: nothing to transfer (a trajectory-only run)
          continue
        losses = {s: [by_size[s].get(lr, (float('nan'), True))[0] for lr in grid] for s in sizes}
        best = [best_of(grid, losses[s]) for s in sizes]
        small, large = best[0], best[-1]
        penalty = float('nan')
        if math.isfinite(small['best_grid_lr']) and math.isfinite(large['best_index']):
          at_small_best = losses[sizes[-1]][grid.index(small['best_grid_lr'])]
          penalty = (at_small_best - large['best_loss']) if math.isfinite(at_small_best) else math.inf
        entry = dict(parameterization=p, size_axis=size, sizes=sizes, lr_grid=grid, select_by=select_by,
                     best_lrs=[b['best_lr'] for b in best], best_grid_lrs=[b['best_grid_lr'] for b in best],
                     best_indices=[b['best_index'] for b in best],
                     best_at_grid_edge=[b['at_grid_edge'] for b in best],
                     penalty_at_largest=penalty,
                     penalty_relative=penalty / large['best_loss'] if math.isfinite(penalty) else penalty,
                     losses={str(s): losses[s] for s in sizes})
        entry.update(shift(entry['best_lrs'], entry['best_indices']))
        out[f'{p}/{fixed}={fixed_value}'] = entry
  return out


def describe(key, t) -> str:
  """One line per transfer entry: what the CLI prints and the gallery quotes."""
  best = ', '.join(f'{s}: {lr:.3g}' + ('*' if edge else '')
                   for s, lr, edge in zip(t['sizes'], t['best_lrs'], t['best_at_grid_edge']))
  return (f'{key}: best lr by {t["size_axis"]} {{{best}}}; shift {t["shift_decades"]:.2f} decades '
          f'({t["shift_grid_steps"]:.2f} grid steps)' + (' (* on the grid edge)' if any(t['best_at_grid_edge'])
                                                         else ''))
