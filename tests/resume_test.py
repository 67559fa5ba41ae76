"""Checkpoint and resume through the real CLI: runs killed at exact points (tests/faulty_run.py), stopped by
SIGTERM, resumed from a corrupted checkpoint or under a changed config. Every finished run's metrics.csv must be
byte-identical to an uninterrupted run's: no row lost, duplicated or reordered, the same numbers."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

# the quickstart, shrunk: 2 widths × 1 parameterization = 2 groups of 3 chunks; a checkpoint after every chunk
ARGS = ['--config=configs/quickstart.py', '--config.widths=(8,16)', '--config.parameterizations=("mup",)',
        '--config.sweep.lrs.mup=(0.25,1.0)', '--config.num_steps=9', '--config.measure_every=3',
        '--config.measure.loss_batch=64', '--config.measure.sharpness_batch=32', '--config.measure.num_iters=8',
        '--config.data.num_train=256', '--config.data.num_eval=64', '--config.data.batch_size=16',
        '--config.coord_check.enabled=False', '--config.checkpoint.every_steps=3', '--config.sweep.seeds=(0,)',
        '--config.sweep.extend_rounds=0', '--progress=false']


def _run(workdir, fault='', extra=(), timeout=300):
  env = dict(os.environ)
  if fault:
    env['FAULT'] = fault
  entry = [os.path.join(ROOT, 'tests', 'faulty_run.py')] if fault else ['-m', 'superconsistency']
  return subprocess.run([sys.executable, *entry, *ARGS, *extra, f'--workdir={workdir}'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _read(path):
  with open(path, 'rb') as f:
    return f.read()


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('reference') / 'w'
  r = _run(workdir)
  assert r.returncode == 0, r.stderr[-2000:]
  assert not os.path.exists(workdir / 'checkpoints')   # removed once the run is finished
  return _read(workdir / 'metrics.csv')


def test_killed_at_every_kind_of_moment_then_resumed_equals_uninterrupted(reference, tmp_path):
  workdir = tmp_path / 'w'
  # one run after another on the same workdir, each killed somewhere else; the last one finishes
  faults = ['chunk:3',       # after the 2nd chunk of group 1: resumes from the checkpoint after the 1st
            'commit:2',      # inside orbax's save of a checkpoint: it never appears
            'metrics:1',     # half of group 1's rows and half a line on disk
            'integrity:2',   # a committed checkpoint without its integrity record: skipped, with a message
            'chunk:2']
  messages = []
  for fault in faults:
    r = _run(workdir, fault)
    assert r.returncode == -9, (fault, r.returncode, r.stderr[-2000:])
    messages.append(r.stderr)
  assert not os.path.exists(workdir / 'summary.json')
  r = _run(workdir)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'resuming' in r.stderr
  assert _read(workdir / 'metrics.csv') == reference
  text = '\n'.join(messages)
  assert 'resuming' in text and 'no integrity record' in text and 'falling back to checkpoint' in text


def test_sigterm_saves_and_exits_143_then_a_changed_config_is_refused_and_the_same_one_resumes(reference, tmp_path):
  workdir = tmp_path / 'w'
  r = _run(workdir, 'sigterm:3', ['--config.checkpoint.every_steps=0'])   # no interval checkpoints: SIGTERM's own
  assert r.returncode == 143, r.stderr[-2000:]
  assert 'SIGTERM: saved a checkpoint' in r.stderr and 'rerun the same command to resume' in r.stderr
  assert 'Traceback' not in r.stderr
  steps = os.listdir(workdir / 'checkpoints')
  assert steps == ['2'], steps   # group 0 after 2 chunks
  # a changed config is refused, naming the fields, and touches nothing
  before = {p: _read(workdir / p) for p in ('metrics.csv', 'config.json')}
  r = _run(workdir, extra=['--config.sweep.lrs.mup=(0.5,1.0)', '--config.data.batch_size=32'])
  assert r.returncode == 2
  line = r.stderr.strip().splitlines()[-1]
  assert 'sweep.lrs.mup' in line and 'data.batch_size' in line and '--overwrite' in line, line
  assert {p: _read(workdir / p) for p in before} == before
  assert os.listdir(workdir / 'checkpoints') == ['2']
  # how often to save is not what is computed: a changed interval resumes (from SIGTERM's checkpoint)
  r = _run(workdir, extra=['--config.checkpoint.every_steps=6'])
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'resuming' in r.stderr and '2 of its 3 chunks done' in r.stderr
  assert _read(workdir / 'metrics.csv') == reference


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(reference, tmp_path):
  workdir = tmp_path / 'w'
  r = _run(workdir, 'sigterm:6')   # a checkpoint after every chunk, keep=2: checkpoints 5 and 6 remain
  assert r.returncode == 143, r.stderr[-2000:]
  latest = workdir / 'checkpoints' / max(os.listdir(workdir / 'checkpoints'), key=int)
  data_files = sorted((p for p in (latest / 'state').rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  victim = data_files[-1]
  with open(victim, 'r+b') as f:   # truncated, as by a full disk or a copy cut short
    f.truncate(victim.stat().st_size // 2)
  r = _run(workdir)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f'checkpoint {latest} is corrupt' in r.stderr and 'falling back to checkpoint' in r.stderr
  assert _read(workdir / 'metrics.csv') == reference


@pytest.mark.slow
def test_sigkill_at_random_moments_until_finished(tmp_path):
  """SIGKILL after a random 2-10 s, again and again, on the same workdir, until a run finishes (~1 min)."""
  import random
  import signal
  longer = ['--config.num_steps=300']   # 2 groups of 100 chunks, a checkpoint after each: killed many times
  r = _run(tmp_path / 'reference', extra=longer)
  assert r.returncode == 0, r.stderr[-2000:]
  rng = random.Random(0)
  workdir = tmp_path / 'w'
  kills = 0
  for _ in range(40):
    proc = subprocess.Popen([sys.executable, '-m', 'superconsistency', *ARGS, *longer, f'--workdir={workdir}'],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
      proc.wait(timeout=rng.uniform(2.0, 10.0))
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
      proc.communicate()
      kills += 1
      if (workdir / 'summary.json').exists():   # killed after it finished (while removing its checkpoints)
        break
      continue
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    break
  assert (workdir / 'summary.json').exists()
  assert kills >= 2, kills
  assert _read(workdir / 'metrics.csv') == _read(tmp_path / 'reference' / 'metrics.csv')


EXTEND = ['--config.sweep.extend_rounds=3', '--config.sweep.extend_points=1']


@pytest.fixture(scope='module')
def extended(reference, tmp_path_factory):
  """The same sweep with grid extension: μP's best rate sits on the top of (0.25, 1.0) after 9 steps."""
  workdir = tmp_path_factory.mktemp('extended') / 'w'
  r = _run(workdir, extra=EXTEND)
  assert r.returncode == 0, r.stderr[-2000:]
  return workdir, r.stderr


