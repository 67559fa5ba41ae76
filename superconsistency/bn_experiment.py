"""[BN] at initialization across depth ("experiment 8"): first-layer gradients and the isometry gap of a BN-MLP.

The network is bn_mlp's (input layer D→N, depth × [linear N→N → BN → act(α_ℓ·x)], readout N→C, BN without mean
subtraction unless bn_center, α_ℓ = ℓ^(−k)), in standard parameterization so every weight is its effective weight.
Like bn_mlp, the hidden weights are one stacked (L, N, N) array and the blocks (models.bn_block, bn_mlp's own) are a
`lax.scan`; this scan also records Gram matrices and takes the activation as a traced number, so lanes of every
variant share one program (tested against bn_mlp with the same weights). The weights are bn_mlp's inits (Haar
orthogonal, or N(0, 1/fan_in)), independent across depths and seeds, drawn in one program per init; one compiled
program per depth then runs every lane (variant × seed) through `lax.map`.

Loss: cross-entropy (or MSE on one-hot targets, bn_depth.loss) of random labels over bn_depth.num_classes classes.
Gradient: ‖∇_{W_1} loss‖_F of the first hidden weight (slice 0 of bn_mlp's `hidden`, as bn_depth.layer_gradient_norms
defines W_1), natural log. Isometry gap φ (bn_depth.isometry_gap's definition) of the batch representation after the
input layer (block 0) and after blocks ℓ (log-spaced and evenly spaced, `gap_layers`): the Gram matrices come out of
the compiled program and φ is computed in numpy float64 from their eigenvalues (`isometry_gap_from_gram`), not with a
LAPACK call inside jit+vmap (it can deadlock jaxlib 0.10's CPU thread pool). Representations are causal, so block ℓ
of a deeper network is a sample of the same distribution as block ℓ of a shallower one: gaps are recorded at every
depth, and the analysis pools them.

Variants: `linear/{orthogonal,gaussian}/{independent,degenerate}/k=0` (the theory's setting and its two failure
modes), and `{tanh,sin}/orthogonal/independent/k={shaping_ks}` (activation shaping). Inputs: independent = a Gaussian
batch (n × D); degenerate = 'repeated' (degenerate_rank distinct Gaussian samples, tiled to n rows) or 'low_rank'
(n distinct samples in a degenerate_rank-dimensional subspace). Keys come from PRNGKey(config.seed + seed); a seed
gives the same inputs, labels and weights in every variant (paired comparisons).

bn_depth.csv, one row per (variant, depth, seed): variant, activation, weight_init, inputs, shaping_k, depth, seed,
  width, batch_size, loss, log_grad_w1, log_grad_last (the last hidden weight), log_grad_input (the input layer).
bn_isometry.csv, one row per (variant, depth, seed, block): ..., block (0 = after the input layer), isometry_gap
  (inf where the Gram matrix is numerically singular: repeated samples, or rank collapse beyond float64's reach).
"""
from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import config as config_lib
from superconsistency import models
from superconsistency import results
from superconsistency import draws
from superconsistency.layers import haar_orthogonal
from superconsistency.fits import linear_fit

ACTIVATIONS = ('linear', 'tanh', 'sin')   # the index is the lane's traced activation id
INPUTS = ('independent', 'degenerate')
DEGENERATE_KINDS = ('repeated', 'low_rank')
LANE_COLUMNS = ('variant', 'activation', 'weight_init', 'inputs', 'shaping_k', 'depth', 'seed')
COLUMNS = LANE_COLUMNS + ('width', 'batch_size', 'loss', 'log_grad_w1', 'log_grad_last', 'log_grad_input')
GAP_COLUMNS = LANE_COLUMNS + ('block', 'isometry_gap')
OUTPUTS = ('bn_depth.csv', 'bn_isometry.csv', 'config.json', 'summary.json')
REFERENCE = 'linear/orthogonal/independent/k=0'   # the theory's setting: bounded gradients, decaying gap


