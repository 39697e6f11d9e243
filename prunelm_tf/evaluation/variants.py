"""What can be evaluated: the variants of a compression run folder, or one model file.

``find_variants(path)`` accepts
* a run folder of ``pipelines.compress`` (its dense model and every variant); for a
  recipe run of several stages, the input model and the variants of the last stage,
* one variant folder of it (``RUN/variants/NAME`` or ``RUN/dense``),
* a ``pipelines.train`` run folder (its final model, as "dense"),
and returns one ``Variant`` per model with every artifact it has (SavedModel,
TFLite per quantization mode, ELMo HDF5) and what is needed to feed it text
(the architecture and, for word input, the vocabulary).
Single files (a .tflite, a SavedModel directory, an ELMo HDF5) are described
with ``variant_from_files``.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Dict, List, Optional

from absl import logging

from prunelm_tf import data as data_lib
from prunelm_tf.compression.run_folder import (CompressionRunFolder, VariantFolder,
                                               is_recipe_run_config, locate_variant,
                                               recipe_stage_dirs)
from prunelm_tf.export.tflite import QUANTIZATION_MODES
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.training.run_folder import WEIGHTS_FILE
from prunelm_tf.utils import files


@dataclasses.dataclass
class Variant:
  """One model to evaluate, with every artifact found for it."""

  # "dense", "threshold_50", ... (unique within one run folder; for people only).
  name: str
  # Its folder ("" for single files).
  directory: str
  # Its own architecture (from its folder: a variant may differ from the source).
  config: BiLMConfig
  # Its vocabulary (word input or softmax); None without one.
  vocab: Optional[data_lib.Vocabulary]
  # Keras SavedModel directory, or "".
  saved_model: str = ""
  # {quantization mode: .tflite path} of the representation model.
  tflite: Dict[str, str] = dataclasses.field(default_factory=dict)
  # ELMo options.json + HDF5 pair, or ("", "").
  elmo: tuple = ("", "")
  # The compression metrics.json of the variant ({} when there is none).
  metrics: Dict = dataclasses.field(default_factory=dict)
  # What made it: {"method", "method_options", "target_sparsity"} ({} for a
  # training run's model; "method" is "dense" for the reference).
  record: Dict = dataclasses.field(default_factory=dict)


def _tflite_files(folder: VariantFolder) -> Dict[str, str]:
  """{mode: path} of the variant's TFLite files, checked before any work.

  ``pipelines.compress`` names its files ``bilm_<mode>.tflite`` with a mode of
  ``QUANTIZATION_MODES``. A file of that form with another mode looks like one of
  ours that this version cannot evaluate (written by hand, renamed, or by another
  version): it is refused rather than skipped, so that no mode the user expects is
  silently missing from the results. Any other ``*.tflite`` is not ours and is
  ignored with a warning.

  Raises:
    ValueError: a ``bilm_<mode>.tflite`` whose mode is not a quantization mode.
  """
  found = folder.tflite_files()
  for mode, path in found.items():
    if mode not in QUANTIZATION_MODES:
      raise ValueError(
          f"{path} is named like a TFLite export of pipelines.compress (bilm_<mode>.tflite) "
          f"but its mode {mode!r} is not one of {', '.join(QUANTIZATION_MODES)}; move or "
          "delete it (or export that variant again with pipelines.compress) and run again.")
  ours = set(found.values())
  for path in sorted(glob.glob(os.path.join(folder.path, "*.tflite"))):
    if path not in ours:
      logging.warning("%s is not a TFLite export of pipelines.compress (bilm_<mode>.tflite); "
                      "ignored.", path)
  return found


def _variant(folder: VariantFolder) -> Variant:
  config, vocab, record = folder.read_description()
  return Variant(name=folder.name, directory=folder.path, config=config, vocab=vocab,
                 saved_model=folder.saved_model if os.path.isdir(folder.saved_model) else "",
                 tflite=_tflite_files(folder),
                 elmo=((folder.elmo_options, folder.elmo_weights)
                       if all(os.path.exists(p) for p in (folder.elmo_options, folder.elmo_weights))
                       else ("", "")),
                 metrics=files.read_json(folder.metrics_json) if folder.is_complete() else {},
                 record=record)


def find_variants(path: str) -> List[Variant]:
  """Every variant under ``path`` (see the module docstring), dense first.

  Raises:
    FileNotFoundError: ``path`` does not exist or holds nothing evaluable.
    ValueError: a variant folder holds a ``bilm_<mode>.tflite`` of an unknown
      quantization mode (see `_tflite_files`).
  """
  path = os.path.normpath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path} is not a directory; pass a pipelines.compress run folder, "
                            "one of its variant folders, or a pipelines.train run folder.")
  run = CompressionRunFolder(path)
  located = locate_variant(path)
  if located is not None:  # one variant folder: RUN/variants/NAME or RUN/dense
    folder = located[1]
    if not folder.is_complete():
      raise FileNotFoundError(f"{path} is an unfinished variant (no metrics.json); run "
                              "pipelines.compress again to finish it.")
    return [_variant(folder)]
  if os.path.exists(run.config_json):
    run_config = files.read_config_json(run.config_json)
    if is_recipe_run_config(run_config):
      # A recipe run of several stages: the input model of its first stage (the user's
      # dense model) and the variants of its last.
      first, *_, last = (CompressionRunFolder(d) for d in recipe_stage_dirs(path, run_config))
      out = [_variant(f) for f in [first.dense] + last.variants() if f.is_complete()]
      if not first.dense.is_complete() or len(out) < 2:
        raise FileNotFoundError(f"{path} is a recipe run whose stages have not finished; run "
                                "pipelines.compress again with its flags to finish it.")
      return out
    if CompressionRunFolder.holds_compression_config(run_config):
      out = [_variant(f) for f in [run.dense] + run.variants() if f.is_complete()]
      if not out:
        raise FileNotFoundError(f"{path} is a compression run folder without finished variants.")
      return out
    if "model" in run_config:  # a training run folder: its final model as "dense"
      if not os.path.exists(os.path.join(path, WEIGHTS_FILE)):
        raise FileNotFoundError(f"{path} is a training run folder without a final model.")
      return [Variant(name="dense", directory=path,
                      config=BiLMConfig.from_dict(run_config["model"]),
                      vocab=data_lib.Vocabulary.load(os.path.join(path, "vocab.txt")),
                      saved_model=(os.path.join(path, "saved_model")
                                   if os.path.isdir(os.path.join(path, "saved_model")) else ""),
                      record={"method": "dense"})]
  raise FileNotFoundError(
      f"{path} is neither a run folder of pipelines.compress or pipelines.train nor a variant "
      "folder of one (no config.json, no metrics.json).")
