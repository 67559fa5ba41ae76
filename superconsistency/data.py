"""Offline datasets whose batches are drawn inside the compiled training loop.

A `Data` holds device arrays and two pure functions, so the compiled training loop draws its own batches with no
host round-trip: `plan(arrays, key, first_step, num_steps)` prepares what a chunk of steps needs (the shuffled
indices: one permutation per epoch touched, not one per step, which dominated the step time of small models), and
`batch(arrays, key, step, plan_t)` returns one batch. Two stream modes:
  epoch   a fixed training set, reshuffled every epoch (the shuffle key is the lane's data key)
  online  every example is seen at most once: MNIST-1D, `from_arrays` and `byte_text` walk a fixed pool in order
          (steps·batch examples); the generated datasets draw fresh examples from (key, step), an endless stream.
The measurement batch (for sharpness) is the first training examples in epoch mode and held-out examples in online
mode; the evaluation set is fixed and held out. Neither is ever augmented.

Datasets (`make_data` names), none of which downloads anything:
  mnist1d              MNIST-1D from the `mnist1d` package (40 features, 10 classes)
  synthetic_images     learnable images from class templates; CIFAR shape 32×32×3, 10 classes by default
  synthetic_imagenet   the same at ImageNet-like shapes: 64×64×3, 200 classes (Tiny-ImageNet) by default;
                       image_size=224, num_classes=1000 for ImageNet (use online mode: a stored set is large)
  teacher_student      regression: x ~ N(0, I_D), y = a fixed random tanh teacher (+ noise)
  staircase            regression: x ∈ {±1}^D, y = (x1 + x1x2 + … + x1⋯xk)/√k   (the staircase of [G]/Abbe et al.)
  byte_text            byte-level language modelling on the Python standard library's .py sources
`from_arrays` turns host numpy arrays (uint8 images or float features) into a `Data`, and `from_bytes` a uint8 text
corpus; the TFDS loaders feed them.

`DataSpec.task` says what the labels are: 'classification' (int32 (B,), num_classes classes), 'regression' (float
(B, num_classes)) or 'language' (int32 next tokens (B, T), num_classes = vocabulary); `input_dtype` is 'float' or
'int' (token ids).

Fields of `config.data` read by `make_data` (absent fields take these defaults, so older configs keep working):
  name, mode, batch_size, num_train, num_eval, seed      as before
  augment=False          random crop (4-pixel zero padding) + horizontal flip of training images (image datasets)
  image_size=32 / 64     synthetic_images / synthetic_imagenet: height = width (3 channels)
  num_classes=10 / 200   synthetic_images / synthetic_imagenet
  input_dim=32           teacher_student, staircase: D
  output_dim=1           teacher_student: C
  teacher_width=0        teacher_student: hidden width of the teacher; 0 means 2·input_dim
  label_noise=0.0        teacher_student, staircase: std of Gaussian noise added to the targets (eval included)
  staircase_degree=4     staircase: k
  seq_len=128            byte_text: tokens per example
  max_bytes=4194304      byte_text: corpus cap (4 MiB); `Data.info` records its byte count and sha256
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import sysconfig
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

DATASETS = ('mnist1d', 'synthetic_images', 'synthetic_imagenet', 'teacher_student', 'staircase', 'byte_text')
MODES = ('epoch', 'online')
TASKS = ('classification', 'regression', 'language')
# (image shape, classes) of the synthetic image presets
IMAGE_PRESETS = {'cifar': ((32, 32, 3), 10), 'tiny_imagenet': ((64, 64, 3), 200), 'imagenet': ((224, 224, 3), 1000)}
DEFAULT_MAX_BYTES = 4 * 2 ** 20
CORPUS_SEPARATOR = b'\n\x00\n'        # between two source files: a byte no .py file contains
_AUGMENT_STREAM = 0x6175               # folded into the per-step key, so crops are independent of other draws


class DataSpec(NamedTuple):
  name: str
  input_shape: tuple
  num_classes: int                 # classes; the output dimension for regression; the vocabulary for language
  task: str = 'classification'     # 'classification' | 'regression' | 'language'
  input_dtype: str = 'float'       # 'float' | 'int' (token ids)


class Data(NamedTuple):
  spec: DataSpec
  arrays: dict       # device arrays: train_x/train_y (absent for generated online data), eval_*, measure_*
  plan: Callable     # (arrays, key, first_step, num_steps) -> pytree with leading axis num_steps; pure, jittable
  batch: Callable    # (arrays, key, step, plan_t) -> (x_B..., y_B...); pure, jittable
  info: dict | None = None   # what was trained on (sizes, normalization, corpus hash), for the run's records


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


def _epoch_plan(arrays, key, first_step, num_steps, batch_size, num_examples=None):
  """Indices (num_steps, batch) into the training set: epoch e is permutation(fold_in(key, e)), cut into batches
  (the last partial batch of an epoch is dropped). The set size is train_x's unless `num_examples` is given."""
  n = arrays['train_x'].shape[0] if num_examples is None else num_examples
  steps_per_epoch = n // batch_size
  num_epochs = num_steps // steps_per_epoch + 2   # static bound on the epochs a chunk can touch
  first_epoch = first_step // steps_per_epoch
  touched = (first_step + num_steps - 1) // steps_per_epoch - first_epoch + 1
  # only the epochs this chunk touches are permuted (a while loop, so the bound's spare ones cost nothing): the
  # shuffle is most of the input pipeline's time, and a chunk shorter than an epoch usually touches one
  perms = jax.lax.fori_loop(
      0, touched, lambda i, p: p.at[i].set(jax.random.permutation(jax.random.fold_in(key, first_epoch + i), n)),
      jnp.zeros((num_epochs, n), jnp.int32))
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


