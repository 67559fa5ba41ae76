"""Reading a dataset release that the user downloaded by hand, as a zip or as its extracted folder.

Both builders read from TFDS's manual_dir and never download. Users keep either the archive they downloaded or the
folder they unzipped, so a release is found by its zip name, its folder name, or a marker file directly in
manual_dir, and then read by paths relative to the release root.
"""
from __future__ import annotations

import os
import zipfile


class ManualFilesError(ValueError):
  """The files in manual_dir cannot be used; the message names the file and what to do."""


class MissingManualFiles(ManualFilesError):
  """The release is not in manual_dir (or a file it must contain is absent)."""


class Release:
  """One release, from its zip or its folder, read by paths relative to the release root ('a/b.txt')."""

  def __init__(self, location: str, zip_root: str | None = None):
    self.location = location          # the zip file or the root folder, for messages
    self._zip = None
    if zip_root is not None:
      self._zip = zipfile.ZipFile(location)
      self._prefix = zip_root.rstrip('/') + '/' if zip_root else ''
      self._names = set(self._zip.namelist())

  @classmethod
  def find(cls, manual_dir: str, *, zip_name: str, folder: str, marker: str, what: str) -> 'Release':
    """manual_dir/zip_name, manual_dir/folder/, or manual_dir itself when it holds `marker`."""
    manual_dir = os.path.expanduser(os.fspath(manual_dir))
    zip_path = os.path.join(manual_dir, zip_name)
    if os.path.isfile(zip_path):
      try:
        names = zipfile.ZipFile(zip_path).namelist()
      except zipfile.BadZipFile as e:
        raise ManualFilesError(f'{zip_path} is not a readable zip ({e}); download it again') from None
      for root in (folder, ''):
        if (f'{root}/{marker}' if root else marker) in names:
          return cls(zip_path, zip_root=root)
      raise ManualFilesError(f'{zip_path} has no {folder}/{marker}: it is not the {what} archive')
    for root in (os.path.join(manual_dir, folder), manual_dir):
      if os.path.isfile(os.path.join(root, marker)):
        return cls(root)
    raise MissingManualFiles(
        f'{what} not found in {manual_dir}: expected {zip_name}, or its extracted {folder}/ folder (with {marker})')

  def _member(self, rel: str) -> str:
    return self._prefix + rel

  def exists(self, rel: str) -> bool:
    if self._zip is not None:
      return self._member(rel) in self._names
    return os.path.isfile(os.path.join(self.location, rel))

  def describe(self, rel: str) -> str:
    """How to name a file in an error message."""
    if self._zip is not None:
      return f'{self.location}:{self._member(rel)}'
    return os.path.join(self.location, rel)

  def read_bytes(self, rel: str) -> bytes:
    if not self.exists(rel):
      raise MissingManualFiles(f'{self.describe(rel)} is missing: the release is incomplete; download it again')
    if self._zip is not None:
      return self._zip.read(self._member(rel))
    with open(os.path.join(self.location, rel), 'rb') as f:
      return f.read()

  def size(self, rel: str) -> int:
    if self._zip is not None:
      return self._zip.getinfo(self._member(rel)).file_size
    return os.path.getsize(os.path.join(self.location, rel))

  def open(self, rel: str):
    """A binary stream, so large text files are read in chunks rather than whole."""
    if not self.exists(rel):
      raise MissingManualFiles(f'{self.describe(rel)} is missing: the release is incomplete; download it again')
    if self._zip is not None:
      return self._zip.open(self._member(rel))
    return open(os.path.join(self.location, rel), 'rb')

  def listdir(self, rel: str) -> list[str]:
    """Sorted names of the files directly inside folder `rel`."""
    if self._zip is not None:
      head = self._member(rel).rstrip('/') + '/'
      return sorted(n[len(head):] for n in self._names
                    if n.startswith(head) and '/' not in n[len(head):] and n != head)
    path = os.path.join(self.location, rel)
    if not os.path.isdir(path):
      return []
    return sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
