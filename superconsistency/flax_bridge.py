"""A user's Flax module as the project's model: `superconsistency.flax_model(module, example_input, param, width,
depth)` returns a
models.Model (init, apply, layer metadata), so every sweep, spectrum and coordinate check runs on it
unchanged.

    import superconsistency as sc
    model = sc.flax_model(MyMLP(width=256), x[:2], sc.Parameterization('mup'), width=256)

From a config: `model.name = 'flax'`, `model.module = 'package.module:ClassName'` (or 'path/to/file.py:ClassName',
relative to the working directory), `model.kwargs` (the other
constructor arguments), `model.width_arg` / `model.depth_arg` (the constructor arguments that take each swept width
and depth). configs/flax_example.py is one.

How the parameterization is applied, without editing the module. The project's models are in multiplier form:
each weight is stored raw, drawn N(0, init_std²), and multiplied by a per-layer constant in the forward pass; the
optimizer gives each layer its own rate (parameterization.py). Here the module's weights are exactly those
effective weights: `apply` multiplies each raw parameter by its layer's multiplier and hands the product to the
module. A linear map of a scaled weight is the scaled linear map, so this is the same function of the same raw
parameters as a hand-written multiplier-form model, and the optimizer (SGD, Adam's ε, weight decay, clipping) sees
the same raw parameters; nothing is converted to an "init and learning-rate" form, so no equivalence has to hold.
The output is divided by γ0 ([G]'s readout scale). Depth-μP's branch multiplier β·L^(−α) is folded into the weights
of the layers named by `branch_out` (the last layer of each residual branch): that equals scaling the branch's
output when the branch is positively homogeneous in that layer's weight (linear, ReLU after it or nothing after
it), which holds for x + W·φ(…) blocks; for a branch that ends in a norm or a non-homogeneous function, it does not.

Layer kinds are read off the parameter tree in the order the module created its parameters (its forward order for
a compact module): weights (≥ 2 axes) are 'input' for the first, 'readout' for the last, 'hidden' between;
'embedding' leaves are lookups (fan-in 1); `kinds`, pairs (fnmatch pattern of a dotted parameter path, kind),
overrides them (the last matching pattern wins), e.g. (('Block_*.Dense_*.kernel', 'branch'),). Vectors (biases,
norm scales) keep the module's own initial values (zero or one: width-independent) at fan-in 1, with the readout's
rule when they belong to the readout's module and the input layer's otherwise (μP's rule for biases).

Modes. A module with state besides `params` (BatchNorm's `batch_stats`, sown intermediates) or that asks for a
random stream at apply time (Dropout's `dropout`) is refused with a message that names the collection or stream:
the instrument measures a deterministic function of the parameters, and a wrong mode would be measured silently.
Make Dropout deterministic (`nn.Dropout(rate, deterministic=True)`); for batch statistics in train mode, write
the norm as a function of the batch (as models.batch_norm does) rather than a BatchNorm with running averages.

NNX modules go through the same entry point: nnx.split separates the module's graph from its `nnx.Param` state,
the pure dict of that state is the parameter tree, and nnx.merge rebuilds the module inside `apply`; its
activations come from nnx.capture (every submodule's output, sown as an Intermediate). docs/api.md says all of this
for users.
"""
from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import os

import jax
import jax.numpy as jnp
from flax import errors as flax_errors
from flax import linen as nn
from flax import nnx
from flax import traverse_util

from superconsistency import parameterization as pz
from superconsistency.layers import ForwardMultipliers, Layer, Model, init_layers, layer

SEP = '.'
LOOKUP_LEAVES = ('embedding',)   # nn.Embed's table: a lookup, fan-in 1


