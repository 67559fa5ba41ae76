"""The README's parameterization table is the one the code generates, and its commands are the ones CI runs."""
import os

from conftest import ROOT
from superconsistency import parameterization as pz


def test_readme_table_matches_code():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  assert pz.table() in readme


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
  with open(os.path.join(ROOT, 'README.md')) as f:
    lines = f.read().splitlines()
  start = lines.index('```bash')
  install_run, install_test = lines[start + 1], lines[start + 2]
  assert 'configs/quickstart.py' in install_run and 'pip install -e .' in install_run
  assert install_test.endswith("pip install -e '.[test]' && python -m pytest -q")
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    ci = f.read()
  assert install_test in ci.splitlines()
