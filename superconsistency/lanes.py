"""A sweep's lanes as compiled programs: how lanes and steps become a program (`ProgramChoice`), the compiled
`Sweep` of one (parameterization, depth, width) group over a device mesh, and `run_sweep`, which trains it chunk
by chunk and retires lanes that stop mattering (train.py holds the single lane's program that these batch).

Lanes are spread over the `sweep` axis of a device mesh and padded to a multiple of it (`compile_sweep`). A lane's
numbers are reproducible bit for bit for a fixed mesh, program choice and batch; on another mesh, another choice or
after a re-pack they agree to float rounding, because XLA compiles another program with other rounding. Lanes at
the edge of stability amplify that rounding over many steps (benchmarks/mesh.md: up to 0.2 in loss after 60 steps
at the three largest rates of a 64-lane sweep; < 5e-7 elsewhere).
"""
from __future__ import annotations

import collections
import hashlib
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import best_rate
from superconsistency import distributed
from superconsistency import flops as flops_lib
from superconsistency import measurements as measurements_lib
from superconsistency.train import LaneHparams, LaneProgram, make_lane_program, with_multipliers


class CompiledOnce:
  """A jitted function compiled ahead of its first call (`lower(...).compile()`), so that its compile time is
  measured apart from its run time: `trace_seconds` to trace and lower it, `seconds` for XLA to compile it (or to
  load it from the persistent cache). `flops` counts one call's matrix FLOPs (flops.py), `flops_skipped` one that
  skips the program's skippable part (a chunk's steps), `calls` the calls so far. `jitted` is the function itself
  (for jax.eval_shape)."""

  def __init__(self, jitted):
    self.jitted, self.compiled, self.seconds, self.trace_seconds = jitted, None, 0.0, 0.0
    self.flops = self.flops_skipped = flops_lib.Count(0.0, True)
    self.calls = 0
    self.shared = False   # its executable was compiled for an earlier program of the same text (_EXECUTABLES)

  def __call__(self, *args):
    if self.compiled is None:
      start = time.perf_counter()
      traced = self.jitted.trace(*args)
      lowered = traced.lower()
      self.flops, self.flops_skipped = flops_lib.count(traced.jaxpr), flops_lib.count(traced.jaxpr, skipped=True)
      # the text leaves out the arguments the program does not read, which a call still checks: their types too
      key = (hashlib.sha256(lowered.as_text().encode()).hexdigest(), str(lowered.in_tree), str(lowered.out_tree),
             str(traced.in_avals), str([getattr(a, 'sharding', None) for a in jax.tree.leaves(args)]))
      done_tracing = time.perf_counter()
      self.compiled = _EXECUTABLES.get(key)
      self.shared = self.compiled is not None
      if self.shared:
        _EXECUTABLES.move_to_end(key)
      else:
        self.compiled = _EXECUTABLES[key] = lowered.compile()
        while len(_EXECUTABLES) > SHARED_EXECUTABLES:
          _EXECUTABLES.popitem(last=False)
      self.trace_seconds, self.seconds = done_tracing - start, time.perf_counter() - done_tracing
    self.calls += 1
    return self.compiled(*args)


# The executables of this process's recent programs, by the program's text and its arguments' structure, types and
# shardings: a program that lowers to the same text for the same arguments calls the earlier one's executable
# instead of compiling it again. The lane programs take the parameterization's numbers as inputs
# (train.LaneHparams.multipliers), so μP and NTP at one width share all their programs. A figure1 run has 6 groups
# of 4 programs; the oldest are dropped first.
SHARED_EXECUTABLES = 32
_EXECUTABLES = collections.OrderedDict()


class HostLanes:
  """A single-lane CompiledOnce called for each lane of lane-leading arguments in turn (`in_axes`: 0 for an
  argument with a lane axis, None for one shared by the lanes); the outputs are stacked along a lane axis.
  `jitted` is the vmapped function, for jax.eval_shape."""

  def __init__(self, compiled: CompiledOnce, batched, in_axes):
    self.compiled, self.jitted, self.in_axes = compiled, batched, in_axes

  def __call__(self, *args):
    return host_stack([self.compiled(*lane_args) for lane_args in host_unstack(args, self.in_axes)])

  def __getattr__(self, name):   # flops, calls, seconds, trace_seconds: the single-lane program's
    return getattr(self.compiled, name)


class PlanInputs(NamedTuple):
  """What LaneProgram.plan reads of a lane's state."""
  data_key: jax.Array
  step: jax.Array


def _planned_step(program: LaneProgram):
  """One optimizer step that reads its batch from row t of the chunk's data plan (program.plan)."""
  return lambda state, hp, arrays, plan, t: program.step(state, hp, arrays, jax.tree.map(lambda p: p[t], plan))


def stack_lanes(outs):
  """Per-lane outputs (a list of trees) as one tree with a leading lane axis."""
  return jax.tree.map(lambda *vs: jnp.stack(vs), *outs)


def host_stack(outs):
  """stack_lanes for outputs of separate calls, stacked in host memory and put back on the default device: no
  program to compile (on XLA:CPU, jnp.stack and indexing compile a small program per shape, ~0.5 s per sweep)."""
  return jax.device_put(jax.tree.map(lambda *vs: np.stack([np.asarray(v) for v in vs]), *outs))