def import_module_class(spec: str):
  """'package.module:ClassName' or 'path/to/file.py:ClassName' -> the class, with a clear error for a malformed
  spec, a missing module, file or name."""
  if not isinstance(spec, str) or spec.count(':') != 1:
    raise ValueError(f"model.module: {spec!r} is not 'package.module:ClassName' or 'path/to/file.py:ClassName'")
  where, class_name = spec.split(':')
  if where.endswith('.py'):
    if not os.path.exists(where):
      raise ValueError(f'model.module: no file {where!r} (paths are relative to {os.getcwd()})')
    loader_spec = importlib.util.spec_from_file_location(os.path.basename(where)[:-3], where)
    found = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(found)
  else:
    try:
      found = importlib.import_module(where)
    except ImportError as e:
      raise ValueError(f'model.module: cannot import {where!r} ({e}); is it installed or on PYTHONPATH?') from e
  if not hasattr(found, class_name):
    raise ValueError(f'model.module: {where!r} has no {class_name!r}')
  return getattr(found, class_name)


def _weights_and_vectors(flat):
  return [n for n, v in flat.items() if v.ndim >= 2], [n for n, v in flat.items() if v.ndim < 2]


def infer_kinds(flat: dict, overrides=None) -> dict:
  """{dotted path: kind} for every parameter: first weight 'input', last 'readout', other weights 'hidden'; vectors
  (biases, scales) 'readout' when they belong to the readout's module and 'input' otherwise (fan-in 1, see the
  module doc); then `overrides`, pairs (fnmatch pattern, kind) or a mapping, the last match wins."""
  weights, vectors = _weights_and_vectors(flat)
  if len(weights) < 2:
    raise ValueError(f'a Flax module needs at least two weight matrices (input and readout) to be parameterized; '
                     f'found {weights}')
  kinds = {n: 'hidden' for n in flat}
  kinds[weights[0]], kinds[weights[-1]] = 'input', 'readout'
  pairs = overrides.items() if isinstance(overrides, dict) else (overrides or ())
  for pattern, kind in pairs:
    if kind not in pz.LAYER_KINDS:
      raise ValueError(f'model.kinds[{pattern!r}]: unknown kind {kind!r}; allowed: {", ".join(pz.LAYER_KINDS)}')
    matched = [n for n in flat if fnmatch.fnmatchcase(n, pattern)]
    if not matched:
      raise ValueError(f'model.kinds: pattern {pattern!r} matches no parameter; parameters: {", ".join(flat)}')
    kinds.update({n: kind for n in matched})
  readouts = [n for n in weights if kinds[n] == 'readout']
  if len(readouts) != 1:
    raise ValueError(f'exactly one weight must be the readout; got {readouts}')
  readout_module = _module_of(readouts[0])
  overridden = {n for pattern, _ in pairs for n in flat if fnmatch.fnmatchcase(n, pattern)}
  for n in vectors:
    if n not in overridden:
      # a bias of the readout moves the output directly: the readout's rule, like its weight; any other bias
      # feeds a hidden unit: μP's rule for input weights at fan-in 1
      kinds[n] = 'readout' if _module_of(n) == readout_module else 'input'
  return kinds


def _module_of(name: str) -> str:
  return name.rsplit(SEP, 1)[0] if SEP in name else ''


