"""Real datasets through tfds.data_source, offline: catalog datasets through TFDS's mock, ours built by the real
builders and CLI from small fake releases written here. Nothing downloads."""
import io
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from conftest import ROOT
from superconsistency import prepare, tfds_data

WNIDS = ['n03', 'n01', 'n02']          # unsorted on purpose: labels index the sorted ids


# ---- fake releases, prepared once per module ------------------------------------------------------------------


def _jpeg(array):
  buffer = io.BytesIO()
  PIL.Image.fromarray(array).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


def _fake_tiny_imagenet(root):
  """tiny-imagenet-200/ with 3 classes × 4 train images (one grayscale) and 5 validation images."""
  rng = np.random.default_rng(0)
  base = os.path.join(root, 'tiny-imagenet-200')
  os.makedirs(os.path.join(base, 'val', 'images'))
  with open(os.path.join(base, 'wnids.txt'), 'w') as f:
    f.write('\n'.join(WNIDS) + '\n')
  files = {}
  for wnid in WNIDS:
    os.makedirs(os.path.join(base, 'train', wnid, 'images'))
    for k in range(4):
      shape = (64, 64) if (wnid, k) == ('n02', 3) else (64, 64, 3)
      rel = f'train/{wnid}/images/{wnid}_{k}.JPEG'
      with open(os.path.join(base, rel), 'wb') as f:
        f.write(_jpeg(rng.integers(0, 256, shape, dtype=np.uint8)))
      files[rel] = wnid
  lines = []
  for k in range(5):
    rel, wnid = f'val/images/val_{k}.JPEG', WNIDS[k % 3]
    with open(os.path.join(base, rel), 'wb') as f:
      f.write(_jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    lines.append(f'val_{k}.JPEG\t{wnid}\t0\t0\t63\t63')
    files[rel] = wnid
  with open(os.path.join(base, 'val', 'val_annotations.txt'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return base, files


def _fake_wikitext(root):
  """wikitext-103-raw-v1.zip whose train file spans 3 records and cuts multi-byte characters at record edges."""
  rng = np.random.default_rng(1)
  words = ['the', 'héllo', 'wörld', '=', '@-@', 'naïve', '\n', 'Ωmega', ',']
  train = ' '.join(rng.choice(words, 450_000)).encode()
  assert 2 * (1 << 20) < len(train) < 3 * (1 << 20)
  texts = {'wiki.train.raw': train, 'wiki.valid.raw': ' = Valid = \n text é \n'.encode(),
           'wiki.test.raw': b' = Test = \n'}
  path = os.path.join(root, 'wikitext-103-raw-v1.zip')
  with zipfile.ZipFile(path, 'w') as z:
    for name, data in texts.items():
      z.writestr(f'wikitext-103-raw/{name}', data)
  return {'train': train, 'validation': texts['wiki.valid.raw'], 'test': texts['wiki.test.raw']}


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """Both datasets built through the real CLI entry point: tiny_imagenet from a folder, wikitext103 from a zip."""
  root = tmp_path_factory.mktemp('tfds')
  manual, data_dir = str(root / 'manual'), str(root / 'data')
  tiny_base, tiny_files = _fake_tiny_imagenet(manual)
  texts = _fake_wikitext(manual)
  for name in ('tiny_imagenet', 'wikitext103'):
    assert prepare.main([name, f'--data_dir={data_dir}', f'--manual_dir={manual}']) == 0
  return dict(data_dir=data_dir, tiny_base=tiny_base, tiny_files=tiny_files, texts=texts)


# ---- catalog datasets through tfds.testing.mock_data ------------------------------------------------------------


@pytest.fixture
def mock_getitems(monkeypatch):
  """TFDS 4.9.10's mock sets the source's __getitems__ to an unbound partial, so a batched read fails with a
  missing argument; this one takes the keys with or without self."""
  from tensorflow_datasets.testing import mocking

  def getitems(*args, generator, serialized=False):
    del serialized
    return [generator[k] for k in args[-1]]

  monkeypatch.setattr(mocking, '_getitems', getitems)


def _write_metadata(name, data_dir, num_examples):
  """The dataset_info.json that MockPolicy.USE_FILES reads: the catalog builder's features, our split sizes."""
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  template = tfds.core.ShardedFileTemplate(data_dir=builder.data_dir, dataset_name=builder.name,
                                           filetype_suffix='array_record')
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[num_examples], num_bytes=0, filename_template=template)
      for s in ('train', 'test')]))
  os.makedirs(builder.data_dir)
  builder.info.write_to_directory(builder.data_dir)


