"""What a lane measures, declared once: the registry `MEASUREMENTS` that the lane program, metrics.csv's columns,
the spectra plot and the super-consistency analysis all read.

A `Measurement` names itself, says when the config turns it on, which arrays it outputs (a top-k output becomes
the columns NAME_1 … NAME_k), and holds the function that computes it inside the compiled, vmapped lane program
from a `Context` (the lane's state, rates, operators, batches and its own random key). Measurements run in
registry order; each sees what the earlier ones returned (`done`), so λ_max is solved once and read by the
measurements that rescale it. Whatever a measurement returns beyond its outputs is shared with the later ones
and not recorded; a returned `power_vec` becomes the lane's next warm start: for power iteration always, and for
Lanczos with `measure.warm_start` (the normalized sum of the top-k Ritz vectors; the next solve starts from it
plus a small random part, `warm_start_vector`). Only the sharpness solve is warm-started; the other Lanczos
measurements start from a random vector each time. The registry's order is the order of metrics.csv's columns.

Adding a measurement: write its function here and add one `Measurement` to MEASUREMENTS (and a config.measure
field if it needs a switch). Nothing else changes: train.metric_columns, the lane program, plot.py's spectra
panels and analyze.py's consistency quantities pick it up. A test or a study can also pass its own tuple to
`train.make_lane_program(..., measurements=...)`.

Random keys are derived from a measurement's name, not its position: `measurement_key(base_key, name)`, where
base_key is the lane's measurement key at this step (from its seed and step). The measurements that existed before
the registry keep the streams they had when they took `jax.random.split(base_key, 8)[slot]` by hand
(`LEGACY_KEY_SLOTS`: sharpness 0, lr_sharpness 1, adam_sharpness 2, gn_eig 3, residual_top 4, ntk_eig and
ntk_lr_eig 5, hessian_trace 6, density 7), so their numbers do not change. Every other name gets
`jax.random.fold_in(base_key, zlib.crc32(name))`: adding, removing or reordering measurements never moves
another's stream.
"""
from __future__ import annotations

import dataclasses
import math
import types
import zlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from superconsistency import models
from superconsistency import spectra

LEGACY_KEY_SLOTS = types.MappingProxyType({
    'sharpness': 0, 'lr_sharpness': 1, 'adam_sharpness': 2, 'gn_eig': 3, 'residual_top': 4, 'ntk_eig': 5,
    'ntk_lr_eig': 5, 'hessian_trace': 6, 'density': 7})


def measurement_key(base_key, name: str):
  """The random key of measurement `name` (see the module docstring)."""
  slot = LEGACY_KEY_SLOTS.get(name)
  if slot is not None:
    return jax.random.split(base_key, 8)[slot]
  return jax.random.fold_in(base_key, zlib.crc32(name.encode()))


class Context(NamedTuple):
  """What a measurement sees: one lane at one measurement, traced inside the compiled program."""
  cfg: object             # the run's config (cfg.measure holds the measurements' settings)
  state: object           # train.LaneState
  hp: object              # train.LaneHparams: lr, gamma0, seed
  arrays: dict            # the data's device arrays
  index: jax.Array        # which measurement this is (0 at step 0)
  dtype: object           # the run's float dtype
  key: jax.Array          # the lane's key at this step; `run` hands each measurement its own, by its name
  apply_fn: Callable      # (params, x) -> outputs, at this lane's γ0 (centered when the parameterization is)
  loss_fn: Callable       # (outputs, y) -> mean loss
  task: str               # data.spec.task ('regression' has no accuracy)
  loss_batch: tuple       # (x, y): the batch train_loss is measured on (the first training examples in epoch mode)
  sharpness_batch: tuple  # (x, y): the batch every Hessian-type operator is built on
  eval_outputs: jax.Array   # apply_fn(params, eval_x)
  ops: spectra.Operators  # Hessian, Gauss-Newton, residual, NTK on the sharpness batch
  lr: jax.Array           # base rate at this step (after warm-up)
  lr_multipliers: dict    # per-layer rate multipliers at this γ0: the raw rate of layer n is lr · lr_multipliers[n]
  uniform_rates: bool     # every layer has the same multiplier (static)
  rates: jax.Array        # those raw rates as a flat per-parameter vector (the diagonal D of D½ H D½)
  grad_scale: dict | None   # Adam's per-layer gradient scales (None for SGD)
  features: Callable      # (params, x) -> the last hidden layer's output, flattened per example
  outputs_of: Callable | None = None   # (params, x) -> apply_fn's values on a large batch, in the program's
                                       # micro-batches (a device loop) where it splits batches; None: apply_fn

  def loss_on(self, params, x, y):
    return self.loss_fn(self.apply_fn(params, x), y)


