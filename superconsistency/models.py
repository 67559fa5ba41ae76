"""Pure models in multiplier form: `init(key) -> params`, `apply(params, x, gamma0) -> outputs`, and the registry
of architectures that `make_model` builds from a config's `model` block.

Plain JAX rather than Flax modules, because the parameterization decides a constant per layer (init scale, forward
multiplier, learning-rate multiplier) and these constants are easiest to audit when every layer is one line that
names its kind. Params are a flat dict `{name: weight}`; `Model.layers` describes each (layers.py).
No biases: the papers' μP derivations and coordinate checks are for bias-free layers. The blocks of a resnet
stage, res_mlp and bn_mlp are stacked and run with lax.scan; mlp and simple_convnet are written out layer by layer.

The parameterization is bound when the model is built (`make_model(..., param)`), so it is static for jit; γ0 is an
argument of `apply` and may be traced.
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import parameterization as pz
from superconsistency import transformers
# Re-exported: models.Layer, models.Model, models.init_layers, ... are the model API in one place.
from superconsistency.layers import (ForwardMultipliers, Layer, Model, batch_norm, haar_orthogonal,  # noqa: F401
                                     init_layers, layer, layer_norm, lifted_multipliers)

ACTIVATIONS = {
    'relu': jax.nn.relu,
    'tanh': jnp.tanh,
    'gelu': jax.nn.gelu,
    'linear': lambda x: x,
    'sin': jnp.sin,
}
NORMS = ('none', 'batch', 'layer')
STEMS = ('auto', 'cifar', 'imagenet')
WEIGHT_INITS = ('orthogonal', 'gaussian')


def _activation(name):
  if name not in ACTIVATIONS:
    raise ValueError(f'unknown activation {name!r}; allowed: {", ".join(ACTIVATIONS)}')
  return ACTIVATIONS[name]


def _refuse_depth_scaling(model_name, param):
  """A model without residual branches has nothing for β·L^(−α) to scale."""
  if getattr(param, 'depth_scaled', param.name == 'depth_mup'):
    raise ValueError(f'{param.name} scales residual branches with depth; {model_name} has no residual branches '
                     '(use mup)')


def _dense(w, x, mult):
  return mult * (x @ w)


def _xla_conv(x, w, stride):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _same_pads(size, k, stride):
  """(out, low, high) of a SAME-padded strided window along one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return out, total // 2, total - total // 2


