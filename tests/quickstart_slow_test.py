"""The quickstart itself, unshrunk: its two claims must come out of a fresh run (slow: ~3 min on 2 cores)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import FAST_COMPILE, ROOT


@pytest.mark.slow
def test_quickstart_shows_mup_transfer_and_ntp_drift(tmp_path):
  workdir = tmp_path / 'quickstart'
  # at XLA's default optimization level, as a user runs it (the suite's level 0 rounds otherwise, and rounding
  # near the edge of stability moves the interpolated best rates by a few percent)
  env = dict(os.environ, XLA_FLAGS=' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                                            if f not in FAST_COMPILE.split()))
  proc = subprocess.run([sys.executable, '-m', 'superconsistency', '--config=configs/quickstart.py',
                         f'--workdir={workdir}', '--noprogress'], cwd=ROOT, capture_output=True, text=True, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(workdir / 'summary.json') as f:
    transfer = json.load(f)['transfer']
  # best_rate.classify, on 3 seeds: μP's drift interval inside the tolerance, NTP's wholly outside
  assert transfer['mup/depth=3']['verdict'] == 'transfers', transfer['mup/depth=3']['drift_interval_decades']
  assert transfer['ntk/depth=3']['verdict'] == 'shifts', transfer['ntk/depth=3']['drift_interval_decades']
  # the committed results are what this command produces
  with open(os.path.join(ROOT, 'results', 'quickstart', 'summary.json')) as f:
    committed = json.load(f)['transfer']
  for name in ('mup/depth=3', 'ntk/depth=3'):
    assert committed[name]['best_grid_lrs'] == transfer[name]['best_grid_lrs']
    assert committed[name]['best_lrs'] == pytest.approx(transfer[name]['best_lrs'], rel=1e-6)
    assert committed[name]['drift_interval_decades'] == pytest.approx(transfer[name]['drift_interval_decades'],
                                                                      abs=1e-6)
