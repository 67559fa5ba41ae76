"""The data contract: shapes, determinism, streams that never repeat (online) or cover each example once per epoch,
augmentation and normalization against numpy, the byte corpus, and the regression targets."""
import functools
import hashlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from superconsistency import data as D
from superconsistency import draws

B, NUM_TRAIN, NUM_EVAL, NUM_MEASURE, NUM_STEPS = 16, 128, 24, 32, 6
SMALL = dict(image_size=16, max_bytes=200_000, seq_len=32)   # keeps the builds fast
# non-defaults, so the fields are seen to be read; both image sets share one generator, so one compilation
FIELDS = {'synthetic_images': dict(num_classes=12), 'synthetic_imagenet': dict(num_classes=12)}
KEY = jax.random.PRNGKey(7)


def _cfg(name, mode, seed=0, **fields):
  sizes = {k: v for k, v in dict(num_train=NUM_TRAIN).items() if k in D.data_options(name)}
  return ml_collections.ConfigDict(dict(name=name, mode=mode, batch_size=B, num_eval=NUM_EVAL, seed=seed, **sizes,
                                        **fields))


def _small_cfg(name, mode, seed=0, **fields):
  small = {k: v for k, v in SMALL.items() if k in D.data_options(name)}   # only the options this data set has
  return _cfg(name, mode, seed, **small, **FIELDS.get(name, {}), **fields)


@functools.lru_cache(maxsize=None)
def _data(name, mode, seed=0):
  """Each dataset is built once per test session: compilation, not data, is what the builds cost."""
  return D.make_data(_small_cfg(name, mode, seed), NUM_STEPS, NUM_MEASURE, jnp.float32)


_JITTED = {}


def _jitted(data):
  """data's plan and batch, compiled once per Data (compilation dominates these tests)."""
  if id(data) not in _JITTED:
    _JITTED[id(data)] = data, jax.jit(data.plan, static_argnums=3), jax.jit(data.batch)
  return _JITTED[id(data)][1:]


def _batches(data, num_steps, key=KEY):
  """The first num_steps training batches as the training loop draws them (plan for the chunk, then batch)."""
  plan_fn, draw = _jitted(data)
  plan = plan_fn(data.arrays, key, 0, num_steps)
  out = [draw(data.arrays, key, s, jax.tree.map(lambda a: a[s], plan)) for s in range(num_steps)]
  return [np.asarray(x) for x, _ in out], [np.asarray(y) for _, y in out]


def _rows(a):
  return {r.tobytes() for r in np.asarray(a).reshape(a.shape[0], -1)}


@pytest.mark.parametrize('mode', D.MODES)
@pytest.mark.parametrize('name', D.DATASETS)
def test_shapes_and_dtypes(name, mode):
  data = _data(name, mode)
  spec = data.spec

  def second_batch(arrays):
    return data.batch(arrays, KEY, 1, jax.tree.map(lambda a: a[1], data.plan(arrays, KEY, 0, 2)))
  x, y = jax.eval_shape(second_batch, data.arrays)   # shapes only: no compilation
  assert x.shape == (B,) + spec.input_shape
  assert data.arrays['measure_x'].shape == (NUM_MEASURE,) + spec.input_shape
  assert data.arrays['eval_x'].shape == (NUM_EVAL,) + spec.input_shape
  expected = {
      'mnist1d': ((40,), 10, 'classification'), 'synthetic_images': ((16, 16, 3), 12, 'classification'),
      'synthetic_imagenet': ((16, 16, 3), 12, 'classification'), 'teacher_student': ((32,), 1, 'regression'),
      'staircase': ((32,), 1, 'regression'), 'byte_text': ((32,), 256, 'language')}[name]
  assert (spec.input_shape, spec.num_classes, spec.task) == expected
  if spec.task == 'classification':
    assert x.dtype == np.float32 and y.dtype == np.int32 and y.shape == (B,)
    labels = np.asarray(data.arrays['eval_y'])
    assert 0 <= labels.min() and labels.max() < spec.num_classes
  elif spec.task == 'regression':
    assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == (B, spec.num_classes)
  else:
    assert spec.input_dtype == 'int' and x.dtype == np.int32 and y.dtype == np.int32 and y.shape == x.shape
  for k in ('measure', 'eval'):
    assert data.arrays[f'{k}_y'].dtype == y.dtype and data.arrays[f'{k}_y'].shape[1:] == y.shape[1:]
    assert data.arrays[f'{k}_x'].dtype == x.dtype
  assert np.all(np.isfinite(data.arrays['eval_x'])) and not np.all(data.arrays['eval_x'] == data.arrays['eval_x'][0])


