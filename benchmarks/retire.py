"""Lane retirement on a sweep where many lanes diverge: the same config run with diverged lanes kept in the batch
(frozen, computing on) and with them retired (they leave the batch at the next chunk, the rest are re-packed).

    python benchmarks/retire.py                 # [G]'s γ–η plane (configs/gamma_eta.py); ~36 min on a 2-core CPU
    python benchmarks/retire.py --quick         # a shrunk plane; ~1 min

Both runs go through the CLI one after the other, with the persistent compile cache off, so both compile
everything they run. Reports each run's time, its lane-steps run and saved (summary.json), and how the two
metrics.csv compare (benchmarks/compare_metrics.py): rows up to a lane's retirement are the same computation, but
the lanes that stay run on in a smaller compiled program, whose float rounding may differ.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_metrics  # noqa: E402
from compare_metrics import PER_LANE_COLUMNS  # noqa: E402
from machine import machine_info, machine_table, write_report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ['--config.depths=(2,)', '--config.num_steps=100', '--config.measure_every=25']


def run(config, workdir, retire, extra):
  wall, summary = compare_metrics.run_cli(config, workdir, f'--config.sweep.retire_diverged={retire}', *extra)
  return dict(wall=wall, summary=summary)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='configs/gamma_eta.py')
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'retire.md'))
  args = parser.parse_args(argv)
  info = machine_info()
  extra = QUICK if args.quick else []
  with tempfile.TemporaryDirectory() as tmp:
    kept = run(args.config, os.path.join(tmp, 'kept'), False, extra)
    retired = run(args.config, os.path.join(tmp, 'retired'), True, extra)
    diff = compare_metrics.compare(os.path.join(tmp, 'kept'), os.path.join(tmp, 'retired'))
    diff_6 = compare_metrics.compare(os.path.join(tmp, 'kept'), os.path.join(tmp, 'retired'), rtol=1e-6)
  L = ['# Lane retirement: diverged lanes kept vs retired' + (' (--quick)' if args.quick else ''), '']
  L += machine_table(info) + ['']
  L += [f'Config: `{args.config}`' + (f' with {" ".join(extra)}' if extra else '') + '. Both runs through the CLI, '
        'one after the other, compile cache off.', '']
  L += ['| | diverged lanes kept (frozen) | retired |', '|---|---|---|']
  row = lambda name, f: L.append(f'| {name} | {f(kept)} | {f(retired)} |')
  row('wall time, whole command (s)', lambda r: f'{r["wall"]:.1f}')
  row('sweep: compile (s)', lambda r: f'{r["summary"]["wall_time_s"]["compile"]:.1f}')
  row('sweep: run (s)', lambda r: f'{r["summary"]["wall_time_s"]["run"]:.1f}')
  row('lane-steps run', lambda r: f'{r["summary"]["lane_steps"]["run"]:,}')
  row('lane-steps saved', lambda r: f'{r["summary"]["lane_steps"]["saved"]:,}')
  ratio = kept['summary']['wall_time_s']['run'] / max(retired['summary']['wall_time_s']['run'], 1e-9)
  L += ['', f'- **run time, kept / retired: {ratio:.2f}×**; lane-steps: '
        f'{retired["summary"]["lane_steps"]["run"] / kept["summary"]["lane_steps"]["run"]:.0%} of the kept run\'s',
        f'- metrics.csv: {diff["rows"]:,} rows × {diff["columns"]} columns in both; missing rows: '
        f'{diff["missing_rows"]}; values that differ at all: {sum(diff["differing_values"].values()):,} '
        f'(by column: {diff["differing_values"] or "none"}); by more than 1e-6 relative: '
        f'{sum(diff_6["differing_values"].values()):,}; largest relative difference: '
        f'{diff["largest_relative_difference"]:.2e} ({diff["largest_finite_relative_difference"]:.2e} over the values '
        'finite in both runs; inf: a value finite in one run and not the other)',
        f'- measured values that differ, by step (the per-lane columns {", ".join(PER_LANE_COLUMNS)}, repeated on a '
        f'lane\'s every row, not counted): {diff["differing_by_step"] or "none"}']
  first = min((float(k) for k in diff['differing_by_step']), default=None)
  if first is not None:
    L += [f'- the first difference is at step {first:g}. Lanes retire between chunks, and the lanes that stay run on in '
          'a smaller compiled program (a re-packed bucket, with its own lane groups) whose float rounding differs; '
          'lanes near the edge of stability amplify it, so a lane may diverge in one run and not in the other '
          f'(`diverged` differs in {diff["differing_values"].get("diverged", 0)} rows, `diverged_step` in '
          f'{diff["differing_values"].get("diverged_step", 0)})']
  L += ['']
  write_report(args.out, '\n'.join(L) + '\n')


if __name__ == '__main__':
  main()