# ------------------------------------------------------------------------------------------------ augmentation


def augment_params(key, batch_size: int, pad: int = 4):
  """The random draws of `augment_images`: crop offsets (B, 2) in [0, 2·pad] into the padded image, flips (B,)."""
  k_crop, k_flip = jax.random.split(key)
  offsets = jax.random.randint(k_crop, (batch_size, 2), 0, 2 * pad + 1)
  flips = jax.random.bernoulli(k_flip, 0.5, (batch_size,))
  return offsets, flips


def augment_images(key, x_BxHxWxC, pad: int = 4):
  """Random crop of the zero-padded image, then a random horizontal flip, per image (the CIFAR recipe).

  One gather does both: row i of the output is padded row oy+i, column j is padded column ox+j, or ox+W−1−j when
  flipped. Applied to normalized images, so the padding is the channel mean."""
  b, h, w, _ = x_BxHxWxC.shape
  offsets, flips = augment_params(key, b, pad)
  padded = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows_BxH = offsets[:, :1] + jnp.arange(h)
  cols_BxW = offsets[:, 1:] + jnp.where(flips[:, None], w - 1 - jnp.arange(w), jnp.arange(w))
  return padded[jnp.arange(b)[:, None, None], rows_BxH[:, :, None], cols_BxW[:, None, :]]


def augment_key(data_key, step):
  """The key of step `step`'s augmentation: fold_in(lane data key, step), then a stream tag."""
  return jax.random.fold_in(jax.random.fold_in(data_key, step), _AUGMENT_STREAM)


def augmented(batch_fn, pad: int = 4):
  """A training batch function whose images are cropped and flipped, deterministically per lane and step."""
  def batch(arrays, key, step, plan_t):
    x, y = batch_fn(arrays, key, step, plan_t)
    return augment_images(augment_key(key, step), x, pad), y
  return batch


# ------------------------------------------------------------------------------------------------ host arrays


def _channel_stats(x, chunk=8192):
  """Mean and std over every axis but the last, in float64, a chunk of examples at a time (so a large uint8 set
  is never copied to floats whole). A constant channel gets std 1."""
  c = x.shape[-1]
  total, total_sq, count = np.zeros(c), np.zeros(c), 0
  for i in range(0, x.shape[0], chunk):
    part = np.asarray(x[i:i + chunk], np.float64).reshape(-1, c)
    total += part.sum(0)
    total_sq += np.square(part).sum(0)
    count += part.shape[0]
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
  return mean, np.where(std > 0, std, 1.0)


def _to_inputs(x_raw, shift, scale, dtype):
  return (x_raw.astype(dtype) - shift) * scale


