"""Artifact sizes: raw bytes, gzip bytes, and zipped directories.

Sparse weights only save space once compressed (TFLite's sparsity encoding
covers Dense kernels only), so every artifact is measured raw and compressed.
"""

from __future__ import annotations

import gzip
import os
import zipfile

from prunelm_tf.utils.files import atomic_path


def path_bytes(path: str) -> int:
  """Size of a file, or the total size of the files under a directory."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  total = 0
  for root, _, names in os.walk(path):
    total += sum(os.path.getsize(os.path.join(root, n)) for n in names)
  return total


def gzip_bytes(path: str) -> int:
  """Bytes of the file gzip-compressed at the default level (nothing written)."""
  with open(path, "rb") as f:
    return len(gzip.compress(f.read(), compresslevel=9, mtime=0))


def zip_directory(directory: str, zip_path: str) -> int:
  """Zips ``directory`` (deflate) atomically; returns the zip's size in bytes."""
  with atomic_path(zip_path) as tmp:
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
      for root, _, names in sorted(os.walk(directory)):
        for n in sorted(names):
          full = os.path.join(root, n)
          zf.write(full, os.path.relpath(full, directory))
  return os.path.getsize(zip_path)


def zip_file_bytes(path: str) -> int:
  """Bytes of the file alone in a deflate (level 9) zip: what a download of it costs."""
  tmp = path + ".measure.zip"
  try:
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
      zf.write(path, os.path.basename(path))
    return os.path.getsize(tmp)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