def slices_conv(x_BxHxWxC, w, stride):
  """The same SAME-padded k×k convolution as one matmul over the k·k strided shifts of the input (im2col by
  slicing). Linear in x; its transpose (what the gradient wrt x uses) is a matmul and k·k strided pads.
  The patches are flattened to a 2-D matrix before the matmul: with the batch and spatial axes left as separate
  contracting axes, XLA:CPU computes the weight gradient (patchesᵀ·dout) several times slower."""
  kh, kw, cin, cout = w.shape
  b, h, wd, _ = x_BxHxWxC.shape
  (oh, ph0, ph1), (ow, pw0, pw1) = _same_pads(h, kh, stride), _same_pads(wd, kw, stride)
  x = jnp.pad(x_BxHxWxC, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
  shifts = [jax.lax.slice(x, (0, i, j, 0), (b, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, cin),
                          (1, stride, stride, 1)) for i in range(kh) for j in range(kw)]
  patches_BxHxWxK = jnp.concatenate(shifts, axis=-1) if len(shifts) > 1 else shifts[0]
  out_MxN = patches_BxHxWxK.reshape(b * oh * ow, kh * kw * cin) @ w.reshape(kh * kw * cin, cout)
  return out_MxN.reshape(b, oh, ow, cout)


_DEVICE_LOOP = [False]


@contextlib.contextmanager
def device_loop():
  """While tracing inside this context, models build their CPU convolutions as the slicing matmul
  (`slices_conv`), as they do in their own scanned blocks: the code traced here runs inside a device loop
  (train.py's loop over micro-batches), where XLA:CPU runs its own convolutions many times slower."""
  before = _DEVICE_LOOP[0]
  _DEVICE_LOOP[0] = True
  try:
    yield
  finally:
    _DEVICE_LOOP[0] = before


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _cpu_conv(x, w, stride):
  return _xla_conv(x, w, stride)


def _cpu_conv_jvp(stride, primals, tangents):
  """XLA:CPU computes the convolution and its gradient wrt the weights well, but its gradient wrt the input of a
  strided convolution (a base-dilated convolution) costs many times the forward pass (benchmarks/conv.md). The
  tangent's input term is therefore written as the slicing matmul, whose transpose is a matmul and pads; the weight
  term stays XLA's. Both terms are linear in the tangents, so reverse mode and Hessian-vector products follow."""
  x, w = primals
  x_dot, w_dot = tangents
  out = _xla_conv(x, w, stride)
  terms = []
  if not isinstance(w_dot, jax.custom_derivatives.SymbolicZero):
    terms.append(_xla_conv(x, w_dot, stride))
  if not isinstance(x_dot, jax.custom_derivatives.SymbolicZero):
    terms.append(slices_conv(x_dot, w, stride))
  tangent = sum(terms[1:], terms[0]) if terms else jnp.zeros_like(out)
  return out, tangent


_cpu_conv.defjvp(_cpu_conv_jvp, symbolic_zeros=True)


def _conv(w, x, mult, stride, backend: str | None = None, in_loop: bool = False):
  """SAME-padded k×k convolution: XLA's own; on CPU a strided one takes the input-gradient term of
  `_cpu_conv_jvp` (a stride-1 convolution's input gradient is a plain convolution, which XLA:CPU does well), and
  one inside a device loop (`in_loop`: a scanned block; or traced under `device_loop()`) is the slicing matmul
  throughout, because XLA:CPU runs its
  own convolutions inside a loop many times slower (benchmarks/conv.md)."""
  backend = backend or jax.default_backend()
  if backend == 'cpu' and (in_loop or _DEVICE_LOOP[0]):
    return mult * slices_conv(x, w, stride)
  if backend != 'cpu' or stride == 1:
    return mult * _xla_conv(x, w, stride)
  return mult * _cpu_conv(x, w, stride)


def max_pool(x_BxHxWxC, size: int, backend: str | None = None):
  """size×size max-pooling with stride size (VALID: a ragged edge is dropped).

  On CPU the windows are a reshape and the max a plain reduction: XLA:CPU's gradient of `reduce_window` (a
  select-and-scatter) costs many times the forward pass, the reduction's gradient about one (benchmarks/conv.md).
  On GPU and TPU, `reduce_window` (XLA's native pooling) is kept. The values are identical; the gradients too,
  except where two entries of a window tie for the maximum: the native op sends the gradient to the first of
  them, the reduction splits it between them (after a ReLU, ties at 0 get no gradient either way)."""
  if (backend or jax.default_backend()) != 'cpu':
    return jax.lax.reduce_window(x_BxHxWxC, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, size, size, 1), 'VALID')
  b, h, w, c = x_BxHxWxC.shape
  oh, ow = h // size, w // size
  x = x_BxHxWxC[:, :oh * size, :ow * size, :]
  return x.reshape(b, oh, size, ow, size, c).max(axis=(2, 4))


def mlp(in_dim: int, num_classes: int, width: int, depth: int, activation: str,
        param: pz.Parameterization, dtype=jnp.float32) -> Model:
  """MLP with `depth` weight layers: D→N, (depth−2)×(N→N), N→C. [G] uses depth = L = 3. Its layers stay one
  parameter each (`layer_00`…): the gallery's MLP runs depend on their names, draws and operations."""
  if depth < 2:
    raise ValueError(f'mlp depth must be >= 2 weight layers, got {depth}')
  _refuse_depth_scaling('mlp', param)
  act = _activation(activation)
  layers = {'layer_00': layer(param, width, 'input', (in_dim, width))}
  for i in range(1, depth - 1):
    layers[f'layer_{i:02d}'] = layer(param, width, 'hidden', (width, width))
  layers[f'layer_{depth - 1:02d}'] = layer(param, width, 'readout', (width, num_classes))
  mults = ForwardMultipliers(layers)

  def apply(params, x_BxD, gamma0=1.0, with_activations=False):
    acts = {}
    h = x_BxD.reshape(x_BxD.shape[0], -1)
    for name, l in layers.items():
      z = _dense(params[name], h, mults[name])
      if l.kind == 'readout':
        z = z / gamma0
      acts[name] = z
      h = act(z) if l.kind != 'readout' else z
    return (h, acts) if with_activations else h

  return Model(lambda key: init_layers(key, layers, param, dtype), apply, layers, width, depth, param,
               per_example=True)