@pytest.mark.parametrize('name', ['cifar10', 'mnist', 'imagenet_resized/32x32'])
def test_catalog_images_load_with_their_shapes_through_the_mock(name, tmp_path, mock_getitems):
  n = 300                                     # more than one read batch
  _write_metadata(name, str(tmp_path), n)
  spec = tfds_data.info(name)
  with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path)):
    x, y = tfds_data.load_images(name, 'train', data_dir=str(tmp_path))
    x5, y5 = tfds_data.load_images(name, 'train', data_dir=str(tmp_path), max_examples=5)
  assert x.shape == (n, *spec['image_shape']) and x.dtype == np.uint8
  assert y.shape == (n,) and y.dtype == np.int32
  assert 0 <= y.min() and y.max() < spec['num_classes'] and len(np.unique(y)) > 1
  assert not np.array_equal(x[0], x[1]) and not np.array_equal(x[256], x[0])   # rows are distinct examples
  np.testing.assert_array_equal(x5, x[:5])
  np.testing.assert_array_equal(y5, y[:5])


def test_imagenet2012_is_resized_and_center_cropped_through_the_mock(tmp_path, mock_getitems):
  n = 12
  _write_metadata('imagenet2012', str(tmp_path), n)
  with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path)):
    x, y = tfds_data.load_images('imagenet2012', 'train', data_dir=str(tmp_path), image_size=16)
    source = tfds.data_source('imagenet2012', split='train', data_dir=str(tmp_path), download=False)
    originals = [source[i] for i in range(n)]
  assert x.shape == (n, 16, 16, 3) and x.dtype == np.uint8
  assert len({o['image'].shape for o in originals}) > 1          # the mock's images have sizes of their own
  for i, original in enumerate(originals):
    np.testing.assert_array_equal(x[i], tfds_data.resize_center_crop(original['image'], 16))
    assert y[i] == original['label']


def test_info_sizes_models_without_files():
  assert tfds_data.info('mnist')['image_shape'] == (28, 28, 1)
  assert tfds_data.info('tiny_imagenet')['num_classes'] == 200
  assert tfds_data.info('imagenet2012', image_size=64)['image_shape'] == (64, 64, 3)
  assert tfds_data.info('wikitext103')['vocab_size'] == 256
  with pytest.raises(ValueError, match='unknown dataset'):
    tfds_data.info('cifar11')


# ---- our builders -----------------------------------------------------------------------------------------------


def _stored_file_names(data_dir, split):
  import superconsistency.builders  # noqa: F401
  source = tfds.data_source('tiny_imagenet', split=split, data_dir=data_dir, download=False)
  return [source[i]['file_name'].decode() for i in range(len(source))]


@pytest.mark.parametrize('split', ['train', 'validation'])
def test_tiny_imagenet_pixels_and_labels_are_the_files(prepared, split):
  x, y = tfds_data.load_images('tiny_imagenet', split, data_dir=prepared['data_dir'])
  names = _stored_file_names(prepared['data_dir'], split)
  expected = {rel: wnid for rel, wnid in prepared['tiny_files'].items() if rel.startswith(split[:3])}
  assert sorted(names) == sorted(expected)
  assert x.shape == (len(expected), 64, 64, 3) and x.dtype == np.uint8 and y.dtype == np.int32
  for i, rel in enumerate(names):
    with PIL.Image.open(os.path.join(prepared['tiny_base'], rel)) as image:
      np.testing.assert_array_equal(x[i], np.asarray(image.convert('RGB')), err_msg=rel)
    assert y[i] == sorted(WNIDS).index(expected[rel]), rel
  small, y_small = tfds_data.load_images('tiny_imagenet', split, data_dir=prepared['data_dir'], image_size=32)
  assert small.shape == (len(expected), 32, 32, 3)
  np.testing.assert_array_equal(small[0], tfds_data.resize_center_crop(x[0], 32))
  np.testing.assert_array_equal(y_small, y)


