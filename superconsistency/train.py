"""One lane trains one network; lanes.py turns a grid of lanes into one compiled program.

A lane is one (base learning rate η0, γ0, seed). Everything a lane does between two measurements — drawing its
batches, `measure_every` optimizer steps, and the measurement itself (losses, λ_max by Hessian-vector products;
measurements.py declares what is measured) — is pure single-lane functions here (`make_lane_program`), which
lanes.py batches and compiles, so the host only sees the loop over chunks. Width, depth and parameterization change
shapes, so they are fixed per program (see runner.py for the loop over them).

A lane whose loss is non-finite or above `loss_cap` is frozen at its last good parameters and remembers the step
at which it diverged; lanes share no arithmetic, so this never changes another lane's numbers.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from superconsistency import measurements as measurements_lib
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import spectra

# the columns every run has: the measurements that no config switch turns off
METRICS = tuple(c for meas in measurements_lib.MEASUREMENTS if meas.enabled is measurements_lib.always
                for c in meas.outputs)


def metric_columns(cfg, measurements=measurements_lib.MEASUREMENTS) -> tuple:
  """The metrics.csv columns that the config's measurements produce, in registry order."""
  return tuple(c for meas in measurements for c in meas.columns(cfg))


def flatten_metrics(metrics: dict, lane: int, j: int, measurements=measurements_lib.MEASUREMENTS) -> dict:
  """One lane's measurement j as scalar columns (top-k vectors spread over NAME_1 … NAME_k); the outputs that a
  measurement writes to its own file (density.csv) are left out."""
  owners = measurements_lib.by_output(measurements)
  row = {}
  for k, v in metrics.items():
    if k in owners and owners[k].writes != 'metrics.csv':
      continue
    value = v[lane, j]
    if np.ndim(value) > 0:
      for i, x in enumerate(value):
        row[f'{k}_{i + 1}'] = float(x)
    else:
      row[k] = float(value)
  return row


class LaneHparams(NamedTuple):
  """Traced per-lane values; a sweep stacks them along a leading lane axis."""
  lr: jax.Array       # base learning rate η0
  gamma0: jax.Array
  seed: jax.Array     # int32
  # the model's parameterization numbers as inputs (with_multipliers), or None: the program holds them as
  # constants. As inputs, models that differ only in them (μP and NTP at one width) trace to one program
  multipliers: dict | None = None


def with_multipliers(hp: LaneHparams, model: models.Model, opt_cfg, dtype) -> LaneHparams:
  """`hp` (lane-leading arrays) with `model`'s forward multipliers and learning-rate factors
  (pz.lr_multiplier_lifted) for every lane: {'forward': {param: (lanes,)}, 'lr': {param: ((lanes,), ...)}}."""
  lanes = np.shape(hp.lr)[0]
  full = lambda v: np.full((lanes,), v, dtype)
  forward = {n: full(l.multiplier) for n, l in model.layers.items()}
  lr = {n: tuple(full(f) for f in pz.lr_multiplier_lifted(model.param, k, opt_cfg.name, model.width, model.depth)[1])
        for n, k in model.kinds.items()}
  return hp._replace(multipliers=dict(forward=forward, lr=lr))


@flax.struct.dataclass
class LaneState:
  params: dict
  params0: dict              # frozen initial parameters (used when the output is centered)
  opt_state: optax.OptState
  data_key: jax.Array
  step: jax.Array            # optimizer steps taken
  diverged_step: jax.Array   # step whose update was rejected, −1 while healthy
  loss_sum: jax.Array        # sum of batch losses since the last measurement
  loss_count: jax.Array
  power_vec: jax.Array       # warm start for power iteration, or Lanczos with measure.warm_start (flat vector)


class LaneProgram(NamedTuple):
  """Pure single-lane functions; `run_sweep` vmaps and jits them."""
  init: callable      # hp -> state
  chunk: callable     # (state, hp, arrays, measurement_index) -> (state, metrics): measure_every steps, measure
  measure: callable   # (state, hp, arrays, measurement_index) -> (state, metrics)
  step: callable      # (state, hp, arrays, plan_t=None) -> state: one optimizer step
  plan: callable      # (state, arrays) -> the data plan of the next measure_every steps (a leading step axis)
  chunk_from_plan: callable   # (state, hp, arrays, measurement_index, plan, steps_on=None) -> chunk, with
                              # plan(state, arrays) given (lanes.shared_plans computes it once for lanes that
                              # shuffle alike); steps_on=False: the measurement alone