def simple_convnet(image_shape, num_classes: int, width: int, param: pz.Parameterization,
                   dtype=jnp.float32, activation: str = 'relu') -> Model:
  """[SC] Figure 1: conv3×3/2 → ReLU → maxpool2 → conv3×3/4 → ReLU → maxpool2 → readout."""
  h, w, c = image_shape
  out_hw = []
  for s in (h, w):  # SAME conv rounds up, VALID pooling rounds down
    out_hw.append(((-(-s // 2)) // 2 + 3) // 4 // 2)
  spatial = out_hw[0] * out_hw[1]
  if spatial < 1:
    raise ValueError(f'image shape {image_shape} is too small for simple_convnet')
  _refuse_depth_scaling('simple_convnet', param)
  act = _activation(activation)
  layers = {'conv_0': layer(param, width, 'input', (3, 3, c, width)),
            'conv_1': layer(param, width, 'hidden', (3, 3, width, width)),
            'readout': layer(param, width, 'readout', (width * spatial, num_classes))}
  mults = ForwardMultipliers(layers)

  # ReLU is non-decreasing, so it commutes with the max of a pooling window: pooling first applies it to a
  # quarter of the entries, and its gradient's mask is taken there (the same values and gradients)
  pool_act = ((lambda z: act(max_pool(z, 2))) if activation == 'relu' else (lambda z: max_pool(act(z), 2)))

  def apply(params, x_BxHxWxC, gamma0=1.0, with_activations=False):
    acts = {}
    z = _conv(params['conv_0'], x_BxHxWxC, mults['conv_0'], 2)
    acts['conv_0'] = z
    z = _conv(params['conv_1'], pool_act(z), mults['conv_1'], 4)
    acts['conv_1'] = z
    z = pool_act(z)
    z = z.reshape(z.shape[0], -1)
    out = _dense(params['readout'], z, mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: init_layers(key, layers, param, dtype), apply, layers, width, 1, param, per_example=True)


NORM_FNS = {'none': lambda x: x, 'batch': batch_norm, 'layer': lambda x: layer_norm(x, tuple(range(1, x.ndim)))}


def resnet(image_shape, num_classes: int, width: int, blocks_per_stage: int, param: pz.Parameterization,
           dtype=jnp.float32, *, activation: str = 'relu', layers_per_block: int = 1, norm: str = 'none',
           stem: str = 'auto') -> Model:
  """Residual ConvNet of [SC]: stem, three stages of widths (1, 2, 4)·width, each `blocks_per_stage` blocks
  x + β·L^(−α)·F(x) with F = layers_per_block × [norm → act → conv3×3] (pre-activation); a stride-2 conv between
  stages; global average pool; readout. L = 3·blocks_per_stage residual blocks set the branch multiplier
  (Model.depth).

  Parameters: `stem`, `stage{s}_convs` (the branch convs of stage s stacked, blocks_per_stage·layers_per_block
  slices, block-major: slice b·k + l is conv l of block b), `down_1`, `down_2`, `readout`. Each stage runs its
  blocks with lax.scan. Activations: `stem`, the residual stream after each block `stage{s}_block{b:02d}`,
  `down_{s}`, `readout`.
  norm: 'none' (the [SC] network), 'batch' or 'layer' (over every position and channel of an example). It precedes
  every activation, so the stride-2 convs and the pooled features also see normalized inputs. BatchNorm uses the
  statistics of the batch it is given (train mode, no running statistics). Norms carry no learnable gain or shift:
  the layer kinds (input, hidden, branch, readout) and their μP rules cover weight matrices only, and a gain would
  need a width rule of its own.
  stem: 'cifar' is a 3×3 stride-1 conv; 'imagenet' a 3×3 stride-2 conv followed by 2×2 max-pool (a quarter of the
  resolution before the first stage); 'auto' picks 'imagenet' when the smaller image side is >= 64. The pool sits
  before the first activation; for ReLU the two commute.
  """
  h, w, c = image_shape
  if norm not in NORM_FNS:
    raise ValueError(f'unknown norm {norm!r}; allowed: {", ".join(NORMS)}')
  if stem not in STEMS:
    raise ValueError(f'unknown stem {stem!r}; allowed: {", ".join(STEMS)}')
  if blocks_per_stage < 1 or layers_per_block < 1:
    raise ValueError(f'resnet needs >= 1 block per stage and >= 1 layer per block, got {blocks_per_stage} and '
                     f'{layers_per_block}')
  if stem == 'auto':
    stem = 'imagenet' if min(h, w) >= 64 else 'cifar'
  if min(h, w) < (4 if stem == 'cifar' else 8):
    raise ValueError(f'image shape {image_shape} is too small for resnet with the {stem} stem')
  act, normalize = _activation(activation), NORM_FNS[norm]
  pre = lambda z: act(normalize(z))
  blocks, k = blocks_per_stage, layers_per_block
  chans = [width, 2 * width, 4 * width]
  layers = {'stem': layer(param, width, 'input', (3, 3, c, width))}
  for s, ch in enumerate(chans):
    if s > 0:
      layers[f'down_{s}'] = layer(param, width, 'hidden', (3, 3, chans[s - 1], ch))
    layers[f'stage{s}_convs'] = layer(param, width, 'branch', (blocks * k, 3, 3, ch, ch), stacked=blocks * k)
  layers['readout'] = layer(param, width, 'readout', (chans[-1], num_classes))
  mults = ForwardMultipliers(layers)
  branch = pz.branch_multiplier(param, 3 * blocks)

  def stage(s, z, convs, with_activations):
    """The blocks of stage s, scanned over their convs (blocks, k, 3, 3, ch, ch)."""
    def block(z, convs_k):
      f = z
      for l in range(k):
        f = _conv(convs_k[l], pre(f), mults[f'stage{s}_convs'], 1, in_loop=True)
      z = z + branch * f
      return z, (z if with_activations else None)
    return jax.lax.scan(block, z, convs.reshape(blocks, k, *convs.shape[1:]))

  def apply(params, x, gamma0=1.0, with_activations=False):
    acts = {}
    if stem == 'cifar':
      z = _conv(params['stem'], x, mults['stem'], 1)
    else:
      z = max_pool(_conv(params['stem'], x, mults['stem'], 2), 2)
    acts['stem'] = z
    for s in range(3):
      if s > 0:
        z = _conv(params[f'down_{s}'], pre(z), mults[f'down_{s}'], 2)
        acts[f'down_{s}'] = z
      z, per_block = stage(s, z, params[f'stage{s}_convs'], with_activations)
      if with_activations:
        acts.update({f'stage{s}_block{b:02d}': per_block[b] for b in range(blocks)})
    pooled = pre(z).mean(axis=(1, 2))
    out = _dense(params['readout'], pooled, mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: init_layers(key, layers, param, dtype), apply, layers, width, 3 * blocks, param,
               per_example=norm != 'batch')


def res_mlp(in_dim: int, num_classes: int, width: int, blocks: int, param: pz.Parameterization,
            dtype=jnp.float32, *, activation: str = 'relu', layers_per_block: int = 1) -> Model:
  """Residual MLP for depth studies on a CPU: input D→N, `blocks` residual blocks x + β·L^(−α)·F(x) with
  F = layers_per_block × [act → dense N→N] (pre-activation), then the readout N→C on act(x). L = blocks sets the
  branch multiplier (Model.depth).

  Parameters `input`, `branch` (every branch weight stacked, blocks·layers_per_block slices, block-major: slice
  b·k + l is layer l of block b; the blocks run with lax.scan, so depth costs no compile time) and `readout`.
  Activations: `input`, the residual stream after each block `block_000`…, `readout`.
  """
  if blocks < 1 or layers_per_block < 1:
    raise ValueError(f'res_mlp needs >= 1 block and >= 1 layer per block, got {blocks} and {layers_per_block}')
  act, k = _activation(activation), layers_per_block
  layers = {'input': layer(param, width, 'input', (in_dim, width)),
            'branch': layer(param, width, 'branch', (blocks * k, width, width), stacked=blocks * k),
            'readout': layer(param, width, 'readout', (width, num_classes))}
  mults = ForwardMultipliers(layers)
  branch = pz.branch_multiplier(param, blocks)

  def apply(params, x, gamma0=1.0, with_activations=False):
    z = _dense(params['input'], x.reshape(x.shape[0], -1), mults['input'])
    acts = {'input': z}

    def block(z, weights_k):
      f = z
      for l in range(k):
        f = _dense(weights_k[l], act(f), mults['branch'])
      z = z + branch * f
      return z, (z if with_activations else None)

    z, per_block = jax.lax.scan(block, z, params['branch'].reshape(blocks, k, width, width))
    if with_activations:
      acts.update({f'block_{b:03d}': per_block[b] for b in range(blocks)})
    out = _dense(params['readout'], act(z), mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: init_layers(key, layers, param, dtype), apply, layers, width, blocks, param)


def bn_block(h, w, multiplier, gain, act, center):
  """One block of [BN]'s network: act(gain · BN(multiplier · h @ w)), BN = batch_norm(·, center). bn_mlp scans it
  over its stacked hidden weights; bn_experiment over effective weights (multiplier 1) with a traced activation."""
  return act(gain * batch_norm(_dense(w, h, multiplier), center=center))


def bn_mlp(in_dim: int, num_classes: int, width: int, depth: int, param: pz.Parameterization, dtype=jnp.float32,
           *, activation: str = 'relu', weight_init: str = 'orthogonal', bn_center: bool = False,
           shaping_k: float = 0.0) -> Model:
  """The batch-normalized MLP of [BN]: input layer D→N, then `depth` × [linear N→N → BN → act(α_ℓ·x)] (bn_block),
  then the readout N→C. Model.depth = depth (BN blocks); the network has no residual branches, so a depth-scaled
  parameterization is refused. Parameters `input`, `hidden` (the depth hidden weights stacked; the blocks run with
  lax.scan) and `readout`.

  BN (batch_norm) divides each feature by its RMS over the batch (bn_center=False, [BN]'s theory) or standardizes
  it (bn_center=True), with the batch's own statistics and no gain. α_ℓ = ℓ^(−k), k = shaping_k, is [BN]'s
  activation shaping (k = 0: none; k ≈ 0.4 for tanh and sin in the paper).
  weight_init 'orthogonal': the raw weight is a Haar (semi-)orthogonal matrix divided by the layer's forward
  multiplier, so the effective weight (multiplier × raw) is exactly orthogonal for the square hidden layers and
  semi-orthogonal (orthonormal rows or columns, whichever is fewer) for the input layer and the readout, in every
  parameterization. The one exception is the μP readout, whose effective weight keeps μP's extra 1/√N (it is
  semi-orthogonal/√N): the mean-field output must vanish at init. 'gaussian': the parameterization's usual init.
  Activations: `input`, each block's output `block_001`… (after BN and activation, the batch representation [BN]'s
  isometry gap is measured on; not a parameter name, like resnet's block outputs), and `readout`.
  """
  if depth < 1:
    raise ValueError(f'bn_mlp depth counts BN blocks and must be >= 1, got {depth}')
  if weight_init not in WEIGHT_INITS:
    raise ValueError(f'unknown weight_init {weight_init!r}; allowed: {", ".join(WEIGHT_INITS)}')
  _refuse_depth_scaling('bn_mlp', param)
  act = _activation(activation)
  layers = {'input': layer(param, width, 'input', (in_dim, width)),
            'hidden': layer(param, width, 'hidden', (depth, width, width), stacked=depth),
            'readout': layer(param, width, 'readout', (width, num_classes))}
  mults = ForwardMultipliers(layers)
  gains = np.arange(1, depth + 1, dtype=np.float64) ** (-shaping_k)

  def init(key):
    if weight_init == 'gaussian':
      return init_layers(key, layers, param, dtype)
    keys = jax.random.split(key, depth + 2)   # input, each hidden weight, readout
    raw = {'input': haar_orthogonal(keys[0], in_dim, width, dtype),
           'hidden': jax.vmap(lambda k: haar_orthogonal(k, width, width, dtype))(keys[1:-1]),   # one batched QR
           'readout': haar_orthogonal(keys[-1], width, num_classes, dtype)}
    readout_target = 1.0 / math.sqrt(width) if param.mean_field else 1.0
    return {name: raw[name] * ((readout_target if name == 'readout' else 1.0) / mults[name]) for name in layers}

  def apply(params, x, gamma0=1.0, with_activations=False):
    h = _dense(params['input'], x.reshape(x.shape[0], -1), mults['input'])
    acts = {'input': h}

    def block(h, w_and_gain):
      w, gain = w_and_gain
      h = bn_block(h, w, mults['hidden'], gain, act, bn_center)
      return h, (h if with_activations else None)

    h, per_block = jax.lax.scan(block, h, (params['hidden'], jnp.asarray(gains, h.dtype)))
    if with_activations:
      acts.update({f'block_{l:03d}': per_block[l - 1] for l in range(1, depth + 1)})
    out = _dense(params['readout'], h, mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(init, apply, layers, width, depth, param)


# ------------------------------------------------------------------------------------------------ the registry
# Each architecture: a function (data_spec, width, depth, param, dtype, **options) -> Model, and its options with
# their defaults: the fields of a config's `model` block besides `name` (config.defaults builds that block from
# model_options). make_model passes every option; the builders' own keyword defaults (equal, tested) serve
# direct calls.

def _mlp_from_spec(spec, width, depth, param, dtype, *, activation):
  return mlp(math.prod(spec.input_shape), spec.num_classes, width, depth, activation, param, dtype)


def _simple_convnet_from_spec(spec, width, depth, param, dtype, *, activation):   # one fixed depth
  return simple_convnet(spec.input_shape, spec.num_classes, width, param, dtype, activation)


def _resnet_from_spec(spec, width, depth, param, dtype, **options):   # depth = blocks per stage
  return resnet(spec.input_shape, spec.num_classes, width, depth, param, dtype, **options)


def _res_mlp_from_spec(spec, width, depth, param, dtype, **options):   # depth = residual blocks
  return res_mlp(math.prod(spec.input_shape), spec.num_classes, width, depth, param, dtype, **options)


def _bn_mlp_from_spec(spec, width, depth, param, dtype, **options):   # depth = BN blocks
  return bn_mlp(math.prod(spec.input_shape), spec.num_classes, width, depth, param, dtype, **options)


def _vit_from_spec(spec, width, depth, param, dtype, **options):   # depth = transformer blocks
  return transformers.vit(spec.input_shape, spec.num_classes, width, depth, param, dtype, **options)


def _flax_from_spec(spec, width, depth, param, dtype, **options):
  from superconsistency import flax_bridge   # imported here: Flax costs every other model ~0.6 s of start-up
  return flax_bridge.build_from_config(spec, width, depth, param, dtype, **options)


def _gpt2_from_spec(spec, width, depth, param, dtype, **options):   # input_shape = (seq_len,), classes = vocabulary
  return transformers.gpt2(spec.num_classes, spec.input_shape[0], width, depth, param, dtype, **options)


class Builder(NamedTuple):
  build: Callable       # (data_spec, width, depth, param, dtype, **options) -> Model
  options: dict         # option -> default: the fields of config.model besides `name`
  inputs: str           # what data it takes: 'any' (flattened), 'images' (B, H, W, C) or 'tokens' (B, T) ids
  takes_depth: bool = True   # False: one fixed depth; a sweep runs it once, as depth 1, whatever config.depths says


_BUILDERS = {
    'mlp': Builder(_mlp_from_spec, dict(activation='relu'), 'any'),
    'simple_convnet': Builder(_simple_convnet_from_spec, dict(activation='relu'), 'images', takes_depth=False),
    'resnet': Builder(_resnet_from_spec, dict(activation='relu', layers_per_block=1, norm='none', stem='auto'),
                      'images'),
    'res_mlp': Builder(_res_mlp_from_spec, dict(activation='relu', layers_per_block=1), 'any'),
    'bn_mlp': Builder(_bn_mlp_from_spec, dict(activation='relu', weight_init='orthogonal', bn_center=False,
                                              shaping_k=0.0), 'any'),
    'vit': Builder(_vit_from_spec, dict(patch=4, heads=4, mlp_ratio=4, pool='cls'), 'images'),
    # a user's Flax module (flax_bridge.py): module 'package.module:ClassName', its other constructor arguments, the
    # arguments that take the width and depth, (pattern, kind) overrides, and the layers that end a residual branch
    'flax': Builder(_flax_from_spec, dict(module='', kwargs={}, width_arg='width', depth_arg='',
                                                       kinds=(), branch_out=()), 'any'),
    'gpt2': Builder(_gpt2_from_spec, dict(heads=4, mlp_ratio=4, positions='learned', tied=False), 'tokens'),
}
ARCHITECTURES = tuple(_BUILDERS)


def _builder(name) -> Builder:
  if name not in _BUILDERS:
    raise ValueError(f'model.name: unknown model {name!r}; allowed: {", ".join(ARCHITECTURES)}')
  return _BUILDERS[name]


def model_options(name: str) -> dict:
  """The options of architecture `name` (the fields of config.model besides `name`), with their defaults."""
  return dict(_builder(name).options)


def depths_of(name: str, depths) -> tuple:
  """The depths a sweep builds architecture `name` at: the configured ones, or (1,) for a fixed-depth model."""
  return tuple(depths) if _builder(name).takes_depth else (1,)


def model_inputs(name: str) -> str:
  """What data architecture `name` takes: 'any', 'images' or 'tokens' (config validation checks the data set)."""
  return _builder(name).inputs


def make_model(model_cfg, data_spec, width: int, depth: int, param: pz.Parameterization, dtype) -> Model:
  """Builds `model_cfg['name']` at one width and depth. model_cfg: a mapping with `name` and any of that model's
  options (model_options; absent ones take their defaults). A field the model does not read is a ValueError that
  names it. `data_spec` gives the input shape and the number of classes."""
  name = model_cfg['name']
  build, options = _builder(name)[:2]
  given = {key: model_cfg[key] for key in model_cfg.keys() if key != 'name'}
  for key in given:
    if key not in options:
      raise ValueError(f'model.{key}: not an option of model {name!r}; its options: {", ".join(options)}')
  return build(data_spec, width, depth, param, dtype, **{**options, **given})


# ------------------------------------------------------------------------------------------------ losses

def cross_entropy(logits_BxC, labels_B):
  """Mean over every leading position: (B, C) with labels (B,), or a language model's (B, T, V) with (B, T)."""
  logp = jax.nn.log_softmax(logits_BxC)
  return -jnp.take_along_axis(logp, labels_B[..., None], axis=-1).mean()


def mse(out_BxC, labels_B):
  """MSE averaged over batch × outputs: on one-hot targets for integer labels (as [G]), on the targets themselves
  for real-valued labels (regression: (B, C), or (B,) with one output)."""
  if jnp.issubdtype(labels_B.dtype, jnp.integer):
    target = jax.nn.one_hot(labels_B, out_BxC.shape[-1], dtype=out_BxC.dtype)
  else:
    target = labels_B.reshape(out_BxC.shape).astype(out_BxC.dtype)
  return jnp.mean((out_BxC - target) ** 2)


LOSSES = {'cross_entropy': cross_entropy, 'mse': mse}


def accuracy(out_BxC, labels_B):
  return jnp.mean(jnp.argmax(out_BxC, -1) == labels_B)