def from_arrays(name, train_x, train_y, eval_x, eval_y, *, mode, batch_size, num_steps, num_measure, dtype,
                augment=False, normalize=True, task=None, num_classes=None) -> Data:
  """A `Data` from host numpy arrays: uint8 images (N×H×W×C) or float features (N×…), labels int (N,) for
  classification or float (N,) / (N, C) for regression; int token windows (N, T) with task='language'.

  uint8 images stay uint8 on the device (4× less memory than float32) and are converted and normalized inside
  `batch`; float features are normalized once. Normalization is per channel (the last axis), with the mean and std
  of the training set; without it, uint8 is scaled to [0, 1]. The measurement set is the first num_measure
  training examples (epoch) or the last num_measure, never streamed (online); measurement and eval inputs are
  stored normalized and never augmented. `task` is inferred from the labels when None; `num_classes` from the
  largest label (classification, language) or the label width (regression).
  """
  if mode not in MODES:
    raise ValueError(f'{name}: unknown data mode {mode!r}; allowed: {", ".join(MODES)}')
  dtype = jnp.dtype(dtype)
  train_x, train_y, eval_x, eval_y = (np.asarray(a) for a in (train_x, train_y, eval_x, eval_y))
  n = train_x.shape[0]
  if train_x.ndim < 2 or eval_x.shape[1:] != train_x.shape[1:]:
    raise ValueError(f'{name}: inputs need an example axis and one more (N×D, N×T or N×H×W×C) and the same shape '
                     f'for train and eval; got {train_x.shape} and {eval_x.shape}')
  if train_y.shape[0] != n or eval_y.shape[0] != eval_x.shape[0]:
    raise ValueError(f'{name}: {n} training inputs but {train_y.shape[0]} labels, or {eval_x.shape[0]} eval '
                     f'inputs but {eval_y.shape[0]} labels')
  if task is None:
    task = 'classification' if np.issubdtype(train_y.dtype, np.integer) and train_y.ndim == 1 else 'regression'
  if task not in TASKS:
    raise ValueError(f'{name}: unknown task {task!r}; allowed: {", ".join(TASKS)}')
  if mode == 'epoch':
    if n < batch_size or n < num_measure:
      raise ValueError(f'{name}: {n} training examples cannot fill a batch of {batch_size} and a measurement set '
                       f'of {num_measure}')
    stream, measure = slice(0, n), slice(0, num_measure)
  else:
    needed = num_steps * batch_size
    if needed + num_measure > n:
      raise ValueError(f'{name}: online mode sees each training example at most once, so num_steps·batch_size = '
                       f'{num_steps}·{batch_size} = {needed} streamed examples plus {num_measure} held-out '
                       f'measurement examples need {needed + num_measure}, but the training set has {n}; use '
                       f'fewer steps, a smaller batch, mode="epoch" or more data')
    stream, measure = slice(0, needed), slice(n - num_measure, n)

  if task == 'regression':
    as_labels = lambda y: jnp.asarray(y.reshape(y.shape[0], -1), dtype)
    num_classes = num_classes or int(np.prod(train_y.shape[1:], dtype=int))
  else:
    as_labels = lambda y: jnp.asarray(y, jnp.int32)
    num_classes = num_classes or int(max(train_y.max(), eval_y.max())) + 1

  info = dict(name=name, mode=mode, num_train=n, num_streamed=stream.stop - stream.start, num_eval=eval_x.shape[0],
              num_measure=num_measure, task=task, stored_dtype=str(train_x.dtype), augment=augment,
              normalize=normalize)
  keep_uint8 = task != 'language' and train_x.dtype == np.uint8
  if task == 'language':
    to_inputs = lambda x: jnp.asarray(x, jnp.int32)
    arrays = {'train_x': to_inputs(train_x[stream])}
  else:
    if normalize:
      mean, std = _channel_stats(train_x)
    else:
      mean, std = np.zeros(train_x.shape[-1]), np.full(train_x.shape[-1], 255.0 if keep_uint8 else 1.0)
    info.update(channel_mean=mean.tolist(), channel_std=std.tolist())
    shift, scale = jnp.asarray(mean, dtype), jnp.asarray(1.0 / std, dtype)
    to_inputs = jax.jit(lambda x: _to_inputs(x, shift, scale, dtype))
    if keep_uint8:
      arrays = {'train_x': jnp.asarray(train_x[stream]), 'x_shift': shift, 'x_scale': scale}
    else:
      arrays = {'train_x': to_inputs(train_x[stream])}
  arrays['train_y'] = as_labels(train_y[stream])
  arrays['measure_x'], arrays['measure_y'] = to_inputs(train_x[measure]), as_labels(train_y[measure])
  arrays['eval_x'], arrays['eval_y'] = to_inputs(eval_x), as_labels(eval_y)

  def inputs(arrays, x):
    return _to_inputs(x, arrays['x_shift'], arrays['x_scale'], dtype) if keep_uint8 else x

  if mode == 'epoch':
    plan = functools.partial(_epoch_plan, batch_size=batch_size)

    def batch(arrays, key, step, idx_B):
      x, y = _epoch_batch(arrays, key, step, idx_B)
      return inputs(arrays, x), y
  else:
    plan = _no_plan

    def batch(arrays, key, step, plan_t):
      x, y = _pool_batch(arrays, key, step, plan_t, batch_size)
      return inputs(arrays, x), y
  if augment:
    if train_x.ndim != 4 or task == 'language':
      raise ValueError(f'{name}: augment needs images N×H×W×C, got inputs of shape {train_x.shape}')
    batch = augmented(batch)
  spec = DataSpec(name, tuple(train_x.shape[1:]), num_classes, task, 'int' if task == 'language' else 'float')
  return Data(spec, arrays, plan, batch, info)