class Panel(NamedTuple):
  """One row of plot.py's spectra.png: a metrics.csv column over training."""
  column: str                      # drawn when metrics.csv has it
  label: str
  value: Callable | None = None    # row -> the plotted value; default row[column]
  reference: tuple | None = None   # (metrics.csv column, legend label): a horizontal line, e.g. a threshold


def always(cfg) -> bool:
  del cfg
  return True


@dataclasses.dataclass(frozen=True)
class Measurement:
  """One measurement: how to compute it, when, and how its columns are named, drawn and analysed."""
  name: str                        # names its columns' prefix and its random key
  compute: Callable                # (Context, done: dict) -> {output: array, [shared values]}
  enabled: Callable = always       # cfg -> bool
  outputs: tuple = ()              # the arrays it records (default: its name)
  size: Callable | None = None     # top-k outputs: cfg -> k, columns NAME_1 … NAME_k
  writes: str = 'metrics.csv'      # or its own file (the runner writes density.csv)
  panels: tuple = ()               # its rows in spectra.png
  consistency: tuple = ()          # (column, label): super-consistency quantities that analysis compares across sizes
  lr_weighted: bool = False        # its values already carry the learning rate (analysis does not rescale them)

  def __post_init__(self):
    if not self.outputs:
      object.__setattr__(self, 'outputs', (self.name,))

  def columns(self, cfg) -> tuple:
    """Its metrics.csv columns under cfg (none when disabled or written to another file)."""
    if self.writes != 'metrics.csv' or not self.enabled(cfg):
      return ()
    if self.size is None:
      return self.outputs
    return tuple(f'{o}_{i + 1}' for o in self.outputs for i in range(self.size(cfg)))


def run(measurements, ctx: Context):
  """Computes the enabled measurements in order, each with ctx.key replaced by its own key. Returns
  (metrics {output: array}, done {everything they returned})."""
  done, metrics = {}, {}
  for meas in measurements:
    if not meas.enabled(ctx.cfg):
      continue
    got = meas.compute(ctx._replace(key=measurement_key(ctx.key, meas.name)), done)
    done.update(got)
    metrics.update({k: got[k] for k in meas.outputs})
  return metrics, done


# -------------------------------------------------------------------------------------------- computations


def _train_loss(ctx, done):
  x, y = ctx.loss_batch
  return {'train_loss': ctx.loss_fn((ctx.outputs_of or ctx.apply_fn)(ctx.state.params, x), y)}


def _batch_loss(ctx, done):
  s = ctx.state   # the mean batch loss since the last measurement
  return {'batch_loss': jnp.where(s.loss_count > 0, s.loss_sum / jnp.maximum(s.loss_count, 1), jnp.nan)}


def _eval_loss(ctx, done):
  return {'eval_loss': ctx.loss_fn(ctx.eval_outputs, ctx.arrays['eval_y'])}


def _eval_accuracy(ctx, done):
  if ctx.task == 'regression':   # no accuracy for real-valued targets
    return {'eval_accuracy': jnp.asarray(jnp.nan)}
  return {'eval_accuracy': models.accuracy(ctx.eval_outputs, ctx.arrays['eval_y'])}


WARM_START_NOISE = 0.1   # weight of the random unit vector added to the stored unit vector (benchmarks/warm_start.md)


def warm_start_vector(stored, key, noise: float = WARM_START_NOISE):
  """The start vector of a warm-started Lanczos solve: the stored vector, normalized, plus `noise` times a random
  unit vector, so that no direction (an eigenvector that has risen since the last measurement) is missing from the
  start. A zero or non-finite stored vector is replaced by the random one alone (a cold start)."""
  r = jax.random.normal(key, stored.shape, stored.dtype)
  r = r / jnp.linalg.norm(r)
  norm = jnp.linalg.norm(stored)
  ok = jnp.isfinite(norm) & (norm > 0)
  return jnp.where(ok, stored / jnp.where(ok, norm, 1.0) + noise * r, r)


