"""JAX's persistent compilation cache, on by default for the command line: a second run of the same programs (the
same config, a resumed run, the test suite's repeated shrunk runs) loads its executables from disk instead of
compiling them again. The cache is keyed by the program, the XLA flags and the JAX version, so a stale entry is
never used; deleting the directory is always safe."""
from __future__ import annotations

import os

import jax
import jax.monitoring


# JAX's monitoring events for compiles that consult the cache, and for those it answered: counted for the whole
# process, so that a run's summary.json can say how many of its programs were loaded instead of compiled
_EVENTS = {'/jax/compilation_cache/compile_requests_use_cache': 'requests',
           '/jax/compilation_cache/cache_hits': 'hits'}
_COUNTS = dict.fromkeys(_EVENTS.values(), 0)


def _count(event: str, **_):
  # JAX announces a cache request for every compile while no directory is set too (and then finds nothing)
  if event in _EVENTS and jax.config.jax_compilation_cache_dir:
    _COUNTS[_EVENTS[event]] += 1


jax.monitoring.register_event_listener(_count)


def counts() -> dict:
  """{'requests': compiles that consulted the cache, 'hits': those loaded from it} so far in this process."""
  return dict(_COUNTS)


def counts_since(before: dict) -> dict:
  return {k: v - before[k] for k, v in counts().items()}


def user_cache_directory(name: str) -> str:
  """$XDG_CACHE_HOME/superconsistency/NAME, else ~/.cache/superconsistency/NAME: where the project's caches live."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'superconsistency', name)


def default_directory() -> str:
  """$SUPERCONSISTENCY_CACHE, else $XDG_CACHE_HOME/superconsistency/jax, else ~/.cache/superconsistency/jax."""
  return os.environ.get('SUPERCONSISTENCY_CACHE') or user_cache_directory('jax')


def enable(directory: str | None = None) -> str:
  """Turns the cache on for this process (every program, however fast it compiled), in `directory`."""
  directory = directory or default_directory()
  os.makedirs(directory, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return directory