def test_image_presets_and_defaults(monkeypatch):
  """synthetic_imagenet defaults to Tiny-ImageNet's shape; the ImageNet preset's arrays have the right shapes
  (traced, not built: its templates alone are 600 MB)."""
  built = {}
  monkeypatch.setattr(D, 'synthetic_images', lambda *args, **kwargs: built.update(kwargs))
  D.make_data(_cfg('synthetic_imagenet', 'online'), 1, 4, jnp.float32)
  assert built['shape'] == (64, 64, 3) and built['num_classes'] == 200 and built['name'] == 'synthetic_imagenet'
  D.make_data(_cfg('synthetic_images', 'online'), 1, 4, jnp.float32)
  assert built['shape'] == (32, 32, 3) and built['num_classes'] == 10 and built['augment'] is False
  (shape, classes) = D.IMAGE_PRESETS['imagenet']
  generator = D._Images(shape, classes, 1.0, shape[0] // 8, jnp.dtype(jnp.float32))
  arrays = jax.eval_shape(D.generated_arrays, KEY, generator, 'online', 0, 8, 4)
  assert arrays['templates'].shape == (1000, 224, 224, 3) and arrays['eval_x'].shape == (8, 224, 224, 3)


@pytest.mark.parametrize('name', ('synthetic_images', 'teacher_student', 'staircase', 'byte_text', 'mnist1d'))
def test_same_seed_same_arrays_and_batches_other_seed_differs(name):
  a, c = _data(name, 'epoch'), _data(name, 'epoch', 1)
  b = D.make_data(_small_cfg(name, 'epoch'), NUM_STEPS, NUM_MEASURE, jnp.float32)   # a fresh build
  assert a.arrays.keys() == b.arrays.keys()
  for k in a.arrays:
    np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=k)
  assert not np.array_equal(a.arrays['eval_x'], c.arrays['eval_x'])
  # batches are a function of (arrays, lane key, step): the same again, a different lane key reshuffles
  first = _batches(a, 2)[0]
  np.testing.assert_array_equal(first[1], _batches(a, 2)[0][1])
  assert not np.array_equal(first[0], _batches(a, 1, jax.random.PRNGKey(8))[0][0])


@pytest.mark.parametrize('name', ('synthetic_images', 'teacher_student', 'staircase'))
def test_generated_online_stream_never_repeats_and_misses_the_held_out_sets(name):
  data = _data(name, 'online')   # staircase: 2^32 inputs, so a chance repeat among 100 draws has odds ~1e-6
  xs, _ = _batches(data, NUM_STEPS)
  seen = set().union(*(_rows(x) for x in xs))
  assert len(seen) == NUM_STEPS * B                     # no example, so no batch, twice
  assert not seen & (_rows(data.arrays['measure_x']) | _rows(data.arrays['eval_x']))
  # the stream is a function of (key, step): the same step gives the same batch
  again, _ = _batches(data, 2)
  np.testing.assert_array_equal(again[1], xs[1])


def _indexed(n, width=3):
  """Float features whose first entry is the example's index, so a batch says which examples it holds."""
  x = np.random.default_rng(0).normal(size=(n, width)).astype(np.float32)
  x[:, 0] = np.arange(n)
  return x, np.arange(n, dtype=np.int32) % 5


def test_from_arrays_online_uses_each_example_once_in_order_and_holds_out_the_measurement_set():
  x, y = _indexed(100)
  data = D.from_arrays('idx', x, y, x[:10], y[:10], mode='online', batch_size=8, num_steps=10, num_measure=12,
                       dtype=jnp.float32, normalize=False)
  xs, ys = _batches(data, 10)
  used = np.concatenate([b[:, 0] for b in xs]).astype(int)
  np.testing.assert_array_equal(used, np.arange(80))
  np.testing.assert_array_equal(np.concatenate(ys), y[:80])
  np.testing.assert_array_equal(np.asarray(data.arrays['measure_x'])[:, 0], np.arange(88, 100))
  with pytest.raises(ValueError, match=r'10·9 = 90 .*12 held-out.*102.*has 100'):
    D.from_arrays('idx', x, y, x[:10], y[:10], mode='online', batch_size=9, num_steps=10, num_measure=12,
                  dtype=jnp.float32)


