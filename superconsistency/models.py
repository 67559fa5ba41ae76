"""Pure models in multiplier form: `init(key) -> params`, `apply(params, x, gamma0) -> outputs`.

Plain JAX rather than Flax modules, because the parameterization decides a constant per layer (init scale, forward
multiplier, learning-rate multiplier) and these constants are easiest to audit when every layer is one line that
names its kind. Params are a flat dict `{layer_name: weight}`; `Model.kinds` maps the same names to layer kinds.
No biases: the papers' μP derivations and coordinate checks are for bias-free layers.

The parameterization is bound when the model is built (`make_model(..., param)`), so it is static for jit; γ0 is an
argument of `apply` and may be traced.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from superconsistency import parameterization as pz

ACTIVATIONS = {
    'relu': jax.nn.relu,
    'tanh': jnp.tanh,
    'gelu': jax.nn.gelu,
    'linear': lambda x: x,
    'sin': jnp.sin,
}
ARCHITECTURES = ('mlp', 'simple_convnet', 'res_convnet', 'resnet', 'bn_mlp', 'vit', 'gpt2')
NORMS = ('none', 'batch', 'layer')
STEMS = ('auto', 'cifar', 'imagenet')
WEIGHT_INITS = ('orthogonal', 'gaussian')


class Model(NamedTuple):
  """A model bound to one width, depth and parameterization. All fields are static."""
  init: Callable      # key -> params
  apply: Callable     # (params, x, gamma0, with_activations=False) -> out  |  (out, {layer: activation})
  kinds: dict         # layer name -> layer kind (parameterization.LAYER_KINDS)
  width: int
  depth: int          # the value that the depth-dependent rules use: residual blocks for res_convnet/resnet,
                      # BN blocks for bn_mlp
  param: pz.Parameterization


def _fan_in(shape):
  return math.prod(shape[:-1])


def _init_layers(key, shapes, kinds, param, dtype):
  """Layer i draws jax.random.normal(split(key)[i], shape), computed as one flat draw per distinct size, vmapped
  over those layers' keys: the same numbers (threefry counts in row-major order), but XLA on CPU compiles a
  rank-4 draw in about 2 s, and a draw per layer of a deep net adds up."""
  keys = jax.random.split(key, len(shapes))
  by_size = {}
  for i, shape in enumerate(shapes.values()):
    by_size.setdefault(math.prod(shape), []).append(i)
  flat = {}
  for size, idx in by_size.items():
    draws = jax.vmap(lambda k: jax.random.normal(k, (size,), dtype))(keys[jnp.asarray(idx)])
    flat.update({i: draws[j] for j, i in enumerate(idx)})
  params = {}
  for i, (name, shape) in enumerate(shapes.items()):
    std = pz.init_std(param, kinds[name], _fan_in(shape))
    params[name] = std * flat[i].reshape(shape)
  return params


def _normal(key, shape, dtype):
  """jax.random.normal(key, shape), drawn flat and reshaped: the same numbers, compiled faster (_init_layers)."""
  return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _dense(w, x, mult):
  return mult * (x @ w)


def _conv(w, x, mult, stride):
  """SAME-padded k×k convolution as one matmul over the k·k strided shifts of the input (im2col by slicing).

  Equal to lax.conv_general_dilated with SAME padding, but its gradient is a matmul and strided pads, where XLA's CPU
  backend runs a vmapped conv's weight gradient as a slow grouped convolution (speed-up measured side by side in
  benchmarks/conv.md)."""
  kh, kw, cin, cout = w.shape
  h, wd = x.shape[1], x.shape[2]
  oh, ow = -(-h // stride), -(-wd // stride)
  ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
  x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  shifts = [jax.lax.slice(x, (0, i, j, 0), (x.shape[0], i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, cin),
                          (1, stride, stride, 1)) for i in range(kh) for j in range(kw)]
  patches_BxHxWxK = jnp.concatenate(shifts, axis=-1) if len(shifts) > 1 else shifts[0]
  return mult * (patches_BxHxWxK @ w.reshape(kh * kw * cin, cout))


def _max_pool(x, size):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, size, size, 1), 'VALID')


def mlp(in_dim: int, num_classes: int, width: int, depth: int, activation: str,
        param: pz.Parameterization, dtype=jnp.float32) -> Model:
  """MLP with `depth` weight layers: D→N, (depth−2)×(N→N), N→C. [G] uses depth = L = 3."""
  if depth < 2:
    raise ValueError(f'mlp depth must be >= 2 weight layers, got {depth}')
  act = ACTIVATIONS[activation]
  shapes = {'layer_00': (in_dim, width)}
  kinds = {'layer_00': 'input'}
  for i in range(1, depth - 1):
    shapes[f'layer_{i:02d}'] = (width, width)
    kinds[f'layer_{i:02d}'] = 'hidden'
  shapes[f'layer_{depth - 1:02d}'] = (width, num_classes)
  kinds[f'layer_{depth - 1:02d}'] = 'readout'
  mults = {n: pz.forward_multiplier(param, kinds[n], _fan_in(s), width) for n, s in shapes.items()}

  def apply(params, x_BxD, gamma0=1.0, with_activations=False):
    acts = {}
    h = x_BxD.reshape(x_BxD.shape[0], -1)
    for name in shapes:
      z = _dense(params[name], h, mults[name])
      if kinds[name] == 'readout':
        z = z / gamma0
      acts[name] = z
      h = act(z) if kinds[name] != 'readout' else z
    return (h, acts) if with_activations else h

  return Model(lambda key: _init_layers(key, shapes, kinds, param, dtype), apply, kinds, width, depth, param)


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
  act = ACTIVATIONS[activation]
  shapes = {'conv_0': (3, 3, c, width), 'conv_1': (3, 3, width, width), 'readout': (width * spatial, num_classes)}
  kinds = {'conv_0': 'input', 'conv_1': 'hidden', 'readout': 'readout'}
  mults = {n: pz.forward_multiplier(param, kinds[n], _fan_in(s), width) for n, s in shapes.items()}

  def apply(params, x_BxHxWxC, gamma0=1.0, with_activations=False):
    acts = {}
    z = _conv(params['conv_0'], x_BxHxWxC, mults['conv_0'], 2)
    acts['conv_0'] = z
    z = _conv(params['conv_1'], _max_pool(act(z), 2), mults['conv_1'], 4)
    acts['conv_1'] = z
    z = _max_pool(act(z), 2)
    z = z.reshape(z.shape[0], -1)
    out = _dense(params['readout'], z, mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: _init_layers(key, shapes, kinds, param, dtype), apply, kinds, width, 1, param)


def batch_norm(x, center: bool = True, eps: float = 1e-5):
  """Normalizes each feature (the last axis) over the batch and any spatial axes, with the statistics of the batch
  it is given: train mode, no running averages, so the model stays a pure function of (params, x). Each example's
  output therefore depends on the rest of the batch. center=False divides by the feature's RMS over the batch
  without subtracting the mean, as [BN]'s BN(X) = diag(XXᵀ)^(-1/2)·X (up to the factor √batch that keeps entries
  O(1)). No affine gain or shift: see res_convnet."""
  axes = tuple(range(x.ndim - 1))
  if center:
    x = x - x.mean(axes, keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + eps)


def layer_norm(x, eps: float = 1e-5):
  """Normalizes each example over all its hidden units, as Ba et al. define LayerNorm: every position and channel
  of a conv feature map (GroupNorm with one group), the features of an MLP. Independent of the rest of the batch.
  No affine gain or shift. (Per-position channel statistics, as ConvNeXt uses, gave larger finite-width drifts in
  the μP coordinate check at the small widths the tests can afford.)"""
  axes = tuple(range(1, x.ndim))
  x = x - x.mean(axes, keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + eps)


NORM_FNS = {'none': lambda x: x, 'batch': batch_norm, 'layer': layer_norm}


def res_convnet(image_shape, num_classes: int, width: int, blocks_per_stage: int, layers_per_block: int,
                param: pz.Parameterization, dtype=jnp.float32, activation: str = 'relu', norm: str = 'none',
                stem: str = 'auto') -> Model:
  """Residual ConvNet of [SC]: stem, three stages of widths (1, 2, 4)·width, each `blocks_per_stage` blocks
  x + β·L^(−α)·F(x) with F = layers_per_block × [norm → act → conv3×3] (pre-activation); a stride-2 conv between
  stages; global average pool; readout. L = 3·blocks_per_stage residual blocks set the branch multiplier
  (Model.depth).

  norm: 'none' (the [SC] network), 'batch' or 'layer'. It precedes every activation, so the stride-2 convs and the
  pooled features also see normalized inputs. BatchNorm uses the statistics of the batch it is given (train mode,
  no running statistics; see batch_norm). Norms carry no learnable gain or shift: the layer kinds (input, hidden,
  branch, readout) and their μP rules cover weight matrices only, and a gain would need a width rule of its own.
  stem: 'cifar' is a 3×3 stride-1 conv; 'imagenet' a 3×3 stride-2 conv followed by 2×2 max-pool (a quarter of the
  resolution before the first stage); 'auto' picks 'imagenet' when the smaller image side is >= 64. The pool sits
  before the first activation; for ReLU the two commute.
  """
  h, w, c = image_shape
  if norm not in NORM_FNS:
    raise ValueError(f'unknown norm {norm!r}; allowed: {", ".join(NORMS)}')
  if stem not in STEMS:
    raise ValueError(f'unknown stem {stem!r}; allowed: {", ".join(STEMS)}')
  if stem == 'auto':
    stem = 'imagenet' if min(h, w) >= 64 else 'cifar'
  if min(h, w) < (4 if stem == 'cifar' else 8):
    raise ValueError(f'image shape {image_shape} is too small for res_convnet with the {stem} stem')
  act, normalize = ACTIVATIONS[activation], NORM_FNS[norm]
  pre = lambda z: act(normalize(z))
  num_blocks = 3 * blocks_per_stage
  shapes, kinds = {'stem': (3, 3, c, width)}, {'stem': 'input'}
  chans = [width, 2 * width, 4 * width]
  for s, ch in enumerate(chans):
    if s > 0:
      shapes[f'down_{s}'] = (3, 3, chans[s - 1], ch)
      kinds[f'down_{s}'] = 'hidden'
    for b in range(blocks_per_stage):
      for l in range(layers_per_block):
        shapes[f'stage{s}_block{b:02d}_conv{l}'] = (3, 3, ch, ch)
        kinds[f'stage{s}_block{b:02d}_conv{l}'] = 'branch'
  shapes['readout'] = (chans[-1], num_classes)
  kinds['readout'] = 'readout'
  mults = {n: pz.forward_multiplier(param, kinds[n], _fan_in(s), width) for n, s in shapes.items()}
  branch = pz.branch_multiplier(param, num_blocks)

  def apply(params, x, gamma0=1.0, with_activations=False):
    acts = {}
    if stem == 'cifar':
      z = _conv(params['stem'], x, mults['stem'], 1)
    else:
      z = _max_pool(_conv(params['stem'], x, mults['stem'], 2), 2)
    acts['stem'] = z
    for s in range(3):
      if s > 0:
        z = _conv(params[f'down_{s}'], pre(z), mults[f'down_{s}'], 2)
        acts[f'down_{s}'] = z
      for b in range(blocks_per_stage):
        f = z
        for l in range(layers_per_block):
          name = f'stage{s}_block{b:02d}_conv{l}'
          f = _conv(params[name], pre(f), mults[name], 1)
        z = z + branch * f
        acts[f'stage{s}_block{b:02d}'] = z
    pooled = pre(z).mean(axis=(1, 2))
    out = _dense(params['readout'], pooled, mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: _init_layers(key, shapes, kinds, param, dtype), apply, kinds, width, num_blocks, param)


def _haar_orthogonal(key, rows: int, cols: int, dtype):
  """A Haar-distributed (semi-)orthogonal rows×cols matrix: orthonormal columns if rows >= cols, else rows.

  Gram-Schmidt (each column orthogonalized twice) of a Gaussian matrix: the Q of its QR with R's diagonal positive,
  which is Haar. Plain XLA ops rather than `jnp.linalg.qr`: on CPU, jaxlib 0.10's batched LAPACK QR (init is
  vmapped over lanes) can deadlock XLA's thread pool, as the batched eigh did (see spectra.small_eigh)."""
  n, k = max(rows, cols), min(rows, cols)
  a = _normal(key, (n, k), dtype)

  def column(j, q):
    v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
    earlier = (jnp.arange(k) < j).astype(dtype)
    for _ in range(2):
      v = v - q @ (earlier * (q.T @ v))
    return q.at[:, j].set(v / jnp.sqrt(jnp.sum(v * v)))

  q = jax.lax.fori_loop(0, k, column, jnp.zeros((n, k), dtype))
  return q if rows >= cols else q.T


