"""python -m superconsistency --config=configs/NAME.py --workdir=DIR [--config.a.b=value ...] [--overwrite]
       [--multihost [--coordinator=HOST:PORT --num_processes=N --process_id=I]]

A thin entry point: parse, validate, hand over to experiments.run. Bad input exits with code 2 and one line that
names the field, before anything is written. A run stopped by SIGTERM saves a checkpoint and exits 143; the same
command resumes it. A second run on a workdir that a live run holds is refused (exit 2).
"""
from __future__ import annotations

import glob
import os
import sys

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/NAME.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for config.json, metrics.csv, summary.json and plots.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a finished run in --workdir.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar over the compiled chunks.')
_MULTIHOST = flags.DEFINE_bool('multihost', False, 'Join the other processes of this run (jax.distributed): '
                               'auto-detected on a TPU pod or under SLURM, or given by --coordinator.')
_COORDINATOR = flags.DEFINE_string('coordinator', '', 'With --multihost: HOST:PORT of process 0 (local runs).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0, 'With --coordinator: how many processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1, "With --coordinator: this process's index.")
_COMPILE_CACHE = flags.DEFINE_bool('compile_cache', True, "Keep compiled programs in JAX's persistent cache, so a "
                                   'second run of the same programs skips compiling (--nocompile_cache: off).')
_COMPILE_CACHE_DIR = flags.DEFINE_string('compile_cache_dir', '', 'Directory of the compilation cache (default: '
                                         '$SUPERCONSISTENCY_CACHE or ~/.cache/superconsistency/jax).')


def _one_line(e):
  text = str(e.args[0]) if e.args else type(e).__name__
  text = text.replace('\\n', ' ').replace("\\'", "'")
  words = text.split()
  if words:
    words[0] = words[0].strip("'\"")
  return ' '.join(words)


def _fail(message):
  print(f'error: {message}', file=sys.stderr)
  return 2


def _config_files():
  """configs/*.py next to the package (a source checkout) or in the current directory, with their first line."""
  here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
  for folder in (here, 'configs'):
    paths = sorted(glob.glob(os.path.join(folder, '*.py')))
    if paths:
      out = []
      for path in paths:
        with open(path) as f:
          text = f.read()
        first = text.split('"""')[1].strip().splitlines()[0] if text.count('"""') >= 2 else ''
        out.append((os.path.relpath(path), first[:76] + ('…' if len(first) > 76 else '')))
      return out
  return []


def usage() -> str:
  lines = ['usage: ' + __doc__.strip(), '', 'Flags:']
  for flag in (_CONFIG, _WORKDIR, _OVERWRITE, _PROGRESS, _MULTIHOST, _COORDINATOR, _NUM_PROCESSES, _PROCESS_ID,
               _COMPILE_CACHE, _COMPILE_CACHE_DIR):
    lines.append(f'  --{flag.name}: {flags.FLAGS[flag.name].help}')
  lines += ['  --config.FIELD=VALUE: override one field of the config (an unknown field is an error)', '',
            'Configs (each docstring gives its command, runtime and expected result):']
  lines += [f'  {path:34s} {first}' for path, first in _config_files()] or ['  (no configs/ folder found)']
  return '\n'.join(lines)


def _unknown_override(argv):
  """The first `--config.a.b=...` whose field the config file lacks, as one line naming it and what the block has
  (None if all exist or the file cannot be loaded)."""
  from superconsistency import config as config_lib
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    return None
  path, _, arg = spec.partition(':')
  try:
    cfg = config_lib.from_file(path, arg)
  except Exception:   # noqa: BLE001 - the caller reports the parser's own message instead
    return None
  for a in argv:
    if not a.startswith('--config.'):
      continue
    block, parts = cfg, a[len('--config.'):].split('=', 1)[0].split('.')
    for i, part in enumerate(parts):
      if not hasattr(block, 'keys') or part not in block:
        where = '.'.join(parts[:i]) or 'the config'
        have = ', '.join(sorted(block.keys())) if hasattr(block, 'keys') else '(not a block)'
        named = f' of {block.name!r}' if hasattr(block, 'keys') and 'name' in block else ''
        return (f'--config.{".".join(parts[:i + 1])}: unknown field: {where}{named} has no field {part!r} '
                f'(it has: {have})')
      block = block[part]
  return None


def main(argv=None) -> int:
  argv = sys.argv if argv is None else argv
  if any(a in ('--help', '-h', '--helpfull', '-help') for a in argv[1:]):
    print(usage())
    return 0
  try:
    flags.FLAGS(argv)
    cfg = _CONFIG.value
    if cfg is None:
      return _fail('--config is required, e.g. --config=configs/quickstart.py')
    cfg.to_dict()   # the config file is loaded lazily: load it now so its errors surface here
  except flags.Error as e:   # unknown flag, unparsable value, or a config file whose get_config raised
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if 'Error whilst parsing config file' in lines[0] and len(lines) > 1:
      return _fail('--config: ' + lines[-1].split(': ', 1)[-1])   # the exception's own message, not the traceback
    return _fail(lines[0])
  except KeyError as e:      # unknown field in a locked config (a typo in --config.x=y)
    return _fail(_unknown_override(argv) or f'--config: unknown field {_one_line(e)}')
  except OSError as e:       # missing or broken config file
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return _fail(f'--config: could not load the config file: {lines[-1] if lines else e}')
  except (ValueError, AttributeError, TypeError) as e:   # e.g. a typo in --config.x=y on a locked config
    text = _one_line(e)
    if 'Did you mean' in text:
      text = 'unknown field ' + text
    return _fail(_unknown_override(argv) or f'--config: {text}')
  if not _WORKDIR.value:
    return _fail('--workdir is required, e.g. --workdir=runs/quickstart')
  from superconsistency import checkpoint
  checkpoint.sigterm.install()   # from here on, SIGTERM means "save and exit 143" (checked between chunks)
  from superconsistency import best_rate
  from superconsistency import compile_cache
  from superconsistency import config as config_lib
  from superconsistency import distributed
  from superconsistency import experiments
  from superconsistency import results
  if _COMPILE_CACHE.value:
    try:
      compile_cache.enable(_COMPILE_CACHE_DIR.value or None)
    except OSError as e:
      return _fail(f'--compile_cache_dir: cannot use {_COMPILE_CACHE_DIR.value or compile_cache.default_directory()} '
                   f'({e.strerror or e}); pass another directory or --nocompile_cache')
  if _COORDINATOR.value and not _MULTIHOST.value:
    return _fail('--coordinator needs --multihost')
  if _MULTIHOST.value:
    try:
      distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    except distributed.MeshError as e:
      return _fail(str(e))
  try:
    summary = experiments.run(cfg, _WORKDIR.value, overwrite=_OVERWRITE.value, progress=_PROGRESS.value)
  except (config_lib.ConfigError, results.WorkdirInUse) as e:
    return _fail(str(e))
  except checkpoint.Preempted as e:   # a checkpoint is on disk: not a failure, but not finished either
    checkpoint.note(str(e))
    return checkpoint.PREEMPTED_EXIT_CODE
  if not distributed.is_writer():
    return 0
  for name, t in summary.get('transfer', {}).items():
    print(best_rate.describe(name, t))
  print(f'wrote {_WORKDIR.value} in {summary["wall_time_s"]["total"]:.0f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
