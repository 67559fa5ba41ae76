"""Real datasets, read from TFDS-prepared ArrayRecord files into host numpy arrays, without TensorFlow.

Preparing a dataset is a separate, user-run step (`python -m superconsistency.prepare NAME --data_dir=DIR`), the
only one that may download. Loading goes through `tfds.data_source(..., download=False)`, which gives random access
to ArrayRecord files and decodes examples with numpy and PIL. Before TFDS is asked for anything, the loader checks
that the prepared files are in data_dir, so a missing dataset raises `DatasetNotPrepared` (naming the command that
prepares it) instead of triggering a download. Every shard of the split is checked against the split's metadata
before reading, and every read error is re-raised naming its file, so a truncated or corrupt file raises
`DatasetCorrupt` rather than returning part of a dataset.

Examples are read in index batches (`data_source.__getitems__`, one call per batch inside one shard), which reads
the records of a batch in one ArrayRecord call; decoding (PIL) still runs one image at a time and dominates.
`max_examples` takes the first examples in stored order: TFDS shuffles examples when it writes them, so for
cifar10, mnist, imagenet and tiny_imagenet that is a class-mixed subset.

imagenet2012 images have their own sizes: each is resized on the host with PIL so that its shorter side is
`image_size` (bicubic, which PIL antialiases when shrinking), then the central image_size×image_size square is
kept. The same resize applies to any image dataset when `image_size` differs from its stored size.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

# Facts about the datasets we support, so configs can size models without touching the files.
# Split sizes are the published ones; wikitext103's sizes in bytes are known only once prepared.
_IMAGENET_SPLITS = {'train': 1281167, 'validation': 50000}
IMAGE_DATASETS = {
    'cifar10': dict(image_shape=(32, 32, 3), num_classes=10, splits={'train': 50000, 'test': 10000}),
    'mnist': dict(image_shape=(28, 28, 1), num_classes=10, splits={'train': 60000, 'test': 10000}),
    'imagenet_resized/32x32': dict(image_shape=(32, 32, 3), num_classes=1000, splits=_IMAGENET_SPLITS),
    'imagenet_resized/64x64': dict(image_shape=(64, 64, 3), num_classes=1000, splits=_IMAGENET_SPLITS),
    'imagenet2012': dict(image_shape=None, num_classes=1000, splits=_IMAGENET_SPLITS),
    'tiny_imagenet': dict(image_shape=(64, 64, 3), num_classes=200, splits={'train': 100000, 'validation': 10000}),
}
TEXT_DATASETS = {
    'wikitext103': dict(vocab_size=256, splits={'train': None, 'validation': None, 'test': None}),
}
DATASETS = tuple(IMAGE_DATASETS) + tuple(TEXT_DATASETS)
# Built by superconsistency.builders from files the user downloaded; the rest are TFDS catalog builders.
OURS = ('tiny_imagenet', 'wikitext103')
# Preparation reads manual_dir (the user's own download) for these.
NEEDS_MANUAL_DIR = ('imagenet2012', 'tiny_imagenet', 'wikitext103')
DEFAULT_IMAGENET_SIZE = 224
_BATCH = 256          # examples per __getitems__ call
_TEXT_BATCH = 8       # 1 MiB text records per call


class DatasetNotPrepared(Exception):
  """The dataset is not in data_dir (in ArrayRecord format); the message gives the command that prepares it."""


class DatasetCorrupt(Exception):
  """A prepared file is missing, truncated or unreadable; the message names it."""


def default_data_dir() -> str:
  """TFDS's own default: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets')


def prepare_command(name: str, data_dir: str | None = None) -> str:
  data_dir = data_dir or default_data_dir()
  manual = ' --manual_dir=DIR' if name in NEEDS_MANUAL_DIR else ''
  return f'python -m superconsistency.prepare {name} --data_dir={data_dir}{manual}'


def info(name: str, *, image_size: int | None = None) -> dict:
  """Shapes, classes or vocabulary, and split sizes, from a table: no files, no TFDS import."""
  _check_name(name)
  if name in TEXT_DATASETS:
    spec = TEXT_DATASETS[name]
    return dict(name=name, kind='text', vocab_size=spec['vocab_size'], splits=dict(spec['splits']))
  spec = IMAGE_DATASETS[name]
  shape = spec['image_shape']
  if image_size is not None or shape is None:
    size = image_size or DEFAULT_IMAGENET_SIZE
    shape = (size, size, shape[2] if shape else 3)
  return dict(name=name, kind='images', image_shape=shape, num_classes=spec['num_classes'],
              splits=dict(spec['splits']))


