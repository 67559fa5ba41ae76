"""Programs shared across parameterizations when the lane counts differ: the quickstart (μP 24 lanes, NTP 27) with
`program.pad_to_share` = 0 (each group compiles its own programs) and 0.25 (μP pads to 27 lanes and NTP runs its
executables), cold, in interleaved rounds.

    python benchmarks/share.py                  # the quickstart, 2 rounds; ~13 min on a 2-core CPU
    python benchmarks/share.py --quick          # widths 64 and 128, 40 steps, 1 round; ~1 min

Every run goes through the CLI with the persistent compile cache off, so each compiles everything it runs; the
rounds alternate the two settings so that a change of the machine's load falls on both. Reports per run the whole
command's time and summary.json's compile, trace and run time, μP's and NTP's training time, the programs compiled
and shared, and how the two settings' metrics.csv compare (benchmarks/compare_metrics.py): the training columns
must be identical, the Hessian products may differ by float rounding (a vmapped batch of another size reduces in
another order).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_metrics  # noqa: E402
from machine import machine_info, machine_table, write_report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = (0.0, 0.25)
QUICK = ['--config.widths=(64,128)', '--config.num_steps=40', '--config.measure_every=20']
TRAINING = ('train_loss', 'batch_loss', 'eval_loss', 'eval_accuracy', 'diverged', 'diverged_step')


def run(config, workdir, share, extra):
  wall, summary = compare_metrics.run_cli(config, workdir, f'--config.program.pad_to_share={share}', *extra)
  by = lambda p, key: sum(g[key] for g in summary['programs'] if g['parameterization'] == p)
  return dict(wall=wall, **summary['wall_time_s'], mup_run=by('mup', 'run_s'),
              ntk_run=by('ntk', 'run_s'), compiled=by('mup', 'compiled') + by('ntk', 'compiled'),
              shared=by('mup', 'shared') + by('ntk', 'shared'), padded=by('mup', 'padded_lanes'))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='configs/quickstart.py')
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--rounds', type=int, default=0, help='rounds of both settings (default 2, --quick 1)')
  parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'share.md'))
  args = parser.parse_args(argv)
  rounds = args.rounds or (1 if args.quick else 2)
  extra = QUICK if args.quick else []
  info = machine_info()
  started = time.time()
  runs = {share: [] for share in SETTINGS}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(rounds):
      for share in SETTINGS:
        runs[share].append(run(args.config, os.path.join(tmp, f'{share}_{r}'), share, extra))
        print(f'round {r + 1}, pad_to_share={share}: {runs[share][-1]["wall"]:.1f} s', flush=True)
    pair = [os.path.join(tmp, f'{share}_0') for share in SETTINGS]
    diff = compare_metrics.compare(*pair)
  training = {k: v for k, v in diff['differing_values'].items() if k in TRAINING}
  med = lambda share, key: statistics.median(r[key] for r in runs[share])
  L = ['# Shared programs at unequal lane counts: padding off vs on' + (' (--quick)' if args.quick else ''), '',
       f'Produced by `python benchmarks/share.py{" --quick" if args.quick else ""}` in {time.time() - started:.0f} s.',
       ''] + machine_table(info) + ['']
  L += [f'Config: `{args.config}`' + (f' with {" ".join(extra)}' if extra else '') + f'. {rounds} round(s), each '
        'runs `program.pad_to_share=0` then `0.25` through the CLI, compile cache off.', '',
        '| run | pad_to_share | whole command (s) | compile (s) | trace (s) | run (s) | μP training (s) | '
        'NTP training (s) | programs compiled / shared | μP padding lanes (all widths) |', '|---|---|---|---|---|---|---|---|---|---|']
  for r in range(rounds):
    for share in SETTINGS:
      x = runs[share][r]
      L.append(f'| {r + 1} | {share} | {x["wall"]:.1f} | {x["compile"]:.1f} | {x["trace"]:.1f} | {x["run"]:.1f} | '
               f'{x["mup_run"]:.1f} | {x["ntk_run"]:.1f} | {x["compiled"]} / {x["shared"]} | {x["padded"]} |')
  off, on = SETTINGS
  L += ['', f'- **whole command, padding off / on (medians): {med(off, "wall") / med(on, "wall"):.2f}×** '
        f'({med(off, "wall"):.1f} s / {med(on, "wall"):.1f} s); compile {med(off, "compile"):.1f} s → '
        f'{med(on, "compile"):.1f} s; μP\'s training {med(off, "mup_run"):.1f} s → {med(on, "mup_run"):.1f} s '
        '(its padding lanes compute too)',
        f'- metrics.csv, first round: {diff["rows"]:,} rows × {diff["columns"]} columns in both, missing rows '
        f'{diff["missing_rows"]}; training columns ({", ".join(TRAINING)}) that differ: '
        f'{training or "none"}; all columns that differ: {diff["differing_values"] or "none"}; largest relative '
        f'difference {diff["largest_relative_difference"]:.2e}', '']
  write_report(args.out, '\n'.join(L) + '\n')


if __name__ == '__main__':
  main()
