"""Devices and hosts: the (sweep, data) device mesh, multi-host start-up, and moving arrays on and off it.

JAX is the distributed engine. Every process runs the same program (multi-controller); a sweep's lanes are
spread over the mesh's `sweep` axis and each lane's batch over its `data` axis, and XLA inserts the collectives.
On one process nothing here changes a computation: the mesh is 1×1 and arrays stay where they are.

Multi-host: `initialize` calls `jax.distributed.initialize()`, which finds its peers itself on a TPU pod or under
SLURM, or takes an explicit coordinator (local multi-process runs, tests). Every process builds the same dataset
from the same config and feeds its own devices from it (`put_replicated`, `put_lanes`): no host sends data to
another. Results are gathered to every process (`gather`) and written by process 0 only (`is_writer`).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

AXES = ('sweep', 'data')


class MeshError(ValueError):
  pass


_joined = False   # jax.distributed is up: preemption notices come from its service, not from a Python handler


def initialize(coordinator: str = '', num_processes: int = 0, process_id: int = -1) -> None:
  """Joins the processes of one run. No arguments: auto-detect (TPU pod, SLURM); else an explicit coordinator."""
  global _joined
  if coordinator:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise MeshError(f'--coordinator needs --num_processes >= 1 and 0 <= --process_id < num_processes '
                      f'(got {num_processes}, {process_id})')
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
                               initialization_timeout=300)
  else:
    jax.distributed.initialize()
  _joined = True


def is_writer() -> bool:
  """Only process 0 writes results (metrics, summaries, plots); checkpoints are written by all, collectively."""
  return jax.process_index() == 0


def make_mesh(mesh_cfg) -> jax.sharding.Mesh:
  """A (sweep, data) mesh over all devices of all processes. 0 for one axis means "all devices the other leaves".

  `jax.sharding.Mesh` (Auto axes), not `jax.make_mesh`, whose Explicit axes a scan inside vmap cannot take.
  """
  n = jax.device_count()
  sweep, data = int(mesh_cfg.sweep), int(mesh_cfg.data)
  if sweep == 0 and data == 0:
    raise MeshError('config.mesh: sweep and data cannot both be 0 (0 means "the devices the other axis leaves")')
  if sweep == 0:
    sweep = n // data if data and n % data == 0 else -1
  if data == 0:
    data = n // sweep if sweep > 0 and n % sweep == 0 else -1
  if sweep < 1 or data < 1 or sweep * data != n:
    raise MeshError(f'config.mesh: sweep={mesh_cfg.sweep} × data={mesh_cfg.data} does not fit the {n} devices '
                    f'of this run; choose sizes whose product is {n} (0 for one axis takes what the other leaves)')
  # process-major device order: a host's devices sit together, so the sweep axis splits lanes between hosts and
  # the data axis (the one with per-step collectives) stays inside a host where it can
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return jax.sharding.Mesh(np.array(devices).reshape(sweep, data), AXES)


def lane_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P('sweep'))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def padded_lanes(num_lanes: int, mesh) -> int:
  """Lanes after padding to a multiple of the sweep axis (padding lanes repeat the last lane and are dropped)."""
  s = mesh.shape['sweep']
  return -(-num_lanes // s) * s


def put_lanes(tree, mesh):
  """Host arrays with a leading lane axis -> global arrays sharded over `sweep`; each process fills its shards."""
  sharding = lane_sharding(mesh)
  return jax.tree.map(lambda a: _from_host(np.asarray(a), sharding), tree)


def put_replicated(tree, mesh):
  """Host or device arrays -> global arrays replicated on every device; each process fills its own devices.
  Arrays already placed so are returned as they are (no round trip through the host)."""
  sharding = replicated(mesh)
  placed = lambda a: isinstance(a, jax.Array) and a.sharding == sharding
  return jax.tree.map(lambda a: a if placed(a) else _from_host(np.asarray(a), sharding), tree)


def _from_host(a: np.ndarray, sharding):
  if jax.process_count() == 1:
    return jax.device_put(a, sharding)
  return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def gather(tree):
  """Global arrays -> numpy on every process (an all-gather across hosts; a plain copy on one)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def preempted(step_id: int, sigterm_received: bool) -> bool:
  """Whether to save and stop now. Alone: whether SIGTERM arrived. Joined: jax.distributed's preemption service
  catches SIGTERM on any host and picks a step all hosts reach (`reached_preemption_sync_point`), so every host
  saves the same step. `step_id` must grow by one per call."""
  if _joined:
    return bool(multihost_utils.reached_preemption_sync_point(step_id))
  return bool(sigterm_received)


def on_writer(check):
  """Runs `check()` on process 0 only (it reads or prepares the shared workdir) and returns, on every process, the
  ValueError it raised there as {'type', 'field', 'message'} (None if none), so that no process is left waiting at
  a barrier and every process can raise the same typed error (runner.raise_writer_error)."""
  import json
  text = ''
  if is_writer():
    try:
      check()
    except ValueError as e:
      text = json.dumps(dict(type=type(e).__name__, field=getattr(e, 'field', ''),
                             message=getattr(e, 'message', str(e))))
  text = agree_with_writer(text)
  return json.loads(text) if text else None


def agree_with_writer(value):
  """Process 0's value (a number, bool or str) on every process: a decision that reads the clock or the shared
  filesystem is taken once."""
  if jax.process_count() == 1:
    return value
  if isinstance(value, str):
    size = 4096
    buf = np.frombuffer(value.encode()[:size].ljust(size, b'\0'), np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))).rstrip(b'\0').decode(errors='replace')
  return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value))).item()


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
