"""The one writer of a run's workdir, and the readers that plots and summaries use.

workdir/
  config.json        the resolved config
  metrics.csv        tidy: one row per lane per measured step (columns(...): lane, metrics, divergence)
  coord_check.csv    per parameterization, optimizer, layer and width: RMS of activations and of their change
  summary.json       per parameterization/width/depth: best learning rate and its loss (written last: a run
                     with summary.json is finished)
  *.png              plots, redrawn from these files by `python -m superconsistency.plot WORKDIR`
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections import defaultdict

import numpy as np

META_COLUMNS = ('parameterization', 'width', 'depth', 'optimizer', 'lr_convention', 'lr', 'gamma0', 'seed', 'step')
TAIL_COLUMNS = ('lr_sharpness_threshold', 'diverged', 'diverged_step')
DENSITY_COLUMNS = META_COLUMNS + ('eigenvalue', 'density')


def columns(metric_columns) -> tuple:
  """metrics.csv columns: lane identity, the measured metrics (which depend on the config), divergence."""
  extra = ('adam_sharpness_threshold',) if 'adam_sharpness' in metric_columns else ()
  return META_COLUMNS + tuple(metric_columns) + TAIL_COLUMNS + extra

INT_COLUMNS = ('width', 'depth', 'seed', 'step', 'diverged', 'diverged_step')
STR_COLUMNS = ('parameterization', 'optimizer', 'lr_convention')


def atomic_write(path: str, text: str) -> None:
  """Writes via a temporary file and a rename, so a reader never sees half a file."""
  d = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=d, prefix='.tmp_')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  os.chmod(tmp, 0o644)
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + '\n')


def json_safe(x):
  """JSON has no nan/inf: write them as null (inf penalties are spelled out where they matter)."""
  if isinstance(x, dict):
    return {k: json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_safe(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None if math.isnan(x) else ('inf' if x > 0 else '-inf')
  return x


def _json_default(x):
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  if isinstance(x, (tuple, np.ndarray)):
    return list(x)
  raise TypeError(f'cannot write {type(x)} to json')


def start_workdir(workdir: str, outputs, resolved_config: dict) -> None:
  """Creates the workdir, removes a previous run's outputs (names or glob patterns), so a rerun replaces it
  entirely, and writes config.json with the versions that ran."""
  import jax
  os.makedirs(workdir, exist_ok=True)
  remove_outputs(workdir, outputs)
  resolved = dict(resolved_config)
  resolved.setdefault('_versions', dict(jax=jax.__version__, backend=jax.default_backend(),
                                        devices=jax.device_count()))
  write_json(os.path.join(workdir, 'config.json'), resolved)


def remove_outputs(workdir: str, patterns) -> None:
  """Removes the files of `workdir` that match any of the names or glob patterns."""
  import glob
  for pattern in patterns:
    for path in glob.glob(os.path.join(workdir, pattern)):
      os.remove(path)


class MetricsWriter:
  """Appends rows to workdir/metrics.csv with a fixed column order; the header is written once. Keys of a row
  that are not columns are ignored."""

  def __init__(self, workdir: str, columns, name='metrics.csv'):
    self.path = os.path.join(workdir, name)
    self.columns = columns
    if not os.path.exists(self.path):
      atomic_write(self.path, ','.join(columns) + '\n')

  def write(self, rows) -> None:
    with open(self.path, 'a', newline='') as f:
      w = csv.DictWriter(f, fieldnames=self.columns, lineterminator='\n', extrasaction='ignore')
      for row in rows:
        w.writerow({k: _fmt(row[k]) for k in self.columns})
      f.flush()
      os.fsync(f.fileno())


def _fmt(v):
  if isinstance(v, (float, np.floating)):
    return 'nan' if math.isnan(v) else repr(float(v))
  return v


def read_csv(path: str) -> list[dict]:
  """Rows with numeric columns parsed (ints as int, everything else numeric as float)."""
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    for k, v in r.items():
      if k in STR_COLUMNS or k in ('layer', 'kind'):
        continue
      try:
        r[k] = int(v) if k in INT_COLUMNS else float(v)
      except ValueError:
        pass
  return rows


def final_losses(rows, select_by='train_loss', select_step=0):
  """{(param, depth, width): {lr: (mean over seeds and γ0 of the final loss, any lane diverged)}}.

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


def summarize(rows, select_by='train_loss', select_step=0):
  """Best learning rate per (parameterization, depth, width), and how far it moves across widths in grid steps.

  A learning rate at which any lane diverged is never best. The shift is measured between the best rates'
  positions in each parameterization's grid, so "within one grid step" can be read off directly.
  """
  finals = final_losses(rows, select_by, select_step)
  per_group = []
  for (p, depth, width), by_lr in sorted(finals.items()):
    lrs = sorted(by_lr)
    ok = [(loss, lr) for lr, (loss, _) in by_lr.items() if math.isfinite(loss)]
    best_loss, best_lr = min(ok) if ok else (float('nan'), float('nan'))
    per_group.append(dict(parameterization=p, depth=depth, width=width, best_lr=best_lr, best_loss=best_loss,
                          best_lr_index=lrs.index(best_lr) if ok else None, lr_grid=lrs,
                          diverged_lrs=[lr for lr, (_, d) in by_lr.items() if d], select_by=select_by))
  transfer = {}
  for p in sorted({g['parameterization'] for g in per_group}):
    for depth in sorted({g['depth'] for g in per_group if g['parameterization'] == p}):
      gs = [g for g in per_group if g['parameterization'] == p and g['depth'] == depth and g['best_lr_index'] is not None]
      idx = [g['best_lr_index'] for g in gs]
      transfer[f'{p}/depth={depth}'] = dict(
          widths=[g['width'] for g in gs], best_lrs=[g['best_lr'] for g in gs],
          best_lr_shift_grid_steps=(max(idx) - min(idx)) if idx else None)
  return dict(groups=per_group, transfer=transfer)
