"""The data sets a config names (`config.data.name`), their options, and `make_data`; none downloads anything.

  mnist1d              MNIST-1D from the `mnist1d` package (40 features, 10 classes)
  synthetic_images     learnable images from class templates; CIFAR shape 32×32×3, 10 classes by default
  synthetic_imagenet   the same at ImageNet-like shapes: 64×64×3, 200 classes (Tiny-ImageNet) by default;
                       image_size=224, num_classes=1000 for ImageNet (use online mode: a stored set is large)
  teacher_student      regression: x ~ N(0, I_D), y = a fixed random tanh teacher (+ noise)
  staircase            regression: x ∈ {±1}^D, y = (x1 + x1x2 + … + x1⋯xk)/√k   (the staircase of [G]/Abbe et al.)
  byte_text            byte-level language modelling on the Python standard library's .py sources
  TFDS names           (OFFLINE_EQUIVALENTS) read through tfds_data when prepared, or their offline equivalent

The batches are drawn inside the compiled loop by the machinery of streams.py (Data, DataSpec, the epoch and online
modes, augmentation, from_arrays, from_bytes), re-exported here. The fields of `config.data` that each data set
reads, and their defaults, are declared once in DATA_OPTIONS.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import platform
import sysconfig
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency.streams import (  # noqa: F401 - re-exported: the data API in one place
    MODES, TASKS, Data, DataSpec, augment_images, augment_key, augment_params, augmented, from_arrays, from_bytes,
    generated, generated_arrays)
from superconsistency import compile_cache
from superconsistency import draws
from superconsistency import results
from superconsistency import streams

DATASETS = ('mnist1d', 'synthetic_images', 'synthetic_imagenet', 'teacher_student', 'staircase', 'byte_text')
# (image shape, classes) of the synthetic image presets
IMAGE_PRESETS = {'cifar': ((32, 32, 3), 10), 'tiny_imagenet': ((64, 64, 3), 200), 'imagenet': ((224, 224, 3), 1000)}
DEFAULT_MAX_BYTES = 4 * 2 ** 20
CORPUS_SEPARATOR = b'\n\x00\n'        # between two source files: a byte no .py file contains


def mnist1d_cache_directory() -> str:
  """Where generated MNIST-1D arrays are kept: $SUPERCONSISTENCY_DATA_CACHE ('' turns the cache off), else
  $XDG_CACHE_HOME/superconsistency/data, else ~/.cache/superconsistency/data."""
  if 'SUPERCONSISTENCY_DATA_CACHE' in os.environ:
    return os.environ['SUPERCONSISTENCY_DATA_CACHE']
  return compile_cache.user_cache_directory('data')


def _mnist1d_generator_versions() -> str:
  """The versions of what computes the arrays (mnist1d, and the NumPy and SciPy it draws and interpolates with):
  part of a cached file's name, so an upgrade generates afresh rather than reading another generator's numbers."""
  from importlib import metadata
  return '-'.join(metadata.version(p) for p in ('mnist1d', 'numpy', 'scipy'))


@functools.lru_cache(maxsize=4)
def _mnist1d_numpy(num_samples: int, seed: int):
  """MNIST-1D generated locally (the `mnist1d` package, no download; ~0.4 ms per sample, and importing the package
  with the SciPy it loads takes ~1.5 s), kept as an .npz in mnist1d_cache_directory() so that the next run with the
  same size and seed loads the same arrays instead. A file that cannot be read is generated again; a directory
  that cannot be written leaves the arrays uncached."""
  num_samples = int(-(-num_samples // 10) * 10)   # generated per class
  directory = mnist1d_cache_directory()
  path = os.path.join(directory, f'mnist1d-{_mnist1d_generator_versions()}-n{num_samples}-seed{seed}.npz') \
      if directory else ''
  if path and os.path.exists(path):
    try:
      with np.load(path) as f:
        x, y = f['x'], f['y']
      if x.shape == (num_samples, 40) and y.shape == (num_samples,):
        return x, y
    except Exception:   # noqa: BLE001 - a truncated or foreign file: generate the arrays again and replace it
      pass
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.num_samples = num_samples
  args.train_split = 1.0
  args.seed = seed
  state = np.random.get_state()   # mnist1d seeds numpy's global generator; leave the caller's untouched
  try:
    d = make_dataset(args)
  finally:
    np.random.set_state(state)
  x, y = d['x'].astype(np.float32), d['y'].astype(np.int32)
  if path:
    npz = io.BytesIO()
    np.savez(npz, x=x, y=y)
    try:
      os.makedirs(directory, exist_ok=True)
      results.atomic_write(path, npz.getvalue())
    except OSError:
      pass
  return x, y


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
    return Data(spec, arrays, functools.partial(streams.epoch_plan, batch_size=batch_size), streams.epoch_batch, info)
  return Data(spec, arrays, streams.no_plan, functools.partial(streams.pool_batch, batch_size=batch_size), info)


def _image_templates(key, num_classes, shape, dtype):
  """One smooth random template per class: a sum of low-frequency plane waves per channel."""
  h, w, c = shape
  k1, k2, k3 = jax.random.split(key, 3)
  waves = 6
  freq = draws.uniform(k1, (num_classes, c, waves, 2), minval=-3.0, maxval=3.0)
  phase = draws.uniform(k2, (num_classes, c, waves), maxval=2 * jnp.pi)
  amp = draws.normal(k3, (num_classes, c, waves))
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
  contrast = draws.uniform(ka, (n, 1, 1, 1), templates.dtype, minval=0.5, maxval=1.5)
  shifts = jax.random.randint(ks, (n, 2), -max_shift, max_shift + 1)
  x = jax.vmap(lambda img, s: jnp.roll(img, s, axis=(0, 1)))(templates[y], shifts)
  x = contrast * x + noise * draws.normal(kn, x.shape, templates.dtype)
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
  return streams.generated(DataSpec(name, shape, num_classes), generator, seed, mode, batch_size, num_train, num_eval,
                    num_measure, augment, info)


def _add_noise(y, key, label_noise):
  return y + label_noise * draws.normal(key, y.shape, y.dtype) if label_noise else y


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
    arrays = {'teacher_in': draws.normal(k_in, (d, h), self.dtype) / np.sqrt(d),
              'teacher_out': draws.normal(k_out, (h, c), self.dtype) / np.sqrt(h)}
    reference = teacher(arrays, draws.normal(k_ref, (8192, d), self.dtype))
    arrays['teacher_out'] = arrays['teacher_out'] / reference.std(axis=0)
    return arrays

  def sample(self, arrays, key, n):
    kx, kn = jax.random.split(key)
    x = draws.normal(kx, (n, self.input_dim), self.dtype)
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
  return streams.generated(DataSpec('teacher_student', (input_dim,), output_dim, 'regression'), generator, seed, mode,
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
    x = draws.rademacher(kx, (n, self.input_dim), self.dtype)
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
  return streams.generated(DataSpec('staircase', (input_dim,), 1, 'regression'), generator, seed, mode, batch_size,
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


# The options of each data set, with their defaults: `config.defaults(data=NAME)` builds `config.data` from these,
# and a field that the chosen data set does not read is refused (`data_options`, `make_data`).
_COMMON = dict(mode='epoch', batch_size=64, num_eval=1000, seed=0)
_TRAIN = dict(num_train=4000)
_IMAGES = dict(image_size=0,     # height = width; 0 = the data set's own (imagenet2012: 224)
               augment=False)    # random crop (4-pixel padding) + horizontal flip, on device
_SYNTHETIC = dict(noise=1.0)     # generated images: pixel-noise std against the class template's 1 (harder when larger)
_TFDS = dict(offline=False,      # True: run on the offline equivalent (OFFLINE_EQUIVALENTS), never reading data_dir
             data_dir='')        # TFDS data_dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
_TEXT = dict(seq_len=128,        # tokens per example
             max_bytes=DEFAULT_MAX_BYTES)   # corpus cap; 0 = no cap
DATA_OPTIONS = {
    'mnist1d': {**_COMMON, **_TRAIN},
    'synthetic_images': {**_COMMON, **_TRAIN, **_IMAGES, **_SYNTHETIC, 'num_classes': 0},   # 0 = the preset's
    'synthetic_imagenet': {**_COMMON, **_TRAIN, **_IMAGES, **_SYNTHETIC, 'num_classes': 0},
    'teacher_student': {**_COMMON, **_TRAIN, 'input_dim': 32, 'output_dim': 1,
                        'teacher_width': 0,      # 0 = 2·input_dim
                        'label_noise': 0.0},
    'staircase': {**_COMMON, **_TRAIN, 'input_dim': 32, 'staircase_degree': 4, 'label_noise': 0.0},
    'byte_text': {**_COMMON, **_TEXT},
    # `noise` is read only offline, by the generated stand-in
    **{name: {**_COMMON, **_TRAIN, **_TFDS, **_IMAGES, **_SYNTHETIC} for name, (stand_in, _, _)
       in OFFLINE_EQUIVALENTS.items() if stand_in != 'byte_text'},
    'wikitext103': {**_COMMON, **_TFDS, **_TEXT},
}


def data_options(name: str) -> dict:
  """The fields `config.data` has for data set `name` (besides `name`), with their defaults."""
  if name not in DATA_OPTIONS:
    raise ValueError(f'unknown dataset {name!r}; allowed: {", ".join(all_dataset_names())}')
  return dict(DATA_OPTIONS[name])


def resolve_options(data_cfg) -> dict:
  """`config.data` as a plain dict with every option of its data set: absent ones take the declared defaults, and a
  field the data set does not read is an error that names it."""
  given = dict(data_cfg)
  name = given.pop('name')
  options = data_options(name)
  unknown = sorted(set(given) - set(options))
  if unknown:
    raise ValueError(f'data.{unknown[0]} is not read by dataset {name!r}; its options: {", ".join(sorted(options))}')
  return dict(options, **given, name=name)


def _real(o, num_steps, num_measure, dtype) -> Data:
  """A TFDS dataset read from data_dir through tfds.data_source (no TensorFlow), then put on the device."""
  from superconsistency import tfds_data
  name = o['name']
  data_dir = o['data_dir'] or None
  common = dict(mode=o['mode'], batch_size=o['batch_size'], num_steps=num_steps, num_measure=num_measure)
  if name == 'wikitext103':
    max_bytes = o['max_bytes'] or None
    train = tfds_data.load_text(name, 'train', data_dir=data_dir, max_bytes=max_bytes)
    held = tfds_data.load_text(name, EVAL_SPLIT[name], data_dir=data_dir, max_bytes=max_bytes)
    return from_bytes(name, train, num_eval=o['num_eval'], seed=o['seed'], seq_len=o['seq_len'],
                      eval_corpus=held, info=dict(source=f'tfds:{name}', train_bytes=int(train.size)), **common)
  # online mode needs steps·batch fresh examples plus the measurement set; epoch mode num_train examples
  needed = (num_steps * o['batch_size'] + num_measure) if o['mode'] == 'online' else o['num_train']
  size = o['image_size'] or None
  train_x, train_y = tfds_data.load_images(name, 'train', data_dir=data_dir, max_examples=needed, image_size=size)
  eval_x, eval_y = tfds_data.load_images(name, EVAL_SPLIT.get(name, 'validation'), data_dir=data_dir,
                                         max_examples=o['num_eval'], image_size=size)
  return from_arrays(name, train_x, train_y, eval_x, eval_y, dtype=dtype, augment=o['augment'],
                     task='classification', num_classes=tfds_data.info(name)['num_classes'], **common)


def make_data(data_cfg, num_steps: int, num_measure: int, dtype) -> Data:
  """Builds `config.data` (a mapping: `name` and that data set's options, `DATA_OPTIONS`; absent options take their
  declared defaults, options of other data sets are refused).

  A TFDS dataset name (tfds_data.DATASETS) reads the prepared dataset, or with `offline=True` its offline
  equivalent (OFFLINE_EQUIVALENTS)."""
  name = data_cfg['name']
  if name not in all_dataset_names():
    raise ValueError(f'unknown dataset {name!r}; allowed: {", ".join(all_dataset_names())}')
  o = resolve_options(data_cfg)
  mode = o['mode']
  if mode not in MODES:
    raise ValueError(f'unknown data mode {mode!r}; allowed: {", ".join(MODES)}')
  common = (mode, o['batch_size'])
  sizes = lambda: (o['num_train'], o['num_eval'], num_measure, o['seed'], dtype)
  if name in OFFLINE_EQUIVALENTS:
    if not o['offline']:
      return _real(o, num_steps, num_measure, dtype)
    stand_in, shape, classes = OFFLINE_EQUIVALENTS[name]
    if stand_in == 'byte_text':
      return byte_text(*common, num_steps, o['num_eval'], num_measure, o['seed'], seq_len=o['seq_len'],
                       max_bytes=o['max_bytes'])
    size = o['image_size'] or shape[0]
    return synthetic_images(*common, *sizes(), shape=(size, size, shape[2]), num_classes=classes,
                            augment=o['augment'], name=f'{stand_in}[{name}]', noise=o['noise'])
  if name == 'mnist1d':
    return mnist1d(*common, num_steps, o['num_train'], o['num_eval'], num_measure, o['seed'], dtype)
  if name in ('synthetic_images', 'synthetic_imagenet'):
    (size, _, channels), classes = IMAGE_PRESETS['cifar' if name == 'synthetic_images' else 'tiny_imagenet']
    size = o['image_size'] or size
    return synthetic_images(*common, *sizes(), shape=(size, size, channels),
                            num_classes=o['num_classes'] or classes, augment=o['augment'], name=name,
                            noise=o['noise'])
  if name == 'teacher_student':
    return teacher_student(*common, *sizes(), input_dim=o['input_dim'], output_dim=o['output_dim'],
                           teacher_width=o['teacher_width'] or None, label_noise=o['label_noise'])
  if name == 'staircase':
    return staircase(*common, *sizes(), input_dim=o['input_dim'], degree=o['staircase_degree'],
                     label_noise=o['label_noise'])
  return byte_text(*common, num_steps, o['num_eval'], num_measure, o['seed'], seq_len=o['seq_len'],
                   max_bytes=o['max_bytes'])