def test_from_arrays_epoch_covers_each_example_once_per_epoch():
  x, y = _indexed(64)
  data = D.from_arrays('idx', x, y, x[:4], y[:4], mode='epoch', batch_size=16, num_steps=8, num_measure=8,
                       dtype=jnp.float32, normalize=False)
  xs, _ = _batches(data, 8)
  used = np.stack([b[:, 0] for b in xs]).astype(int)     # steps, batch
  epochs = used.reshape(2, -1)
  for e in epochs:
    np.testing.assert_array_equal(np.sort(e), np.arange(64))
  assert not np.array_equal(epochs[0], epochs[1])        # reshuffled
  np.testing.assert_array_equal(np.asarray(data.arrays['measure_x']), x[:8])
  # epoch e is permutation(fold_in(key, e)); a chunk that starts mid-epoch and crosses into the next agrees
  plan_fn = _jitted(data)[0]
  plan = np.asarray(plan_fn(data.arrays, KEY, 0, 8))
  for e in range(2):
    perm = jax.random.permutation(jax.random.fold_in(KEY, e), 64)
    np.testing.assert_array_equal(plan[4 * e:4 * e + 4].ravel(), perm)
  np.testing.assert_array_equal(plan_fn(data.arrays, KEY, 3, 5), plan[3:8])


def test_byte_text_epoch_plan_visits_each_window_once_per_epoch():
  data = _data('byte_text', 'epoch')
  n = data.arrays['train_starts'].shape[0]
  per_epoch = n // B
  plan = np.asarray(jax.jit(data.plan, static_argnums=3)(data.arrays, KEY, 0, 2 * per_epoch)).reshape(2, -1)
  for e in plan:
    assert len(set(e.tolist())) == per_epoch * B and e.min() >= 0 and e.max() < n


def _images(n, h=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=(n, h, h, 3), dtype=np.uint8)


def _numpy_augment(key, x, pad=4):
  """Crop of the zero-padded image at augment_params' offsets, then a flip where drawn: the reference."""
  offsets, flips = map(np.asarray, D.augment_params(key, x.shape[0], pad))
  h, w = x.shape[1:3]
  padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  crops = [p[oy:oy + h, ox:ox + w] for p, (oy, ox) in zip(padded, offsets)]
  return np.stack([c[:, ::-1] if f else c for c, f in zip(crops, flips)]), offsets, flips


def test_augmentation_equals_numpy_crop_and_flip():
  x = np.random.default_rng(1).normal(size=(64, 8, 8, 3)).astype(np.float32)
  key = jax.random.PRNGKey(3)
  out = np.asarray(D.augment_images(key, jnp.asarray(x), pad=4))
  expected, offsets, flips = _numpy_augment(key, x)
  np.testing.assert_array_equal(out, expected)
  # the draws really vary: both flips, the extreme offsets (so padding shows), and not the identity
  assert flips.any() and not flips.all() and offsets.min() == 0 and offsets.max() == 8
  assert not np.array_equal(out, x)


