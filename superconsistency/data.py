"""Offline datasets whose batches are drawn inside the compiled training loop.

A `Data` holds device arrays and two pure functions, so the compiled training loop draws its own batches with no
host round-trip: `plan(arrays, key, first_step, num_steps)` prepares what a chunk of steps needs (the shuffled
indices: one permutation per epoch touched, not one per step, which dominated the step time of small models), and
`batch(arrays, key, step, plan_t)` returns one batch. Two stream modes:
  epoch   a fixed training set, reshuffled every epoch (the shuffle key is the lane's data key)
  online  every example is seen at most once: MNIST-1D pre-generates exactly num_steps·batch fresh examples;
          synthetic images are generated on the fly from (key, step), an endless stream.
The measurement batch (for sharpness) and the evaluation set are fixed and disjoint from the training stream.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

DATASETS = ('mnist1d', 'synthetic_images')
MODES = ('epoch', 'online')


class DataSpec(NamedTuple):
  name: str
  input_shape: tuple
  num_classes: int


class Data(NamedTuple):
  spec: DataSpec
  arrays: dict       # device arrays: train_x/train_y (absent for generated online data), eval_*, measure_*
  plan: Callable     # (arrays, key, first_step, num_steps) -> pytree with leading axis num_steps; pure, jittable
  batch: Callable    # (arrays, key, step, plan_t) -> (x_B..., y_B); pure, jittable


def _no_plan(arrays, key, first_step, num_steps):
  del arrays, key, first_step
  return jnp.zeros((num_steps,), jnp.int32)


@functools.lru_cache(maxsize=4)
def _mnist1d_numpy(num_samples: int, seed: int):
  """Generates MNIST-1D locally (the `mnist1d` package, no download). ~0.2 ms per sample."""
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.num_samples = int(-(-num_samples // 10) * 10)   # generated per class
  args.train_split = 1.0
  args.seed = seed
  state = np.random.get_state()   # mnist1d seeds numpy's global generator; leave the caller's untouched
  try:
    d = make_dataset(args)
  finally:
    np.random.set_state(state)
  return d['x'].astype(np.float32), d['y'].astype(np.int32)


def _epoch_plan(arrays, key, first_step, num_steps, batch_size):
  """Indices (num_steps, batch) into the training set: epoch e is permutation(fold_in(key, e)), cut into batches
  (the last partial batch of an epoch is dropped)."""
  n = arrays['train_x'].shape[0]
  steps_per_epoch = n // batch_size
  num_epochs = num_steps // steps_per_epoch + 2   # static bound on the epochs a chunk can touch
  first_epoch = first_step // steps_per_epoch
  perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), n))(
      first_epoch + jnp.arange(num_epochs))
  t = first_step + jnp.arange(num_steps)
  epoch, pos = t // steps_per_epoch - first_epoch, (t % steps_per_epoch) * batch_size
  return perms[epoch[:, None], pos[:, None] + jnp.arange(batch_size)[None, :]]


def _epoch_batch(arrays, key, step, idx_B):
  del key, step
  return arrays['train_x'][idx_B], arrays['train_y'][idx_B]


def _pool_batch(arrays, key, step, plan_t, batch_size):
  del key, plan_t  # the pool is consumed in order: each example exactly once
  x = jax.lax.dynamic_slice_in_dim(arrays['train_x'], step * batch_size, batch_size)
  y = jax.lax.dynamic_slice_in_dim(arrays['train_y'], step * batch_size, batch_size)
  return x, y


def mnist1d(mode: str, batch_size: int, num_steps: int, num_train: int, num_eval: int, num_measure: int,
            seed: int, dtype) -> Data:
  num_stream = num_train if mode == 'epoch' else num_steps * batch_size
  x, y = _mnist1d_numpy(num_stream + num_eval + num_measure, seed)
  spec = DataSpec('mnist1d', (x.shape[1],), 10)
  # measurement batch: the first examples of the training set in epoch mode (sharpness of the training loss);
  # held-out fresh examples in online mode.
  arrays = {
      'train_x': x[:num_stream], 'train_y': y[:num_stream],
      'eval_x': x[num_stream:num_stream + num_eval], 'eval_y': y[num_stream:num_stream + num_eval],
  }
  if mode == 'epoch':
    arrays['measure_x'], arrays['measure_y'] = x[:num_measure], y[:num_measure]
  else:
    arrays['measure_x'], arrays['measure_y'] = x[-num_measure:], y[-num_measure:]
  arrays = {k: jnp.asarray(v, dtype if k.endswith('_x') else jnp.int32) for k, v in arrays.items()}
  if mode == 'epoch':
    return Data(spec, arrays, functools.partial(_epoch_plan, batch_size=batch_size), _epoch_batch)
  return Data(spec, arrays, _no_plan, functools.partial(_pool_batch, batch_size=batch_size))


def _image_templates(key, num_classes, shape, dtype):
  """One smooth random template per class: a sum of low-frequency plane waves per channel."""
  h, w, c = shape
  k1, k2, k3 = jax.random.split(key, 3)
  waves = 6
  freq = jax.random.uniform(k1, (num_classes, c, waves, 2), minval=-3.0, maxval=3.0)
  phase = jax.random.uniform(k2, (num_classes, c, waves), maxval=2 * jnp.pi)
  amp = jax.random.normal(k3, (num_classes, c, waves))
  yy, xx = jnp.meshgrid(jnp.linspace(0, 2 * jnp.pi, h), jnp.linspace(0, 2 * jnp.pi, w), indexing='ij')
  arg = freq[..., 0, None, None] * yy + freq[..., 1, None, None] * xx + phase[..., None, None]
  t = (amp[..., None, None] * jnp.cos(arg)).sum(2)            # classes, c, h, w
  t = t / t.std(axis=(1, 2, 3), keepdims=True)
  return jnp.transpose(t, (0, 2, 3, 1)).astype(dtype)        # classes, h, w, c


def _sample_images(templates, key, n, noise, max_shift):
  """Template of a random class, random contrast, random translation, Gaussian noise: learnable, not trivial."""
  num_classes = templates.shape[0]
  ky, ka, ks, kn = jax.random.split(key, 4)
  y = jax.random.randint(ky, (n,), 0, num_classes)
  contrast = jax.random.uniform(ka, (n, 1, 1, 1), minval=0.5, maxval=1.5, dtype=templates.dtype)
  shifts = jax.random.randint(ks, (n, 2), -max_shift, max_shift + 1)
  x = jax.vmap(lambda img, s: jnp.roll(img, s, axis=(0, 1)))(templates[y], shifts)
  x = contrast * x + noise * jax.random.normal(kn, x.shape, templates.dtype)
  return x / jnp.sqrt(1.0 + noise ** 2), y.astype(jnp.int32)


def synthetic_images(mode: str, batch_size: int, num_train: int, num_eval: int, num_measure: int, seed: int,
                     dtype, shape=(32, 32, 3), num_classes=10, noise=1.0, max_shift=4) -> Data:
  """A learnable image task of CIFAR shape (32×32×3, 10 classes), generated from a seed."""
  key = jax.random.PRNGKey(seed)
  kt, ktrain, keval, kmeas = jax.random.split(key, 4)
  templates = _image_templates(kt, num_classes, shape, dtype)
  sample = functools.partial(_sample_images, noise=noise, max_shift=max_shift)
  arrays = {'templates': templates}
  arrays['eval_x'], arrays['eval_y'] = sample(templates, keval, num_eval)
  arrays['measure_x'], arrays['measure_y'] = sample(templates, kmeas, num_measure)
  spec = DataSpec('synthetic_images', tuple(shape), num_classes)
  if mode == 'epoch':
    arrays['train_x'], arrays['train_y'] = sample(templates, ktrain, num_train)
    return Data(spec, arrays, functools.partial(_epoch_plan, batch_size=batch_size), _epoch_batch)

  def online_batch(arrays, key, step, plan_t):
    del plan_t
    return sample(arrays['templates'], jax.random.fold_in(key, step), batch_size)
  return Data(spec, arrays, _no_plan, online_batch)


def make_data(data_cfg, num_steps: int, num_measure: int, dtype) -> Data:
  if data_cfg.name not in DATASETS:
    raise ValueError(f'unknown dataset {data_cfg.name!r}; allowed: {", ".join(DATASETS)}')
  if data_cfg.mode not in MODES:
    raise ValueError(f'unknown data mode {data_cfg.mode!r}; allowed: {", ".join(MODES)}')
  if data_cfg.name == 'mnist1d':
    return mnist1d(data_cfg.mode, data_cfg.batch_size, num_steps, data_cfg.num_train, data_cfg.num_eval,
                   num_measure, data_cfg.seed, dtype)
  return synthetic_images(data_cfg.mode, data_cfg.batch_size, data_cfg.num_train, data_cfg.num_eval, num_measure,
                          data_cfg.seed, dtype)
