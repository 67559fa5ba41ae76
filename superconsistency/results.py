"""The one writer of a run's workdir, and the readers that plots and summaries use.

workdir/
  config.json        the resolved config
  metrics.csv        tidy: one row per lane per measured step (columns(...): lane, metrics, divergence)
  coord_check.csv    per parameterization, optimizer, layer and width: RMS of activations and of their change
  summary.json       per parameterization/width/depth: best learning rate (best_rate.py) and the run's times
                     (written last: a run with summary.json is finished)
  *.png              plots, redrawn from these files by `python -m superconsistency.plot WORKDIR`

A finished workdir kept in the repository (the results gallery) stores a CSV over COMPACT_BYTES as NAME.xz
(`compact`); `read_csv` and `csv_path` read either form, so every reader works on both.
"""
from __future__ import annotations

import csv
import fcntl
import lzma
import json
import math
import os
import socket
import tempfile
import time

import numpy as np

# depth: the configured value (config.depths); depth_L: the L that the parameterization's depth rules use
# (residual blocks of a resnet, BN blocks of a bn_mlp, weight layers of an mlp)
META_COLUMNS = ('parameterization', 'width', 'depth', 'depth_L', 'optimizer', 'lr_convention', 'lr', 'gamma0', 'seed',
                'step')
TAIL_COLUMNS = ('lr_sharpness_threshold', 'diverged', 'diverged_step')
DENSITY_COLUMNS = META_COLUMNS + ('eigenvalue', 'density')


def columns(metric_columns) -> tuple:
  """metrics.csv columns: lane identity, the measured metrics (which depend on the config), divergence."""
  extra = ('adam_sharpness_threshold',) if 'adam_sharpness' in metric_columns else ()
  return META_COLUMNS + tuple(metric_columns) + TAIL_COLUMNS + extra

INT_COLUMNS = ('width', 'depth', 'depth_L', 'seed', 'step', 'diverged', 'diverged_step')
STR_COLUMNS = ('parameterization', 'optimizer', 'lr_convention')


def atomic_write(path: str, text: str | bytes) -> None:
  """Writes via a temporary file and a rename, so a reader never sees half a file."""
  d = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=d, prefix='.tmp_')
  with os.fdopen(fd, 'wb' if isinstance(text, bytes) else 'w') as f:
    f.write(text)
  os.chmod(tmp, 0o644)
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + '\n')