def make_optimizer(opt_cfg, model: models.Model):
  """optax transformation + per-layer learning-rate multipliers (a function of traced γ0) + Adam gradient scales."""
  p, kinds = model.param, model.kinds
  if opt_cfg.name == 'sgd':
    tx = optax.trace(decay=opt_cfg.momentum) if opt_cfg.momentum > 0 else optax.identity()
    grad_scale = None
  elif opt_cfg.name == 'adam':
    tx = optax.scale_by_adam(b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps)
    grad_scale = {n: pz.adam_grad_scale(p, k, model.width) for n, k in kinds.items()}
  else:
    raise ValueError(f'unknown optimizer {opt_cfg.name!r}; allowed: sgd, adam')

  exponents = {n: pz.lr_multiplier_lifted(p, k, opt_cfg.name, model.width, model.depth)[0] for n, k in kinds.items()}

  def lr_multipliers(gamma0, lifted=None):
    """{param: its rate / η0}; `lifted`: the factors as program inputs (LaneHparams.multipliers['lr'])."""
    if lifted is not None:
      return {n: pz.lr_from_lifted(gamma0, exponents[n], lifted[n]) for n in kinds}
    return {n: pz.lr_multiplier(p, k, opt_cfg.name, model.width, model.depth, gamma0) for n, k in kinds.items()}
  return tx, lr_multipliers, grad_scale


def stability_threshold(opt_cfg) -> float:
  """What lr_sharpness is compared with: 2 for SGD, 2(1+μ) with heavy-ball momentum μ."""
  return 2.0 * (1.0 + opt_cfg.momentum) if opt_cfg.name == 'sgd' else float('nan')


