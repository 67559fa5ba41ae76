"""Compares two runs' metrics.csv column by column: every column the first has must hold the same values in the
second, byte for byte as written (repr of the float), or, with --rtol, equal to that relative tolerance.

    python benchmarks/compare_metrics.py OLD_WORKDIR NEW_WORKDIR [--rtol 1e-6]

Used to show that a change of structure changed no number: run the same config with the old and the new code, then
compare. Columns only the new run has are listed, not compared. Exit 0 when equal, 1 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import lzma
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(workdir):
  """The rows as written (strings), from metrics.csv or a committed workdir's metrics.csv.xz."""
  path = os.path.join(workdir, 'metrics.csv')
  path = path if os.path.exists(path) or not os.path.exists(path + '.xz') else path + '.xz'
  with (lzma.open(path, 'rt', newline='') if path.endswith('.xz') else open(path, newline='')) as f:
    return list(csv.DictReader(f))


def _key(row):
  return tuple(row[k] for k in ('parameterization', 'width', 'depth', 'lr', 'gamma0', 'seed', 'step'))


# a lane's own values, repeated on each of its rows: a difference there is not a difference at that row's step
PER_LANE_COLUMNS = ('diverged', 'diverged_step')


def compare(old_dir, new_dir, rtol=0.0) -> dict:
  """What differs; `differing_by_step` counts the measured values only (not PER_LANE_COLUMNS)."""
  old, new = _read(old_dir), _read(new_dir)
  new_by_key = {_key(r): r for r in new}
  columns = list(old[0]) if old else []
  added = [c for c in (new[0] if new else {}) if c not in columns]
  differing, worst, worst_finite, by_step = {}, 0.0, 0.0, {}
  missing = [k for k in map(_key, old) if k not in new_by_key]
  for r in old:
    other = new_by_key.get(_key(r))
    if other is None:
      continue
    for c in columns:
      a, b = r[c], other.get(c)
      if a == b:
        continue
      try:
        x, y = float(a), float(b)
        finite = math.isfinite(x) and math.isfinite(y)
        rel = abs(x - y) / max(abs(x), abs(y)) if finite else math.inf
      except (TypeError, ValueError):
        rel, finite = math.inf, False
      worst = max(worst, rel)
      if finite:
        worst_finite = max(worst_finite, rel)
      if rel > rtol:
        differing[c] = differing.get(c, 0) + 1
        if c not in PER_LANE_COLUMNS:
          by_step[r['step']] = by_step.get(r['step'], 0) + 1
  return dict(rows=len(old), new_rows=len(new), columns=len(columns), added_columns=added, missing_rows=len(missing),
              differing_values=differing, largest_relative_difference=worst,
              largest_finite_relative_difference=worst_finite,
              differing_by_step=dict(sorted(by_step.items(), key=lambda kv: float(kv[0]))))


def run_cli(config, workdir, *overrides) -> tuple:
  """One cold run of `config` through the CLI (compile cache off) into `workdir`, for a comparison: (wall seconds
  of the whole command, its summary.json). Exits naming the command and its stderr if the run fails."""
  cmd = [sys.executable, '-m', 'superconsistency', f'--config={config}', f'--workdir={workdir}', '--overwrite',
         '--progress=false', '--compile_cache=false', *overrides]
  start = time.time()
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode != 0:
    raise SystemExit(f'{" ".join(cmd)} failed:\n{proc.stderr[-3000:]}')
  with open(os.path.join(workdir, 'summary.json')) as f:
    return time.time() - start, json.load(f)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('old')
  parser.add_argument('new')
  parser.add_argument('--rtol', type=float, default=0.0)
  args = parser.parse_args(argv)
  out = compare(args.old, args.new, args.rtol)
  same = not out['differing_values'] and not out['missing_rows'] and out['rows'] == out['new_rows']
  print(f'{args.old} vs {args.new}: {out["rows"]} rows x {out["columns"]} columns; '
        + ('identical' if same and out['largest_relative_difference'] == 0 else
           f'equal to rtol {args.rtol}' if same else f'DIFFERENT: {out}')
        + (f'; new columns: {", ".join(out["added_columns"])}' if out['added_columns'] else ''))
  return 0 if same else 1


if __name__ == '__main__':
  sys.exit(main())