def _sharpness(ctx, done):
  """λ_max(H), and the top-k that Lanczos gives with it (shared as hessian_top)."""
  m, state = ctx.cfg.measure, ctx.state
  warm = m.solver == 'lanczos' and m.warm_start
  if not m.hessian:   # loss curves only: no Hessian products (and no other spectra: validate enforces it)
    lam, vec, top = jnp.asarray(jnp.nan, ctx.dtype), state.power_vec, jnp.full((m.hessian_k,), jnp.nan, ctx.dtype)
  elif m.solver == 'power':
    lam, vec = spectra.power_iteration(ctx.ops.hessian, state.power_vec, m.num_iters)
    top = lam[None]
  elif warm:   # from the last measurement's top-k Ritz vectors (at step 0: train.init's random vector)
    v0 = warm_start_vector(state.power_vec, jax.random.fold_in(ctx.key, 1))
    res = spectra.lanczos(ctx.ops.hessian, ctx.ops.dim, m.num_iters, ctx.key, k=m.hessian_k, dtype=ctx.dtype, v0=v0)
    lam, top = res.eigenvalues[0], res.eigenvalues
    vec = res.eigenvectors.sum(0)   # every wanted direction in the next start; normalized by warm_start_vector
  else:
    res = spectra.lanczos(ctx.ops.hessian, ctx.ops.dim, m.num_iters, ctx.key, k=m.hessian_k, dtype=ctx.dtype)
    lam, top = res.eigenvalues[0], res.eigenvalues
  out = {'sharpness': lam, 'hessian_top': top}
  if m.solver == 'power' or warm:
    out['power_vec'] = vec
  return out


def _hessian_eig(ctx, done):
  return {'hessian_eig': done['hessian_top']}


def _lr_sharpness(ctx, done):
  """λ_max(D½ H D½) with D the per-parameter rates."""
  m = ctx.cfg.measure
  if (ctx.cfg.optimizer.name == 'sgd' and ctx.uniform_rates) or not m.hessian:   # one rate: rate·λ_max(H)
    return {'lr_sharpness': ctx.lr * next(iter(ctx.lr_multipliers.values())) * done['sharpness']}
  weighted = spectra.weighted(ctx.ops.hessian, ctx.rates)
  return {'lr_sharpness': spectra.lanczos(weighted, ctx.ops.dim, m.num_iters, ctx.key,
                                          dtype=ctx.dtype).eigenvalues[0]}


def _feature_movement(ctx, done):
  xs = ctx.sharpness_batch[0]
  h0, h = ctx.features(ctx.state.params0, xs), ctx.features(ctx.state.params, xs)
  return {'feature_movement': jnp.linalg.norm(h - h0) / jnp.linalg.norm(h0)}


def _stacked_weights(ctx, done):
  """[BN]'s view of a deep network's stacked hidden weights W_1 … W_L (params['hidden'], shape (L, N, N)): the
  orthogonality gap ‖WᵀW / (tr WᵀW / N) − I‖_F / √N of each (0 for any multiple of an orthogonal matrix, ≈ 1 for a
  Gaussian one; BN makes the scale irrelevant), averaged and maximised over layers, and log‖∇_{W_1} loss‖_F and
  log‖∇_{W_L} loss‖_F of the loss on the loss batch."""
  w = ctx.state.params['hidden']
  gram = jnp.einsum('lij,lik->ljk', w, w)
  n = w.shape[-1]
  scale = jnp.trace(gram, axis1=1, axis2=2) / n
  gaps = jnp.linalg.norm(gram / scale[:, None, None] - jnp.eye(n, dtype=w.dtype), axis=(1, 2)) / math.sqrt(n)
  grads = jax.grad(ctx.loss_on)(ctx.state.params, *ctx.loss_batch)['hidden']
  return {'orthogonality_gap': gaps.mean(), 'orthogonality_gap_max': gaps.max(),
          'log_grad_w1': jnp.log(jnp.linalg.norm(grads[0])), 'log_grad_last': jnp.log(jnp.linalg.norm(grads[-1]))}