class _Linen:
  """A linen module: params in and out of `module.apply`."""

  def __init__(self, module: nn.Module, example_input):
    try:
      variables = module.init(jax.random.PRNGKey(0), example_input)
    except flax_errors.InvalidRngError as e:
      raise ValueError(f'{type(module).__name__} asks for a random stream at init or apply ({e}); the instrument '
                       'measures a deterministic function of the parameters: make Dropout deterministic') from e
    extra = sorted(set(variables) - {'params'})
    if extra:
      raise ValueError(f'{type(module).__name__} keeps state in the collection(s) {extra} (BatchNorm\'s running '
                       'statistics are "batch_stats"); the instrument measures a pure function of "params" and will '
                       'not silently pick a train or eval mode: remove the state, or use models.batch_norm')
    try:
      module.apply({'params': variables['params']}, example_input)
    except flax_errors.InvalidRngError as e:
      raise ValueError(f'{type(module).__name__} asks for a random stream when applied ({e}); the instrument '
                       'measures a deterministic function of the parameters: make Dropout deterministic') from e
    self.module, self.example_input = module, example_input
    self.flat_example = traverse_util.flatten_dict(dict(variables['params']), sep=SEP)

  def init_params(self, key):   # the module's own initial values (kept for vectors: biases, scales)
    return traverse_util.flatten_dict(dict(self.module.init(key, self.example_input)['params']), sep=SEP)

  def apply(self, flat_params, x, with_activations):
    tree = traverse_util.unflatten_dict(flat_params, sep=SEP)
    if not with_activations:
      return self.module.apply({'params': tree}, x), {}
    out, state = self.module.apply({'params': tree}, x, capture_intermediates=True)
    captured = traverse_util.flatten_dict(dict(state['intermediates']), sep=SEP)
    # '<module path>.__call__' -> (output,); the top module's own output is '__call__'
    outputs = {k[:-len('.__call__')]: v[0] for k, v in captured.items() if k.endswith('.__call__')}
    return out, outputs


