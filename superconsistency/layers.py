"""The contract every model keeps: layer metadata, the Model a builder returns, one init, the norms.

A model is plain JAX in multiplier form: its params are a flat dict {name: raw weight}, and the forward pass
multiplies each raw weight by a constant that the parameterization decides. `Model.layers` says, per parameter,
what the parameterization needs to know (kind, fan-in) and what the model applies (the multiplier), so consumers
(the optimizer's per-layer rates, [BN]'s effective weights, the tests) read it instead of guessing.

Repeated blocks are *stacked*: one parameter holds the weights of the same role in every block along a leading
axis, and the forward pass runs the blocks with `lax.scan`, so compile time does not grow with depth.
models.py (mlp, simple_convnet, resnet, bn_mlp) and transformers.py (vit, gpt2) build on this module.
"""
from __future__ import annotations

import collections
import contextlib
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from superconsistency import parameterization as pz
from superconsistency.draws import flat_is_exact, normal

# The one epsilon of batch_norm and layer_norm. The transformers used 1e-6 before they shared layer_norm, so their
# outputs differ from that code's at rounding level (var + 1e-5 instead of var + 1e-6, var ≈ 1).
NORM_EPS = 1e-5


class Layer(NamedTuple):
  """One parameter of a model, as the parameterization sees it.

  kind: one of pz.LAYER_KINDS.
  fan_in: what pz.init_std and pz.forward_multiplier take: the product of all but the last axis of one weight
    (a conv's k·k·C_in), except for lookup tables (token and position embeddings, a CLS token), whose fan-in is 1.
  multiplier: the forward multiplier the model applies to the raw weight, pz.forward_multiplier(kind, fan_in, N).
    On top of it the model divides the readout's output by γ0, and multiplies the sum of a residual branch by
    pz.branch_multiplier(param, Model.depth).
  shape: the parameter's shape.
  stacked: 0 for a single weight; n > 0 for the weights of n blocks stacked along a leading axis (shape[0] == n).
    kind, fan_in and multiplier then describe each slice w[i].
  """
  kind: str
  fan_in: int
  multiplier: float
  shape: tuple
  stacked: int = 0

  @property
  def slice_shape(self) -> tuple:
    return self.shape[1:] if self.stacked else self.shape


def layer(param: pz.Parameterization, width: int, kind: str, shape, stacked: int = 0, fan_in: int | None = None):
  """The Layer of a weight of `shape` (with its stack axis first when stacked). fan_in defaults to the product of
  all but the last axis of one slice."""
  shape = tuple(shape)
  if stacked and shape[0] != stacked:
    raise ValueError(f'a stack of {stacked} weights needs a leading axis of {stacked}, got shape {shape}')
  if fan_in is None:
    fan_in = math.prod((shape[1:] if stacked else shape)[:-1])
  return Layer(kind, fan_in, pz.forward_multiplier(param, kind, fan_in, width), shape, stacked)


# While a lane program is traced (train.make_lane_program), the forward multipliers come from its inputs: {param
# name: traced scalar}, else None. See ForwardMultipliers.
_LIFTED = [None]


@contextlib.contextmanager
def lifted_multipliers(values: dict | None):
  """While tracing inside this block, `ForwardMultipliers(...)[name]` is `values[name]` (a traced input of the
  program being traced) instead of the Layer's float; None leaves the floats. The lane programs pass a model's
  multipliers in as inputs so that two models that differ only in these numbers (μP and NTP at one width) trace
  to one program, compiled once (lanes.CompiledOnce shares it). x·c is the same float operation whether c is a
  constant or an input; only XLA's folding of constants together differs (tests/shared_programs_test.py: the
  training bit for bit, Hessian products to float rounding)."""
  before = _LIFTED[0]
  _LIFTED[0] = values
  try:
    yield
  finally:
    _LIFTED[0] = before


class ForwardMultipliers:
  """{param name: forward multiplier} as a model's forward pass reads it: the Layer's float, or while a lane
  program is traced, the program's input (lifted_multipliers). A model reads it at call time (inside apply)."""

  def __init__(self, layers: dict):
    self._floats = {n: l.multiplier for n, l in layers.items()}

  def __getitem__(self, name):
    lifted = _LIFTED[0]
    return lifted[name] if lifted is not None and name in lifted else self._floats[name]


class Model(NamedTuple):
  """A model bound to one width, depth and parameterization. All fields are static.

  apply(params, x, gamma0=1.0, with_activations=False) returns the output, or (output, activations): a dict of
  (batch, ...) arrays in forward order, one per reported layer output or block output (the blocks of a scan are
  reported one name each). An activation named like a parameter is that layer's output; any other is the output of
  a block (the coordinate check and the isometry gaps tell them apart so). The entry before the readout's is the
  last hidden representation (what train's features read).
  """
  init: Callable      # key -> params {name: raw weight}, the names and shapes of `layers`
  apply: Callable
  layers: dict        # param name -> Layer
  width: int
  depth: int          # the L the depth rules use: residual blocks (resnet, vit, gpt2), BN blocks (bn_mlp),
                      # weight layers (mlp), 1 (simple_convnet)
  param: pz.Parameterization
  per_example: bool = False   # each output depends on its own example only (no batch statistics), so a batch may
                              # be split into micro-batches (program.microbatches); False where unknown

  @property
  def kinds(self) -> dict:
    """param name -> layer kind, what the optimizer's per-layer rules read."""
    return {name: l.kind for name, l in self.layers.items()}


