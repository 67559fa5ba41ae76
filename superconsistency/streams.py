"""Data as pure functions of (key, step) that the compiled training loop calls: the machinery under every data set.

A `Data` holds device arrays and two pure functions, so the compiled training loop draws its own batches with no
host round-trip: `plan(arrays, key, first_step, num_steps)` prepares what a chunk of steps needs (the shuffled
indices: one permutation per epoch touched, not one per step, which dominated the step time of small models), and
`batch(arrays, key, step, plan_t)` returns one batch. Two stream modes:
  epoch   a fixed training set, reshuffled every epoch (the shuffle key is the lane's data key)
  online  every example is seen at most once: `from_arrays` and `from_bytes` walk a fixed pool in order
          (steps·batch examples); generated data sets draw fresh examples from (key, step), an endless stream.
The measurement batch (for sharpness) is the first training examples in epoch mode and held-out examples in online
mode; the evaluation set is fixed and held out. Neither is ever augmented.

`from_arrays` turns host numpy arrays (uint8 images or float features) into a `Data`, `from_bytes` a uint8 text
corpus, and `generated` a hashable generator recipe (data.py's synthetic data sets). data.py names the data sets.

`DataSpec.task` says what the labels are: 'classification' (int32 (B,), num_classes classes), 'regression' (float
(B, num_classes)) or 'language' (int32 next tokens (B, T), num_classes = vocabulary); `input_dtype` is 'float' or
'int' (token ids).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MODES = ('epoch', 'online')
TASKS = ('classification', 'regression', 'language')
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


def no_plan(arrays, key, first_step, num_steps):
  del arrays, key, first_step
  return jnp.zeros((num_steps,), jnp.int32)


def epoch_plan(arrays, key, first_step, num_steps, batch_size, num_examples=None):
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


def epoch_batch(arrays, key, step, idx_B):
  del key, step
  return arrays['train_x'][idx_B], arrays['train_y'][idx_B]


def pool_batch(arrays, key, step, plan_t, batch_size):
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
    plan = functools.partial(epoch_plan, batch_size=batch_size)

    def batch(arrays, key, step, idx_B):
      x, y = epoch_batch(arrays, key, step, idx_B)
      return inputs(arrays, x), y
  else:
    plan = no_plan

    def batch(arrays, key, step, plan_t):
      x, y = pool_batch(arrays, key, step, plan_t, batch_size)
      return inputs(arrays, x), y
  if augment:
    if train_x.ndim != 4 or task == 'language':
      raise ValueError(f'{name}: augment needs images N×H×W×C, got inputs of shape {train_x.shape}')
    batch = augmented(batch)
  spec = DataSpec(name, tuple(train_x.shape[1:]), num_classes, task, 'int' if task == 'language' else 'float')
  return Data(spec, arrays, plan, batch, info)


# ------------------------------------------------------------------------------------------------ generated


# A generator is a hashable recipe (a NamedTuple of its static settings) with two methods: `fixed(key) -> arrays`
# (templates, teacher weights) and `sample(arrays, key, n) -> (x, y)`. Being hashable, it is a static argument of
# one jitted builder, so builds that differ only in the seed reuse one compiled program.


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def generated_arrays(key, generator, mode, num_train, num_eval, num_measure):
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


def fresh_batch(arrays, key, step, plan_t, generator, batch_size):
  del plan_t   # online: new examples from (lane data key, step), an endless stream
  return generator.sample(arrays, jax.random.fold_in(key, step), batch_size)


def generated(spec, generator, seed, mode, batch_size, num_train, num_eval, num_measure, augment, info):
  if mode == 'epoch' and num_measure > num_train:
    raise ValueError(f'{spec.name}: the measurement set ({num_measure}) is drawn from the training set '
                     f'({num_train}) in epoch mode and cannot be larger')
  arrays = generated_arrays(jax.random.PRNGKey(seed), generator, mode, num_train, num_eval, num_measure)
  if mode == 'epoch':
    plan, batch = functools.partial(epoch_plan, batch_size=batch_size), epoch_batch
  else:
    plan, batch = no_plan, functools.partial(fresh_batch, generator=generator, batch_size=batch_size)
  if augment:
    batch = augmented(batch)
  info = dict(info, seed=seed, mode=mode, num_train=num_train if mode == 'epoch' else None, num_eval=num_eval,
              num_measure=num_measure, augment=augment)
  return Data(spec, arrays, plan, batch, info)


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
    plan = functools.partial(epoch_plan, batch_size=batch_size, num_examples=int(train_w.shape[0]))
    batch = lambda arrays, key, step, idx_B: read(arrays, arrays['train_starts'][idx_B])
  else:
    plan = no_plan
    batch = lambda arrays, key, step, plan_t: read(
        arrays, jax.lax.dynamic_slice_in_dim(arrays['train_starts'], step * batch_size, batch_size))
  info = dict(info or {}, name=name, mode=mode, seed=seed, seq_len=seq_len, corpus_bytes=int(corpus.shape[0]),
              num_train_windows=int(train_w.shape[0]), num_eval=num_eval, num_measure=num_measure)
  return Data(DataSpec(name, (seq_len,), 256, 'language', 'int'), arrays, plan, batch, info)
