"""Linen and NNX modules written the way a user writes them (bias-free, to match the project's models), for
tests/flax_bridge_test.py. Importable as 'flax_modules:MLP' while pytest runs (tests/ is on sys.path)."""
import jax
from flax import linen as nn
from flax import nnx


class MLP(nn.Module):
  """models.mlp: depth weight layers D→N→…→N→C, ReLU."""
  width: int
  depth: int = 3
  classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for _ in range(self.depth - 1):
      x = nn.relu(nn.Dense(self.width, use_bias=False)(x))
    return nn.Dense(self.classes, use_bias=False)(x)


class ConvNet(nn.Module):
  """models.simple_convnet: conv3×3/2 → ReLU → maxpool2 → conv3×3/4 → ReLU → maxpool2 → dense."""
  width: int
  classes: int = 10

  @nn.compact
  def __call__(self, x):
    z = nn.Conv(self.width, (3, 3), strides=2, padding='SAME', use_bias=False)(x)
    z = nn.max_pool(nn.relu(z), (2, 2), strides=(2, 2))
    z = nn.Conv(self.width, (3, 3), strides=4, padding='SAME', use_bias=False)(z)
    z = nn.max_pool(nn.relu(z), (2, 2), strides=(2, 2))
    return nn.Dense(self.classes, use_bias=False)(z.reshape(z.shape[0], -1))


class ResMLP(nn.Module):
  """models.res_mlp: input dense, `depth` blocks z + F(z), F = k × [ReLU → dense], readout on ReLU(z). The user
  writes no depth scaling: flax_model folds Depth-μP's branch multiplier into each branch's last dense."""
  width: int
  depth: int
  k: int = 1
  classes: int = 10

  @nn.compact
  def __call__(self, x):
    z = nn.Dense(self.width, use_bias=False)(x.reshape(x.shape[0], -1))
    for b in range(self.depth):
      f = z
      for l in range(self.k):
        f = nn.Dense(self.width, use_bias=False, name=f'block{b}_dense{l}')(nn.relu(f))
      z = z + f
    return nn.Dense(self.classes, use_bias=False)(nn.relu(z))


class WithBatchNorm(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.width, use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    return nn.Dense(10, use_bias=False)(nn.relu(x))


class WithDropout(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.width, use_bias=False)(x))
    x = nn.Dropout(0.1, deterministic=False)(x)
    return nn.Dense(10, use_bias=False)(x)


class NNXMLP(nnx.Module):
  """The MLP above in NNX."""

  def __init__(self, width: int, depth: int = 3, classes: int = 10, in_dim: int = 40, *, rngs: nnx.Rngs):
    dims = [in_dim] + [width] * (depth - 1) + [classes]
    self.layers = nnx.List([nnx.Linear(a, b, use_bias=False, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for layer in self.layers[:-1]:
      x = jax.nn.relu(layer(x))
    return self.layers[-1](x)


class NNXWithBatchNorm(nnx.Module):
  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.dense = nnx.Linear(40, width, use_bias=False, rngs=rngs)
    self.norm = nnx.BatchNorm(width, rngs=rngs)
    self.readout = nnx.Linear(width, 10, use_bias=False, rngs=rngs)

  def __call__(self, x):
    return self.readout(jax.nn.relu(self.norm(self.dense(x))))