# ------------------------------------------------------------------------------------------------ mnist1d


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
  info = dict(name='mnist1d', mode=mode, seed=seed, num_streamed=num_stream, num_eval=num_eval)
  if mode == 'epoch':
    return Data(spec, arrays, functools.partial(_epoch_plan, batch_size=batch_size), _epoch_batch, info)
  return Data(spec, arrays, _no_plan, functools.partial(_pool_batch, batch_size=batch_size), info)


# ------------------------------------------------------------------------------------------------ generated


# A generator is a hashable recipe (a NamedTuple of its static settings) with two methods: `fixed(key) -> arrays`
# (templates, teacher weights) and `sample(arrays, key, n) -> (x, y)`. Being hashable, it is a static argument of
# one jitted builder, so builds that differ only in the seed reuse one compiled program.


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _generated_arrays(key, generator, mode, num_train, num_eval, num_measure):
  """The fixed arrays, the eval set, and the training set (epoch; the measurement set is its first examples) or a
  held-out measurement set (online)."""
  k_fixed, k_train, k_eval, k_measure = jax.random.split(key, 4)
  arrays = generator.fixed(k_fixed)
  arrays['eval_x'], arrays['eval_y'] = generator.sample(arrays, k_eval, num_eval)
  if mode == 'epoch':
    arrays['train_x'], arrays['train_y'] = generator.sample(arrays, k_train, num_train)
    arrays['measure_x'], arrays['measure_y'] = arrays['train_x'][:num_measure], arrays['train_y'][:num_measure]
  else:
    arrays['measure_x'], arrays['measure_y'] = generator.sample(arrays, k_measure, num_measure)
  return arrays


def _fresh_batch(arrays, key, step, plan_t, generator, batch_size):
  del plan_t   # online: new examples from (lane data key, step), an endless stream
  return generator.sample(arrays, jax.random.fold_in(key, step), batch_size)


def _generated(spec, generator, seed, mode, batch_size, num_train, num_eval, num_measure, augment, info):
  if mode == 'epoch' and num_measure > num_train:
    raise ValueError(f'{spec.name}: the measurement set ({num_measure}) is drawn from the training set '
                     f'({num_train}) in epoch mode and cannot be larger')
  arrays = _generated_arrays(jax.random.PRNGKey(seed), generator, mode, num_train, num_eval, num_measure)
  if mode == 'epoch':
    plan, batch = functools.partial(_epoch_plan, batch_size=batch_size), _epoch_batch
  else:
    plan, batch = _no_plan, functools.partial(_fresh_batch, generator=generator, batch_size=batch_size)
  if augment:
    batch = augmented(batch)
  info = dict(info, seed=seed, mode=mode, num_train=num_train if mode == 'epoch' else None, num_eval=num_eval,
              num_measure=num_measure, augment=augment)
  return Data(spec, arrays, plan, batch, info)


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


