"""An end-to-end equivalence claim at XLA's default optimization level (the rest of the suite compiles at level 0
to save time): a vmapped lane equals the same lane run alone. It runs as its own pytest process with
SC_XLA_DEFAULT=1, which tests/conftest.py reads, so any CLI run it starts inherits the default level too. The
resume equivalence at the default level (a run stopped by SIGTERM and resumed writes the same metrics.csv bytes)
is the slow variant: `python -m pytest -m slow tests/default_xla_test.py`."""
import os
import subprocess
import sys

import pytest

from conftest import FAST_COMPILE, ROOT


@pytest.mark.parametrize('test', [
    'tests/train_test.py::test_vmapped_lane_equals_lane_alone',
    pytest.param('tests/resume_test.py::test_sigterm_saves_and_exits_143_then_resumes', marks=pytest.mark.slow)])
def test_equivalence_at_the_default_optimization_level(test):
  env = dict(os.environ, SC_XLA_DEFAULT='1')
  env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split() if f not in FAST_COMPILE.split())
  probe = 'import os; print(os.environ.get("XLA_FLAGS", ""))'
  proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-n', '0', '-p', 'no:cacheprovider', test], cwd=ROOT,
                        env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
  assert '1 passed' in proc.stdout
  assert 'optimization_level' not in subprocess.run([sys.executable, '-c', probe], env=env, capture_output=True,
                                                    text=True).stdout
