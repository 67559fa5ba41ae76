"""The benchmark scripts run end to end at tiny sizes and write their reports (slow: ~1 min)."""
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize('script,heading', [('sweep.py', 'Vmapped sweep vs sequential lanes'),
                                            ('spectra.py', 'Lanczos vs power iteration'),
                                            ('mesh.py', '8 simulated devices vs 1 device'),
                                            ('warm_start.py', 'HVPs (= Lanczos iterations) to reach λ_max'),
                                            ('figure1.py', 'Targets of the issue'),
                                            ('conv.py', 'layer formulations, vmapped or unrolled lanes'),
                                            ('retire.py', 'diverged lanes kept vs retired'),
                                            ('share.py', 'padding off vs on')])
def test_benchmark_quick_mode_writes_report(tmp_path, script, heading):
  out = tmp_path / 'report.md'
  proc = subprocess.run([sys.executable, f'benchmarks/{script}', '--quick', '--out', str(out)], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert heading in out.read_text()