def host_unstack(args, in_axes):
  """unstack_lanes outside a trace: each lane's slices cut in host memory and put on the default device (no
  program to compile)."""
  args = tuple(jax.tree.map(np.asarray, a) if ax == 0 else a for a, ax in zip(args, in_axes))
  return [tuple(jax.device_put(a) if ax == 0 else a for a, ax in zip(lane_args, in_axes))
          for lane_args in unstack_lanes(args, in_axes)]


def unstack_lanes(args, in_axes):
  """Per lane, the arguments with that lane's slice of every lane-leading one."""
  num = jax.tree.leaves([a for a, ax in zip(args, in_axes) if ax == 0])[0].shape[0]
  return [tuple(jax.tree.map(lambda v: v[i], a) if ax == 0 else a for a, ax in zip(args, in_axes))
          for i in range(num)]


PROGRAM_LANES = ('auto', 'vmap', 'unroll', 'map', 'host')
PROGRAM_STEPS = ('auto', 'scan', 'host')


class ProgramChoice(NamedTuple):
  """How a sweep's lanes and steps become one compiled program (config block `program`, 'auto' resolved).

  lanes  'vmap': the lanes' arithmetic is batched (one matmul over all lanes); 'unroll': each lane's operations
         are written out separately in the same program (one device holds all lanes); 'map': one lane's program
         in a device loop over the lanes (lax.map): plain matmuls like 'unroll', compiled once like 'vmap' (on
         XLA:CPU a batched matmul of a wide MLP runs ~1.2× slower than the same matmuls one by one,
         benchmarks/sweep.md); 'host': one lane's programs, compiled once and called for each lane in turn from
         the host: the smallest programs to compile, no recompiling when lanes retire, and each call's buffers
         reused while they are still in the CPU's caches
  steps  'scan': a chunk's optimizer steps loop inside the program; 'host': one compiled optimizer step is
         dispatched per step (asynchronously: no host sync inside a chunk), and the measurement's solver loops
         are unrolled, so that the program has no device loop around the model
  microbatches  the training batch is split into this many equal micro-batches, whose gradients a device loop
         sums (train.make_lane_program): the same step to float rounding, with activations small enough to stay
         in the CPU's caches
  lane_group  with lanes='vmap', the programs are vmapped over groups of this many lanes in a device loop over
         the groups (lax.map's batch_size) instead of over all lanes at once, so that each group's working set
         stays in the CPU's caches (choose_lane_group); 0, or a batch of lanes no larger: all lanes at once. The
         same numbers per lane, to float rounding.
  """
  lanes: str
  steps: str
  why: str
  microbatches: int = 1
  lane_group: int = 0


# 'auto' micro-batches keep a model's working set per micro-batch (its largest activation plus its largest
# convolution's patch matrix, working_set_bytes) under this size: on this project's 2-core CPU (2 × 1 MiB L2,
# 32 MiB shared L3) the SimpleConvNet's step at width 256 runs ~3× faster in micro-batches of 8 than over the whole
# batch of 128, whose 33 MB activations stream through memory (benchmarks/conv.md). Counting the patches matters
# at small widths, where they outweigh the activation: at width 16 the step ran 4.87 ms whole, 3.19 ms in 2
# micro-batches and 3.30 ms in 4; at width 32, 9.78 / 4.58 / 4.55 / 4.90 ms in 1 / 2 / 4 / 8; at width 64,
# 5.81 / 4.83 / 5.87 ms in 2 / 4 / 8 (medians of 9 interleaved rounds of 32 steps, 2026-12-03); this limit picks
# 2, 4, 4 and 16 (width 256).
MICROBATCH_BYTES = 3 * 2 ** 20


def model_primitives(model, data) -> set:
  """The names of the primitives in the model's forward pass (its jaxpr, loop and branch bodies included), so any
  model is covered without declaring anything."""
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  x = jax.ShapeDtypeStruct((1,) + data.arrays['eval_x'].shape[1:], data.arrays['eval_x'].dtype)
  jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, 1.0))(params, x)
  names = set()

  def walk(jpr):
    for eqn in jpr.eqns:
      names.add(eqn.primitive.name)
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(jaxpr.jaxpr)
  return names


def uses_convolutions(model, data) -> bool:
  return 'conv_general_dilated' in model_primitives(model, data)


def working_set_bytes(model, data) -> int:
  """Bytes per example of what a training step holds at its largest layer: the model's largest reported
  activation (its input included) plus the largest patch matrix of its convolutions (output positions × kh·kw·cin,
  what the slicing matmul builds; an activation reported under a 4-d weight's name is that convolution's output)."""
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  x = jax.ShapeDtypeStruct((1,) + data.arrays['eval_x'].shape[1:], data.arrays['eval_x'].dtype)
  _, acts = jax.eval_shape(lambda p, x: model.apply(p, x, 1.0, with_activations=True), params, x)
  largest = max(math.prod(a.shape) * a.dtype.itemsize for a in list(acts.values()) + [x])
  patches = [math.prod(a.shape[1:-1]) * math.prod(params[n].shape[:-1]) * a.dtype.itemsize
             for n, a in acts.items() if n in params and params[n].ndim == 4 and a.ndim == 4]
  return largest + max(patches, default=0)


