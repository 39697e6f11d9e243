"""On-disk caches of frozen biLM features, keyed by a fingerprint.

Downstream tasks (SST-2, MRPC, CoNLL-2003 NER) embed the same sentences with
the same model every time they run; the features are written once per
(model, quantization mode) and reloaded when the fingerprint matches. A cache
file is an ``.npz`` written atomically (``atomic_path``), so a crash never
leaves a half-written file that looks whole; an unreadable or mismatching file
is recomputed and overwritten with a warning, never trusted.

The fingerprint is a sha1 of the sentences, the feature shape and, if given,
a *model fingerprint*: a string that identifies the model and runtime that
made the features, e.g. ``fingerprint_weights(model)`` for a Keras model or
``fingerprint_file(path)`` for an exported TFLite file (which fixes the
quantization mode too). Without one, a cache is only valid for the model that
wrote it, so every variant needs its own cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Dict, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf.utils.files import atomic_path

keras = tf.keras


def feature_fingerprint(sentences: Sequence[Sequence[str]], shape: Sequence[int],
                        model_fingerprint: str = "") -> str:
  """sha1 of the sentences, the feature shape and the model: the identity of a cache file.

  With ``model_fingerprint == ""`` the value is the one the SST-2 cache has
  always used, so existing caches stay valid.
  """
  digest = hashlib.sha1(json.dumps([list(s) for s in sentences]).encode("utf-8"))
  digest.update(json.dumps([int(d) for d in shape]).encode("utf-8"))
  if model_fingerprint:
    digest.update(b"\0model:" + model_fingerprint.encode("utf-8"))
  return digest.hexdigest()


def fingerprint_file(path: str | os.PathLike) -> str:
  """sha256 of a file's bytes (e.g. a TFLite export), as a model fingerprint.

  Raises:
    FileNotFoundError: ``path`` is not a file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"cannot fingerprint {path}: no such file. Pass the model file "
                            "(e.g. the exported .tflite) whose features are cached.")
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return "sha256:" + digest.hexdigest()


def fingerprint_weights(model: keras.Model) -> str:
  """sha256 of a Keras model's weights (names, shapes, dtypes and values).

  Two models with the same architecture and equal weights get the same
  string; pruning a single weight changes it.
  """
  digest = hashlib.sha256()
  for weight in model.weights:
    value = np.ascontiguousarray(weight.numpy())
    digest.update(json.dumps([weight.name, list(value.shape), str(value.dtype)]).encode("utf-8"))
    digest.update(value.tobytes())
  return "sha256:" + digest.hexdigest()


def load_arrays(cache_path: str, expected_fingerprint, names: Sequence[str]
                ) -> Optional[Dict[str, np.ndarray]]:
  """The arrays of a cache file if it is readable and its fingerprint matches, else None.

  Args:
    cache_path: an existing ``.npz`` file written by ``save_arrays``.
    expected_fingerprint: ``arrays -> str``, the fingerprint the file must
      hold given its own arrays (the shape is part of the identity but only
      known from the file); a ``ValueError`` it raises means a mismatch.
    names: arrays that must be present besides ``fingerprint``.

  Returns:
    ``{name: array}`` loaded into memory, or None (with a warning) when the
    file is unreadable, lacks an array or was computed for other inputs.
  """
  try:
    with np.load(cache_path, allow_pickle=False) as f:
      arrays = {name: f[name] for name in names}
      stored = str(f["fingerprint"])
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    logging.warning("Feature cache %s is unreadable (%s); recomputing it.", cache_path, e)
    return None
  try:
    expected = expected_fingerprint(arrays)
  except ValueError as e:
    expected, reason = None, str(e)
  else:
    reason = "different sentences, shape or model"
  if stored != expected:
    logging.warning("Feature cache %s was computed for other inputs (%s); recomputing and "
                    "overwriting it.", cache_path, reason)
    return None
  return arrays


def save_arrays(cache_path: str, fingerprint: str, arrays: Mapping[str, np.ndarray]) -> None:
  """Writes ``arrays`` and ``fingerprint`` to ``cache_path`` (uncompressed ``.npz``), atomically."""
  # A file object, not the temp name: np.savez would append ".npz" to the
  # name, and atomic_path would then rename a file that does not exist.
  with atomic_path(cache_path) as tmp, open(tmp, "wb") as f:
    np.savez(f, fingerprint=np.asarray(fingerprint), **arrays)


def save_frozen_model(path: str, weights: Sequence[np.ndarray], mean: np.ndarray,
                      inv_std: np.ndarray) -> None:
  """A trained downstream model for drop-in use: its weights and the input standardization.

  Written as an uncompressed ``.npz`` (never a pickle) atomically: ``weight_0`` ...,
  ``mean`` and ``inv_std`` (the training features' statistics the model was trained on).
  """
  arrays = {f"weight_{i}": np.asarray(w) for i, w in enumerate(weights)}
  arrays.update(mean=np.asarray(mean, np.float32), inv_std=np.asarray(inv_std, np.float32))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)


def load_frozen_model(path: str):
  """(weights, mean, inv_std) written by ``save_frozen_model``."""
  with np.load(path, allow_pickle=False) as npz:
    count = sum(1 for k in npz.files if k.startswith("weight_"))
    return [npz[f"weight_{i}"] for i in range(count)], npz["mean"], npz["inv_std"]