def test_tiny_imagenet_from_the_zip_equals_the_folder(prepared, tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  base = prepared['tiny_base']
  with zipfile.ZipFile(manual / 'tiny-imagenet-200.zip', 'w') as z:
    for rel in ['wnids.txt', 'val/val_annotations.txt', *prepared['tiny_files']]:
      z.write(os.path.join(base, rel), f'tiny-imagenet-200/{rel}')
  data_dir = str(tmp_path / 'data')
  assert prepare.main(['tiny_imagenet', f'--data_dir={data_dir}', f'--manual_dir={manual}']) == 0
  for split in ('train', 'validation'):
    x, y = tfds_data.load_images('tiny_imagenet', split, data_dir=data_dir)
    x0, y0 = tfds_data.load_images('tiny_imagenet', split, data_dir=prepared['data_dir'])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


def test_resize_keeps_the_central_square():
  image = np.zeros((60, 180, 3), np.uint8)
  image[:, :60, 0] = image[:, 60:120, 1] = image[:, 120:, 2] = 255     # red | green | blue thirds
  out = tfds_data.resize_center_crop(image, 20)
  assert out.shape == (20, 20, 3)
  np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to([0, 255, 0], (16, 16, 3)))
  gray = tfds_data.resize_center_crop(np.full((50, 30, 1), 7, np.uint8), 10)
  assert gray.shape == (10, 10, 1) and (gray == 7).all()


def test_wikitext_bytes_are_the_files(prepared):
  for split, data in prepared['texts'].items():
    text = tfds_data.load_text('wikitext103', split, data_dir=prepared['data_dir'])
    assert text.dtype == np.uint8 and text.tobytes() == data, split
  head = tfds_data.load_text('wikitext103', 'train', data_dir=prepared['data_dir'], max_bytes=1_500_000)
  assert head.tobytes() == prepared['texts']['train'][:1_500_000]


# ---- failures ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('name', ['cifar10', 'tiny_imagenet', 'wikitext103'])
def test_unprepared_dataset_names_the_command_and_touches_nothing(name, tmp_path):
  empty = tmp_path / 'data'
  empty.mkdir()
  load = tfds_data.load_text if name == 'wikitext103' else tfds_data.load_images
  with pytest.raises(tfds_data.DatasetNotPrepared) as err:
    load(name, 'train', data_dir=str(empty))
  message = str(err.value)
  assert name in message and str(empty) in message
  assert f'python -m superconsistency.prepare {name} --data_dir={empty}' in message
  assert ('--manual_dir' in message) == (name != 'cifar10')
  assert list(empty.iterdir()) == []
  with pytest.raises(tfds_data.DatasetNotPrepared):
    load(name, 'train', data_dir=str(tmp_path / 'absent'))
  assert not (tmp_path / 'absent').exists()


def _copy(prepared, tmp_path):
  data_dir = str(tmp_path / 'data')
  shutil.copytree(prepared['data_dir'], data_dir)
  return data_dir