def test_grid_extension_appends_rounds_after_the_unchanged_sweep(reference, extended):
  import json
  workdir, stderr = extended
  metrics = _read(workdir / 'metrics.csv')
  assert metrics.startswith(reference) and len(metrics) > len(reference)   # the sweep's rows untouched, first
  with open(workdir / 'grid_extensions.json') as f:
    rounds = json.load(f)['rounds']
  # each round continues the grid's end ratio (×4) while the top is censored; here the second round's rate
  # bounds the optimum (it is worse, or diverged), so no third round runs
  assert [r['rates'] for r in rounds] == [{'mup': [4.0]}, {'mup': [16.0]}]
  assert all(r['done'] and r['added']['mup']['censored'] == ['above'] for r in rounds)
  assert 'grid extension round 1: mup: best rate censored above, adding 4' in stderr
  with open(workdir / 'summary.json') as f:
    summary = json.load(f)
  assert [r['round'] for r in summary['grid_extensions']] == [1, 2]
  t = summary['transfer']['mup/depth=3']
  assert t['lr_grid'] == [0.25, 1.0, 4.0, 16.0] and t['censored'] == [None, None]
  assert {p['grid_extension_round'] for p in summary['programs'] if 'grid_extension_round' in p} == {1, 2}


@pytest.mark.slow
def test_killed_inside_grid_extension_rounds_then_resumed_equals_uninterrupted(extended, tmp_path):
  """Killed in round 1, in the middle of round 2's rows, then in round 2 again: finished rounds are kept, the
  interrupted one is redone, and metrics.csv and grid_extensions.json equal the uninterrupted run's."""
  reference_dir, _ = extended
  workdir = tmp_path / 'w'
  # 8 measurements (2 groups × (1 + 3 chunks)) in the sweep, 8 more per round. Run 1 dies in round 1; run 2
  # resumes after the sweep, redoes round 1 (metrics writes 1, 2) and dies writing round 2's rows (write 3); run 3
  # keeps round 1 and dies in round 2's 4th measurement
  for fault in ('chunk:10', 'metrics:3', 'chunk:4'):
    r = _run(workdir, fault, extra=EXTEND)
    assert r.returncode == -9, (fault, r.returncode, r.stderr[-2000:])
  r = _run(workdir, extra=EXTEND)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'round 1' not in r.stderr and 'grid extension round 2' in r.stderr   # round 1 finished before: kept
  assert _read(workdir / 'metrics.csv') == _read(reference_dir / 'metrics.csv')
  assert _read(workdir / 'grid_extensions.json') == _read(reference_dir / 'grid_extensions.json')
