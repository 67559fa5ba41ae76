"""The persistent compilation cache and the trace/compile/run split in summary.json: the second run of the same
config loads its programs from the cache (XLA's part of compiling falls to ≤ 35% of the first run's) and computes
the same bytes; without the cache it compiles again. Tracing and lowering run in Python every time and are
reported apart (`trace`). At the suite's fast-compile XLA level this one-group program compiles in ~2.5 s and a
cache hit still costs ~0.55 s of loading, so the ratio measures 22–26% on this machine (it was 15% at 7.2 s
before the suite lowered XLA's optimization level); 35% leaves room for a busy machine, and the uncached run must
still cost ≥ 3× the cached one."""
import json
import subprocess
import sys

from cli_test import SHRINK
from conftest import ROOT


def _run(workdir, *extra):
  proc = subprocess.run([sys.executable, '-m', 'superconsistency', '--config=configs/quickstart.py',
                         f'--workdir={workdir}', *SHRINK, '--config.coord_check.enabled=False',
                         '--config.widths=(8,)', '--config.parameterizations=("ntk",)', *extra], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(workdir / 'summary.json') as f:
    summary = json.load(f)
  # one group (ntk, width 8): an init, a first measurement and 2 chunks of 3 steps
  assert summary['flops']['total'] > 0 and summary['flops']['per_second_run'] > 0
  return summary['wall_time_s'], (workdir / 'metrics.csv').read_bytes()


def test_a_second_run_loads_its_programs_from_the_cache(tmp_path):
  cache = f'--compile_cache_dir={tmp_path / "cache"}'
  first, first_bytes = _run(tmp_path / 'a', cache)
  second, second_bytes = _run(tmp_path / 'b', cache)
  uncached, uncached_bytes = _run(tmp_path / 'c', '--nocompile_cache')
  assert first['compile'] > 0.5 and first['run'] >= 0 and first['sweep'] >= first['compile']
  assert second['compile'] <= 0.35 * first['compile'], (first, second)
  assert uncached['compile'] >= 3 * second['compile'], (uncached, second)
  assert second['trace'] > 0
  assert first_bytes == second_bytes == uncached_bytes
  assert list((tmp_path / 'cache').iterdir())
