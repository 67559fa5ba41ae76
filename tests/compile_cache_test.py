"""The persistent compilation cache and the trace/compile/run split in summary.json: the second run of the same
config loads every one of its programs from the cache (summary.json's `compile_cache` counts the compiles that
consulted it and those it answered) and computes the same bytes; without the cache nothing consults it. Tracing
and lowering run in Python every time and are reported apart (`trace`). Times: at the suite's fast-compile XLA
level this one-group program compiles in ~2.5 s and a cache hit still costs ~0.55 s of loading (22–26% of the
first run's compile alone on this machine, 35% with the other test worker busy), so the time asserts only that
loading costs less than compiling; the benchmarks measure the ratio (README)."""
import json
import subprocess
import sys

import pytest

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
  return summary['wall_time_s'], summary['compile_cache'], (workdir / 'metrics.csv').read_bytes()


def test_a_second_run_loads_its_programs_from_the_cache(tmp_path):
  cache = f'--compile_cache_dir={tmp_path / "cache"}'
  first, first_cache, first_bytes = _run(tmp_path / 'a', cache)
  second, second_cache, second_bytes = _run(tmp_path / 'b', cache)
  assert first['compile'] > 0.5 and first['run'] >= 0 and first['sweep'] >= first['compile']
  # the first run (an empty cache) compiles its programs (a hit only where two of its programs coincide), the
  # second loads every one
  assert first_cache['requests'] >= 3 and first_cache['hits'] < first_cache['requests'], first_cache
  assert second_cache == dict(requests=first_cache['requests'], hits=first_cache['requests']), second_cache
  assert second['compile'] < first['compile'], (first, second)
  assert second['trace'] > 0
  assert first_bytes == second_bytes
  assert list((tmp_path / 'cache').iterdir())


@pytest.mark.slow   # a third compile from scratch (~15 s here); the default run keeps the two runs above
def test_without_the_cache_nothing_consults_it_and_the_numbers_are_the_same(tmp_path):
  cached, cached_cache, cached_bytes = _run(tmp_path / 'a', f'--compile_cache_dir={tmp_path / "cache"}')
  uncached, uncached_cache, uncached_bytes = _run(tmp_path / 'c', '--nocompile_cache')
  assert cached_cache['requests'] >= 3 and uncached_cache == dict(requests=0, hits=0), uncached_cache
  assert uncached['compile'] > 0.5
  assert cached_bytes == uncached_bytes