class _NNX:
  """An NNX module: split into graph and nnx.Param state once, merged back inside apply."""

  def __init__(self, module: nnx.Module, example_input):
    self.graphdef, state, rest = nnx.split(module, nnx.Param, ...)
    if len(jax.tree_util.tree_leaves(rest)):
      raise ValueError(f'{type(module).__name__} has state besides nnx.Param ({sorted(nnx.to_pure_dict(rest))}); '
                       'the instrument measures a pure function of the parameters: remove BatchNorm statistics, '
                       'rng streams (Dropout) and other variables')
    self.state, self.rest = state, rest
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    self.flat_example = {_dotted(k): v for k, v in flat.items()}
    self.keys = {_dotted(k): k for k in flat}
    nnx.merge(self.graphdef, state, rest)(example_input)   # fails here, not inside a sweep

  def init_params(self, key):   # NNX draws at construction: the module's own draw, whatever the key
    return dict(self.flat_example)

  def apply(self, flat_params, x, with_activations):
    tree = traverse_util.unflatten_dict({self.keys[k]: v for k, v in flat_params.items()})
    state = jax.tree_util.tree_map(lambda v: v, self.state)
    nnx.replace_by_pure_dict(state, tree)
    module = nnx.merge(self.graphdef, state, self.rest)
    if not with_activations:
      return module(x), {}
    # every submodule's __call__ output, sown as an Intermediate; NNX's flat state is sorted by path, so put the
    # outputs back in forward order: by the first parameter (in creation order) under each module's path
    out, captured = nnx.capture(module, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
    outputs = {_dotted(k[:-1]): v[0] for k, v in traverse_util.flatten_dict(nnx.to_pure_dict(captured)).items()
               if k[-1] == '__call__' and len(k) > 1}
    order = list(self.flat_example)
    first = lambda path: next((i for i, n in enumerate(order) if n.startswith(path + SEP)), len(order))
    return out, {path: outputs[path] for path in sorted(outputs, key=first)}


def _dotted(key):
  return SEP.join(str(k) for k in key) if isinstance(key, tuple) else key


def flax_model(module, example_input, param: pz.Parameterization, width: int, depth: int = 1, *,
               kinds=(), branch_out=(), dtype=jnp.float32) -> Model:
  """The project's Model of a linen or NNX module bound to one width, depth and parameterization (module doc).

  example_input: a batch of the data's shape (two examples suffice). width: the width the parameterization scales
  with (the module's own width argument). depth: L of Depth-μP's branch multiplier (1 for a module without residual
  branches). kinds: pairs (fnmatch pattern of a dotted parameter path, layer kind), overriding the inferred kinds.
  branch_out: patterns of the layers that end a residual branch; they carry β·L^(−α) under a depth-scaled row.
  """
  if isinstance(module, nn.Module):
    wrapped = _Linen(module, example_input)
  elif isinstance(module, nnx.Module):
    wrapped = _NNX(module, example_input)
  else:
    raise ValueError(f'flax_model takes a flax.linen or flax.nnx Module, got {type(module).__name__}')
  flat = wrapped.flat_example
  kind_of = infer_kinds(flat, kinds)
  ends = [n for n in flat if any(fnmatch.fnmatchcase(n, p) for p in branch_out)]
  if branch_out and not ends:
    raise ValueError(f'model.branch_out: {list(branch_out)} match no parameter; parameters: {", ".join(flat)}')
  if param.depth_scaled and not ends:
    raise ValueError(f'{param.name} scales residual branches with depth: mark the last layer of each branch with '
                     'branch_out (and the branch layers with kinds=...: "branch")')
  layers: dict[str, Layer] = {}
  for name, v in flat.items():
    leaf = name.split(SEP)[-1]
    fan_in = 1 if (v.ndim < 2 or leaf in LOOKUP_LEAVES) else None
    layers[name] = layer(param, width, kind_of[name], v.shape, fan_in=fan_in)
  branch = pz.branch_multiplier(param, depth)
  # a lane program passes the layers' multipliers in as inputs (ForwardMultipliers), so that μP and NTP at one
  # width share their programs; a branch's last layer keeps its product with β·L^(−α) as a constant (the product
  # of two inputs would round once more than the float computed here)
  lifted = ForwardMultipliers(layers)
  mults = {n: l.multiplier * branch for n, l in layers.items() if n in ends}
  multiplier = lambda n: mults[n] if n in mults else lifted[n]
  weight_names = [n for n in flat if flat[n].ndim >= 2]
  readout = next(n for n in weight_names if kind_of[n] == 'readout')
  readout_module = _module_of(readout)

  def init(key):
    # weights: the project's draw (layers.init_layers), so a module laid out like one of the project's models gets
    # the same initial weights from the same key; vectors: the module's own initial values
    params = init_layers(key, {n: layers[n] for n in weight_names}, param, dtype)
    if len(weight_names) < len(layers):
      own = wrapped.init_params(key)
      params.update({n: jnp.asarray(own[n], dtype) / multiplier(n) for n in layers if n not in params})
    return {n: params[n] for n in layers}

  def apply(params, x, gamma0=1.0, with_activations=False):
    effective = {n: params[n] * multiplier(n) for n in layers}
    out, outputs = wrapped.apply(effective, x, with_activations)
    out = out / gamma0
    if not with_activations:
      return out
    acts = {}
    for path, value in outputs.items():
      if path == '__call__' or path == readout_module:
        continue
      own_weight = next((n for n in weight_names if _module_of(n) == path), None)
      acts[own_weight or path] = value
    acts[readout] = out
    return out, acts

  return Model(init, apply, layers, width, depth, param)


def build_from_config(spec, width, depth, param, dtype, *, module, kwargs, width_arg, depth_arg, kinds,
                      branch_out):
  """The registry's builder (models._BUILDERS['flax']): the class `module` built with kwargs, width and depth."""
  cls = import_module_class(module)
  arguments = dict(kwargs.to_dict() if hasattr(kwargs, 'to_dict') else kwargs)
  if width_arg:
    arguments[width_arg] = width
  if depth_arg:
    arguments[depth_arg] = depth
  if issubclass(cls, nnx.Module):
    arguments.setdefault('rngs', nnx.Rngs(0))
  try:
    instance = cls(**arguments)
  except TypeError as e:
    raise ValueError(f'model.module {module}: cannot construct it with {sorted(arguments)} ({e}); check model.kwargs, '
                     'model.width_arg and model.depth_arg') from e
  example = jnp.zeros((2, *spec.input_shape), dtype)
  return flax_model(instance, example, param, width, depth if depth_arg else 1, kinds=tuple(map(tuple, kinds)),
                    branch_out=tuple(branch_out), dtype=dtype)