def _adam_sharpness(ctx, done):
  """λ_max(P⁻¹H) for Adam's preconditioner P⁻¹ = η/(sqrt(v̂)+ε)."""
  m, o, state = ctx.cfg.measure, ctx.cfg.optimizer, ctx.state
  if not m.hessian:
    return {'adam_sharpness': jnp.asarray(jnp.nan, ctx.dtype)}
  d_adam = spectra.adam_preconditioner(state.opt_state, state.params, ctx.lr, o.b1, o.b2, o.eps,
                                       ctx.lr_multipliers, ctx.grad_scale)
  lam = spectra.lanczos(spectra.weighted(ctx.ops.hessian, d_adam), ctx.ops.dim, m.num_iters, ctx.key,
                        dtype=ctx.dtype).eigenvalues[0]
  return {'adam_sharpness': jnp.where(state.step > 0, lam, jnp.nan)}   # no v̂ before a step


def _gn_eig(ctx, done):
  m = ctx.cfg.measure
  return {'gn_eig': spectra.lanczos(ctx.ops.gauss_newton, ctx.ops.dim, m.num_iters, ctx.key, k=m.hessian_k,
                                    dtype=ctx.dtype).eigenvalues}


def _residual_top(ctx, done):
  return {'residual_top': spectra.lanczos(ctx.ops.residual, ctx.ops.dim, ctx.cfg.measure.num_iters, ctx.key,
                                          dtype=ctx.dtype).eigenvalues[0]}


def _ntk_batch(ctx):
  return ctx.arrays['measure_x'][:ctx.cfg.measure.ntk_batch]


def _ntk_eig(ctx, done):
  m, xn = ctx.cfg.measure, _ntk_batch(ctx)
  f = lambda params: ctx.apply_fn(params, xn)
  return {'ntk_eig': spectra.ntk_eigenvalues(f, ctx.state.params, k=m.ntk_k, num_iters=m.num_iters, key=ctx.key)}


def _ntk_lr_eig(ctx, done):
  m, xn = ctx.cfg.measure, _ntk_batch(ctx)
  kernel = spectra.ntk_weighted(ctx.apply_fn, ctx.state.params, xn, ctx.rates)
  out_dim = math.prod(jax.eval_shape(lambda p: ctx.apply_fn(p, xn), ctx.state.params).shape)
  return {'ntk_lr_eig': spectra.lanczos(kernel, out_dim, m.num_iters, ctx.key, k=m.ntk_k,
                                        dtype=ctx.dtype).eigenvalues}


def _hessian_trace(ctx, done):
  est = spectra.hutchinson(ctx.ops.hessian, ctx.ops.dim, ctx.cfg.measure.trace_samples, ctx.key, dtype=ctx.dtype)
  return {'hessian_trace': est.trace, 'hessian_trace_se': est.stderr}


def _directional_sharpness(ctx, done):
  g, _ = ravel_pytree(jax.grad(lambda p: ctx.loss_on(p, *ctx.sharpness_batch))(ctx.state.params))
  return {'directional_sharpness': spectra.directional_sharpness(ctx.ops.hessian, g)}


def _density(ctx, done):
  """SLQ density every density_every-th measurement (NaN between, so the arrays keep one shape)."""
  m = ctx.cfg.measure

  def density(_):
    dens = spectra.slq_density(ctx.ops.hessian, ctx.ops.dim, m.num_iters, m.density_vectors, ctx.key,
                               grid_size=m.density_grid, dtype=ctx.dtype)
    return dens.grid, dens.density

  def skip(_):
    return jnp.full((m.density_grid,), jnp.nan, ctx.dtype), jnp.full((m.density_grid,), jnp.nan, ctx.dtype)
  grid, dens = jax.lax.cond(ctx.index % m.density_every == 0, density, skip, None)
  return {'density_grid': grid, 'density': dens}


def _gn_share(row):
  return row['gn_eig_1'] / row['sharpness'] if row['sharpness'] else float('nan')