def defaults():
  """The bn_depth experiment's config: [BN]'s BN-MLP at init across depth (c.dtype applies)."""
  import ml_collections
  c = ml_collections.ConfigDict()
  c.experiment = 'bn_depth'
  c.seed = 0                       # offset added to every seed
  c.dtype = 'float64'              # tanh at k = 0 reaches ‖∇W1‖ ≈ e^90; Gram matrices near singular
  c.bn_depth = dict(
      depths=(5, 10, 20, 50, 100, 200, 500, 1000),   # BN blocks L of each network (one compiled program per depth)
      width=32,                        # N, hidden width
      batch_size=0,                    # n, samples in the batch; 0 = width (the theory's n = d)
      input_dim=32,                    # D, features of the random input batch
      num_classes=10,                  # C, readout width; labels are uniform random classes
      loss='cross_entropy',            # 'cross_entropy' | 'mse' (one-hot targets)
      seeds=(0, 1, 2, 3, 4),           # each seed: its own inputs, labels and weights (shared by all variants)
      weight_inits=('orthogonal', 'gaussian'),   # linear-activation variants: weights ...
      inputs=('independent', 'degenerate'),      # ... × inputs (Gaussian batch | rank-deficient batch)
      degenerate_kind='repeated',      # 'repeated': degenerate_rank distinct samples tiled | 'low_rank': a subspace
      degenerate_rank=16,              # rank of the degenerate batch (< batch size)
      shaping_activations=('tanh', 'sin'),   # activation-shaping variants (orthogonal weights, independent inputs)
      shaping_ks=(0.0, 0.4),           # α_ℓ = ℓ^(−k) for those; 0 = no shaping
      bn_center=False,                 # subtract the batch mean in BN (the theory does not)
      gap_layers_per_decade=8,         # isometry gap recorded at block 0 and log-spaced blocks up to max(depths) ...
      gap_fit_blocks=20,               # ... and at this many evenly spaced blocks, which the exp(−ℓ/k) fit uses
      lanes_per_batch=8)               # lanes (variant × seed) vmapped together; bounds memory at large depth
  return c


# ------------------------------------------------------------------------------------------------ the network

def _draw(key, count, rows, cols, weight_init, dtype):
  """(count, rows, cols) independent effective weights: Haar (semi-)orthogonal (bn_mlp's orthogonal init) or
  N(0, 1/rows) (standard parameterization's Gaussian init)."""
  keys = jax.random.split(key, count)
  if weight_init == 'orthogonal':
    return jax.vmap(lambda k: haar_orthogonal(k, rows, cols, dtype))(keys)
  return jax.vmap(lambda k: draws.normal(k, (rows, cols), dtype))(keys) / math.sqrt(rows)


def draw_networks(key, depths, in_dim, width, num_classes, weight_init, dtype):
  """Independent networks, one per depth, in one program (compiling a draw per depth would take seconds each):
  (w_in (len(depths), D, N), w_hidden (sum(depths), N, N), w_out (len(depths), N, C)); the i-th network's hidden
  weights are w_hidden[sum(depths[:i]) : sum(depths[:i + 1])]."""
  k_in, k_hidden, k_out = jax.random.split(key, 3)
  return (_draw(k_in, len(depths), in_dim, width, weight_init, dtype),
          _draw(k_hidden, sum(depths), width, width, weight_init, dtype),
          _draw(k_out, len(depths), width, num_classes, weight_init, dtype))


def effective_weights(model, params):
  """bn_mlp params → (w_in, w_hidden stacked, w_out): each weight times its forward multiplier, the matrix the
  forward pass applies (what bn_depth.layer_gradient_norms differentiates by default)."""
  return tuple(params[name] * model.layers[name].multiplier for name in ('input', 'hidden', 'readout'))


