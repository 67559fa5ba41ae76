"""[G]'s scalar chain toy model: the η_max formula against the Hessian, GD's stability edge against the formula, and
the experiment through the real CLI."""
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from conftest import ROOT
from superconsistency import toy_chain


@pytest.mark.parametrize('depth,gamma', [(1, 0.3), (2, 0.01), (2, 50.0), (3, 1.0), (4, 1e3)])
def test_eta_max_formula_is_two_over_hessian_top_eigenvalue(depth, gamma):
  with jax.enable_x64(True):
    w_star = np.full(depth, (1.0 + gamma) ** (1.0 / depth))   # balanced minimum: ∏w = 1 + γ
    hessian = np.asarray(jax.hessian(toy_chain.chain_loss)(w_star, depth, gamma), np.float64)
  eigs = np.linalg.eigvalsh(hessian)
  assert abs(eigs[:-1]).max(initial=0.0) < 1e-9 * eigs[-1]   # rank one at a zero-residual minimum
  assert 2.0 / eigs[-1] == pytest.approx(toy_chain.eta_max_exact(depth, gamma), rel=1e-10)


@pytest.mark.parametrize('depth,gamma', [(2, 0.1), (4, 100.0)])
def test_gd_stability_edge_matches_formula(depth, gamma):
  """The largest lattice η at which GD from w = 1 converges is within one lattice step (plus the finite-run band)
  below the exact η_max, and nothing above the exact η_max converges."""
  tc = ConfigDict(dict(etas_per_decade=200, eta_window_decades=(-0.3, 0.45)))
  etas = toy_chain.eta_lattice(depth, gamma, tc)
  num_steps, tol = 3000, 1e-12
  final, bad, _ = toy_chain.simulate(np.full(len(etas), depth), np.full(len(etas), gamma), etas, num_steps)
  converged = ~bad & (final < tol)
  exact = toy_chain.eta_max_exact(depth, gamma)
  step = 10 ** (1 / tc.etas_per_decade)
  delta_t = math.log(0.5 / tol) / (4 * num_steps)
  edge = etas[converged].max()
  assert exact * (1 - delta_t) / step < edge <= exact
  assert converged[etas <= edge].all() and not converged[etas > exact].any()
  assert bad[etas > 2.5 * exact].all()   # far above the edge GD blows up


SHRINK = ['--config.toy_chain.gammas_per_decade=1', '--config.toy_chain.etas_per_decade=20',
          '--config.toy_chain.num_steps=500', '--config.toy_chain.small_gamma_max=1.0',
          '--config.toy_chain.large_gamma_min=10.0', '--noprogress']


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'superconsistency', '--config=configs/toy_chain.py', *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_run_writes_files_and_analyze_reads_them(tmp_path):
  workdir = str(tmp_path / 'toy')
  proc = _cli(f'--workdir={workdir}', *SHRINK)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'wrote {workdir}' in proc.stdout
  for name in ('config.json', 'toy_chain.csv', 'summary.json', 'analysis_toy_chain.png'):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['wall_time_s']['total'] > 0
  os.remove(os.path.join(workdir, 'analysis_toy_chain.png'))
  numbers = toy_chain.analyze(workdir)
  assert os.path.exists(os.path.join(workdir, 'analysis_toy_chain.png'))
  for depth in (2, 3, 4):
    for regime in ('small_gamma', 'large_gamma'):
      fit = numbers['slopes'][str(depth)][regime]
      assert math.isfinite(fit['slope']) and all(math.isfinite(c) for c in fit['ci95']), (depth, regime, fit)
  assert numbers['slopes'] == summary['slopes']   # analyze reads the files only: same numbers as the run
  json.dumps(numbers)


def test_bad_field_exits_2_naming_it_and_leaves_no_workdir(tmp_path):
  workdir = str(tmp_path / 'never')
  proc = _cli(f'--workdir={workdir}', '--config.toy_chain.etas_per_decade=0', '--noprogress')
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'toy_chain.etas_per_decade' in errors[0], proc.stderr
  assert not os.path.exists(workdir)
