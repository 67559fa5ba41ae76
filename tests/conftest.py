import os
import tempfile

import pytest

# The suite's arrays are tiny, so XLA compilation dominates its time. At optimization level 0 and without its fusion
# emitters, XLA's CPU backend compiles 3-4x faster; only the generated code differs, and every comparison in the
# suite is between numbers computed in the same run. Set before JAX starts its backend (subprocesses inherit it).
# SC_XLA_DEFAULT=1 runs the tests at XLA's default level instead (tests/default_xla_test.py does, for the
# equivalence claims: a claim checked only at level 0 would not cover the code users run).
FAST_COMPILE = '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false'
if os.environ.get('SC_XLA_DEFAULT') == '1':
  os.environ['XLA_FLAGS'] = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                                     if f not in FAST_COMPILE.split())
elif 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + FAST_COMPILE).strip()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CLI runs the tests start share one compilation cache of their own (not the user's), kept between sessions:
# the suite reruns the same shrunk configs many times (resume, faults, bad input), and a hit skips the compile.
os.environ.setdefault('SUPERCONSISTENCY_CACHE', os.path.join(tempfile.gettempdir(), 'superconsistency-test-cache'))
# Generated MNIST-1D arrays likewise (data.mnist1d_cache_directory): generated once, loaded by every later run.
os.environ.setdefault('SUPERCONSISTENCY_DATA_CACHE', os.path.join(tempfile.gettempdir(), 'superconsistency-test-data'))
# The tests that compile in-process use it too: many build the programs a CLI test or another test compiles (the
# shrunk quickstart's), and a hit skips XLA (a set of 107 in-process tests: 145 -> 126 s from an empty cache).
from superconsistency import compile_cache  # noqa: E402 - after XLA_FLAGS, before any test compiles

compile_cache.enable(os.environ['SUPERCONSISTENCY_CACHE'])


def load_config(name, arg=''):
  """A config from configs/ — tests shrink these rather than inventing their own."""
  from superconsistency.config import from_file
  return from_file(os.path.join(ROOT, 'configs', f'{name}.py'), arg)


def shrunk_quickstart():
  c = load_config('quickstart')
  c.widths = (8, 16)
  c.sweep.lrs.mup = (0.25, 1.0)
  c.sweep.lrs.ntk = (1.0, 4.0)
  c.num_steps = 6
  c.measure_every = 3
  c.measure.loss_batch = 64
  c.measure.sharpness_batch = 32
  c.measure.num_iters = 8
  c.data.num_train = 256
  c.data.num_eval = 64
  c.data.batch_size = 16
  c.coord_check.widths = (8, 16)
  c.coord_check.seeds = (0,)
  c.coord_check.steps = 1
  c.coord_check.batch = 16
  c.sweep.seeds = (0,)           # the quickstart's 3 seeds and grid extension: not needed to test the machinery
  c.sweep.extend_rounds = 0
  return c


@pytest.fixture
def small_config():
  return shrunk_quickstart()