def make_lane_program(model: models.Model, data, cfg, mesh=None,
                      measurements=measurements_lib.MEASUREMENTS, unroll_solvers: bool = False,
                      microbatches: int = 1) -> LaneProgram:
  """`mesh`: with a `data` axis of size > 1, each batch is split over it (a sharding constraint; XLA adds the
  collectives). `measurements`: what `measure` computes, in order (default: the registry). `unroll_solvers`: the
  measurement's solver loops are written out (spectra.unrolled_loops), for programs without device loops.
  `microbatches`: each optimizer step's loss and gradient are the means over this many equal micro-batches of the
  batch, summed in a device loop (lanes.choose_microbatches says when that is faster); for a loss that is a mean
  over examples this is the same step up to float rounding. The measurement of such a program is traced like its
  micro-batches (models.device_loop: on CPU its convolutions, Hessian-vector products included, are slicing
  matmuls): figure1's measurement at width 256 ran in 277 ms instead of 403 (the fastest of 10 interleaved rounds;
  medians 309 and 436 ms) and compiled ~0.5 s longer."""
  loss_fn = models.LOSSES[cfg.loss]
  tx, lr_multipliers, grad_scale = make_optimizer(cfg.optimizer, model)
  # whether every layer shares one rate (their ratios do not depend on γ0, so γ0 = 1 decides): then η·λ_max(H) is
  # λ_max(D½HD½) without another solve; Depth-μP at α ≠ ½ and CompleteP give branches their own SGD rate
  uniform_rates = len({round(float(v), 12) for v in lr_multipliers(1.0).values()}) == 1
  dtype = jnp.dtype(cfg.dtype)
  warmup = cfg.optimizer.warmup_steps
  m = cfg.measure
  if mesh is not None and mesh.shape['data'] > 1:
    by_example = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
    split = lambda *xs: tuple(jax.lax.with_sharding_constraint(x, by_example) for x in xs)
  else:
    split = lambda *xs: xs

  def forward(params, params0, x, gamma0):
    out = model.apply(params, x, gamma0)
    if model.param.center:
      out = out - model.apply(jax.lax.stop_gradient(params0), x, gamma0)
    return out

  def loss_and_grad(params, params0, x, y, gamma0):
    value_and_grad = jax.value_and_grad(lambda p, x, y: loss_fn(forward(p, params0, x, gamma0), y))
    if microbatches == 1:
      return value_and_grad(params, *split(x, y))
    x_MxBx, y_MxBx = (a.reshape((microbatches, a.shape[0] // microbatches) + a.shape[1:]) for a in (x, y))

    def add(total, xy):
      return jax.tree.map(jnp.add, total, value_and_grad(params, *split(*xy))), None
    with models.device_loop():   # the model is traced for a device loop: on CPU its convolutions become matmuls
      zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                           jax.eval_shape(value_and_grad, params, x_MxBx[0], y_MxBx[0]))
      total, _ = jax.lax.scan(add, zeros, (x_MxBx, y_MxBx))
    return jax.tree.map(lambda t: t / microbatches, total)

  per_micro = cfg.data.batch_size // microbatches

  def outputs_in_chunks(params, params0, x, gamma0):
    """forward's values on a batch larger than the training step's micro-batch, a micro-batch at a time in a
    device loop (measurements: the loss and eval batches), so their activations stay in the caches too. Called
    only inside `measure`, which traces a micro-batched program under models.device_loop()."""
    n = x.shape[0]
    if microbatches == 1 or n <= per_micro or n % per_micro:
      return forward(params, params0, x, gamma0)
    out = jax.lax.map(lambda xb: forward(params, params0, xb, gamma0),
                      x.reshape((n // per_micro, per_micro) + x.shape[1:]))
    return out.reshape((n,) + out.shape[2:])

  def lr_at(hp, step):
    if warmup == 0:
      return hp.lr
    return hp.lr * jnp.minimum(1.0, (step + 1) / warmup)

  def init(hp: LaneHparams) -> LaneState:
    key = jax.random.PRNGKey(hp.seed)
    with forward_multipliers_of(hp):   # a Flax module's own vectors are stored divided by their multipliers
      params = model.init(jax.random.fold_in(key, 0))
    flat, _ = ravel_pytree(params)
    return LaneState(
        params=params, params0=params, opt_state=tx.init(params), data_key=jax.random.fold_in(key, 1),
        step=jnp.zeros((), jnp.int32), diverged_step=-jnp.ones((), jnp.int32),
        loss_sum=jnp.zeros((), dtype), loss_count=jnp.zeros((), jnp.int32),
        power_vec=jax.random.normal(jax.random.fold_in(key, 2), flat.shape, dtype))

  def rate_multipliers(hp: LaneHparams):
    return lr_multipliers(hp.gamma0, hp.multipliers and hp.multipliers['lr'])

  def forward_multipliers_of(hp: LaneHparams):   # the model reads its multipliers from hp while this is active
    return models.lifted_multipliers(hp.multipliers and hp.multipliers['forward'])

  def step(state: LaneState, hp: LaneHparams, arrays, plan_t=None) -> LaneState:
    with forward_multipliers_of(hp):
      return step_traced(state, hp, arrays, plan_t)

  def step_traced(state: LaneState, hp: LaneHparams, arrays, plan_t) -> LaneState:
    if plan_t is None:
      plan_t = jax.tree.map(lambda a: a[0], data.plan(arrays, state.data_key, state.step, 1))
    x, y = data.batch(arrays, state.data_key, state.step, plan_t)
    loss, grads = loss_and_grad(state.params, state.params0, x, y, hp.gamma0)
    if grad_scale is not None:
      grads = {n: g * grad_scale[n] for n, g in grads.items()}
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    lr, mults = lr_at(hp, state.step), rate_multipliers(hp)
    new_params = {n: w - (lr * mults[n]) * updates[n] for n, w in state.params.items()}
    finite = jnp.isfinite(loss) & jnp.all(jnp.array([jnp.all(jnp.isfinite(w)) for w in new_params.values()]))
    bad = ~finite | (loss > cfg.loss_cap)
    diverged_step = jnp.where((state.diverged_step < 0) & bad, state.step, state.diverged_step)
    frozen = diverged_step >= 0
    keep = lambda new, old: jnp.where(frozen, old, new)
    return state.replace(
        params=jax.tree.map(keep, new_params, state.params),
        opt_state=jax.tree.map(keep, opt_state, state.opt_state),
        step=state.step + 1, diverged_step=diverged_step,
        loss_sum=state.loss_sum + jnp.where(frozen, 0.0, loss).astype(dtype),
        loss_count=state.loss_count + jnp.where(frozen, 0, 1))

  def features(params, x):
    """The last hidden layer's output (the layer before the readout), flattened per example."""
    _, acts = model.apply(params, x, 1.0, with_activations=True)
    names = [n for n in acts if n != 'readout' and model.kinds.get(n) != 'readout']
    return acts[names[-1]].reshape(x.shape[0], -1)

  def measure(state: LaneState, hp: LaneHparams, arrays, measurement_index=0):
    with models.device_loop() if microbatches > 1 else nullcontext():   # traced like the micro-batches
      with forward_multipliers_of(hp):
        return measure_traced(state, hp, arrays, measurement_index)

  def measure_traced(state: LaneState, hp: LaneHparams, arrays, measurement_index):
    apply_fn = lambda params, x: forward(params, state.params0, x, hp.gamma0)
    xl, yl = split(arrays['measure_x'][:m.loss_batch], arrays['measure_y'][:m.loss_batch])
    xs, ys = split(arrays['measure_x'][:m.sharpness_batch], arrays['measure_y'][:m.sharpness_batch])
    out_eval = outputs_in_chunks(state.params, state.params0, *split(arrays['eval_x']), hp.gamma0)
    ops = spectra.operators(apply_fn, loss_fn, state.params, xs, ys, microbatches=m.microbatches)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(hp.seed), 3), state.step)
    lr, mults = lr_at(hp, state.step), rate_multipliers(hp)
    rates, _ = ravel_pytree({n: (lr * mults[n]) * jnp.ones_like(w) for n, w in state.params.items()})
    ctx = measurements_lib.Context(
        cfg=cfg, state=state, hp=hp, arrays=arrays, index=measurement_index, dtype=dtype, key=key,
        apply_fn=apply_fn, loss_fn=loss_fn, task=data.spec.task, loss_batch=(xl, yl), sharpness_batch=(xs, ys),
        eval_outputs=out_eval, ops=ops, lr=lr, lr_multipliers=mults, uniform_rates=uniform_rates, rates=rates,
        grad_scale=grad_scale, features=features,
        outputs_of=lambda params, x: outputs_in_chunks(params, state.params0, x, hp.gamma0))
    with spectra.unrolled_loops(unroll_solvers):
      metrics, done = measurements_lib.run(measurements, ctx)
    metrics = {k: v.astype(dtype) for k, v in metrics.items()}
    new_state = state.replace(loss_sum=jnp.zeros_like(state.loss_sum), loss_count=jnp.zeros_like(state.loss_count),
                              power_vec=done['power_vec'].astype(dtype) if 'power_vec' in done else state.power_vec)
    return new_state, metrics

  def chunk_plan(state, arrays):
    return data.plan(arrays, state.data_key, state.step, cfg.measure_every)

  def chunk_from_plan(state, hp, arrays, measurement_index, plan, steps_on=None):
    """steps_on (a traced bool; None: always): False skips the steps, so that the same program also takes the
    step-0 measurement and the measurement is compiled once (lanes.Sweep.first_measurement)."""
    run = lambda s: jax.lax.scan(lambda s, plan_t: (step(s, hp, arrays, plan_t), None), s, plan)[0]
    state = run(state) if steps_on is None else jax.lax.cond(steps_on, run, lambda s: s, state)
    return measure(state, hp, arrays, measurement_index)

  def chunk(state, hp, arrays, measurement_index=0):
    return chunk_from_plan(state, hp, arrays, measurement_index, chunk_plan(state, arrays))

  return LaneProgram(init, chunk, measure, step, chunk_plan, chunk_from_plan)


def lane_grid(lrs, gamma0s, seeds, dtype, seed_offset=0) -> LaneHparams:
  """All (lr, γ0, seed) combinations, lr varying slowest. Lane order is the row order of metrics.csv."""
  grid = [(lr, g, s + seed_offset) for lr in lrs for g in gamma0s for s in seeds]
  return LaneHparams(lr=jnp.array([r[0] for r in grid], dtype), gamma0=jnp.array([r[1] for r in grid], dtype),
                     seed=jnp.array([r[2] for r in grid], jnp.int32))


def run_lane(model, data, cfg, lr, gamma0, seed):
  """One lane alone, un-vmapped (the reference that a vmapped lane must equal)."""
  program = make_lane_program(model, data, cfg)
  dtype = jnp.dtype(cfg.dtype)
  hp = LaneHparams(jnp.asarray(lr, dtype), jnp.asarray(gamma0, dtype), jnp.asarray(seed, jnp.int32))
  chunk = jax.jit(program.chunk)
  state, first = jax.jit(program.measure)(jax.jit(program.init)(hp), hp, data.arrays, 0)
  rows = [jax.device_get(first)]
  for i in range(cfg.num_steps // cfg.measure_every):
    state, metrics = chunk(state, hp, data.arrays, i + 1)
    rows.append(jax.device_get(metrics))
  return {k: np.array([r[k] for r in rows]) for k in rows[0]}, int(state.diverged_step)