class _Images(NamedTuple):
  shape: tuple
  num_classes: int
  noise: float
  max_shift: int
  dtype: np.dtype

  def fixed(self, key):
    return {'templates': _image_templates(key, self.num_classes, self.shape, self.dtype)}

  def sample(self, arrays, key, n):
    return _sample_images(arrays['templates'], key, n, self.noise, self.max_shift)


def synthetic_images(mode: str, batch_size: int, num_train: int, num_eval: int, num_measure: int, seed: int,
                     dtype, shape=(32, 32, 3), num_classes=10, noise=1.0, max_shift=None, augment=False,
                     name='synthetic_images') -> Data:
  """A learnable image task generated from a seed: CIFAR shape (32×32×3, 10 classes) by default, any H×W×C and
  class count otherwise (see IMAGE_PRESETS). Translations reach H/8 pixels (4 at 32×32). The templates are stored
  on the device: classes·H·W·C numbers, 600 MB in float32 at the ImageNet preset (224², 1000 classes)."""
  shape = tuple(shape)
  max_shift = shape[0] // 8 if max_shift is None else max_shift
  generator = _Images(shape, num_classes, float(noise), max_shift, jnp.dtype(dtype))
  info = dict(name=name, shape=shape, num_classes=num_classes, noise=noise, max_shift=max_shift)
  return _generated(DataSpec(name, shape, num_classes), generator, seed, mode, batch_size, num_train, num_eval,
                    num_measure, augment, info)


def _add_noise(y, key, label_noise):
  return y + label_noise * jax.random.normal(key, y.shape, y.dtype) if label_noise else y


class _TeacherStudent(NamedTuple):
  input_dim: int
  output_dim: int
  width: int
  label_noise: float
  dtype: np.dtype

  def fixed(self, key):
    """Teacher weights, the readout scaled so each clean target has unit variance (on 8192 reference inputs)."""
    k_in, k_out, k_ref = jax.random.split(key, 3)
    d, h, c = self.input_dim, self.width, self.output_dim
    arrays = {'teacher_in': jax.random.normal(k_in, (d, h), self.dtype) / np.sqrt(d),
              'teacher_out': jax.random.normal(k_out, (h, c), self.dtype) / np.sqrt(h)}
    reference = teacher(arrays, jax.random.normal(k_ref, (8192, d), self.dtype))
    arrays['teacher_out'] = arrays['teacher_out'] / reference.std(axis=0)
    return arrays

  def sample(self, arrays, key, n):
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (n, self.input_dim), self.dtype)
    return x, _add_noise(teacher(arrays, x), kn, self.label_noise)


def teacher(arrays, x_BxD):
  """The teacher network of `teacher_student`: tanh(x·W_in)·W_out, weights in arrays['teacher_in' / 'teacher_out']."""
  return jnp.tanh(x_BxD @ arrays['teacher_in']) @ arrays['teacher_out']


def teacher_student(mode: str, batch_size: int, num_train: int, num_eval: int, num_measure: int, seed: int,
                    dtype, input_dim=32, output_dim=1, teacher_width=None, label_noise=0.0) -> Data:
  """Regression on x ~ N(0, I_D) with targets from a fixed random teacher D → tanh(width) → C (width 2D unless
  given), scaled so each clean target has unit variance; plus Gaussian label noise of std `label_noise` (on the
  eval targets too: eval is a held-out sample of the same distribution)."""
  width = teacher_width or 2 * input_dim
  generator = _TeacherStudent(input_dim, output_dim, width, float(label_noise), jnp.dtype(dtype))
  info = dict(name='teacher_student', input_dim=input_dim, output_dim=output_dim, teacher_width=width,
              label_noise=label_noise)
  return _generated(DataSpec('teacher_student', (input_dim,), output_dim, 'regression'), generator, seed, mode,
                    batch_size, num_train, num_eval, num_measure, False, info)


def staircase_target(x_BxD, degree: int):
  """y = (x1 + x1x2 + … + x1⋯xk)/√k, shape (B, 1). The monomials are orthonormal under uniform ±1 inputs, so y
  has mean 0 and variance 1."""
  return jnp.cumprod(x_BxD[:, :degree], axis=1).sum(axis=1, keepdims=True) / np.sqrt(degree)


