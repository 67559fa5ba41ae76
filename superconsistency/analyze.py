"""python -m superconsistency.analyze WORKDIR [WORKDIR ...]: analysis.json and analysis_*.png of finished runs.

Reads only each workdir's files (config.json, metrics.csv or the experiment's own CSVs) and dispatches by the
experiment recorded in config.json (experiments.py): the sweep's analysis is sweep_analysis.py, the others analyze
their own files. Prints the numbers the results gallery quotes.
"""
from __future__ import annotations

import math
import sys

from superconsistency import best_rate
from superconsistency import experiments
from superconsistency import results
from superconsistency.gamma_analysis import fit_text


def report(out) -> str:
  """A few lines per analysis: the numbers the gallery quotes."""
  lines = []
  for key, t in out.get('transfer', {}).items():
    lo, hi = t['penalty_interval']
    lines.append(f'transfer {best_rate.describe(key, t)}; penalty at the largest size {_g(t["penalty_at_largest"])} '
                 f'[{_g(lo)}, {_g(hi)}] nats')
  for p, c in out.get('consistency', {}).items():
    for name, q in c['quantities'].items():
      lines.append(f'consistency {p} (η0={c["trajectory_lr"]:g}) {q["label"]}: CV across sizes, late mean '
                   f'{q["cv_late_mean"]:.3f} ({q["cv_late_mean_without_smallest"]:.3f} without the smallest), '
                   f'final {q["cv_final"]:.3f}')
  for key, g in out.get('gamma_eta', {}).items():
    f = g['fits']
    lines.append(f'gamma_eta {key}: η* slope small γ {fit_text(f["eta_star_small"], g["prediction_small"])}, '
                 f'large γ {fit_text(f["eta_star_large"], g["prediction_large"])}; stability-edge slopes '
                 f'{fit_text(f["eta_edge_small"], g["prediction_small"])} / '
                 f'{fit_text(f["eta_edge_large"], g["prediction_large"])}')
  for key, d in out.get('plateaus', {}).items():
    if 'collapse' in d:
      c, f = d['collapse'], d.get('plateau_vs_ratio', {})
      lines.append(f'plateaus {key}: length vs γ0/η0 slope {f.get("slope", math.nan):.2f} '
                   f'{_ci(f.get("ci95", [math.nan, math.nan]))}; spread of log hitting time t {c["spread_t"]:.3f}, '
                   f'τ {c["spread_tau"]:.3f}, null {c["null_spread_median"]:.3f} (p = {c["p_value"]:.3g})')
  for depth, by_regime in out.get('slopes', {}).items() if out.get('experiment') == 'toy_chain' else ():
    lines.append(f'toy_chain L={depth}: η_max slope small γ {by_regime["small_gamma"]["slope"]:.3f} '
                 f'{_ci(by_regime["small_gamma"]["ci95"])} (theory 2), large γ {by_regime["large_gamma"]["slope"]:.3f} '
                 f'{_ci(by_regime["large_gamma"]["ci95"])} (theory {by_regime["large_gamma"]["prediction_asymptotic"]:.3g})')
  for variant, g in (out.get("gradient", {}).items() if out.get("experiment") == "bn_depth" else ()):
    if not isinstance(g, dict):
      continue
    lines.append(f'bn_depth {variant}: log‖∇W1‖ slope per layer {g["slope_per_layer"]["slope"]:.2g} '
                 f'{_ci(g["slope_per_layer"]["ci95"])}, growth over the depths {g["growth"]:.3g}')
  return '\n'.join(lines)


def _g(v):
  return str(v) if not isinstance(v, float) else f'{v:.4g}'


def _ci(ci):
  return '[' + ', '.join('nan' if v is None else f'{v:.3g}' for v in ci) + ']'


def main(argv) -> int:
  workdirs = results.finished_workdirs(
      argv, 'python -m superconsistency.analyze', 'Write analysis.json and analysis_*.png into each finished '
      'workdir, from its files only, and print the numbers the results gallery quotes.')
  if workdirs is None:
    return 2
  for workdir in workdirs:
    text = report(experiments.analyze(workdir))
    print(f'{workdir}:' + ('\n  ' + text.replace('\n', '\n  ') if text else ' analyzed'))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
