"""One writer per workdir: a second run on a workdir that a live run holds is refused with one line (exit 2) and
touches nothing; once the first run is killed (SIGKILL leaves its lock file behind), the workdir can be taken again."""
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT
from resume_test import ARGS
from superconsistency import results

LONG = ['--config.num_steps=3000', '--config.checkpoint.every_steps=300']   # minutes of chunks: still running


def _cli(workdir, *extra):
  return [sys.executable, '-m', 'superconsistency', *ARGS, *extra, f'--workdir={workdir}']


def test_second_run_is_refused_while_the_first_lives_and_allowed_once_it_is_killed(tmp_path):
  workdir = tmp_path / 'w'
  first = subprocess.Popen(_cli(workdir, *LONG), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    lock = workdir / results.LOCK_NAME
    deadline = time.time() + 240
    while not (lock.exists() and f'pid {first.pid} ' in lock.read_text() and (workdir / 'metrics.csv').exists()):
      assert first.poll() is None, first.stderr.read().decode()[-2000:]
      assert time.time() < deadline, 'the first run never took the workdir'
      time.sleep(0.5)
    before = sorted(os.listdir(workdir))
    second = subprocess.run(_cli(workdir, *LONG), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and 'in use by a live run' in lines[0] and f'pid {first.pid}' in lines[0], second.stderr
    assert first.poll() is None   # the first run goes on, its files untouched by the refused one
    assert sorted(os.listdir(workdir)) == before
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert (workdir / results.LOCK_NAME).exists()   # the killed run's lock file stays, but its lock died with it
  # a shorter run (--overwrite, since the config differs) takes the workdir at once
  third = subprocess.run(_cli(workdir, '--overwrite'), cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert third.returncode == 0, third.stderr[-2000:]
  assert (workdir / 'summary.json').exists()


def test_the_lock_is_released_when_a_run_ends_in_the_same_process(tmp_path):
  with results.WorkdirLock(str(tmp_path)):
    try:
      results.WorkdirLock(str(tmp_path))
      raise AssertionError('a second lock on a held workdir was granted')
    except results.WorkdirInUse as e:
      assert f'pid {os.getpid()}' in str(e)
  results.WorkdirLock(str(tmp_path)).release()   # free again