def bn_mlp(in_dim: int, num_classes: int, width: int, depth: int, param: pz.Parameterization, dtype=jnp.float32,
           *, activation: str = 'linear', weight_init: str = 'orthogonal', bn_center: bool = False,
           shaping_k: float = 0.0) -> Model:
  """The batch-normalized MLP of [BN]: input layer D→N, then `depth` × [linear N→N → BN → act(α_ℓ·x)], then the
  readout N→C. Model.depth = depth (BN blocks); the network has no residual branches, so depth_mup is refused.

  BN (batch_norm) divides each feature by its RMS over the batch (bn_center=False, [BN]'s theory) or standardizes
  it (bn_center=True), with the batch's own statistics and no gain. α_ℓ = ℓ^(−k), k = shaping_k, is [BN]'s
  activation shaping (k = 0: none; k ≈ 0.4 for tanh and sin in the paper).
  weight_init 'orthogonal': the raw weight is a Haar (semi-)orthogonal matrix divided by the layer's forward
  multiplier, so the effective weight (multiplier × raw) is exactly orthogonal for the square hidden layers and
  semi-orthogonal (orthonormal rows or columns, whichever is fewer) for the input layer and the readout, in every
  parameterization. The one exception is the μP readout, whose effective weight keeps μP's extra 1/√N (it is
  semi-orthogonal/√N): the mean-field output must vanish at init. 'gaussian': the parameterization's usual init.
  Activations: `input`, `hidden_001`…, each block's output `block_001`… (after BN and activation, the batch
  representation [BN]'s isometry gap is measured on; absent from `kinds`, like res_convnet's block outputs), and
  `readout`.
  """
  if depth < 1:
    raise ValueError(f'bn_mlp depth counts BN blocks and must be >= 1, got {depth}')
  if weight_init not in WEIGHT_INITS:
    raise ValueError(f'unknown weight_init {weight_init!r}; allowed: {", ".join(WEIGHT_INITS)}')
  if param.name == 'depth_mup':
    raise ValueError('depth_mup needs residual branches; bn_mlp has none (use mup)')
  act = ACTIVATIONS[activation]
  shapes, kinds = {'input': (in_dim, width)}, {'input': 'input'}
  for l in range(1, depth + 1):
    shapes[f'hidden_{l:03d}'] = (width, width)
    kinds[f'hidden_{l:03d}'] = 'hidden'
  shapes['readout'] = (width, num_classes)
  kinds['readout'] = 'readout'
  mults = {n: pz.forward_multiplier(param, kinds[n], _fan_in(s), width) for n, s in shapes.items()}
  gains = [float(l) ** (-shaping_k) for l in range(1, depth + 1)]

  def init(key):
    if weight_init == 'gaussian':
      return _init_layers(key, shapes, kinds, param, dtype)
    keys = jax.random.split(key, len(shapes))
    hidden = jax.vmap(lambda k: _haar_orthogonal(k, width, width, dtype))(keys[1:-1])   # one batched QR
    raw = {'input': _haar_orthogonal(keys[0], in_dim, width, dtype),
           **{f'hidden_{l:03d}': hidden[l - 1] for l in range(1, depth + 1)},
           'readout': _haar_orthogonal(keys[-1], width, num_classes, dtype)}
    readout_target = 1.0 / math.sqrt(width) if param.mean_field else 1.0
    return {name: raw[name] * ((readout_target if name == 'readout' else 1.0) / mults[name]) for name in shapes}

  def apply(params, x, gamma0=1.0, with_activations=False):
    acts = {}
    h = _dense(params['input'], x.reshape(x.shape[0], -1), mults['input'])
    acts['input'] = h
    for l in range(1, depth + 1):
      name = f'hidden_{l:03d}'
      z = _dense(params[name], h, mults[name])
      acts[name] = z
      h = act(gains[l - 1] * batch_norm(z, center=bn_center))
      acts[f'block_{l:03d}'] = h
    out = _dense(params['readout'], h, mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(init, apply, kinds, width, depth, param)


def make_model(model_cfg, data_spec, width: int, depth: int, param: pz.Parameterization, dtype) -> Model:
  """Builds the configured architecture at one width and depth. `data_spec` gives input shape and classes."""
  name = model_cfg.name
  if name == 'mlp':
    x_dim = 1
    for s in data_spec.input_shape:
      x_dim *= s
    return mlp(x_dim, data_spec.num_classes, width, depth, model_cfg.activation, param, dtype)
  if name == 'simple_convnet':
    return simple_convnet(data_spec.input_shape, data_spec.num_classes, width, param, dtype, model_cfg.activation)
  if name == 'res_convnet':
    return res_convnet(data_spec.input_shape, data_spec.num_classes, width, depth, model_cfg.layers_per_block,
                       param, dtype, model_cfg.activation)
  if name == 'resnet':   # res_convnet with a norm and a stem for the image size; depth = blocks per stage
    return res_convnet(data_spec.input_shape, data_spec.num_classes, width, depth, model_cfg.layers_per_block,
                       param, dtype, model_cfg.activation, norm=model_cfg.get('norm', 'none'),
                       stem=model_cfg.get('stem', 'auto'))
  if name == 'bn_mlp':   # depth = number of [linear → BN → act] blocks
    return bn_mlp(math.prod(data_spec.input_shape), data_spec.num_classes, width, depth, param, dtype,
                  activation=model_cfg.activation, weight_init=model_cfg.get('weight_init', 'orthogonal'),
                  bn_center=model_cfg.get('bn_center', False), shaping_k=model_cfg.get('shaping_k', 0.0))
  if name in ('vit', 'gpt2'):
    from superconsistency import transformers   # it builds on this module's Model
    if name == 'vit':
      return transformers.vit(data_spec.input_shape, data_spec.num_classes, width, depth, param, dtype,
                              patch=model_cfg.get('patch', 4), heads=model_cfg.get('heads', 4),
                              mlp_ratio=model_cfg.get('mlp_ratio', 4), pool=model_cfg.get('pool', 'cls'))
    return transformers.gpt2(data_spec.num_classes, data_spec.input_shape[0], width, depth, param, dtype,
                             heads=model_cfg.get('heads', 4), mlp_ratio=model_cfg.get('mlp_ratio', 4),
                             positions=model_cfg.get('positions', 'learned'), tied=model_cfg.get('tied', False))
  raise ValueError(f'unknown model {name!r}; allowed: {", ".join(ARCHITECTURES)}')


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
