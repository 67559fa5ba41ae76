"""Prepares a dataset as ArrayRecord files that `superconsistency.tfds_data` reads without TensorFlow.

  python -m superconsistency.prepare NAME --data_dir=DIR [--manual_dir=DIR]

This is the only step that may download, and only a user runs it. NAME is one of tfds_data.DATASETS:
  cifar10, mnist, imagenet_resized/32x32, imagenet_resized/64x64
      TFDS catalog builders, which download their sources.
  imagenet2012
      TFDS catalog builder; manual_dir must hold ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar.
  tiny_imagenet, wikitext103
      our builders (superconsistency.builders); they read the user's download from manual_dir, never the network.
Catalog builders need TensorFlow to *generate* (TFDS 4.9.10 reads sources with tf.io.gfile and encodes images with
tf.image), so for them this checks that TensorFlow is importable before downloading anything. Our builders need
neither TensorFlow nor the network. manual_dir defaults to DATA_DIR/downloads/manual, as in TFDS.

Bad input (unknown name, missing TensorFlow or manual files, unusable manual files) prints one line saying what is
wrong and what to do, and exits with code 2.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys

from superconsistency import tfds_data

_IMAGENET_TARS = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')


class _BadInput(Exception):
  pass


def _parser():
  p = argparse.ArgumentParser(prog='python -m superconsistency.prepare',
                              description='Prepare a dataset as ArrayRecord files for tfds.data_source.')
  p.add_argument('name', help=f'one of: {", ".join(tfds_data.DATASETS)}')
  p.add_argument('--data_dir', default=None,
                 help=f'where prepared files go (default {tfds_data.default_data_dir()})')
  p.add_argument('--manual_dir', default=None,
                 help='where the downloaded sources are (default DATA_DIR/downloads/manual)')
  return p


def _has_tensorflow() -> bool:
  return importlib.util.find_spec('tensorflow') is not None


def _check_inputs(name, manual_dir):
  """Everything that can be checked before TFDS runs, so bad input fails fast and downloads nothing."""
  if name not in tfds_data.DATASETS:
    raise _BadInput(f'unknown dataset {name!r}; choose one of: {", ".join(tfds_data.DATASETS)}')
  if name in tfds_data.OURS:
    from superconsistency import builders
    from superconsistency.builders import tiny_imagenet, wikitext103
    module = tiny_imagenet if name == 'tiny_imagenet' else wikitext103
    try:
      module.find_release(manual_dir)
    except builders.MissingManualFiles as e:
      raise _BadInput(f'{e}; put it there, or pass its folder as --manual_dir') from None
    except builders.ManualFilesError as e:
      raise _BadInput(str(e)) from None
    return
  if not _has_tensorflow():
    version = importlib.metadata.version('tensorflow-datasets')
    raise _BadInput(f'TFDS {version} needs TensorFlow to generate the catalog dataset {name} (its builder reads '
                    f'and encodes with tf.io and tf.image): pip install tensorflow-cpu for this step; training '
                    f'reads the result without it')
  if name == 'imagenet2012':
    missing = [t for t in _IMAGENET_TARS if not os.path.isfile(os.path.join(manual_dir, t))]
    if missing:
      raise _BadInput(f'imagenet2012 needs {" and ".join(missing)} in {manual_dir} (register at '
                      f'https://image-net.org/download-images to download them); pass their folder as --manual_dir')


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None):
  """Builds NAME into data_dir (a no-op if it is already there); returns the TFDS builder."""
  data_dir = os.path.expanduser(data_dir) if data_dir else tfds_data.default_data_dir()
  manual_dir = os.path.expanduser(manual_dir) if manual_dir else os.path.join(data_dir, 'downloads', 'manual')
  _check_inputs(name, manual_dir)
  if name in tfds_data.OURS:
    import superconsistency.builders  # noqa: F401  (registers our builders)
  import tensorflow_datasets as tfds
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  try:
    builder = prepare(args.name, args.data_dir, args.manual_dir)
  except _BadInput as e:
    print(f'prepare: {e}', file=sys.stderr)
    return 2
  except Exception as e:  # noqa: BLE001
    from superconsistency.builders import ManualFilesError
    if isinstance(e, ManualFilesError):          # a manual file found unusable while building
      print(f'prepare: {e}', file=sys.stderr)
      return 2
    if args.name in tfds_data.OURS:
      raise                                      # a bug of ours: keep the traceback
    # A catalog builder failed inside TFDS (network, changed sources, ...): say so, with TFDS's instructions.
    first = (str(e).strip().splitlines() or [''])[0]
    print(f'prepare: TFDS could not prepare {args.name}: {type(e).__name__}: {first}', file=sys.stderr)
    import tensorflow_datasets as tfds
    instructions = getattr(tfds.builder_cls(args.name.split('/')[0]), 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
    if instructions:
      print(instructions.strip(), file=sys.stderr)
    return 1
  splits = {k: v.num_examples for k, v in builder.info.splits.items()}
  kind = 'text' if args.name in tfds_data.TEXT_DATASETS else 'images'
  data_dir = args.data_dir or tfds_data.default_data_dir()
  print(f'{args.name} is prepared in {builder.data_dir} (examples per split: {splits}); read it with '
        f'superconsistency.tfds_data.load_{kind}({args.name!r}, SPLIT, data_dir={data_dir!r})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