def json_safe(x):
  """JSON has no nan/inf: write them as null (inf penalties are spelled out where they matter)."""
  if isinstance(x, dict):
    return {k: json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_safe(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None if math.isnan(x) else ('inf' if x > 0 else '-inf')
  return x


def _json_default(x):
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  if isinstance(x, (tuple, np.ndarray)):
    return list(x)
  raise TypeError(f'cannot write {type(x)} to json')


def start_workdir(workdir: str, outputs, resolved_config: dict) -> None:
  """Creates the workdir, removes a previous run's outputs (names or glob patterns), so a rerun replaces it
  entirely, and writes config.json with the versions that ran."""
  import jax
  os.makedirs(workdir, exist_ok=True)
  remove_outputs(workdir, outputs)
  resolved = dict(resolved_config)
  resolved.setdefault('_versions', dict(jax=jax.__version__, backend=jax.default_backend(),
                                        devices=jax.device_count()))
  write_json(os.path.join(workdir, 'config.json'), resolved)


def remove_outputs(workdir: str, patterns) -> None:
  """Removes the files of `workdir` that match any of the names or glob patterns."""
  import glob
  for pattern in patterns:
    for path in glob.glob(os.path.join(workdir, pattern)):
      os.remove(path)


class MetricsWriter:
  """Appends rows to workdir/metrics.csv with a fixed column order; the header is written once. Keys of a row
  that are not columns are ignored."""

  def __init__(self, workdir: str, columns, name='metrics.csv'):
    self.path = os.path.join(workdir, name)
    self.columns = columns
    if not os.path.exists(self.path):
      atomic_write(self.path, ','.join(columns) + '\n')

  def write(self, rows) -> None:
    with open(self.path, 'a', newline='') as f:
      w = csv.DictWriter(f, fieldnames=self.columns, lineterminator='\n', extrasaction='ignore')
      for row in rows:
        w.writerow({k: _fmt(row[k]) for k in self.columns})
      f.flush()
      os.fsync(f.fileno())


def _fmt(v):
  if isinstance(v, (float, np.floating)):
    return 'nan' if math.isnan(v) else repr(float(v))
  return v


COMPACT_BYTES = 2 * 1024 * 1024


def csv_path(path: str) -> str:
  """`path` (a str or os.PathLike), or its compacted form PATH.xz when only that exists."""
  path = os.fspath(path)
  return path + '.xz' if not os.path.exists(path) and os.path.exists(path + '.xz') else path


def compact(workdir: str, limit: int = COMPACT_BYTES) -> list[str]:
  """xz-compresses every *.csv in `workdir` larger than `limit` bytes into NAME.xz (written to a temporary file
  first) and removes the plain file. Returns the names compacted. For finished workdirs that are committed."""
  done = []
  for name in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, name)
    if name.endswith('.csv') and os.path.getsize(path) > limit:
      with open(path, 'rb') as src, lzma.open(path + '.xz.tmp', 'wb', preset=9) as dst:
        dst.write(src.read())
      os.replace(path + '.xz.tmp', path + '.xz')
      os.remove(path)
      done.append(name)
  return done


def read_csv(path: str) -> list[dict]:
  """Rows with numeric columns parsed (ints as int, everything else numeric as float); PATH.xz is read when only
  that exists (`compact`)."""
  path = csv_path(path)
  with (lzma.open(path, 'rt', newline='') if path.endswith('.xz') else open(path, newline='')) as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    for k, v in r.items():
      if k in STR_COLUMNS or k in ('layer', 'kind'):
        continue
      try:
        r[k] = int(v) if k in INT_COLUMNS else float(v)
      except ValueError:
        pass
  return rows


def finished_workdirs(argv, prog: str, description: str):
  """The WORKDIR arguments of a command that reads finished runs (analyze, plot), or None after printing one line
  to stderr (no workdir, an unknown option, or a workdir without summary.json): the caller exits 2. --help prints
  the usage and exits 0."""
  import argparse
  import sys
  parser = argparse.ArgumentParser(prog=prog, description=description)
  parser.add_argument('workdirs', nargs='*', metavar='WORKDIR', help='a finished run (it has summary.json)')
  args, unknown = parser.parse_known_args(argv[1:])
  if unknown or not args.workdirs:
    print(f'usage: {prog} WORKDIR [WORKDIR ...]' + (f' (unknown option {unknown[0]})' if unknown else ''),
          file=sys.stderr)
    return None
  for workdir in args.workdirs:
    if not os.path.exists(os.path.join(workdir, 'summary.json')):
      print(f'error: {workdir} has no summary.json (not a finished run); run the experiment first', file=sys.stderr)
      return None
  return args.workdirs


# ------------------------------------------------------------------------------------------------ one writer
LOCK_NAME = '.lock'


class WorkdirInUse(ValueError):
  """Another live process holds the workdir. str() is one line naming the holder."""

  def __init__(self, message):
    super().__init__(f'config.workdir: {message}')
    self.field, self.message = 'workdir', message


class WorkdirLock:
  """An exclusive advisory lock (flock) on WORKDIR/.lock, held while a run writes the workdir, so that a second run
  started on it (a requeued job while the old one still runs, a command typed twice) is refused. The kernel drops
  the lock when its process dies, so a run killed by SIGKILL leaves nothing that blocks its resume. flock needs a
  filesystem that supports it across hosts for multi-host runs (NFSv4, Lustre and GCS FUSE do; see docs/scale.md)."""

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, LOCK_NAME)
    self._file = open(self.path, 'a+')
    try:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      self._file.seek(0)
      holder = self._file.read().strip() or 'another process'
      self._file.close()
      raise WorkdirInUse(f'{workdir} is in use by a live run ({holder}); wait for it to finish or stop it, or '
                         'choose another workdir') from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f'pid {os.getpid()} on {socket.gethostname()} since {time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    self._file.flush()

  def release(self) -> None:
    if not self._file.closed:
      self._file.close()   # closing the descriptor drops the flock

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()