MEASUREMENTS = (
    Measurement('train_loss', _train_loss),
    Measurement('batch_loss', _batch_loss),
    Measurement('eval_loss', _eval_loss),
    Measurement('eval_accuracy', _eval_accuracy),
    Measurement('sharpness', _sharpness),
    Measurement('lr_sharpness', _lr_sharpness, consistency=(('lr_sharpness', 'η·λ_max(H)'),), lr_weighted=True),
    Measurement('feature_movement', _feature_movement,
                panels=(Panel('feature_movement', '‖h_t − h_0‖ / ‖h_0‖ (last hidden layer)'),)),
    Measurement('stacked_weights', _stacked_weights, enabled=lambda c: c.measure.stacked_weights,
                outputs=('orthogonality_gap', 'orthogonality_gap_max', 'log_grad_w1', 'log_grad_last'),
                panels=(Panel('orthogonality_gap', 'orthogonality gap of the hidden weights (mean over layers)'),
                        Panel('log_grad_w1', 'log ‖∇W1 loss‖'))),
    Measurement('hessian_eig', _hessian_eig, size=lambda c: c.measure.hessian_k,
                enabled=lambda c: c.measure.hessian_k > 1 and c.measure.solver == 'lanczos'),
    Measurement('adam_sharpness', _adam_sharpness, enabled=lambda c: c.optimizer.name == 'adam',
                panels=(Panel('adam_sharpness', 'λ_max(P⁻¹H): Adam preconditioned',
                              reference=('adam_sharpness_threshold', '(2+2β1)/(1−β1)')),),
                consistency=(('adam_sharpness', 'λ_max(P⁻¹H) (Adam)'),), lr_weighted=True),
    Measurement('gn_eig', _gn_eig, enabled=lambda c: c.measure.gauss_newton, size=lambda c: c.measure.hessian_k,
                panels=(Panel('gn_eig_1', 'λ_max(G) / λ_max(H): Gauss-Newton share', value=_gn_share),),
                consistency=(('gn_eig_1', 'η·λ_max(G)'),)),
    Measurement('residual_top', _residual_top, enabled=lambda c: c.measure.gauss_newton,
                panels=(Panel('residual_top', 'λ_max(R), R = H − G'),),
                consistency=(('residual_top', 'η·λ_max(R)'),)),
    Measurement('ntk_eig', _ntk_eig, enabled=lambda c: c.measure.ntk_k > 0, size=lambda c: c.measure.ntk_k,
                panels=(Panel('ntk_eig_1', 'λ_max(J Jᵀ): raw NTK'),)),
    Measurement('ntk_lr_eig', _ntk_lr_eig, enabled=lambda c: c.measure.ntk_k > 0, size=lambda c: c.measure.ntk_k,
                panels=(Panel('ntk_lr_eig_1', 'λ_max(J D Jᵀ): learning-rate-weighted NTK'),),
                consistency=(('ntk_lr_eig_1', 'λ_max(J D Jᵀ)'),), lr_weighted=True),
    Measurement('hessian_trace', _hessian_trace, enabled=lambda c: c.measure.trace_samples > 0,
                outputs=('hessian_trace', 'hessian_trace_se')),
    Measurement('directional_sharpness', _directional_sharpness, enabled=lambda c: c.measure.directional),
    Measurement('density', _density, enabled=lambda c: c.measure.density_every > 0,
                outputs=('density_grid', 'density'), writes='density.csv'),
)


def by_output(measurements=MEASUREMENTS) -> dict:
  """{output array name: its Measurement}."""
  return {o: meas for meas in measurements for o in meas.outputs}


def spectra_panels(measurements=MEASUREMENTS) -> tuple:
  return tuple(p for meas in measurements for p in meas.panels)


def consistency_quantities(measurements=MEASUREMENTS) -> tuple:
  """((metrics.csv column, label), ...): what analysis compares across sizes, in registry order."""
  return tuple(q for meas in measurements for q in meas.consistency)


def column_owner(column: str, measurements=MEASUREMENTS):
  """The Measurement whose output `column` is (NAME or, for a top-k output, NAME_i); None if none is."""
  for meas in measurements:
    for o in meas.outputs:
      index = column[len(o) + 1:]
      if column == o or (meas.size is not None and column.startswith(o + '_') and index.isdigit()):
        return meas
  return None