class _Staircase(NamedTuple):
  input_dim: int
  degree: int
  label_noise: float
  dtype: np.dtype

  def fixed(self, key):
    del key
    return {}

  def sample(self, arrays, key, n):
    del arrays
    kx, kn = jax.random.split(key)
    x = jax.random.rademacher(kx, (n, self.input_dim), self.dtype)
    return x, _add_noise(staircase_target(x, self.degree), kn, self.label_noise)


def staircase(mode: str, batch_size: int, num_train: int, num_eval: int, num_measure: int, seed: int, dtype,
              input_dim=32, degree=4, label_noise=0.0) -> Data:
  """Regression on uniform Boolean inputs x ∈ {±1}^D with the staircase target of degree k ([G], Abbe et al.):
  each monomial is learnable only once the one below it is, which gives plateaus and drops. Online draws are
  independent, so at small D (2^D points) an input can recur by chance."""
  if not 1 <= degree <= input_dim:
    raise ValueError(f'staircase: degree {degree} must be between 1 and input_dim={input_dim}')
  generator = _Staircase(input_dim, degree, float(label_noise), jnp.dtype(dtype))
  info = dict(name='staircase', input_dim=input_dim, degree=degree, label_noise=label_noise)
  return _generated(DataSpec('staircase', (input_dim,), 1, 'regression'), generator, seed, mode, batch_size,
                    num_train, num_eval, num_measure, False, info)


# ------------------------------------------------------------------------------------------------ byte text


@functools.lru_cache(maxsize=2)
def stdlib_corpus(max_bytes: int = DEFAULT_MAX_BYTES):
  """The first `max_bytes` of the standard library's .py files (site-packages excluded), in sorted path order,
  read as bytes and joined by CORPUS_SEPARATOR: the same bytes on every run on one machine.
  Returns (uint8 array, info with the byte count, sha256, file count and source)."""
  root = sysconfig.get_paths()['stdlib']
  paths = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if d not in ('site-packages', 'dist-packages', '__pycache__')]
    rel = os.path.relpath(dirpath, root)
    paths += [os.path.normpath(os.path.join(rel, f)).replace(os.sep, '/') for f in filenames if f.endswith('.py')]
  parts, size = [], 0
  for path in sorted(paths):
    if size >= max_bytes:
      break
    with open(os.path.join(root, path), 'rb') as f:
      parts.append(f.read() + CORPUS_SEPARATOR)
    size += len(parts[-1])
  corpus = b''.join(parts)[:max_bytes]
  info = dict(corpus_bytes=len(corpus), corpus_sha256=hashlib.sha256(corpus).hexdigest(), corpus_files=len(parts),
              corpus_source=f'{root} (*.py, sorted; Python {platform.python_version()})', max_bytes=max_bytes)
  return np.frombuffer(corpus, np.uint8), info


