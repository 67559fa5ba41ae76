"""The docs hold together: README is a short front door whose commands CI runs, every relative link lands on a
file (and heading) that exists, nothing points outside the repository, and every entry point answers --help."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

# Built from parts, so that this file does not itself mention what it looks for.
OUTSIDE_REFERENCES = ('../' + 'shared', 'SCIENCE' + '.md')
ENTRY_POINTS = ('superconsistency', 'superconsistency.analyze', 'superconsistency.plot', 'superconsistency.gallery',
                'superconsistency.prepare', 'superconsistency.verdicts')


def _read(path):
  with open(os.path.join(ROOT, path), encoding='utf-8') as f:
    return f.read()


def _markdown_pages():
  return ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def _slug(heading):
  """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, spaces and hyphens stay),
  spaces become hyphens."""
  text = re.sub(r'[`*_]', '', heading.strip().lower())
  text = re.sub(r'[^\w\- ]', '', text)
  return text.replace(' ', '-')


def _anchors(page):
  text = re.sub(r'```.*?```', '', _read(page), flags=re.S)
  return {_slug(m) for m in re.findall(r'^#+\s+(.*)$', text, flags=re.M)}


def _relative_links(page):
  """(target, anchor) of every relative link or image in a markdown page, code blocks and code spans excluded."""
  text = re.sub(r'```.*?```', '', _read(page), flags=re.S)
  text = re.sub(r'`[^`\n]*`', '', text)
  out = []
  for target in re.findall(r'\]\(([^)\s]+)\)', text):
    if re.match(r'^[a-z][a-z0-9+.-]*:', target):   # http:, https:, mailto:
      continue
    path, _, anchor = target.partition('#')
    out.append((path, anchor))
  return out


def test_readme_is_a_short_front_door():
  lines = _read('README.md').splitlines()
  assert len(lines) < 200, len(lines)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
  lines = _read('README.md').splitlines()
  start = lines.index('```bash')
  install_run, install_test = lines[start + 1], lines[start + 2]
  assert 'configs/quickstart.py' in install_run and 'pip install -e .' in install_run
  assert install_test.endswith("pip install -e '.[test]' && python -m pytest -q")
  assert install_test in _read(os.path.join('.ci', 'run')).splitlines()


def test_every_relative_link_lands_on_a_file_and_heading_that_exist():
  pages = _markdown_pages()
  assert 'docs/README.md' in pages and len(pages) >= 6, pages
  broken, checked = [], 0
  for page in pages:
    for path, anchor in _relative_links(page):
      target = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
      checked += 1
      if not os.path.exists(os.path.join(ROOT, target)):
        broken.append(f'{page}: {path} (no such file)')
      elif anchor and target.endswith('.md') and anchor not in _anchors(target):
        broken.append(f'{page}: {path}#{anchor} (no such heading in {target})')
  assert checked >= 30, checked   # the pages do link to each other, the configs and the results
  assert not broken, '\n'.join(broken)


def test_nothing_in_the_repository_points_outside_it():
  try:
    listed = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
  except (OSError, subprocess.CalledProcessError):
    pytest.skip('not a git checkout')
  assert len(listed) > 50
  hits = []
  for path in listed:
    full = os.path.join(ROOT, path)
    if not os.path.isfile(full):   # deleted in the working tree
      continue
    with open(full, 'rb') as f:
      data = f.read()
    hits += [f'{path}: {ref}' for ref in OUTSIDE_REFERENCES if ref.encode() in data]
  assert not hits, '\n'.join(hits)


def test_every_entry_point_prints_its_usage_on_help():
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  procs = {m: subprocess.Popen([sys.executable, '-m', m, '--help'], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for m in ENTRY_POINTS}
  outputs = {}
  for module, proc in procs.items():   # started together: their imports overlap
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (module, err[-2000:])
    assert 'usage' in out.lower(), (module, out[:500])
    outputs[module] = out
  for module in ENTRY_POINTS[1:]:
    assert f'python -m {module}' in outputs[module], (module, outputs[module][:500])   # the command to type
  assert 'quickstart' in outputs['superconsistency'], outputs['superconsistency'][:2000]   # it lists the configs


def test_results_gallery_figures_exist_and_its_commands_name_real_configs():
  """Every figure results/README.md shows is committed, and every config it runs exists (with its options)."""
  from superconsistency import gallery
  text = _read(os.path.join('results', 'README.md'))
  figures = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
  assert len(figures) >= 10
  for fig in figures:
    assert os.path.exists(os.path.join(ROOT, 'results', fig)), fig
  for spec in re.findall(r'--config=(configs/[\w./:,]+)', text):
    assert os.path.exists(os.path.join(ROOT, spec.split(':')[0])), spec
  for name, spec, _ in gallery.ENTRIES:   # the gallery command covers every entry the README shows
    assert f'--config={spec.split(":")[0]}' in text or f'--config={spec}' in text, spec


def test_committed_results_are_small():
  """Every file under results/ stays at most results.COMPACT_BYTES (large CSVs are committed as .xz)."""
  from superconsistency import results
  big = [os.path.relpath(os.path.join(d, n), ROOT) for d, _, names in os.walk(os.path.join(ROOT, 'results'))
         for n in names if os.path.getsize(os.path.join(d, n)) > results.COMPACT_BYTES]
  assert not big, f'compress with superconsistency.results.compact: {big}'


def test_committed_json_is_strict_json():
  """analysis.json and the experiments' summary.json carry no NaN/Infinity, which strict JSON parsers reject."""
  def refuse(token):
    raise ValueError(f'non-standard JSON constant {token}')
  paths = glob.glob(os.path.join(ROOT, 'results', '*', 'analysis.json'))
  paths += [os.path.join(ROOT, 'results', name, 'summary.json') for name in ('bn_depth', 'toy_chain')]
  assert len(paths) >= 15
  for path in paths:
    with open(path) as f:
      json.load(f, parse_constant=refuse)


def test_the_flax_example_script_runs_from_python(tmp_path):
  """docs/examples/flax_transfer.py --quick: a user's linen module through flax_model, superconsistency.run, load,
  transfer and the plot, as a notebook would (a subprocess from the repository root, as its docstring says)."""
  workdir = tmp_path / 'flax_quick'
  out = subprocess.run([sys.executable, 'docs/examples/flax_transfer.py', f'--workdir={workdir}', '--quick'],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'Dense_2.kernel   readout' in out.stdout and 'Dense_0.bias     input' in out.stdout
  assert 'mup/depth=1: best rate' in out.stdout and 'ntk/depth=1: best rate' in out.stdout
  assert (workdir / 'flax_transfer.png').stat().st_size > 10_000
  assert (workdir / 'summary.json').exists()
