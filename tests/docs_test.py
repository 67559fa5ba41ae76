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


def test_results_gallery_figures_exist_and_its_commands_name_real_configs():
  """Every figure results/README.md shows is committed, and every config it runs exists (with its options)."""
  import re
  from superconsistency import gallery
  with open(os.path.join(ROOT, 'results', 'README.md')) as f:
    text = f.read()
  figures = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
  assert len(figures) >= 10
  for fig in figures:
    assert os.path.exists(os.path.join(ROOT, 'results', fig)), fig
  for spec in re.findall(r'--config=(configs/[\w./:,]+)', text):
    assert os.path.exists(os.path.join(ROOT, spec.split(':')[0])), spec
  for name, spec, _ in gallery.ENTRIES:   # the gallery command covers every entry the README shows
    assert f'--config={spec.split(":")[0]}' in text or f'--config={spec}' in text, spec


def test_committed_json_is_strict_json():
  """analysis.json and the experiments' summary.json carry no NaN/Infinity, which strict JSON parsers reject."""
  import glob
  import json

  def refuse(token):
    raise ValueError(f'non-standard JSON constant {token}')
  paths = glob.glob(os.path.join(ROOT, 'results', '*', 'analysis.json'))
  paths += [os.path.join(ROOT, 'results', name, 'summary.json') for name in ('bn_depth', 'toy_chain')]
  assert len(paths) >= 15
  for path in paths:
    with open(path) as f:
      json.load(f, parse_constant=refuse)