def test_uint8_images_stay_uint8_and_are_normalized_like_numpy_and_augmented_in_training_only():
  train, test = _images(96), _images(20, seed=1)
  labels = np.arange(96, dtype=np.int32) % 10
  data = D.from_arrays('u8', train, labels, test, labels[:20], mode='epoch', batch_size=16, num_steps=4,
                       num_measure=16, dtype=jnp.float32, augment=True)
  assert data.arrays['train_x'].dtype == jnp.uint8
  mean = train.reshape(-1, 3).astype(np.float64).mean(0)
  std = train.reshape(-1, 3).astype(np.float64).std(0)
  normalize = lambda a: (a - mean) / std
  np.testing.assert_allclose(data.arrays['measure_x'], normalize(train[:16]), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(data.arrays['eval_x'], normalize(test), rtol=1e-5, atol=1e-5)
  # a training batch is the normalized examples of its plan, cropped and flipped with the (lane key, step) key
  plan_fn, batch = _jitted(data)
  plan = plan_fn(data.arrays, KEY, 0, 4)
  x, y = batch(data.arrays, KEY, 2, plan[2])
  clean = normalize(train[np.asarray(plan[2])]).astype(np.float32)
  np.testing.assert_allclose(x, _numpy_augment(D.augment_key(KEY, 2), clean)[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(y, labels[np.asarray(plan[2])])
  assert not np.allclose(x, clean, atol=1e-3)
  np.testing.assert_array_equal(x, batch(data.arrays, KEY, 2, plan[2])[0])   # the same lane and step: the same
  assert not np.array_equal(x, batch(data.arrays, KEY, 3, plan[2])[0])      # the next step: new crops and flips
  # without normalization uint8 is scaled to [0, 1]
  raw = D.from_arrays('u8', train, labels, test, labels[:20], mode='online', batch_size=16, num_steps=4,
                      num_measure=16, dtype=jnp.float32, normalize=False)
  np.testing.assert_allclose(_jitted(raw)[1](raw.arrays, KEY, 1, None)[0], train[16:32] / 255.0, rtol=1e-6)


def test_byte_text_targets_are_next_bytes_of_a_reproducible_corpus():
  D.stdlib_corpus.cache_clear()
  corpus, info = D.stdlib_corpus(SMALL['max_bytes'])
  D.stdlib_corpus.cache_clear()
  corpus2, info2 = D.stdlib_corpus(SMALL['max_bytes'])
  assert info == info2 and info['corpus_bytes'] == SMALL['max_bytes'] == corpus.shape[0]
  assert info['corpus_sha256'] == hashlib.sha256(corpus.tobytes()).hexdigest()
  np.testing.assert_array_equal(corpus, corpus2)
  assert info['corpus_files'] > 1 and D.CORPUS_SEPARATOR in corpus.tobytes()
  data = _data('byte_text', 'online')
  assert data.info['corpus_sha256'] == info['corpus_sha256']
  xs, ys = _batches(data, NUM_STEPS)
  starts = np.asarray(data.arrays['train_starts'])
  for s, (x, y) in enumerate(zip(xs, ys)):
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert x.min() >= 0 and max(x.max(), y.max()) < 256
    for row, start in zip(x, starts[s * B:(s + 1) * B]):   # online walks the training windows in order
      np.testing.assert_array_equal(row, corpus[start:start + 32])
  seen = set().union(*(_rows(x) for x in xs))
  assert len(seen) == NUM_STEPS * B
  assert not seen & (_rows(data.arrays['eval_x']) | _rows(data.arrays['measure_x']))
  with pytest.raises(ValueError, match='online mode reads each window at most once'):
    D.make_data(_small_cfg('byte_text', 'online'), 10_000, NUM_MEASURE, jnp.float32)


def test_from_bytes_takes_eval_windows_from_a_separate_corpus_and_holds_out_the_measurement_windows():
  corpus = np.arange(33 * 40, dtype=np.int64).astype(np.uint8)          # 40 windows of 33 bytes
  eval_corpus = np.full(33 * 3, 7, np.uint8)
  data = D.from_bytes('bytes', corpus, mode='online', batch_size=4, num_steps=8, num_eval=3, num_measure=5, seed=0,
                      seq_len=32, eval_corpus=eval_corpus)
  assert np.all(np.asarray(data.arrays['eval_x']) == 7) and data.arrays['eval_x'].shape == (3, 32)
  measure_starts = {int(row[0]) for row in np.asarray(data.arrays['measure_x'])}
  train_starts = {int(s) % 256 for s in np.asarray(data.arrays['train_starts'])}
  assert len(measure_starts) == 5 and len(train_starts) == 35 and not measure_starts & train_starts
  with pytest.raises(ValueError, match=r'8·5 = 40 windows .* 35 training windows'):
    D.from_bytes('bytes', corpus, mode='online', batch_size=5, num_steps=8, num_eval=3, num_measure=5, seed=0,
                 seq_len=32, eval_corpus=eval_corpus)


def test_staircase_target_matches_numpy():
  data = D.make_data(_cfg('staircase', 'epoch', staircase_degree=3, input_dim=6), 1, NUM_MEASURE, jnp.float32)
  x, y = np.asarray(data.arrays['train_x'], np.float64), np.asarray(data.arrays['train_y'])
  assert set(np.unique(x)) == {-1.0, 1.0}
  expected = (x[:, 0] + x[:, 0] * x[:, 1] + x[:, 0] * x[:, 1] * x[:, 2]) / np.sqrt(3)
  np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6, atol=1e-6)


def test_teacher_student_is_learnable_by_linear_regression():
  cfg = _cfg('teacher_student', 'epoch', input_dim=16, output_dim=2)
  cfg.num_train, cfg.num_eval = 2000, 1000
  data = D.make_data(cfg, 1, NUM_MEASURE, jnp.float32)
  x, y = np.asarray(data.arrays['train_x']), np.asarray(data.arrays['train_y'])
  xe, ye = np.asarray(data.arrays['eval_x']), np.asarray(data.arrays['eval_y'])
  assert y.shape == (2000, 2)
  np.testing.assert_allclose(ye.var(0), 1.0, atol=0.15)      # targets scaled to unit variance
  w, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
  mse = ((np.c_[xe, np.ones(len(xe))] @ w - ye) ** 2).mean(0)
  assert np.all(mse < 0.3 * ye.var(0)), (mse, ye.var(0))


def test_augment_field_crops_and_flips_generated_training_images_and_unknown_names_fail():
  plain = _data('synthetic_images', 'online')
  augmented = D.make_data(_small_cfg('synthetic_images', 'online', augment=True), NUM_STEPS, NUM_MEASURE,
                          jnp.float32)
  x = jax.jit(augmented.batch)(augmented.arrays, KEY, 3, None)[0]
  clean = _jitted(plain)[1](plain.arrays, KEY, 3, None)[0]
  np.testing.assert_array_equal(x, _numpy_augment(D.augment_key(KEY, 3), clean)[0])
  assert not np.array_equal(x, clean)
  np.testing.assert_array_equal(augmented.arrays['measure_x'], plain.arrays['measure_x'])
  with pytest.raises(ValueError, match='unknown dataset'):
    D.make_data(_cfg('cifar5m', 'epoch'), 1, 4, jnp.float32)


def test_a_field_the_data_set_does_not_read_is_refused_with_its_name():
  with pytest.raises(ValueError, match='data.teacher_width is not read by dataset .mnist1d.'):
    D.make_data(_cfg('mnist1d', 'epoch', teacher_width=3), 1, NUM_MEASURE, jnp.float32)
  assert 'teacher_width' in D.data_options('teacher_student') and 'teacher_width' not in D.data_options('staircase')


@pytest.mark.parametrize('shape', [(5,), (4, 3), (2, 3, 4, 5), (6, 1, 1, 1), ()])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_flat_draws_are_jax_randoms_draws_bit_for_bit(shape, dtype):
  """draws.* draw flat and reshape (XLA:CPU compiles that several times faster); the numbers must be jax.random's
  own, and with jax_threefry_partitionable off (which counts positions differently) they draw in the shape."""
  key = jax.random.PRNGKey(7)
  cases = [(draws.normal(key, shape, dtype), jax.random.normal(key, shape, dtype)),
           (draws.uniform(key, shape, dtype, minval=-2.0, maxval=3.0),
            jax.random.uniform(key, shape, dtype, minval=-2.0, maxval=3.0)),
           (draws.rademacher(key, shape, dtype), jax.random.rademacher(key, shape, dtype))]
  for ours, theirs in cases:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
  with jax.threefry_partitionable(False):
    np.testing.assert_array_equal(np.asarray(draws.normal(key, shape, dtype)),
                                  np.asarray(jax.random.normal(key, shape, dtype)))


def test_mnist1d_is_generated_once_and_then_loaded_bit_for_bit(tmp_path, monkeypatch):
  """The generated arrays are kept in the data cache; a later call with the same size and seed loads them (the
  generator is not called: here it would fail), a corrupt file is generated again, and '' turns the cache off."""
  import mnist1d.data
  monkeypatch.setenv('SUPERCONSISTENCY_DATA_CACHE', str(tmp_path / 'data'))
  D._mnist1d_numpy.cache_clear()
  x, y = D._mnist1d_numpy(95, 3)    # 100 generated: 10 per class
  assert x.shape == (100, 40) and x.dtype == np.float32 and y.dtype == np.int32
  (path,) = (tmp_path / 'data').iterdir()
  assert 'n100-seed3' in path.name and not list((tmp_path / 'data').glob('*.tmp'))
  real = mnist1d.data.make_dataset

  def refuse(args):
    raise AssertionError('generated again')

  monkeypatch.setattr(mnist1d.data, 'make_dataset', refuse)
  D._mnist1d_numpy.cache_clear()
  x2, y2 = D._mnist1d_numpy(100, 3)
  assert np.array_equal(x, x2) and np.array_equal(y, y2)
  with pytest.raises(AssertionError, match='generated again'):   # another seed is not in the cache
    D._mnist1d_numpy(100, 4)
  path.write_bytes(path.read_bytes()[:200])                     # truncated, as by a full disk
  monkeypatch.setattr(mnist1d.data, 'make_dataset', real)
  D._mnist1d_numpy.cache_clear()
  x3, y3 = D._mnist1d_numpy(100, 3)
  assert np.array_equal(x, x3) and np.array_equal(y, y3)
  with np.load(path) as f:                                      # replaced by a whole file
    assert np.array_equal(f['x'], x)
  monkeypatch.setenv('SUPERCONSISTENCY_DATA_CACHE', '')
  D._mnist1d_numpy.cache_clear()
  D._mnist1d_numpy(100, 5)
  assert len(list((tmp_path / 'data').iterdir())) == 1
  D._mnist1d_numpy.cache_clear()