def init_layers(key, layers: dict, param: pz.Parameterization, dtype):
  """Raw weights pz.init_std(kind, fan_in)·N(0, 1) for every Layer.

  Weight i, counting a stacked layer's slices one by one in the order of `layers`, draws
  jax.random.normal(split(key, number of weights)[i], its shape). It is computed as a few flat draws vmapped over
  the weights' keys (`_draw_groups`), each as long as the largest weight of its group, whose first numbers are each
  weight's: the same numbers, because a threefry number depends only on its key and position. XLA compiles each
  draw separately (about 0.2 s on CPU), so fewer draws compile faster, and compiling init does not grow with
  depth."""
  sizes = [math.prod(l.slice_shape) for l in layers.values() for _ in range(l.stacked or 1)]
  keys = jax.random.split(key, len(sizes))
  where = {}   # weight i -> (its group's draw, its row there)
  for group in _draw_groups(sizes):
    idx = [i for i, size in enumerate(sizes) if size in group]
    draw = jax.vmap(lambda k, n=max(group): jax.random.normal(k, (n,), dtype))(keys[jnp.asarray(idx)])
    where.update({i: (draw, row) for row, i in enumerate(idx)})
  params, i = {}, 0
  for name, l in layers.items():
    draw, row = where[i]
    # a stack's slices are consecutive weights of one size, hence consecutive rows of one group's draw
    flat = draw[row:row + l.stacked, :sizes[i]] if l.stacked else draw[row, :sizes[i]]
    params[name] = pz.init_std(param, l.kind, l.fan_in) * flat.reshape(l.shape)
    i += l.stacked or 1
  return params


def _draw_groups(sizes) -> list:
  """The weight sizes grouped for one flat draw each: from the largest size down, a size joins the current group
  while the group's draw (its weights × its largest size) stays within twice the numbers its weights need. Without
  jax_threefry_partitionable a draw's first numbers are not the shorter draw's: then every size is its own group."""
  counts = collections.Counter(sizes)
  groups = []
  for s in sorted(counts, reverse=True):
    if groups and flat_is_exact():
      joined = groups[-1] + [s]
      if sum(counts[x] for x in joined) * joined[0] <= 2 * sum(counts[x] * x for x in joined):
        groups[-1] = joined
        continue
    groups.append([s])
  return groups


def haar_orthogonal(key, rows: int, cols: int, dtype):
  """A Haar-distributed (semi-)orthogonal rows×cols matrix: orthonormal columns if rows >= cols, else rows.

  Gram-Schmidt (each column orthogonalized twice) of a Gaussian matrix: the Q of its QR with R's diagonal positive,
  which is Haar. Plain XLA ops rather than `jnp.linalg.qr`: on CPU, jaxlib 0.10's batched LAPACK QR (init is
  vmapped over lanes) can deadlock XLA's thread pool, as the batched eigh did (see spectra.small_eigh)."""
  n, k = max(rows, cols), min(rows, cols)
  a = normal(key, (n, k), dtype)

  def column(j, q):
    v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
    earlier = (jnp.arange(k) < j).astype(dtype)
    for _ in range(2):
      v = v - q @ (earlier * (q.T @ v))
    return q.at[:, j].set(v / jnp.sqrt(jnp.sum(v * v)))

  q = jax.lax.fori_loop(0, k, column, jnp.zeros((n, k), dtype))
  return q if rows >= cols else q.T


def batch_norm(x, center: bool = True):
  """Normalizes each feature (the last axis) over the batch and any spatial axes, with the statistics of the batch
  it is given: train mode, no running averages, so the model stays a pure function of (params, x). Each example's
  output therefore depends on the rest of the batch. center=False divides by the feature's RMS over the batch
  without subtracting the mean, as [BN]'s BN(X) = diag(XXᵀ)^(-1/2)·X (up to the factor √batch that keeps entries
  O(1)). No affine gain or shift: the layer kinds cover weight matrices only. eps = NORM_EPS."""
  axes = tuple(range(x.ndim - 1))
  if center:
    x = x - x.mean(axes, keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + NORM_EPS)


def layer_norm(x, axes):
  """Normalizes each example over `axes` (an int or a tuple): (x − mean)/sqrt(var + NORM_EPS), eps = 1e-5.

  resnet normalizes all non-batch axes, as Ba et al. define LayerNorm for a conv feature map (GroupNorm with one
  group; per-position channel statistics gave larger finite-width drifts in the μP coordinate check at the small
  widths the tests can afford); the transformers normalize the last axis (each token). Independent of the rest of
  the batch. No gain or bias: the parameterization has no kind for them. The transformers used eps 1e-6 before;
  with 1e-5 their numbers differ from that code's at rounding level."""
  x = x - x.mean(axes, keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + NORM_EPS)