def test_truncated_record_file_raises_naming_it(prepared, tmp_path):
  data_dir = _copy(prepared, tmp_path)
  path = os.path.join(data_dir, 'tiny_imagenet', '1.0.0', 'tiny_imagenet-train.array_record-00000-of-00001')
  os.truncate(path, os.path.getsize(path) // 2)
  with pytest.raises(tfds_data.DatasetCorrupt, match=path):
    tfds_data.load_images('tiny_imagenet', 'train', data_dir=data_dir)
  np.testing.assert_array_equal(   # the intact split still loads
      tfds_data.load_images('tiny_imagenet', 'validation', data_dir=data_dir)[1],
      tfds_data.load_images('tiny_imagenet', 'validation', data_dir=prepared['data_dir'])[1])


def test_corrupt_record_and_wrong_byte_count_raise(prepared, tmp_path):
  data_dir = _copy(prepared, tmp_path)
  folder = os.path.join(data_dir, 'wikitext103', '1.0.0')
  path = os.path.join(folder, 'wikitext103-train.array_record-00000-of-00001')
  with open(path, 'r+b') as f:     # overwrite bytes inside the records; the footer stays intact
    f.seek(os.path.getsize(path) // 3)
    f.write(b'\x00' * 64)
  with pytest.raises(tfds_data.DatasetCorrupt, match=path):
    tfds_data.load_text('wikitext103', 'train', data_dir=data_dir)
  meta = os.path.join(folder, 'metadata.json')
  with open(meta) as f:
    text = f.read()
  with open(meta, 'w') as f:
    f.write(text.replace(f'"test": {len(prepared["texts"]["test"])}', '"test": 999'))
  with pytest.raises(tfds_data.DatasetCorrupt, match='metadata says 999'):
    tfds_data.load_text('wikitext103', 'test', data_dir=data_dir)


def test_prepare_cli_rejects_an_unknown_name_in_one_line(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'superconsistency.prepare', 'cifar11', f'--data_dir={tmp_path}'],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "unknown dataset 'cifar11'" in lines[0] and 'tiny_imagenet' in lines[0]
  assert list(tmp_path.iterdir()) == []


def test_prepare_rejects_missing_and_bad_manual_files(tmp_path, capsys):
  data_dir, manual = str(tmp_path / 'data'), tmp_path / 'manual'
  manual.mkdir()
  assert prepare.main(['wikitext103', f'--data_dir={data_dir}', f'--manual_dir={manual}']) == 2
  line = capsys.readouterr().err.strip()
  assert '\n' not in line and 'wikitext-103-raw-v1.zip' in line and str(manual) in line
  assert not os.path.exists(data_dir)
  base, _ = _fake_tiny_imagenet(str(manual))
  bad = os.path.join(base, 'train', 'n01', 'images', 'n01_2.JPEG')
  with open(bad, 'wb') as f:
    f.write(_jpeg(np.zeros((32, 32, 3), np.uint8)))
  assert prepare.main(['tiny_imagenet', f'--data_dir={data_dir}', f'--manual_dir={manual}']) == 2
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert bad in line and '32x32, not 64x64' in line
  with pytest.raises(tfds_data.DatasetNotPrepared):     # the failed build left nothing that loads
    tfds_data.load_images('tiny_imagenet', 'train', data_dir=data_dir)


def test_prepare_stops_before_downloading_a_catalog_dataset_without_tensorflow(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(prepare, '_has_tensorflow', lambda: False)
  assert prepare.main(['cifar10', f'--data_dir={tmp_path}']) == 2
  line = capsys.readouterr().err.strip()
  assert '\n' not in line and 'needs TensorFlow' in line and 'cifar10' in line
  assert list(tmp_path.iterdir()) == []


def test_prepare_reports_a_failure_inside_tfds_with_its_instructions(tmp_path, capsys, monkeypatch):
  """Past our checks, imagenet2012's TFDS builder fails here (it calls tf.io.gfile without TensorFlow; with
  TensorFlow, the empty tars fail); prepare names the dataset and prints TFDS's manual-download instructions."""
  monkeypatch.setattr(prepare, '_has_tensorflow', lambda: True)
  manual = tmp_path / 'manual'
  manual.mkdir()
  for tar in ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'):
    (manual / tar).write_bytes(b'')
  assert prepare.main(['imagenet2012', f'--data_dir={tmp_path / "data"}', f'--manual_dir={manual}']) == 1
  err = capsys.readouterr().err
  assert 'TFDS could not prepare imagenet2012' in err and 'image-net.org' in err