def _activation(u, act_id):
  """ACTIVATIONS[act_id](u) with a traced id, so lanes of different activations share one program."""
  return jnp.where(act_id == 0, u, jnp.where(act_id == 1, jnp.tanh(u), jnp.sin(u)))


def forward(weights, x, act_id, shaping_k, bn_center=False, gram_slots=None):
  """bn_mlp's forward pass on effective weights, its blocks (models.bn_block) scanned over the stacked hidden
  weights, with the activation ACTIVATIONS[act_id] chosen by a traced id. Returns (outputs, grams): grams[s] is the Gram
  matrix h·hᵀ of the representation at the block whose entry in gram_slots (one int per block 0..L, block 0 = the
  input layer's output) is s; blocks with slot R = len(grams) − 1 are not recorded (that last slot is scratch).
  gram_slots None: grams[0] is the last block's."""
  w_in, w_hidden, w_out = weights
  depth, n = w_hidden.shape[0], x.shape[0]
  slots = jnp.full((depth + 1,), 0, jnp.int32) if gram_slots is None else jnp.asarray(gram_slots, jnp.int32)
  num_slots = 1 if gram_slots is None else int(np.max(gram_slots)) + 1
  gram = lambda h: jax.lax.stop_gradient(h) @ jax.lax.stop_gradient(h).T   # a measurement, not part of the loss
  record = lambda grams, h, slot: jax.lax.dynamic_update_index_in_dim(grams, gram(h), slot, 0)
  gains = jnp.arange(1, depth + 1, dtype=x.dtype) ** (-shaping_k)
  h = x.reshape(n, -1) @ w_in
  grams = record(jnp.zeros((num_slots, n, n), x.dtype), h, slots[0])

  def block(carry, layer):
    h, grams = carry
    w, gain, slot = layer
    h = models.bn_block(h, w, 1.0, gain, lambda u: _activation(u, act_id), bn_center)
    return (h, record(grams, h, slot)), None

  (h, grams), _ = jax.lax.scan(block, (h, grams), (w_hidden, gains, slots[1:]))
  return h @ w_out, grams


def gradients(weights, x, y, act_id, shaping_k, loss_fn, bn_center=False, gram_slots=None):
  """(loss, (grad w_in, grad w_hidden, grad w_out), grams) on the batch (x, y)."""
  def loss(ws):
    out, grams = forward(ws, x, act_id, shaping_k, bn_center, gram_slots)
    return loss_fn(out, y), grams
  (value, grams), grads = jax.value_and_grad(loss, has_aux=True)(weights)
  return value, grads, grams


def frobenius(g):
  """‖g‖_F over the last two axes."""
  return jnp.sqrt(jnp.sum(jnp.square(g), axis=(-2, -1)))


def isometry_gap_from_gram(gram):
  """φ = log((tr G/n) / det(G)^(1/n)) of Gram matrices (..., n, n), in numpy float64 from eigenvalues λ of
  G/(tr G/n) (mean 1): φ = mean(λ − 1 − log λ), a sum of non-negative terms, so it stays accurate near isometry,
  where log det alone would cancel to rounding. inf where G is numerically singular (λ_min <= n·eps·λ_max): there
  the small eigenvalues are rounding of either sign and φ would be set by rounding (bn_depth.isometry_gap returns a
  rounding-determined finite value or inf there)."""
  g = np.asarray(gram, np.float64)
  n = g.shape[-1]
  g = g / (np.trace(g, axis1=-2, axis2=-1) / n)[..., None, None]
  lam = np.linalg.eigvalsh(g)
  singular = lam.min(axis=-1) <= n * np.finfo(np.float64).eps * lam.max(axis=-1)
  with np.errstate(invalid='ignore', divide='ignore'):
    gap = np.mean((lam - 1.0) - np.log1p(lam - 1.0), axis=-1)
  return np.where(singular, np.inf, gap)