def choose_microbatches(model, data, cfg, conv_on_cpu: bool) -> tuple:
  """(micro-batches, why) for program.microbatches. 0 ('auto') splits the batch only for a convolutional model
  without loops of its own on CPU whose examples are independent (Model.per_example): the fewest equal
  micro-batches that keep its working set per micro-batch (working_set_bytes) under MICROBATCH_BYTES. On GPU and
  TPU, and for other models, auto is 1 (a number given in the config applies anywhere the model allows it)."""
  batch, asked = cfg.data.batch_size, cfg.program.microbatches
  if asked:
    if asked > 1 and not model.per_example:
      raise ValueError(f'program.microbatches={asked}: this model ({cfg.model.name}) does not declare that its '
                       'examples are independent (batch statistics would change with the split); use '
                       'program.microbatches=1')
    return asked, 'set in the config'
  if not (conv_on_cpu and model.per_example):
    return 1, 'auto'
  count = microbatches_for(batch, working_set_bytes(model, data))
  return count, f'auto: working set of {batch} examples over {MICROBATCH_BYTES // 2 ** 20} MiB'


def microbatches_for(batch: int, bytes_per_example: int) -> int:
  """The fewest equal micro-batches of `batch` whose working sets (bytes_per_example each) fit MICROBATCH_BYTES."""
  need = max(math.ceil(batch * bytes_per_example / MICROBATCH_BYTES), 1)
  return next(m for m in range(need, batch + 1) if batch % m == 0)


# auto lane groups keep the Krylov bases of one group of vmapped lanes under this size (half this machine's 32 MiB
# L3): at width 256 a 16-lane MLP sweep's Lanczos bases (11 × 78,336 floats per lane) take 55 MB; vmapped over all
# 16 lanes it ran at 0.95× the lanes' speed one by one, in groups of 4 at 1.04×; at width 64 (321 kB per lane) all
# 16 at once was fastest (benchmarks/sweep.md)
LANE_GROUP_BYTES = 16 * 2 ** 20


