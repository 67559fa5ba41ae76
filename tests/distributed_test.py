"""Many devices and many processes give the numbers one device gives.

- 8 simulated CPU devices (a subprocess with --xla_force_host_platform_device_count=8), lanes over `sweep` and
  each lane's batch over `data`, 9 lanes padded to 12: equal to the 1-device run to float tolerance.
- Stopped on 1 device, resumed on 8 (another lane padding): equal to float tolerance.
- 2 processes on loopback (launch/local.sh: jax.distributed with gloo, a free port, a timeout), 2 devices each:
  equal to the 1-device run; process 0 alone writes.
- The same 2 processes stopped by SIGTERM (JAX's preemption service picks the step both save), then resumed:
  byte-identical to their uninterrupted run.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from superconsistency import results

# the quickstart shrunk to one group of 9 lanes (3 rates × 3 seeds), 6 chunks
ARGS = ['--config=configs/quickstart.py', '--config.widths=(16,)', '--config.parameterizations=("mup",)',
        '--config.sweep.lrs.mup=(0.25,0.5,1.0)', '--config.sweep.seeds=(0,1,2)', '--config.num_steps=18',
        '--config.measure_every=3', '--config.measure.loss_batch=64', '--config.measure.sharpness_batch=32',
        '--config.measure.num_iters=8', '--config.data.num_train=256', '--config.data.num_eval=64',
        '--config.data.batch_size=16', '--config.coord_check.enabled=False', '--config.sweep.extend_rounds=0', '--progress=false']
COMPARED = ('train_loss', 'batch_loss', 'eval_loss', 'eval_accuracy', 'sharpness', 'feature_movement')


def _cli(workdir, extra=(), devices=1, fault=''):
  env = dict(os.environ)
  if devices > 1:
    env['XLA_FLAGS'] = env.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={devices}'
  if fault:
    env['FAULT'] = fault
  entry = [os.path.join(ROOT, 'tests', 'faulty_run.py')] if fault else ['-m', 'superconsistency']
  return subprocess.run([sys.executable, *entry, *ARGS, *extra, f'--workdir={workdir}'], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


def _local(workdir, extra=(), python=None, timeout=240):
  env = dict(os.environ, KILL_GRACE_SECONDS='5')
  if python:
    env['PYTHON'] = python
  cmd = ['bash', 'launch/local.sh', '--num_processes', '2', '--devices_per_process', '2', '--timeout', str(timeout),
         '--', *ARGS, *extra, f'--workdir={workdir}']
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 60)


def _assert_close(a_path, b_path):
  a, b = results.read_csv(a_path), results.read_csv(b_path)
  assert len(a) == len(b) == 9 * 7
  for ra, rb in zip(a, b):
    assert (ra['lr'], ra['seed'], ra['step']) == (rb['lr'], rb['seed'], rb['step'])
    for k in COMPARED:
      np.testing.assert_allclose(rb[k], ra[k], rtol=1e-4, atol=1e-6, err_msg=f'{k} lr={ra["lr"]} step={ra["step"]}')


@pytest.fixture(scope='module')
def one_device(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('one') / 'w'
  r = _cli(workdir)
  assert r.returncode == 0, r.stderr[-2000:]
  return workdir / 'metrics.csv'


def test_eight_devices_sweep_and_data_axes_equal_one_device(one_device, tmp_path):
  r = _cli(tmp_path / 'w', ['--config.mesh.sweep=4', '--config.mesh.data=2'], devices=8)
  assert r.returncode == 0, r.stderr[-2000:]
  _assert_close(one_device, tmp_path / 'w' / 'metrics.csv')
  import json
  assert json.loads((tmp_path / 'w' / 'config.json').read_text())['_versions']['devices'] == 8


def test_stopped_on_one_device_resumes_on_eight(one_device, tmp_path):
  """A preempted job may come back on other hardware: 9 lanes saved unpadded on 1 device continue padded to 12 on
  a 4 × 2 mesh (the checkpoint is restored to the host and re-padded), to the same numbers within float tolerance."""
  workdir = tmp_path / 'w'
  r = _cli(workdir, fault='sigterm:3')
  assert r.returncode == 143, r.stderr[-2000:]
  r = _cli(workdir, ['--config.mesh.sweep=4', '--config.mesh.data=2'], devices=8)
  assert r.returncode == 0, r.stderr[-2000:]
  assert '2 of its 6 chunks done' in r.stderr
  _assert_close(one_device, workdir / 'metrics.csv')


def test_mesh_that_does_not_fit_the_devices_is_one_line_exit_2(tmp_path):
  r = _cli(tmp_path / 'w', ['--config.mesh.sweep=3', '--config.mesh.data=1'], devices=8)
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1].startswith('error: config.mesh: sweep=3 × data=1 does not fit the 8')
  assert not (tmp_path / 'w').exists()


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('two') / 'w'
  r = _local(workdir, ['--config.mesh.sweep=4'])
  assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
  return workdir, r


def test_two_processes_on_loopback_equal_one_process(one_device, two_processes):
  workdir, r = two_processes
  _assert_close(one_device, workdir / 'metrics.csv')
  assert f'[p0] wrote {workdir}' in r.stdout and '[p1] wrote' not in r.stdout   # process 0 alone reports/writes
  assert not (workdir / 'checkpoints').exists()


def test_two_processes_stopped_by_sigterm_resume_to_the_same_bytes(two_processes, tmp_path):
  reference, _ = two_processes
  fault = tmp_path / 'python'   # local.sh runs "$PYTHON -m superconsistency ...": run the fault-injecting entry
  fault.write_text(f'#!/bin/sh\nshift 2\nexec {sys.executable} {ROOT}/tests/faulty_run.py "$@"\n')
  fault.chmod(0o755)
  workdir = tmp_path / 'w'
  env_fault = os.environ.get('FAULT')
  # each process sends itself SIGTERM after the first measurement; JAX's preemption service then picks a later
  # step that both reach (it needs a few chunks to agree), and both save it
  os.environ['FAULT'] = 'sigterm:1'
  try:
    r = _local(workdir, ['--config.mesh.sweep=4'], python=str(fault))
  finally:
    os.environ.pop('FAULT') if env_fault is None else os.environ.__setitem__('FAULT', env_fault)
  assert r.returncode == 143, (r.stdout[-2000:], r.stderr[-3000:])
  assert 'SIGTERM: saved a checkpoint' in r.stderr
  assert len(os.listdir(workdir / 'checkpoints')) == 1
  r = _local(workdir, ['--config.mesh.sweep=4'])
  assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
  assert 'resuming' in r.stderr
  with open(workdir / 'metrics.csv', 'rb') as a, open(reference / 'metrics.csv', 'rb') as b:
    assert a.read() == b.read()
