"""The CLI with a fault injected at an exact point (tests/resume_test.py runs it as a subprocess).

FAULT=KIND:N kills this process at the N-th occurrence of KIND, counted from 1 within this process:
  chunk        SIGKILL right after a chunk's metrics reach the host (before any checkpoint of that chunk)
  sigterm      SIGTERM to itself at the same point (the run should save a checkpoint and exit 143)
  metrics      SIGKILL in the middle of a metrics.csv write: half the rows, then half a line, are on disk
  commit       SIGKILL inside orbax's save, after the files are written, before the checkpoint is renamed into place
  integrity    SIGKILL after orbax committed a checkpoint, before its integrity record is written
"""
import os
import signal
import sys
import time

from orbax.checkpoint._src.path import atomicity

from superconsistency import __main__ as cli
from superconsistency import checkpoint
from superconsistency import distributed
from superconsistency import results

KIND, N = os.environ['FAULT'].split(':')
N = int(N)
_count = 0


def _due():
  global _count
  _count += 1
  return _count == N


def _die(sig=signal.SIGKILL):
  sys.stdout.flush()
  sys.stderr.flush()
  os.kill(os.getpid(), sig)


if KIND in ('chunk', 'sigterm'):
  _gather = distributed.gather

  def gather(tree):
    out = _gather(tree)
    if isinstance(out, dict) and 'train_loss' in out and _due():   # a chunk's (or the first) measurement
      _die(signal.SIGKILL if KIND == 'chunk' else signal.SIGTERM)
      if KIND == 'sigterm':
        time.sleep(1.0)   # joined processes: give JAX's preemption service time to agree on a step (loopback: ms)
    return out
  distributed.gather = gather
elif KIND == 'metrics':
  _write = results.MetricsWriter.write

  def write(self, rows):
    if self.path.endswith('metrics.csv') and _due():
      rows = list(rows)
      _write(self, rows[:len(rows) // 2])
      with open(self.path, 'a') as f:
        f.write('mup,16,3,sgd,sc,0.25,1.0')   # half a row
        f.flush()
        os.fsync(f.fileno())
      _die()
    return _write(self, rows)
  results.MetricsWriter.write = write
elif KIND == 'commit':
  _finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize(self, *args, **kwargs):
    if _due():
      _die()
    return await _finalize(self, *args, **kwargs)
  atomicity.AtomicRenameTemporaryPath.finalize = finalize
elif KIND == 'integrity':
  _digests = checkpoint._file_digests

  def digests(step_dir):
    if _due():
      _die()
    return _digests(step_dir)
  checkpoint._file_digests = digests
else:
  raise SystemExit(f'unknown FAULT kind {KIND!r}')

if __name__ == '__main__':
  sys.exit(cli.main())