def choose_lane_group(model, cfg, on_cpu: bool, one_device: bool) -> int:
  """Lanes per vmapped group: on one CPU device, as many lanes as keep their Lanczos bases ((measure.num_iters
  + 1) vectors of the model's size each, the largest per-lane buffers of a chunk) within LANE_GROUP_BYTES, at
  least 1; 0 (all lanes at once) on GPU/TPU or a sharded sweep axis, where vmapping the whole batch is right."""
  if not (on_cpu and one_device):
    return 0
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  bytes_per_lane = (cfg.measure.num_iters + 1) * sum(math.prod(w.shape) * w.dtype.itemsize
                                                     for w in jax.tree.leaves(params))
  return int(max(LANE_GROUP_BYTES // bytes_per_lane, 1))


def group_size(lanes: int, group: int) -> int | None:
  """Lanes per group for a batch of `lanes` under ProgramChoice.lane_group = `group`: the largest divisor of
  `lanes` not above `group` (equal groups: lax.map with a remainder would trace and compile the program twice);
  None when every lane fits one group."""
  if lanes <= group:
    return None
  return next(size for size in range(group, 0, -1) if lanes % size == 0)


def lanes_per_group(lanes: int, group: int) -> int:
  """What a batch of `lanes` runs as under ProgramChoice.lane_group = `group`: lanes per group, 0 for all at once
  (what summary.json records)."""
  return (group_size(lanes, group) or 0) if group else 0


def choose_program(model, data, cfg, mesh) -> ProgramChoice:
  """'auto': on CPU, a convolutional model without loops of its own runs one lane's programs, compiled once and
  called lane by lane from the host, with its steps dispatched from the host, because XLA:CPU runs convolutions
  inside a device loop, and batched (grouped) convolutions, many times slower than plain ones
  (benchmarks/conv.md); unrolling the lanes in one program ran as fast but compiled ~4× longer (docs/design.md).
  A model that loops over its blocks (resnet's lax.scan) keeps vmap + scan: its convolutions sit in that loop
  either way, and unrolling its lanes multiplies a large program's compile time (configs/depth_resnet.py, 40 steps:
  compile 176 s, run 151 s against vmap + scan's). Everything else is vmapped and scanned. The micro-batches:
  choose_microbatches."""
  lanes, steps = cfg.program.lanes, cfg.program.steps
  on_cpu = jax.default_backend() == 'cpu'
  primitives = model_primitives(model, data) if on_cpu else set()
  conv_on_cpu = 'conv_general_dilated' in primitives and not primitives & {'scan', 'while'}
  one_device = mesh is None or mesh.shape['sweep'] == 1
  why = 'set in the config'
  if lanes == 'auto':
    lanes = 'host' if conv_on_cpu and one_device else 'vmap'
    why = 'auto: convolutions on CPU' if conv_on_cpu else 'auto'
  if steps == 'auto':
    steps = 'host' if conv_on_cpu else 'scan'
    why = 'auto: convolutions on CPU' if conv_on_cpu else 'auto'
  if lanes in ('unroll', 'map', 'host') and not one_device:
    raise ValueError(f"program.lanes='{lanes}' keeps every lane on one device, but the mesh's sweep axis has "
                     f"{mesh.shape['sweep']} devices; use program.lanes='vmap' or mesh.sweep=1")
  microbatches, why_micro = choose_microbatches(model, data, cfg, conv_on_cpu)
  if microbatches > 1 and why_micro != why:
    why = f'{why}; microbatches {why_micro}'
  group = choose_lane_group(model, cfg, on_cpu, one_device) if lanes == 'vmap' else 0
  return ProgramChoice(lanes, steps, why, microbatches, group)


def batch_lanes(f, how: str, in_axes=0, group: int = 0):
  """`f` over a leading lane axis: jax.vmap (lanes sharded over the mesh's `sweep` axis; with `group` > 0,
  vmapped over groups of that many lanes in a device loop over the groups), each lane's computation written out in
  turn and the results stacked ('unroll'), or one lane's computation in a loop over the lanes ('map')."""
  if how == 'vmap' and not group:
    # spmd_axis_name: sharding constraints inside a lane (the batch over `data`) keep the lane axis on `sweep`
    return jax.vmap(f, in_axes=in_axes, spmd_axis_name='sweep')

  def over_lanes(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    if how == 'unroll':
      return stack_lanes([f(*lane_args) for lane_args in unstack_lanes(args, axes)])
    per_lane = [a for a, ax in zip(args, axes) if ax == 0]
    size = group_size(jax.tree.leaves(per_lane)[0].shape[0], group) if how == 'vmap' else 1
    if size is None:   # every lane fits one group: plain vmap
      return jax.vmap(f, in_axes=in_axes, spmd_axis_name='sweep')(*args)

    def one(lane_args):   # f of one lane: its slices of the batched arguments, the shared ones as they are
      it = iter(lane_args)
      return f(*[next(it) if ax == 0 else a for a, ax in zip(args, axes)])
    return jax.lax.map(one, per_lane, batch_size=size if size > 1 else None)
  return over_lanes


def shared_plans(plan, state, arrays, distinct: int):
  """Every lane's data plan (`plan(state, arrays)` of one lane, stacked along the lane axis), computed once per
  distinct (data key, step) among the lanes. A lane's data key comes from its seed alone and lanes step in
  lockstep, so the lanes of one seed shuffle alike; in epoch mode the shuffle is a sort per epoch that XLA:CPU runs
  slowly (a 16-lane width-64 MLP chunk of 25 steps spent 20 of its 44 ms sorting). The plans are computed
  `distinct` (static: the sweep's seeds) at a time in a device loop that runs once in a sweep, and more often only
  for a batch with more distinct lanes than that; either way each lane gets exactly its own plan."""
  num_lanes = state.step.shape[0]
  if distinct >= num_lanes:
    return jax.vmap(plan, in_axes=(0, None))(state, arrays)
  key = state.data_key
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  key_LxK = key.reshape(num_lanes, -1)
  alike_LxL = jnp.all(key_LxK[:, None] == key_LxK[None], axis=-1) & (state.step[:, None] == state.step[None])
  first_L = jnp.argmax(alike_LxL, axis=1)            # the first lane that shuffles as lane l does: its leader
  leads_L = first_L == jnp.arange(num_lanes)
  rounds = -(-num_lanes // distinct)
  leaders_R = jnp.nonzero(leads_L, size=rounds * distinct, fill_value=0)[0]   # the leaders first, in lane order
  slot_L = (jnp.cumsum(leads_L) - 1)[first_L]        # lane l's leader's row in leaders_R

  def plans_of(i):   # the plans of leaders i·distinct … (i+1)·distinct − 1
    idx = jax.lax.dynamic_slice_in_dim(leaders_R, i * distinct, distinct)
    # of the leaders' states only data_key and step survive dead-code elimination
    return jax.vmap(plan, in_axes=(0, None))(jax.tree.map(lambda a: a[idx], state), arrays)

  shapes = jax.eval_shape(plans_of, 0)
  plans_R = jax.tree.map(lambda a: jnp.zeros((rounds * distinct,) + a.shape[1:], a.dtype), shapes)
  plans_R = jax.lax.fori_loop(
      0, -(-jnp.sum(leads_L) // distinct),
      lambda i, acc: jax.tree.map(lambda a, p: jax.lax.dynamic_update_slice_in_dim(a, p, i * distinct, 0),
                                  acc, plans_of(i)), plans_R)
  return jax.tree.map(lambda p: p[slot_L], plans_R)


def batched_chunk(program: LaneProgram, how: str, group: int, distinct: int):
  """The chunk of a batch of lanes, (state, hp, arrays, measurement_index=0, steps_on=True) -> (state, metrics):
  their data plans by shared_plans, then measure_every steps (skipped where steps_on is False: the step-0
  measurement) and the measurement of each lane, batched by batch_lanes."""
  chunk = batch_lanes(program.chunk_from_plan, how, (0, 0, None, None, 0, None), group)

  def lanes_chunk(state, hp, arrays, measurement_index=0, steps_on=True):
    return chunk(state, hp, arrays, measurement_index, shared_plans(program.plan, state, arrays, distinct),
                 steps_on)
  return lanes_chunk


def distinct_shuffles(hp: LaneHparams) -> int:
  """How many different data plans the lanes of `hp` (host arrays) can have at once: one per seed."""
  return len(np.unique(np.asarray(hp.seed)))


def lane_budgets(cfg, hp: LaneHparams, parameterization: str) -> np.ndarray:
  """Each lane's step budget (sweep.lane_steps): every lane num_steps, or ('select_step') the lanes at the
  trajectory rate (the grid rate nearest plot.trajectory_lrs, as plot.py picks it) num_steps and the others
  select_step, where the sweep reads them."""
  lrs = np.asarray(hp.lr, np.float64)
  budget = np.full(lrs.shape, cfg.num_steps, np.int64)
  if cfg.sweep.lane_steps == 'select_step' and cfg.select_step:
    trajectory = best_rate.nearest_on_grid(cfg.sweep.lrs[parameterization], cfg.plot.trajectory_lrs[parameterization])
    budget[~np.isclose(lrs, trajectory, rtol=1e-6)] = cfg.select_step
  return budget


def lane_buckets(padded: int, per_device: int) -> tuple:
  """The batch sizes a shrinking sweep re-packs to: ¾, ½ and ¼ of the full size, then halvings below that (each
  rounded up to a multiple of the sweep axis). A re-pack happens only when a quarter of the batch or more has
  retired, and each size is one compiled program (built when first needed)."""
  up = lambda n: max(-(-n // per_device) * per_device, per_device)
  sizes = {padded} | {up(-(-padded * k // 4)) for k in (1, 2, 3)}
  n = up(-(-padded // 4))
  while n > per_device:
    n = up(n // 2)
    sizes.add(n)
  return tuple(sorted(s for s in sizes if s <= padded))


class Retired(NamedTuple):
  """Where retiring has left a sweep (checkpointed with it): the lanes of the running batch in order (None: all,
  unpacked) and every lane's divergence step so far (−1: none seen)."""
  live: list | None
  diverged_step: list


class LaneSteps(NamedTuple):
  """Optimizer steps the sweep's programs ran, summed over the lanes of their batches (padding included), and
  those that retiring lanes saved (against every padded lane running every chunk)."""
  run: int
  saved: int


class Sweep:
  """A sweep's compiled programs over a mesh, its inputs on the devices, and its lanes. Lanes are padded to a
  multiple of the mesh's `sweep` axis by repeating the last lane; `num_lanes` are real. Programs are compiled per
  batch size (a sweep whose lanes retire runs smaller batches, `lane_buckets`)."""

  def __init__(self, program: LaneProgram, cfg, hp_host: LaneHparams, mesh, arrays, choice: ProgramChoice,
               num_lanes: int):
    self.cfg, self.mesh, self.choice, self.num_lanes = cfg, mesh, choice, num_lanes
    self.num_chunks = cfg.num_steps // cfg.measure_every
    self.hp_host = hp_host
    self.hp = distributed.put_lanes(hp_host, mesh)
    self.arrays = arrays
    padded = int(hp_host.lr.shape[0])
    # host lanes: one lane's programs serve any number of lanes, so every size is a bucket (no padded lanes run)
    self.buckets = (tuple(range(1, padded + 1)) if choice.lanes == 'host'
                    else lane_buckets(padded, mesh.shape['sweep']))
    self.lane_steps_run = 0
    self.skipped_calls = 0   # chunk calls that skipped their steps (first_measurement)
    self.step_seconds = self.measure_seconds = 0.0   # host lanes only: where their chunks' time went
    self._compiled = {}
    if choice.lanes == 'host':
      self._host_lanes(program)
      return
    lanes, rep = distributed.lane_sharding(mesh), distributed.replicated(mesh)
    batch = lambda f, in_axes=0: batch_lanes(f, choice.lanes, in_axes, choice.lane_group)
    # the measurement index is not batched, so "every k-th measurement" stays a real branch under vmap
    self._jitted = dict(
        init=jax.jit(batch(program.init), in_shardings=lanes, out_shardings=lanes),
        measure=jax.jit(batch(program.measure, (0, 0, None, None)), in_shardings=(lanes, lanes, rep, rep),
                        out_shardings=lanes))
    distinct = distinct_shuffles(hp_host)
    if choice.steps == 'scan':
      self._jitted['chunk'] = jax.jit(batched_chunk(program, choice.lanes, choice.lane_group, distinct),
                                      in_shardings=(lanes, lanes, rep, rep, rep), out_shardings=lanes,
                                      donate_argnums=0)
    else:   # a chunk's data plan is computed once (the epoch's shuffle), each step takes its row t
      self._jitted['plan'] = jax.jit(lambda state, arrays: shared_plans(program.plan, state, arrays, distinct),
                                     in_shardings=(lanes, rep), out_shardings=lanes)
      self._jitted['step'] = jax.jit(batch(_planned_step(program), (0, 0, None, 0, None)),
                                     in_shardings=(lanes, lanes, rep, lanes, rep), out_shardings=lanes,
                                     donate_argnums=0)

  def _host_lanes(self, program: LaneProgram):
    """lanes='host': each program is compiled for one lane (the mesh has one device, choose_program checks)."""
    axes = dict(init=(0,), measure=(0, 0, None, None), chunk=(0, 0, None, None), plan=(0, None),
                step=(0, 0, None, 0, None))
    fns = dict(init=program.init, measure=program.measure)
    if self.choice.steps == 'scan':
      fns['chunk'] = program.chunk
    else:
      fns['plan'], fns['step'] = program.plan, _planned_step(program)
    self._single = {name: CompiledOnce(jax.jit(f, donate_argnums=0 if name in ('chunk', 'step') else ()))
                    for name, f in fns.items()}
    self._jitted = {name: jax.vmap(f, in_axes=axes[name]) for name, f in fns.items()}
    self._axes = axes

  def program(self, name: str, lanes: int | None = None):
    """Program `name` (init, measure, chunk or step) for a batch of `lanes` (default: all)."""
    if self.choice.lanes == 'host':
      return HostLanes(self._single[name], self._jitted[name], self._axes[name])
    key = (name, lanes or int(self.hp.lr.shape[0]))
    if key not in self._compiled:
      self._compiled[key] = CompiledOnce(self._jitted[name])
    return self._compiled[key]

  @property
  def init(self) -> CompiledOnce:
    return self.program('init')

  @property
  def measure(self) -> CompiledOnce:
    return self.program('measure')

  @property
  def chunk(self) -> CompiledOnce:
    return self.program('chunk' if self.choice.steps == 'scan' else 'step')

  def _measures_in_chunk(self) -> bool:
    """Whether the step-0 measurement is the chunk program with its steps skipped (batched lanes with scanned
    steps), rather than a program of its own: the measurement, the larger part of a chunk to compile, is then
    compiled once (the quickstart's measure program took 2.1–3.5 s to compile of a group's ~8.5 s)."""
    return self.choice.steps == 'scan' and self.choice.lanes != 'host'

  def first_measurement(self, state):
    """(state, metrics) of the step-0 measurement of the full batch."""
    if self._measures_in_chunk():
      self.skipped_calls += 1
      return self.program('chunk')(state, self.hp, self.arrays, 0, False)
    return self.measure(state, self.hp, self.arrays, 0)

  def run_chunk(self, state, hp, index):
    """measure_every optimizer steps of the lanes in `hp`, then their measurement."""
    lanes = int(hp.lr.shape[0])
    self.lane_steps_run += lanes * self.cfg.measure_every
    if self.choice.lanes == 'host':   # lane by lane: each runs its whole chunk while its buffers are warm
      name = 'chunk' if self.choice.steps == 'scan' else 'step'
      run, measure = self._single[name], self._single['measure']
      outs = []
      for s, h in host_unstack((state, hp), (0, 0)):
        if name == 'chunk':
          outs.append(run(s, h, self.arrays, index))
          continue
        # the steps' and the measurement's time, apart and without compiling (waiting for each costs nothing
        # here: the lane's next call needs the previous one's result, and XLA:CPU runs one call at a time)
        start, compiled = time.perf_counter(), self._compiling_seconds()
        # the plan reads only the data key and the step: given those alone, its program is the same for every
        # group (every width), so later groups share the first's executable (CompiledOnce)
        plan = self._single['plan'](PlanInputs(s.data_key, s.step), self.arrays)
        for t in range(self.cfg.measure_every):
          s = run(s, h, self.arrays, plan, t)
        jax.block_until_ready(s)
        stepped, compiled_steps = time.perf_counter(), self._compiling_seconds()
        outs.append(jax.block_until_ready(measure(s, h, self.arrays, index)))
        self.step_seconds += stepped - start - (compiled_steps - compiled)
        self.measure_seconds += time.perf_counter() - stepped - (self._compiling_seconds() - compiled_steps)
      return host_stack(outs)
    if self.choice.steps == 'scan':
      return self.program('chunk', lanes)(state, hp, self.arrays, index, True)   # batched lanes: steps_on
    step, plan = self.program('step', lanes), self.program('plan', lanes)(state, self.arrays)
    for t in range(self.cfg.measure_every):
      state = step(state, hp, self.arrays, plan, t)
    return self.program('measure', lanes)(state, hp, self.arrays, index)

  @property
  def lane_group(self) -> int:
    """Lanes per vmapped group of the full batch (0: all at once; see ProgramChoice)."""
    return lanes_per_group(int(self.hp.lr.shape[0]), self.choice.lane_group)

  def lane_steps(self) -> LaneSteps:
    full = int(self.hp.lr.shape[0]) * self.cfg.num_steps
    return LaneSteps(self.lane_steps_run, max(full - self.lane_steps_run, 0))

  def _programs(self):
    return list(self._single.values()) if self.choice.lanes == 'host' else list(self._compiled.values())

  def compile_seconds(self) -> tuple:
    """(tracing and lowering, XLA compiling) seconds of its programs so far; a persistent-cache hit removes most of
    the second, never the first (tracing runs in Python every time)."""
    programs = self._programs()
    return sum(f.trace_seconds for f in programs), sum(f.seconds for f in programs)

  def flops_done(self) -> flops_lib.Count:
    """Matrix FLOPs of every call of its programs so far (all lanes, padding included)."""
    programs = self._programs()
    total = sum(f.flops.flops * f.calls for f in programs)
    exact = all(f.flops.exact for f in programs)
    if self.skipped_calls:
      chunk = self.program('chunk')
      total -= self.skipped_calls * (chunk.flops.flops - chunk.flops_skipped.flops)
      exact = exact and chunk.flops_skipped.exact
    return flops_lib.Count(total, exact)

  def program_counts(self) -> dict:
    """Its programs so far: compiled here, and shared (an earlier group's executable of the same program text,
    CompiledOnce.shared)."""
    programs = [f for f in self._programs() if f.compiled is not None]
    shared = sum(f.shared for f in programs)
    return dict(compiled=len(programs) - shared, shared=shared)

  def _compiling_seconds(self) -> float:
    return sum(f.trace_seconds + f.seconds for f in self._programs())

  def measure_time_split(self) -> dict:
    """The chunks' time so far split into optimizer steps and measurements, and the measurements' share, as
    summary.json records them (host lanes with host steps, whose steps and measurement are separate calls; {} for
    other programs, whose chunk is one call). The first measurement (step 0) and the compiles are not in it."""
    total = self.step_seconds + self.measure_seconds
    if not total:
      return {}
    return dict(measure_fraction_time=round(self.measure_seconds / total, 4), steps_s=round(self.step_seconds, 2),
                measure_s=round(self.measure_seconds, 2))

  def measure_fraction(self) -> float:
    """The measurement's share of a chunk's matrix FLOPs (full batch): measure / (measure_every steps + measure)."""
    if self._measures_in_chunk():
      chunk = self.program('chunk')
      return chunk.flops_skipped.flops / chunk.flops.flops if chunk.flops.flops else float('nan')
    measure = self.program('measure').flops.flops
    if self.choice.steps == 'scan':
      chunk = self.program('chunk').flops.flops
    else:
      chunk = self.program('step').flops.flops * self.cfg.measure_every + measure
    return measure / chunk if chunk else float('nan')


def compile_sweep(model, data, cfg, hp: LaneHparams, mesh, measurements=measurements_lib.MEASUREMENTS,
                  choice: ProgramChoice | None = None, lanes_at_least: int = 0) -> Sweep:
  """The compiled sweep of the lanes `hp` on `mesh`; `choice` overrides choose_program's (benchmarks compare
  programs with it). `lanes_at_least`: pad the batch to this many lanes (copies of the last one), so that its
  programs are those of another group with that many (program_signature)."""
  choice, hp, program = _lane_program(model, data, cfg, hp, mesh, measurements, choice)
  num_lanes = int(hp.lr.shape[0])
  hp_host = _pad_lanes(hp, num_lanes, distributed.padded_lanes(max(num_lanes, lanes_at_least), mesh))
  return Sweep(program, cfg, hp_host, mesh, distributed.put_replicated(data.arrays, mesh), choice, num_lanes)


def _lane_program(model, data, cfg, hp: LaneHparams, mesh, measurements=measurements_lib.MEASUREMENTS,
                  choice: ProgramChoice | None = None) -> tuple:
  """(choice, hp with the parameterization's numbers as inputs, the lane program) as a sweep of `hp` builds them."""
  choice = choose_program(model, data, cfg, mesh) if choice is None else choice
  program = make_lane_program(model, data, cfg, mesh, measurements, unroll_solvers=choice.steps == 'host',
                              microbatches=choice.microbatches)
  return choice, with_multipliers(hp, model, cfg.optimizer, cfg.dtype), program


def program_signature(model, data, cfg, hp: LaneHparams, mesh) -> str | None:
  """A digest of what makes two groups' lane programs one program when they have as many lanes: the program
  choice and one lane's init and chunk as jaxprs (their text and the values of the constants they close over),
  with the parameterization's numbers as inputs. None for host lanes, whose programs are one lane's at any count.
  Equal digests only make padding worth trying; CompiledOnce's key decides what is shared."""
  choice, hp, program = _lane_program(model, data, cfg, hp, mesh)
  if choice.lanes == 'host':
    return None
  hp1 = jax.tree.map(lambda a: np.asarray(a)[0], hp)
  digest = hashlib.sha256(repr(choice).encode())
  for f, args in ((program.init, (hp1,)), (program.chunk, (jax.eval_shape(program.init, hp1), hp1, data.arrays, 0))):
    closed = jax.make_jaxpr(f)(*args)
    digest.update(str(closed.jaxpr).encode())
    for const in closed.consts:
      if jax.dtypes.issubdtype(getattr(const, 'dtype', np.float32), jax.dtypes.prng_key):
        const = jax.random.key_data(const)
      const = np.asarray(const)
      digest.update(repr((const.shape, const.dtype.str)).encode() + const.tobytes())
  return digest.hexdigest()


def repad(sweep: Sweep, tree, num_lanes: int | None = None, padded: int | None = None):
  """A lane-leading tree saved under another padding (another mesh), as host arrays padded the way `sweep` pads:
  the real lanes (`num_lanes`, default all of the sweep's), then copies of the last one."""
  num_lanes = num_lanes or sweep.num_lanes
  return _pad_lanes(tree, num_lanes, padded or bucket_of(sweep, num_lanes))


def bucket_of(sweep: Sweep, live: int) -> int:
  """The smallest batch size of the sweep's buckets that holds `live` lanes."""
  return min(b for b in sweep.buckets if b >= live)


def _pad_lanes(tree, num_lanes, padded):
  """Host arrays: the first `num_lanes` lanes, then copies of the last of them up to `padded`."""
  fix = lambda a: np.concatenate([np.asarray(a)[:num_lanes], np.repeat(np.asarray(a)[num_lanes - 1:num_lanes],
                                                                      padded - num_lanes, 0)])
  return jax.tree.map(fix, tree)


def abstract_state(sweep: Sweep, lanes: int | None = None):
  """Shapes, dtypes and shardings of a sweep's state (for a batch of `lanes`), without computing it (the target a
  checkpoint restores to)."""
  hp = sweep.hp if lanes is None else jax.tree.map(lambda a: a[:lanes], sweep.hp_host)
  shapes = jax.eval_shape(sweep.init.jitted, hp)
  sharding = sweep.hp.lr.sharding
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def run_sweep(model, data, cfg, hp: LaneHparams, progress=None, mesh=None, resume=None, after_chunk=None,
              sweep: Sweep | None = None, budgets=None):
  """Trains all lanes of `hp` as one compiled program on `mesh` (default: `cfg.mesh` over all devices).

  Returns (steps, metrics{name: [lanes, measurements, ...]}, diverged_step[lanes]) as numpy arrays.
  `progress(n)` is called after each compiled chunk. `resume=(state, buffers, chunks_done, lanes)` continues from a
  checkpoint (`lanes`: a Retired, or None when no lane had retired); `after_chunk(chunks_done, state, buffers,
  retired)` runs after the first measurement and after every chunk (it may checkpoint, or stop the run by raising).
  `buffers` holds every measurement so far (NaN after).

  Lanes retire between chunks: a lane that has diverged (sweep.retire_diverged) or reached its step budget
  (`budgets`, per real lane; default num_steps for all) stops recording, and when the lanes left fit a smaller bucket they are
  re-packed into it. A retired lane's measurements are those it had; after its budget they stay NaN.
  """
  if sweep is None:
    sweep = compile_sweep(model, data, cfg, hp, mesh if mesh is not None else distributed.make_mesh(cfg.mesh))
  budgets = np.full(sweep.num_lanes, cfg.num_steps) if budgets is None else np.asarray(budgets)
  diverged_all = np.full(sweep.num_lanes, -1, np.int64)
  retired = lambda: Retired(None if len(live) == sweep.num_lanes else live.tolist(), diverged_all.tolist())
  if resume is None:
    state, first = sweep.first_measurement(sweep.init(sweep.hp))
    first = distributed.gather(first)
    buffers = {k: np.full((v.shape[0], sweep.num_chunks + 1) + v.shape[1:], np.nan, v.dtype)
               for k, v in first.items()}
    for k, v in first.items():
      buffers[k][:, 0] = v
    done, live = 0, np.arange(sweep.num_lanes)
    if after_chunk:
      after_chunk(done, state, buffers, retired())
  else:
    state, buffers, done, saved = resume
    live = np.arange(sweep.num_lanes) if saved is None or saved.live is None else np.asarray(saved.live, np.int64)
    if saved is not None:
      diverged_all[:] = saved.diverged_step
  if not len(live):   # every lane had retired when the checkpoint was saved
    done = sweep.num_chunks
  hp = sweep.hp if len(live) in (0, sweep.num_lanes) else _lanes_on_mesh(sweep, sweep.hp_host, live)
  recording = np.ones(len(live), bool)   # lanes of the batch whose measurements are still recorded
  for i in range(done, sweep.num_chunks):
    state, metrics = sweep.run_chunk(state, hp, i + 1)
    steps_done = (i + 1) * cfg.measure_every
    for k, v in distributed.gather(metrics).items():   # waits for the chunk: the progress bar shows real progress
      buffers[k][live[recording], i + 1] = v[:len(live)][recording]
    dsteps = np.asarray(distributed.gather(state.diverged_step))[:len(live)]
    diverged_all[live] = dsteps
    if progress:
      progress(1)
    if i + 1 == sweep.num_chunks:   # the end: nothing left to retire from
      if after_chunk:
        after_chunk(i + 1, state, buffers, retired())
      break
    recording &= budgets[live] > steps_done
    if cfg.sweep.retire_diverged:
      recording &= dsteps < 0
    if not recording.any():
      if progress:
        progress(sweep.num_chunks - i - 1)
      live = live[:0]
      if after_chunk:
        after_chunk(i + 1, state, buffers, retired())
      break
    if not recording.all() and bucket_of(sweep, int(recording.sum())) < int(hp.lr.shape[0]):
      state = _repack(sweep, state, recording)
      live = live[recording]
      hp = _lanes_on_mesh(sweep, sweep.hp_host, live)
      recording = np.ones(len(live), bool)
    if after_chunk:
      after_chunk(i + 1, state, buffers, retired())
  steps = np.arange(sweep.num_chunks + 1) * cfg.measure_every
  metrics = {k: v[:sweep.num_lanes] for k, v in buffers.items()}
  return steps, metrics, diverged_all   # updated after every chunk (and restored with a checkpoint)


def _lanes_on_mesh(sweep: Sweep, tree_host, lanes):
  """Rows `lanes` of a host lane-leading tree, padded to their bucket and placed on the mesh."""
  taken = jax.tree.map(lambda a: np.asarray(a)[np.asarray(lanes)], tree_host)
  return distributed.put_lanes(_pad_lanes(taken, len(lanes), bucket_of(sweep, len(lanes))), sweep.mesh)


def _repack(sweep: Sweep, state, keep):
  """The batch's state cut to the lanes in `keep` (a mask over its real lanes), padded to their bucket."""
  host = distributed.gather(state)
  return _lanes_on_mesh(sweep, host, np.flatnonzero(keep))
