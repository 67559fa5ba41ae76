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
}
ARCHITECTURES = ('mlp', 'simple_convnet', 'res_convnet')


class Model(NamedTuple):
  """A model bound to one width, depth and parameterization. All fields are static."""
  init: Callable      # key -> params
  apply: Callable     # (params, x, gamma0, with_activations=False) -> out  |  (out, {layer: activation})
  kinds: dict         # layer name -> layer kind (parameterization.LAYER_KINDS)
  width: int
  depth: int          # the value that the depth-dependent rules use: residual blocks for res_convnet
  param: pz.Parameterization


def _fan_in(shape):
  return math.prod(shape[:-1])


def _init_layers(key, shapes, kinds, param, dtype):
  keys = jax.random.split(key, len(shapes))
  params = {}
  for k, (name, shape) in zip(keys, shapes.items()):
    std = pz.init_std(param, kinds[name], _fan_in(shape))
    params[name] = std * jax.random.normal(k, shape, dtype)
  return params


def _dense(w, x, mult):
  return mult * (x @ w)


def _conv(w, x, mult, stride):
  y = jax.lax.conv_general_dilated(x, w, (stride, stride), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return mult * y


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


def res_convnet(image_shape, num_classes: int, width: int, blocks_per_stage: int, layers_per_block: int,
                param: pz.Parameterization, dtype=jnp.float32, activation: str = 'relu') -> Model:
  """Residual ConvNet of [SC]: stem conv, three stages of widths (1, 2, 4)·width, each `blocks_per_stage` blocks
  x + β·L^(−α)·F(x) with F = layers_per_block × [act → conv3×3]; a stride-2 conv between stages; global average
  pool; readout. L = 3·blocks_per_stage residual blocks set the branch multiplier (Model.depth)."""
  h, w, c = image_shape
  if min(h, w) < 4:
    raise ValueError(f'image shape {image_shape} is too small for res_convnet (needs >= 4x4)')
  act = ACTIVATIONS[activation]
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
    z = _conv(params['stem'], x, mults['stem'], 1)
    acts['stem'] = z
    for s in range(3):
      if s > 0:
        z = _conv(params[f'down_{s}'], act(z), mults[f'down_{s}'], 2)
        acts[f'down_{s}'] = z
      for b in range(blocks_per_stage):
        f = z
        for l in range(layers_per_block):
          name = f'stage{s}_block{b:02d}_conv{l}'
          f = _conv(params[name], act(f), mults[name], 1)
        z = z + branch * f
        acts[f'stage{s}_block{b:02d}'] = z
    pooled = act(z).mean(axis=(1, 2))
    out = _dense(params['readout'], pooled, mults['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: _init_layers(key, shapes, kinds, param, dtype), apply, kinds, width, num_blocks, param)


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
  raise ValueError(f'unknown model {name!r}; allowed: {", ".join(ARCHITECTURES)}')


def cross_entropy(logits_BxC, labels_B):
  logp = jax.nn.log_softmax(logits_BxC)
  return -jnp.take_along_axis(logp, labels_B[:, None], axis=1).mean()


def mse(out_BxC, labels_B):
  """MSE on one-hot targets, averaged over batch × classes (as [G])."""
  target = jax.nn.one_hot(labels_B, out_BxC.shape[-1], dtype=out_BxC.dtype)
  return jnp.mean((out_BxC - target) ** 2)


LOSSES = {'cross_entropy': cross_entropy, 'mse': mse}


def accuracy(out_BxC, labels_B):
  return jnp.mean(jnp.argmax(out_BxC, -1) == labels_B)
