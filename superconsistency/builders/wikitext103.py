"""WikiText-103, raw character-level version, as a TFDS builder that reads the user's own copy.

Source: wikitext-103-raw-v1.zip (Merity et al. 2016), released at
https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip (also mirrored on
wikitext.smerity.com; any copy of that zip will do). Put the zip, or the wikitext-103-raw/ folder it extracts to
(wiki.train.raw, wiki.valid.raw, wiki.test.raw), in manual_dir. Nothing is downloaded. Use the *raw* release:
the tokenized one (wikitext-103-v1, wiki.*.tokens) has <unk> in place of rare words.

Each split is stored as the file's exact bytes cut into 1 MiB records, in order ('index' 0, 1, ...; shuffling is
off). Chunks rather than lines: a byte-level model reads one long stream in which newlines are tokens like any
other, so lines carry no meaning here; ~540 records of 1 MiB keep the per-record overhead negligible and loading
fast, where ~1.8 M line records would not; and a chunk need not respect UTF-8 character boundaries because the
tokens are bytes. The byte count of every split is kept in the dataset's metadata, so the loader can prove it
read the whole split.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from superconsistency.builders._manual import MissingManualFiles, Release

URL = 'https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip'
ZIP_NAME = 'wikitext-103-raw-v1.zip'
FOLDER = 'wikitext-103-raw'
FILES = {'train': 'wiki.train.raw', 'validation': 'wiki.valid.raw', 'test': 'wiki.test.raw'}
CHUNK_BYTES = 1 << 20


def find_release(manual_dir: str) -> Release:
  release = Release.find(manual_dir, zip_name=ZIP_NAME, folder=FOLDER, marker=FILES['train'],
                         what=f'WikiText-103 raw (download {URL})')
  for rel in FILES.values():
    if not release.exists(rel):
      raise MissingManualFiles(f'{release.describe(rel)} is missing: the release is incomplete; download it again')
  return release


class Wikitext103(tfds.core.GeneratorBasedBuilder):
  """WikiText-103 raw bytes from manual_dir; registered as 'wikitext103'."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'wiki.{train,valid,test}.raw as 1 MiB byte chunks.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Download {ZIP_NAME} ({URL}, also mirrored on wikitext.smerity.com) and put the zip, or the {FOLDER}/ folder
  it extracts to, in manual_dir, then run
  python -m superconsistency.prepare wikitext103 --data_dir=DIR --manual_dir=MANUAL_DIR
  """
  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='WikiText-103 (raw) as bytes: vocabulary of 256, 1 MiB chunks in order.',
        features=tfds.features.FeaturesDict({
            'index': tfds.features.Scalar(dtype=np.int64),
            'bytes': tfds.features.Tensor(shape=(None,), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,   # records must stay in file order: the text is their concatenation
        homepage='https://www.salesforce.com/blog/the-wikitext-long-term-dependency-language-modeling-dataset/',
    )

  def _split_generators(self, dl_manager):
    release = find_release(dl_manager.manual_dir)
    self.info.metadata['chunk_bytes'] = CHUNK_BYTES
    self.info.metadata['split_bytes'] = {split: release.size(rel) for split, rel in FILES.items()}
    return {split: self._generate_examples(release, rel) for split, rel in FILES.items()}

  def _generate_examples(self, release: Release, rel: str):
    with release.open(rel) as f:
      index = 0
      while chunk := _read_up_to(f, CHUNK_BYTES):
        yield index, {'index': index, 'bytes': np.frombuffer(chunk, np.uint8)}
        index += 1


def _read_up_to(f, n: int) -> bytes:
  """n bytes, fewer only at the end of the file (a stream's read(n) may return less before then)."""
  parts, got = [], 0
  while got < n and (part := f.read(n - got)):
    parts.append(part)
    got += len(part)
  return b''.join(parts)