def from_bytes(name, corpus, *, mode, batch_size, num_steps, num_eval, num_measure, seed, seq_len=128,
               eval_corpus=None, info=None) -> Data:
  """Byte-level language modelling (vocabulary 256) on a uint8 corpus (e.g. a TFDS text loader's bytes).

  The corpus is cut into non-overlapping windows of seq_len+1 bytes; x = window[:-1], y = window[1:]. The seed
  picks which windows are held out: the eval set (unless `eval_corpus` is given: then its first windows) and, online,
  the measurement set. The rest are the training windows: shuffled per epoch, or walked in corpus order online
  (each at most once). The corpus stays uint8 on the device; batches are read from it by window start."""
  corpus = np.asarray(corpus, np.uint8).reshape(-1)
  window = seq_len + 1
  num_windows = corpus.shape[0] // window
  held_eval = 0 if eval_corpus is not None else num_eval
  held_out = held_eval + (num_measure if mode == 'online' else 0)
  order = np.random.default_rng(seed).permutation(num_windows)
  train_w = np.sort(order[held_out:])
  if mode == 'epoch':
    if train_w.shape[0] < max(batch_size, num_measure):
      raise ValueError(f'{name}: {train_w.shape[0]} training windows of {window} bytes cannot fill a batch of '
                       f'{batch_size} and a measurement set of {num_measure}; use a larger corpus')
    measure_w = train_w[:num_measure]
  else:
    measure_w = np.sort(order[held_eval:held_out])
    if num_steps * batch_size > train_w.shape[0]:
      raise ValueError(f'{name}: online mode reads each window at most once, so num_steps·batch_size = '
                       f'{num_steps}·{batch_size} = {num_steps * batch_size} windows are needed, but the '
                       f'{corpus.shape[0]}-byte corpus holds {train_w.shape[0]} training windows of {window} bytes; '
                       f'use a larger corpus, a shorter seq_len or run, or mode="epoch"')

  def windows(source, w):
    tokens = source[w[:, None] * window + np.arange(window)].astype(np.int32)
    return jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
  arrays = {'corpus': jnp.asarray(corpus), 'train_starts': jnp.asarray(train_w * window, jnp.int32)}
  if eval_corpus is None:
    arrays['eval_x'], arrays['eval_y'] = windows(corpus, np.sort(order[:num_eval]))
  else:
    eval_corpus = np.asarray(eval_corpus, np.uint8).reshape(-1)
    if eval_corpus.shape[0] < num_eval * window:
      raise ValueError(f'{name}: the eval corpus has {eval_corpus.shape[0]} bytes, fewer than {num_eval} windows '
                       f'of {window}')
    arrays['eval_x'], arrays['eval_y'] = windows(eval_corpus, np.arange(num_eval))
  arrays['measure_x'], arrays['measure_y'] = windows(corpus, measure_w)

  def read(arrays, starts_B):
    tokens = arrays['corpus'][starts_B[:, None] + jnp.arange(window)].astype(jnp.int32)
    return tokens[:, :-1], tokens[:, 1:]
  if mode == 'epoch':
    plan = functools.partial(_epoch_plan, batch_size=batch_size, num_examples=int(train_w.shape[0]))
    batch = lambda arrays, key, step, idx_B: read(arrays, arrays['train_starts'][idx_B])
  else:
    plan = _no_plan
    batch = lambda arrays, key, step, plan_t: read(
        arrays, jax.lax.dynamic_slice_in_dim(arrays['train_starts'], step * batch_size, batch_size))
  info = dict(info or {}, name=name, mode=mode, seed=seed, seq_len=seq_len, corpus_bytes=int(corpus.shape[0]),
              num_train_windows=int(train_w.shape[0]), num_eval=num_eval, num_measure=num_measure)
  return Data(DataSpec(name, (seq_len,), 256, 'language', 'int'), arrays, plan, batch, info)


def byte_text(mode: str, batch_size: int, num_steps: int, num_eval: int, num_measure: int, seed: int,
              seq_len=128, max_bytes=DEFAULT_MAX_BYTES) -> Data:
  """`from_bytes` on `stdlib_corpus(max_bytes)`: text already on every machine with Python, so no download."""
  corpus, info = stdlib_corpus(max_bytes)
  return from_bytes('byte_text', corpus, mode=mode, batch_size=batch_size, num_steps=num_steps, num_eval=num_eval,
                    num_measure=num_measure, seed=seed, seq_len=seq_len, info=info)


# ------------------------------------------------------------------------------------------------ config


# The offline dataset that stands in for each TFDS dataset when config.data.offline is True: same input shape,
# same number of classes (or the same byte vocabulary), so a model and its config run unchanged on it.
OFFLINE_EQUIVALENTS = {
    'cifar10': ('synthetic_images', (32, 32, 3), 10),
    'mnist': ('synthetic_images', (28, 28, 1), 10),
    'imagenet_resized/32x32': ('synthetic_imagenet', (32, 32, 3), 1000),
    'imagenet_resized/64x64': ('synthetic_imagenet', (64, 64, 3), 1000),
    'imagenet2012': ('synthetic_imagenet', (224, 224, 3), 1000),
    'tiny_imagenet': ('synthetic_imagenet', (64, 64, 3), 200),
    'wikitext103': ('byte_text', None, 256),
}
EVAL_SPLIT = {'cifar10': 'test', 'mnist': 'test', 'wikitext103': 'validation'}   # the rest: 'validation'


def all_dataset_names():
  return DATASETS + tuple(OFFLINE_EQUIVALENTS)


