"""Checkpoints of a running sweep (orbax) in workdir/checkpoints, and what resuming from them needs.

A checkpoint holds everything the rest of the run depends on, so a resumed run computes the same numbers:
  state   every lane's LaneState (parameters, optimizer state, initial parameters, data key, step, divergence step,
          the loss accumulators and the power-iteration vector) and the group's measurements so far. The data
          stream is a pure function of (data key, step), so the step is the stream's position.
  meta    which (parameterization, depth, width) group and how many of its chunks are done, and the byte length of
          every CSV at that moment: resuming truncates them there, so rows written after the checkpoint (perhaps
          half a row, if the kill came mid-write) are written again exactly once.

orbax writes a checkpoint into a temporary directory and renames it when complete, so a kill during a save leaves
the previous checkpoints intact. On top of that, process 0 records the size and SHA-256 of every file of a finished
checkpoint (integrity.json); a checkpoint whose files do not match, or that fails to restore, is set aside in
checkpoints_unusable/ with a message, and the previous one is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys

from superconsistency import distributed

DIRNAME = 'checkpoints'
INTEGRITY = 'integrity.json'
PREEMPTED_EXIT_CODE = 143        # 128 + SIGTERM: "stopped by the scheduler; rerun the same command to resume"
RESUME_INDEPENDENT = ('checkpoint', 'mesh', '_versions')   # how a run is saved and laid out, not what it computes


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved. str() says where and how to resume."""


def note(message: str) -> None:
  if distributed.is_writer():
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ config changes
def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    else:
      out[key] = v
  return out


def config_differences(saved: dict, now: dict) -> list[tuple]:
  """(dotted name, saved value, new value) of every field that differs (a field only one side has counts), except
  RESUME_INDEPENDENT; values as short JSON."""
  normal = lambda d: _flatten(json.loads(json.dumps(d, sort_keys=True, default=str)))   # tuples == lists
  a, b = normal(saved), normal(now)
  show = lambda d, k: json.dumps(d[k])[:60] if k in d else '<absent>'
  return [(k, show(a, k), show(b, k)) for k in sorted(set(a) | set(b))
          if a.get(k, '<absent>') != b.get(k, '<absent>') and k.split('.')[0] not in RESUME_INDEPENDENT]


# ------------------------------------------------------------------------------------------------ SIGTERM
class SigtermFlag:
  """Turns SIGTERM into a flag that the sweep checks between chunks (a chunk in flight is finished, then saved).
  The CLI installs it first thing, so a SIGTERM during start-up or compilation is not lost either."""

  def __init__(self):
    self.received = False

  def install(self) -> None:
    def handler(signum, frame):
      del signum, frame
      self.received = True
    signal.signal(signal.SIGTERM, handler)


sigterm = SigtermFlag()


# ------------------------------------------------------------------------------------------------ the checkpoints
def _file_digests(step_dir: str) -> dict:
  digests = {}
  for root, _, files in os.walk(step_dir):
    for name in sorted(files):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel == INTEGRITY:
        continue
      h = hashlib.sha256()
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          h.update(block)
      digests[rel] = [os.path.getsize(path), h.hexdigest()]
  return digests


def integrity_problem(step_dir: str) -> str | None:
  """None if every file recorded at save time is there with its size and hash; else what is wrong."""
  record = os.path.join(step_dir, INTEGRITY)
  if not os.path.exists(record):
    return 'it has no integrity record (the run was stopped while saving it)'
  try:
    with open(record) as f:
      expected = json.load(f)
  except (OSError, ValueError):
    return f'its {INTEGRITY} is unreadable'
  found = _file_digests(step_dir)
  for rel, (size, digest) in sorted(expected.items()):
    if rel not in found:
      return f'file {rel} is missing'
    if found[rel][0] != size:
      return f'file {rel} has {found[rel][0]} bytes, {size} were written'
    if found[rel][1] != digest:
      return f'file {rel} does not match its checksum'
  return None


class Checkpointer:
  """orbax CheckpointManager over workdir/checkpoints, keeping the last `keep`, saving synchronously."""

  def __init__(self, workdir: str, keep: int):
    # orbax (and the tensorstore it loads, ~0.7 s) only once a run checkpoints: a refused or bad-input command,
    # which imports this module for its SIGTERM flag, answers without it
    import orbax.checkpoint as ocp
    self.ocp = ocp
    self.directory = os.path.abspath(os.path.join(workdir, DIRNAME))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=('meta', 'state'))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, meta: dict, state=None) -> None:
    """Collective: every process calls it with its shards. Returns once the checkpoint is complete on disk."""
    ocp = self.ocp
    items = dict(meta=ocp.args.JsonSave(meta))
    if state is not None:
      items['state'] = ocp.args.StandardSave(state)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    self.manager.wait_until_finished()
    if distributed.is_writer():   # the checkpoint is final (renamed into place); record what it holds
      step_dir = os.path.join(self.directory, str(step))
      from superconsistency import results
      results.atomic_write(os.path.join(step_dir, INTEGRITY), json.dumps(_file_digests(step_dir), indent=0))
    distributed.barrier(f'checkpoint-{step}')

  def restore_latest(self, abstract_state_for):
    """(step, meta, state) from the newest checkpoint that is intact, or None. `abstract_state_for(meta)` gives
    the restore target (shapes, dtypes, shardings), or None for a checkpoint without lane state."""
    ocp = self.ocp
    steps = self.steps()
    skipped = []
    for i, step in enumerate(reversed(steps)):
      step_dir = os.path.join(self.directory, str(step))
      problem = distributed.agree_with_writer(integrity_problem(step_dir) or '') or None
      if problem is None:
        try:
          meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
          target = abstract_state_for(meta)
          state = None
          if target is not None:
            state = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))['state']
          self._set_aside(skipped)   # later saves reuse their step numbers
          return step, meta, state
        except Exception as e:   # noqa: BLE001 - any failure to read it makes it unusable; say which and go on
          problem = f'it could not be restored ({type(e).__name__}: {str(e).splitlines()[0][:200]})'
      older = steps[len(steps) - i - 2] if i + 1 < len(steps) else None
      note(f'checkpoint {step_dir} is corrupt: {problem}; it is moved to {self.aside_directory}/; ' +
           (f'falling back to checkpoint {older}' if older is not None else 'no older checkpoint: starting over'))
      skipped.append(step)
    self._set_aside(skipped)
    return None

  @property
  def aside_directory(self) -> str:
    return self.directory + '_unusable'

  def _set_aside(self, steps) -> None:
    """Moves unusable checkpoints out of orbax's sight (nothing is deleted: a restore can also fail for reasons
    that are not the checkpoint's fault), so that later saves can reuse their step numbers."""
    if distributed.is_writer():
      for step in steps:
        target = os.path.join(self.aside_directory, str(step))
        if os.path.exists(target):
          shutil.rmtree(target)
        os.makedirs(self.aside_directory, exist_ok=True)
        os.replace(os.path.join(self.directory, str(step)), target)
    distributed.barrier('set-aside')
    if steps:
      self.manager.reload()

  def remove(self) -> None:
    self.manager.close()
    if distributed.is_writer():
      shutil.rmtree(self.directory, ignore_errors=True)
      shutil.rmtree(self.aside_directory, ignore_errors=True)

  def close(self) -> None:
    self.manager.close()
