"""TFDS builders for the datasets the TFDS catalog lacks: Tiny-ImageNet and WikiText-103 (raw).

Importing this package registers them with TFDS as 'tiny_imagenet' and 'wikitext103'. Both build from files the
user downloaded (TFDS's manual_dir) into ArrayRecord files, which `superconsistency.tfds_data` reads through
`tfds.data_source` without TensorFlow. Neither downloads anything.
"""
from superconsistency.builders._manual import ManualFilesError, MissingManualFiles
from superconsistency.builders.tiny_imagenet import TinyImagenet
from superconsistency.builders.wikitext103 import Wikitext103

__all__ = ['ManualFilesError', 'MissingManualFiles', 'TinyImagenet', 'Wikitext103']