def load_images(name: str, split: str, *, data_dir: str | None = None, max_examples: int | None = None,
                image_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(x uint8 [N, H, W, C], y int32 [N]) for an image dataset prepared in data_dir.

  `split` is a TFDS split string ('train', 'test', 'train[:10%]', ...). `image_size` (square; imagenet2012
  defaults to 224) resizes as the module docstring says; other datasets default to their stored size.
  """
  if name not in IMAGE_DATASETS:
    raise ValueError(f'{name!r} is not an image dataset; choose one of {sorted(IMAGE_DATASETS)}')
  if image_size is None and name == 'imagenet2012':
    image_size = DEFAULT_IMAGENET_SIZE
  source, shards = _open(name, split, data_dir)
  n = len(source) if max_examples is None else min(int(max_examples), len(source))
  stored = source.dataset_info.features['image'].shape          # (H, W, C); H, W are None for imagenet2012
  channels = stored[2] or 3
  if image_size is None:
    height, width = stored[0], stored[1]
  else:
    height = width = int(image_size)
  x = np.empty((n, height, width, channels), np.uint8)
  y = np.empty((n,), np.int32)
  for start, examples, where in _read(source, shards, n, _BATCH):
    for j, ex in enumerate(examples):
      image = np.asarray(ex['image'])
      if image.shape[:2] != (height, width):
        image = resize_center_crop(image, height)
      if image.shape != (height, width, channels):
        raise DatasetCorrupt(f'{where}: example {start + j} decodes to shape {image.shape}, '
                             f'not {(height, width, channels)}')
      x[start + j] = image
      y[start + j] = ex['label']
  return x, y


def load_text(name: str, split: str, *, data_dir: str | None = None, max_bytes: int | None = None) -> np.ndarray:
  """The split's bytes as one uint8 array (byte-level tokens, vocabulary 256); the first max_bytes if given."""
  if name not in TEXT_DATASETS:
    raise ValueError(f'{name!r} is not a text dataset; choose one of {sorted(TEXT_DATASETS)}')
  source, shards = _open(name, split, data_dir)
  metadata = source.dataset_info.metadata or {}
  total = (metadata.get('split_bytes') or {}).get(split)   # None for a sliced split such as 'train[:10]'
  parts, got = [], 0
  next_index = None if '[' in split else 0          # a sliced split starts wherever the slice does
  for start, examples, where in _read(source, shards, len(source), _TEXT_BATCH):
    for j, ex in enumerate(examples):
      index = int(ex['index'])
      if next_index is not None and index != next_index:
        raise DatasetCorrupt(f'{where}: record {start + j} is chunk {index}, expected chunk {next_index}')
      next_index = index + 1
      parts.append(np.asarray(ex['bytes'], np.uint8))
      got += parts[-1].size
    if max_bytes is not None and got >= max_bytes:
      break
  text = np.concatenate(parts) if parts else np.zeros((0,), np.uint8)
  complete = max_bytes is None or got < max_bytes
  if complete and total is not None and text.size != total:
    raise DatasetCorrupt(f'{name}/{split}: read {text.size} bytes but the metadata says {total}; '
                         f'prepare it again ({prepare_command(name, data_dir)})')
  return text if max_bytes is None else text[:max_bytes]


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Shorter side to `size` (PIL bicubic, antialiased when shrinking), then the central size×size square."""
  import PIL.Image
  gray = image.ndim == 3 and image.shape[2] == 1
  pil = PIL.Image.fromarray(image[..., 0] if gray else image)
  w, h = pil.size
  scale = size / min(w, h)
  new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
  pil = pil.resize((new_w, new_h), PIL.Image.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  out = np.asarray(pil.crop((left, top, left + size, top + size)))
  return out[..., None] if gray else out


# ----------------------------------------------------------------------------------------------------------------


def _check_name(name):
  if name not in DATASETS:
    raise ValueError(f'unknown dataset {name!r}; choose one of {list(DATASETS)}')


def _version_dir(name: str, data_dir: str) -> str:
  """data_dir/name/<latest version> holding an ArrayRecord dataset_info.json, else DatasetNotPrepared.

  Looks only at the file system: TFDS is not called before we know the files are there, so nothing downloads.
  """
  base = os.path.join(data_dir, *name.split('/'))
  versions = []
  if os.path.isdir(base):
    for v in os.listdir(base):
      if re.fullmatch(r'\d+\.\d+\.\d+', v) and os.path.isfile(os.path.join(base, v, 'dataset_info.json')):
        versions.append(tuple(int(p) for p in v.split('.')))
  if not versions:
    raise DatasetNotPrepared(f'{name} is not prepared in {data_dir} (no {base}/<version>/dataset_info.json); '
                             f'prepare it with: {prepare_command(name, data_dir)}')
  path = os.path.join(base, '.'.join(map(str, max(versions))))
  with open(os.path.join(path, 'dataset_info.json')) as f:
    try:
      meta = json.load(f)
    except json.JSONDecodeError as e:
      raise DatasetCorrupt(f'{path}/dataset_info.json is not valid JSON ({e}); '
                           f'delete {path} and prepare it again: {prepare_command(name, data_dir)}') from None
  formats = [meta.get('fileFormat', 'tfrecord')] + list(meta.get('alternativeFileFormats', []))
  if 'array_record' not in formats:
    raise DatasetNotPrepared(f'{name} in {path} is stored as {formats[0]}, which has no random access; prepare an '
                             f'ArrayRecord copy in another data_dir: {prepare_command(name, "NEW_DIR")}')
  return path


def _open(name: str, split: str, data_dir: str | None):
  """The split's TFDS data source and its shards [(first index, end index, file)], after checking the files."""
  _check_name(name)
  data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else default_data_dir()
  path = _version_dir(name, data_dir)
  if name in OURS:
    import superconsistency.builders  # noqa: F401  (registers our builders with TFDS)
  import tensorflow_datasets as tfds
  version = os.path.basename(path)
  source = tfds.data_source(f'{name}:{version}', split=split, data_dir=data_dir, download=False)
  shards = _check_shards(name, split, source, data_dir)
  return source, shards


def _check_shards(name, split, source, data_dir):
  """Every file of the split exists and holds as many records as the metadata says.

  ArrayRecord keeps its record count in a footer at the end of the file, so a truncated file fails here, before
  any example is read. A data source that is not backed by ArrayRecord files (a test's mock) has no files to
  check; its shards still come from the metadata.
  """
  from array_record.python import array_record_data_source, array_record_module
  from etils import epath
  instructions = source.dataset_info.splits[split].file_instructions
  real = isinstance(getattr(source, 'data_source', None), array_record_data_source.ArrayRecordDataSource)
  folder = os.path.dirname(os.fspath(instructions[0].filename)) if instructions else data_dir
  redo = f'delete {folder} and prepare it again: {prepare_command(name, data_dir)}'
  shards, start = [], 0
  for fi in instructions:
    filename = os.fspath(fi.filename)
    if real:
      if not epath.Path(filename).exists():
        raise DatasetCorrupt(f'{name}/{split}: {filename} is missing; {redo}')
      try:
        reader = array_record_module.ArrayRecordReader(filename, options='readahead_buffer_size:0')
        count = reader.num_records()
        reader.close()
      except Exception as e:  # noqa: BLE001  (whatever the reader raises, name the file)
        raise DatasetCorrupt(f'{name}/{split}: {filename} cannot be read ({e}); {redo}') from e
      if count != fi.examples_in_shard:
        raise DatasetCorrupt(f'{name}/{split}: {filename} holds {count} records but the metadata says '
                             f'{fi.examples_in_shard} (truncated or replaced); {redo}')
    shards.append((start, start + fi.take, filename))
    start += fi.take
  if start != len(source):
    raise DatasetCorrupt(f'{name}/{split}: the metadata lists {start} examples but the source has {len(source)}')
  return shards


def _read(source, shards, n, batch):
  """Yields (first index, examples, file) for indices [0, n), batches never crossing a shard boundary."""
  for lo, hi, filename in shards:
    for start in range(lo, min(hi, n), batch):
      keys = list(range(start, min(start + batch, hi, n)))
      try:
        examples = source.__getitems__(keys)
      except Exception as e:  # noqa: BLE001  (name the file whatever failed: read, parse or decode)
        raise DatasetCorrupt(f'reading examples {keys[0]}..{keys[-1]} from {filename} failed '
                             f'({type(e).__name__}: {e}); delete the dataset and prepare it again') from e
      if len(examples) != len(keys):
        raise DatasetCorrupt(f'{filename}: asked for {len(keys)} examples, got {len(examples)}')
      yield start, examples, filename
    if hi >= n:
      return
