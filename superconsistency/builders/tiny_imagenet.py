"""Tiny-ImageNet (200 ImageNet classes, 64×64 RGB) as a TFDS builder that reads the user's own copy.

Source: http://cs231n.stanford.edu/tiny-imagenet-200.zip (the original CS231n release). Put the zip, or the
tiny-imagenet-200/ folder it extracts to, in manual_dir. Nothing is downloaded. The release holds:
  wnids.txt                              the 200 WordNet ids; label = index into the sorted ids
  train/<wnid>/images/*.JPEG             500 images per class  -> split 'train' (100,000)
  val/images/*.JPEG, val/val_annotations.txt (file, wnid, box) -> split 'validation' (10,000)
  test/images/*.JPEG                     unlabeled; not built
The JPEG bytes are stored as they are, so decoding gives the release's pixels. A grayscale image is kept as it is
and decoded to 3 equal channels (as TensorFlow does); any other colour mode (e.g. CMYK) is converted to RGB and
stored losslessly as PNG. Every image is checked to be 64×64 while building, so a bad file fails the build, naming
the file, rather than the training run.
"""
from __future__ import annotations

import io

import tensorflow_datasets as tfds

from superconsistency.builders._manual import ManualFilesError, MissingManualFiles, Release

URL = 'http://cs231n.stanford.edu/tiny-imagenet-200.zip'
ZIP_NAME = 'tiny-imagenet-200.zip'
FOLDER = 'tiny-imagenet-200'
SIZE = 64


def find_release(manual_dir: str) -> Release:
  return Release.find(manual_dir, zip_name=ZIP_NAME, folder=FOLDER, marker='wnids.txt',
                      what=f'Tiny-ImageNet (download {URL})')


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
  """Tiny-ImageNet from manual_dir; registered as 'tiny_imagenet'."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'train and validation splits of tiny-imagenet-200.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Download {URL} and put {ZIP_NAME} (or the {FOLDER}/ folder it extracts to) in manual_dir, then run
  python -m superconsistency.prepare tiny_imagenet --data_dir=DIR --manual_dir=MANUAL_DIR
  """

  def _info(self) -> tfds.core.DatasetInfo:
    # The class names come from wnids.txt at build time (so a small fake release works too); reading a built
    # dataset restores them from the label file TFDS writes beside the records.
    return tfds.core.DatasetInfo(
        builder=self,
        description='Tiny-ImageNet: 200 classes of 64x64 RGB images from ImageNet (CS231n).',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(SIZE, SIZE, 3), encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='http://cs231n.stanford.edu/',
    )

  def _split_generators(self, dl_manager):
    release = find_release(dl_manager.manual_dir)
    wnids = sorted({w.strip() for w in release.read_bytes('wnids.txt').decode().split() if w.strip()})
    if not wnids:
      raise ManualFilesError(f'{release.describe("wnids.txt")} lists no class ids')
    self.info.features['label'].names = wnids
    return {
        'train': self._generate_examples(release, _train_files(release, wnids)),
        'validation': self._generate_examples(release, _val_files(release, set(wnids))),
    }

  def _generate_examples(self, release: Release, files):
    for rel, wnid in files:
      yield rel, {'image': _checked_image(release, rel), 'label': wnid, 'file_name': rel}


def _train_files(release: Release, wnids):
  files = []
  for wnid in wnids:
    names = [n for n in release.listdir(f'train/{wnid}/images') if n.lower().endswith(('.jpeg', '.jpg'))]
    if not names:
      raise MissingManualFiles(f'{release.describe(f"train/{wnid}/images/")} has no images: the release is incomplete')
    files += [(f'train/{wnid}/images/{n}', wnid) for n in names]
  return files


def _val_files(release: Release, wnids):
  rel = 'val/val_annotations.txt'
  files = []
  for i, line in enumerate(release.read_bytes(rel).decode().splitlines()):
    if not line.strip():
      continue
    fields = line.split('\t')
    if len(fields) < 2 or fields[1] not in wnids:
      raise ManualFilesError(f'{release.describe(rel)} line {i + 1} is not "<file>\\t<wnid in wnids.txt>...": {line!r}')
    files.append((f'val/images/{fields[0]}', fields[1]))
  if not files:
    raise ManualFilesError(f'{release.describe(rel)} lists no images')
  return files


def _checked_image(release: Release, rel: str) -> bytes:
  """The file's bytes, after checking that it decodes to a 64×64 image; non-RGB/gray modes become RGB PNG."""
  import PIL.Image
  data = release.read_bytes(rel)
  try:
    with PIL.Image.open(io.BytesIO(data)) as image:
      image.load()
      if image.size != (SIZE, SIZE):
        raise ManualFilesError(f'{release.describe(rel)} is {image.size[0]}x{image.size[1]}, not {SIZE}x{SIZE}')
      if image.mode in ('RGB', 'L'):
        return data
      buffer = io.BytesIO()
      image.convert('RGB').save(buffer, format='PNG')
      return buffer.getvalue()
  except (OSError, SyntaxError) as e:   # PIL's errors for unreadable or truncated image data
    raise ManualFilesError(f'{release.describe(rel)} is not a readable image ({e})') from None