def make_inputs(key, batch_size, in_dim, num_classes, degenerate_kind, degenerate_rank, dtype):
  """(x independent, x degenerate, y): a Gaussian batch, its degenerate version (module docstring) built from the same
  samples, and random labels."""
  k_x, k_a, k_y = jax.random.split(key, 3)
  x = draws.normal(k_x, (batch_size, in_dim), dtype)
  if degenerate_kind == 'repeated':
    x_deg = jnp.tile(x[:degenerate_rank], (-(-batch_size // degenerate_rank), 1))[:batch_size]
  else:
    mix = draws.normal(k_a, (batch_size, degenerate_rank), dtype) / math.sqrt(degenerate_rank)
    x_deg = mix @ x[:degenerate_rank]
  return x, x_deg, jax.random.randint(k_y, (batch_size,), 0, num_classes)


# ------------------------------------------------------------------------------------------------ the experiment

def variants(bc) -> list[dict]:
  out = [dict(activation='linear', weight_init=init, inputs=inputs, shaping_k=0.0)
         for init in bc.weight_inits for inputs in bc.inputs]
  out += [dict(activation=act, weight_init='orthogonal', inputs='independent', shaping_k=float(k))
          for act in bc.shaping_activations for k in bc.shaping_ks]
  for v in out:
    v['variant'] = f'{v["activation"]}/{v["weight_init"]}/{v["inputs"]}/k={v["shaping_k"]:g}'
  return out


def fit_blocks(bc) -> list[int]:
  """Evenly spaced blocks (gap_fit_blocks of them, up to the largest depth) that the exp(−ℓ/k) fit uses: on the
  log-spaced blocks alone the early transient would dominate it."""
  top = max(bc['depths'])
  return sorted({max(1, int(round(v))) for v in np.linspace(0, top, bc['gap_fit_blocks'] + 1)[1:]})


def gap_layers(bc) -> list[int]:
  """Blocks whose isometry gap is recorded: 0 (the input layer's output), log-spaced blocks up to the largest depth
  (gap_layers_per_decade), and fit_blocks."""
  top = max(bc['depths'])
  count = max(2, int(round(math.log10(top) * bc['gap_layers_per_decade'])) + 1)
  return sorted({0} | {int(round(v)) for v in np.logspace(0, math.log10(top), count)} | set(fit_blocks(bc)))


def _seed_keys(seed):
  """(data key, weights key) of a seed: the same in every variant and depth."""
  return jax.random.split(jax.random.PRNGKey(seed))


def draw_everything(bc, lanes, dtype, seed_offset=0):
  """Inputs per seed and independent networks per (seed, weight_init), in one compiled draw per weight_init.
  Returns (data: x, x_deg, y with a leading seed axis; weights: w_in, w_hidden, w_out with a leading set axis;
  per-lane arrays seed_index, set_index)."""
  seeds = sorted({l['seed'] for l in lanes})
  sets = sorted({(l['weight_init'], l['seed']) for l in lanes})
  n, depths = bc.batch_size or bc.width, sorted(bc.depths)
  data_keys = jnp.stack([_seed_keys(seed_offset + s)[0] for s in seeds])
  data = jax.jit(jax.vmap(lambda k: make_inputs(k, n, bc.input_dim, bc.num_classes, bc.degenerate_kind,
                                                bc.degenerate_rank, dtype)))(data_keys)
  parts = []
  for init in sorted({i for i, _ in sets}):
    keys = jnp.stack([_seed_keys(seed_offset + s)[1] for i, s in sets if i == init])
    parts.append(jax.jit(jax.vmap(lambda k: draw_networks(k, depths, bc.input_dim, bc.width, bc.num_classes, init,
                                                          dtype)))(keys))
  weights = jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
  seed_index = np.array([seeds.index(l['seed']) for l in lanes], np.int32)
  set_index = np.array([sets.index((l['weight_init'], l['seed'])) for l in lanes], np.int32)
  return data, weights, seed_index, set_index


def _depth_program(bc, depth):
  """jit(fn(weights of this depth with a leading set axis, data, lanes) → per-lane numbers), and the recorded blocks.
  A lane is (set index, seed index, activation id, degenerate, shaping k); lax.map runs lanes_per_batch at a time."""
  layers = [l for l in gap_layers(bc) if l <= depth]
  slots = np.full(depth + 1, len(layers), np.int32)   # unrecorded blocks write to the scratch slot
  slots[layers] = np.arange(len(layers))
  loss_fn = models.LOSSES[bc.loss]

  def run(weights, data, lanes):
    x_all, x_deg_all, y_all = data

    def lane(args):
      set_i, seed_i, act_id, degenerate, shaping_k = args
      ws = jax.tree.map(lambda w: w[set_i], weights)
      x = jnp.where(degenerate, x_deg_all[seed_i], x_all[seed_i])
      loss, (g_in, g_hidden, _), grams = gradients(ws, x, y_all[seed_i], act_id, shaping_k, loss_fn, bc.bn_center,
                                                   slots)
      return dict(loss=loss, log_grad_w1=jnp.log(frobenius(g_hidden[0])),
                  log_grad_last=jnp.log(frobenius(g_hidden[-1])), log_grad_input=jnp.log(frobenius(g_in)),
                  grams=grams[:len(layers)])

    return jax.lax.map(lane, lanes, batch_size=min(bc.lanes_per_batch, lanes[0].shape[0]))

  return jax.jit(run), layers


def compute(bc, lanes, dtype_name='float64', on_depth=None, seed_offset=0) -> list:
  """[(depth, recorded blocks, {loss, log_grad_w1, log_grad_last, log_grad_input: (lanes,), isometry_gap: (lanes,
  blocks)})] for each of bc.depths ascending; lanes are dicts with activation, weight_init, inputs, shaping_k, seed
  (keys from seed + seed_offset)."""
  out = []
  with jax.enable_x64(dtype_name == 'float64'):
    dtype = jnp.dtype(dtype_name)
    data, (w_in, w_hidden, w_out), seed_index, set_index = draw_everything(bc, lanes, dtype, seed_offset)
    lane_args = (jnp.asarray(set_index), jnp.asarray(seed_index),
                 jnp.asarray([ACTIVATIONS.index(l['activation']) for l in lanes], jnp.int32),
                 jnp.asarray([l['inputs'] == 'degenerate' for l in lanes]),
                 jnp.asarray([l['shaping_k'] for l in lanes], dtype))
    offset = 0
    for i, depth in enumerate(sorted(bc.depths)):   # network i of each set is this depth's (draw_networks)
      program, layers = _depth_program(bc, depth)
      weights = (w_in[:, i], w_hidden[:, offset:offset + depth], w_out[:, i])
      offset += depth
      numbers = jax.tree.map(np.asarray, program(weights, data, lane_args))
      numbers['isometry_gap'] = isometry_gap_from_gram(numbers.pop('grams'))
      out.append((depth, layers, numbers))
      if on_depth:
        on_depth()
  return out


def validate(cfg):
  bc = cfg.bn_depth

  def req(cond, field, message):
    if not cond:
      raise config_lib.ConfigError(f'bn_depth.{field}', message)

  req(len(bc.depths) >= 2 and all(isinstance(d, int) and d >= 1 for d in bc.depths), 'depths',
      f'needs at least two positive integer depths (a slope), got {tuple(bc.depths)!r}')
  req(len(set(bc.depths)) == len(bc.depths), 'depths', f'has repeated depths: {tuple(bc.depths)!r}')
  for name in ('width', 'input_dim', 'num_classes', 'lanes_per_batch', 'gap_layers_per_decade', 'gap_fit_blocks'):
    req(isinstance(bc[name], int) and bc[name] >= 1, name, f'must be a positive integer, got {bc[name]!r}')
  req(bc.num_classes >= 2, 'num_classes', 'must be >= 2')
  req(isinstance(bc.batch_size, int) and bc.batch_size >= 0, 'batch_size', f'must be 0 (= width) or >= 2, got '
      f'{bc.batch_size!r}')
  n = bc.batch_size or bc.width
  req(n >= 2, 'batch_size', f'an isometry gap needs >= 2 samples, got {n}')
  req(len(bc.seeds) >= 1 and all(isinstance(s, int) and s >= 0 for s in bc.seeds), 'seeds',
      f'needs non-negative integer seeds, got {tuple(bc.seeds)!r}')
  req(bc.loss in models.LOSSES, 'loss', f'unknown loss {bc.loss!r}; allowed: {", ".join(models.LOSSES)}')
  for name, allowed in (('weight_inits', models.WEIGHT_INITS), ('inputs', INPUTS),
                        ('shaping_activations', ACTIVATIONS)):
    unknown = [v for v in bc[name] if v not in allowed]
    req(not unknown, name, f'unknown {", ".join(map(repr, unknown))}; allowed: {", ".join(allowed)}')
  req(all(k >= 0 for k in bc.shaping_ks), 'shaping_ks', f'needs k >= 0, got {tuple(bc.shaping_ks)!r}')
  req(bc.degenerate_kind in DEGENERATE_KINDS, 'degenerate_kind',
      f'unknown {bc.degenerate_kind!r}; allowed: {", ".join(DEGENERATE_KINDS)}')
  req(isinstance(bc.degenerate_rank, int) and 1 <= bc.degenerate_rank < n, 'degenerate_rank',
      f'must be an integer in 1..{n - 1} (below the batch size, so the batch is rank deficient), got '
      f'{bc.degenerate_rank!r}')
  names = [v['variant'] for v in variants(bc)]
  req(bool(names), 'weight_inits', 'no variant to run (weight_inits, inputs and shaping_* are all empty)')
  req(len(set(names)) == len(names), 'shaping_activations', f'repeats a variant: {", ".join(names)}')


def run_experiment(cfg, workdir, overwrite=False, progress=True, plots=True) -> dict:
  """Validates bn_depth, then writes config.json, bn_depth.csv, bn_isometry.csv, figures and summary.json (last)."""
  start = time.time()   # experiments.run validated the config and checked the workdir
  results.start_workdir(workdir, tuple(OUTPUTS) + ('analysis_bn_depth*.png', 'analysis.json'), cfg.to_dict())
  bc = cfg.bn_depth
  lanes = [dict(v, seed=s) for v in variants(bc) for s in bc.seeds]
  writer = results.MetricsWriter(workdir, COLUMNS, 'bn_depth.csv')
  gap_writer = results.MetricsWriter(workdir, GAP_COLUMNS, 'bn_isometry.csv')
  bar = None
  if progress:
    import sys
    from tqdm import tqdm
    bar = tqdm(total=len(bc.depths), unit='depth', file=sys.stderr, dynamic_ncols=True)
  for depth, layers, out in compute(bc, lanes, cfg.dtype, bar.update if bar else None, cfg.seed):
    meta = [{k: lane[k] for k in LANE_COLUMNS if k != 'depth'} | dict(depth=depth) for lane in lanes]
    writer.write([dict(m, width=bc.width, batch_size=bc.batch_size or bc.width,
                       **{k: float(out[k][j]) for k in COLUMNS if k in out}) for j, m in enumerate(meta)])
    gap_writer.write([dict(m, block=layer, isometry_gap=float(out['isometry_gap'][j, b]))
                      for j, m in enumerate(meta) for b, layer in enumerate(layers)])
  if bar:
    bar.close()
  compute_time = time.time() - start
  summary = analyze(workdir) if plots else measure(workdir)
  summary['wall_time_s'] = dict(compute=round(compute_time, 1), total=round(time.time() - start, 1))
  results.write_json(os.path.join(workdir, 'summary.json'), results.json_safe(summary))   # last: marks the run finished
  return summary


# ------------------------------------------------------------------------------------------------ analysis

def _load(workdir):
  with open(os.path.join(workdir, 'config.json')) as f:
    bc = json.load(f)['bn_depth']
  return (bc, results.read_csv(os.path.join(workdir, 'bn_depth.csv')),
          results.read_csv(os.path.join(workdir, 'bn_isometry.csv')))


def measure(workdir) -> dict:
  """The numbers, from config.json and the two CSVs only. Per variant: the OLS slope per layer of log‖∇W1‖ against
  depth (all seeds pooled) with its 95% interval, the growth of the seed-mean from the smallest to the largest depth,
  and the isometry gap's decay rate 1/k from log φ = a − ℓ/k over blocks >= 1 with finite positive φ."""
  bc, rows, gap_rows = _load(workdir)
  out = dict(loss=bc['loss'], width=bc['width'], batch_size=bc['batch_size'] or bc['width'],
             depths=sorted(bc['depths']), seeds=list(bc['seeds']), gradient=dict(variant_order=[]), isometry={})
  for name in dict.fromkeys(r['variant'] for r in rows):
    rs = [r for r in rows if r['variant'] == name]
    depths = sorted({r['depth'] for r in rs})
    mean = {d: float(np.mean([r['log_grad_w1'] for r in rs if r['depth'] == d])) for d in depths}
    finite = [r for r in rs if np.isfinite(r['log_grad_w1'])]
    out['gradient'][name] = dict(
        slope_per_layer=linear_fit([r['depth'] for r in finite], [r['log_grad_w1'] for r in finite]),
        mean_log_grad_w1=mean, growth=mean[depths[-1]] - mean[depths[0]],
        mean_log_grad_last={d: float(np.mean([r['log_grad_last'] for r in rs if r['depth'] == d])) for d in depths})
    out['gradient']['variant_order'].append(name)
    gs = [r for r in gap_rows if r['variant'] == name]
    blocks = sorted({int(r['block']) for r in gs})
    median_gap = {b: float(np.median([r['isometry_gap'] for r in gs if r['block'] == b])) for b in blocks}
    # log φ = a − ℓ/k on the median over depths and seeds at the evenly spaced blocks, where finite and positive
    usable = [b for b in fit_blocks(bc) if b in median_gap and np.isfinite(median_gap[b]) and median_gap[b] > 0]
    fit = linear_fit(usable, [math.log(median_gap[b]) for b in usable])
    k = -1.0 / fit['slope'] if fit['slope'] < 0 else float('nan')
    out['isometry'][name] = dict(
        log_gap_fit=fit, decay_rate_per_layer=-fit['slope'], decay_rate_ci95=sorted(-s for s in fit['ci95']),
        k_layers=k, fit_blocks=usable, median_gap=median_gap,
        first_infinite_median_block=min((b for b, g in median_gap.items() if not np.isfinite(g)), default=None),
        fraction_infinite=float(np.mean([not np.isfinite(r['isometry_gap']) for r in gs])))
  ref = out['gradient'].get(REFERENCE)
  out['reference'] = REFERENCE
  if ref:
    out['reference_initial_gap'] = out['isometry'][REFERENCE]['median_gap'].get(0)
  return out


def analyze(workdir) -> dict:
  """measure(workdir) plus analysis_bn_depth.png (log‖∇W1‖ against depth with the fitted lines) and
  analysis_bn_depth_isometry.png (φ against block with the exp(−ℓ/k) fits)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  numbers = measure(workdir)
  bc, rows, gap_rows = _load(workdir)
  names = numbers['gradient']['variant_order']
  groups = (('linear activations: weights × inputs', [v for v in names if v.startswith('linear/')]),
            ('activation shaping α_ℓ = ℓ^(−k), orthogonal, independent', [v for v in names
                                                                          if not v.startswith('linear/')]))
  groups = [(t, vs) for t, vs in groups if vs]
  colors = dict(zip(names, plt.cm.tab10(np.arange(len(names)) % 10)))
  depth_grid = np.array([min(bc['depths']), max(bc['depths'])], float)

  fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 5), squeeze=False)
  for ax, (title, vs) in zip(axes[0], groups):
    for v in vs:
      rs = [r for r in rows if r['variant'] == v]
      fit = numbers['gradient'][v]['slope_per_layer']
      ax.plot([r['depth'] for r in rs], [r['log_grad_w1'] for r in rs], 'o', ms=3, alpha=0.5, color=colors[v])
      mean = numbers['gradient'][v]['mean_log_grad_w1']
      ax.plot(list(mean), list(mean.values()), '-', lw=0.8, color=colors[v])
      lo, hi = fit['ci95']
      ax.plot(depth_grid, fit['intercept'] + fit['slope'] * depth_grid, '--', color=colors[v],
              label=f'{v}: slope {fit["slope"]:.2g}/layer [{lo:.2g}, {hi:.2g}]')
    # linear depth axis: the theory's trends are straight lines in L (bounded, or linear growth)
    ax.set(xlabel='depth L (BN blocks)', ylabel=r'$\log\,\|\nabla_{W_1}\mathrm{loss}\|_F$ (natural log)', title=title)
    ax.legend(fontsize=7, title='dots: seeds, solid: seed mean, dashed: OLS fit in L', title_fontsize=7)
  sizes = (f'width = batch = {numbers["width"]}' if numbers['width'] == numbers['batch_size'] else
           f'width {numbers["width"]}, batch {numbers["batch_size"]}')
  fig.suptitle(f'[BN] at init: {sizes}, {numbers["loss"]} on random labels', fontsize=10)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'analysis_bn_depth.png'), dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 6.5), squeeze=False)
  for ax, (title, vs) in zip(axes[0], groups):
    for v in vs:
      iso = numbers['isometry'][v]
      gs = [r for r in gap_rows if r['variant'] == v and np.isfinite(r['isometry_gap']) and r['isometry_gap'] > 0]
      label = v if iso['fraction_infinite'] == 0 else (
          f'{v}: φ = ∞ (numerically singular Gram) in {100 * iso["fraction_infinite"]:.0f}% of points, not drawn; '
          f'median ∞ from block {iso["first_infinite_median_block"]}')
      ax.plot([r['block'] for r in gs], [r['isometry_gap'] for r in gs], 'o', ms=2.5, alpha=0.4, color=colors[v],
              label=label)
      med = {b: g for b, g in iso['median_gap'].items() if np.isfinite(g) and g > 0}
      ax.plot(list(med), list(med.values()), '-', lw=0.8, color=colors[v])
      fit = iso['log_gap_fit']
      if np.isfinite(fit['slope']):   # drawn over the blocks it was fitted on
        k = f'k = {iso["k_layers"]:.3g} layers' if np.isfinite(iso['k_layers']) else 'grows'
        layer_grid = np.array([min(iso['fit_blocks']), max(iso['fit_blocks'])], float)
        ax.plot(layer_grid, np.exp(fit['intercept'] + fit['slope'] * layer_grid), '--', color=colors[v],
                label=f'  fit φ ∝ exp(−ℓ/k): {k}')
    ax.set(yscale='log', xlabel='block ℓ (0 = after the input layer)', ylabel='isometry gap φ', title=title)
    ax.legend(fontsize=7, title='dots: every depth and seed, solid: median', title_fontsize=7, loc='upper center',
              bbox_to_anchor=(0.5, -0.13), ncol=1)   # below the axes: the data fill the plot's corners
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'analysis_bn_depth_isometry.png'), dpi=110)
  plt.close(fig)
  return numbers