def _real(data_cfg, num_steps, num_measure, dtype) -> Data:
  """A TFDS dataset read from data_dir through tfds.data_source (no TensorFlow), then put on the device."""
  from superconsistency import tfds_data
  name, get = data_cfg.name, data_cfg.get
  data_dir = get('data_dir', '') or None
  common = dict(mode=data_cfg.mode, batch_size=data_cfg.batch_size, num_steps=num_steps, num_measure=num_measure)
  if name == 'wikitext103':
    max_bytes = get('max_bytes', DEFAULT_MAX_BYTES) or None
    train = tfds_data.load_text(name, 'train', data_dir=data_dir, max_bytes=max_bytes)
    held = tfds_data.load_text(name, EVAL_SPLIT[name], data_dir=data_dir, max_bytes=max_bytes)
    return from_bytes(name, train, num_eval=data_cfg.num_eval, seed=data_cfg.seed, seq_len=get('seq_len', 128),
                      eval_corpus=held, info=dict(source=f'tfds:{name}', train_bytes=int(train.size)), **common)
  # online mode needs steps·batch fresh examples plus the measurement set; epoch mode num_train examples
  needed = (num_steps * data_cfg.batch_size + num_measure) if data_cfg.mode == 'online' else data_cfg.num_train
  size = get('image_size', 0) or None
  train_x, train_y = tfds_data.load_images(name, 'train', data_dir=data_dir, max_examples=needed, image_size=size)
  eval_x, eval_y = tfds_data.load_images(name, EVAL_SPLIT.get(name, 'validation'), data_dir=data_dir,
                                         max_examples=data_cfg.num_eval, image_size=size)
  return from_arrays(name, train_x, train_y, eval_x, eval_y, dtype=dtype, augment=get('augment', False),
                     task='classification', num_classes=tfds_data.info(name)['num_classes'], **common)


def make_data(data_cfg, num_steps: int, num_measure: int, dtype) -> Data:
  """Builds `config.data`. Fields added after the first release are read with defaults (module docstring).

  A TFDS dataset name (tfds_data.DATASETS) reads the prepared dataset, or with `offline=True` its offline
  equivalent (OFFLINE_EQUIVALENTS)."""
  name, mode = data_cfg.name, data_cfg.mode
  if name not in all_dataset_names():
    raise ValueError(f'unknown dataset {name!r}; allowed: {", ".join(all_dataset_names())}')
  if mode not in MODES:
    raise ValueError(f'unknown data mode {mode!r}; allowed: {", ".join(MODES)}')
  get = data_cfg.get
  common = (mode, data_cfg.batch_size)
  sizes = (data_cfg.num_train, data_cfg.num_eval, num_measure, data_cfg.seed, dtype)
  if name in OFFLINE_EQUIVALENTS:
    if not get('offline', False):
      return _real(data_cfg, num_steps, num_measure, dtype)
    stand_in, shape, classes = OFFLINE_EQUIVALENTS[name]
    if stand_in == 'byte_text':
      return byte_text(*common, num_steps, data_cfg.num_eval, num_measure, data_cfg.seed,
                       seq_len=get('seq_len', 128), max_bytes=get('max_bytes', DEFAULT_MAX_BYTES))
    size = get('image_size', 0) or shape[0]
    return synthetic_images(*common, *sizes, shape=(size, size, shape[2]), num_classes=classes,
                            augment=get('augment', False), name=f'{stand_in}[{name}]')
  if name == 'mnist1d':
    return mnist1d(*common, num_steps, data_cfg.num_train, data_cfg.num_eval, num_measure, data_cfg.seed, dtype)
  if name in ('synthetic_images', 'synthetic_imagenet'):
    (size, _, channels), classes = IMAGE_PRESETS['cifar' if name == 'synthetic_images' else 'tiny_imagenet']
    size = get('image_size', 0) or size
    return synthetic_images(*common, *sizes, shape=(size, size, channels),
                            num_classes=get('num_classes', 0) or classes, augment=get('augment', False), name=name)
  if name == 'teacher_student':
    return teacher_student(*common, *sizes, input_dim=get('input_dim', 32), output_dim=get('output_dim', 1),
                           teacher_width=get('teacher_width', 0) or None, label_noise=get('label_noise', 0.0))
  if name == 'staircase':
    return staircase(*common, *sizes, input_dim=get('input_dim', 32), degree=get('staircase_degree', 4),
                     label_noise=get('label_noise', 0.0))
  return byte_text(*common, num_steps, data_cfg.num_eval, num_measure, data_cfg.seed,
                   seq_len=get('seq_len', 128), max_bytes=get('max_bytes', DEFAULT_MAX_BYTES))
