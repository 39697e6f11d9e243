"""What can be evaluated: the variants of a compression run folder, or one model file.

``find_variants(path)`` accepts
* a run folder of ``pipelines.compress`` (its dense model and every variant),
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

from prunelm_tf import data as data_lib
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.utils import files


@dataclasses.dataclass
class Variant:
  """One model to evaluate, with every artifact found for it."""

  # "dense", "threshold_50", ... (unique within one run folder).
  name: str
  # Its folder ("" for single files).
  directory: str
  # Architecture (from the run's source model).
  config: BiLMConfig
  # Vocabulary of a word-input model; None for char input.
  vocab: Optional[data_lib.Vocabulary]
  # Keras SavedModel directory, or "".
  saved_model: str = ""
  # {quantization mode: .tflite path} of the representation model.
  tflite: Dict[str, str] = dataclasses.field(default_factory=dict)
  # ELMo options.json + HDF5 pair, or ("", "").
  elmo: tuple = ("", "")
  # The compression metrics.json of the variant ({} when there is none).
  metrics: Dict = dataclasses.field(default_factory=dict)


def _source(run_config: Dict):
  """Architecture and vocabulary of a compression run's input model."""
  if run_config.get("model_dir"):
    model_dir = run_config["model_dir"]
    train_config = files.read_json(os.path.join(model_dir, "config.json"))
    return (BiLMConfig.from_dict(train_config["model"]),
            data_lib.Vocabulary.load(os.path.join(model_dir, "vocab.txt")))
  from prunelm_tf.elmo.options import load_options
  return load_options(run_config["options_file"]), None


def _variant(name: str, directory: str, config, vocab) -> Variant:
  tflite = {}
  for path in sorted(glob.glob(os.path.join(directory, "bilm_*.tflite"))):
    tflite[os.path.basename(path)[len("bilm_"):-len(".tflite")]] = path
  saved_model = os.path.join(directory, "saved_model")
  metrics_path = os.path.join(directory, "metrics.json")
  elmo = (os.path.join(directory, "elmo", "options.json"),
          os.path.join(directory, "elmo", "weights.hdf5"))
  return Variant(name=name, directory=directory, config=config, vocab=vocab,
                 saved_model=saved_model if os.path.isdir(saved_model) else "", tflite=tflite,
                 elmo=elmo if all(os.path.exists(p) for p in elmo) else ("", ""),
                 metrics=files.read_json(metrics_path) if os.path.exists(metrics_path) else {})


def find_variants(path: str) -> List[Variant]:
  """Every variant under ``path`` (see the module docstring), dense first.

  Raises:
    FileNotFoundError: ``path`` does not exist or holds nothing evaluable.
  """
  path = os.path.normpath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path} is not a directory; pass a pipelines.compress run folder, "
                            "one of its variant folders, or a pipelines.train run folder.")
  config_path = os.path.join(path, "config.json")
  if os.path.exists(config_path):
    run_config = files.read_json(config_path)
    if "method" in run_config:  # a compression run folder
      config, vocab = _source(run_config)
      out = []
      if os.path.isdir(os.path.join(path, "dense")):
        out.append(_variant("dense", os.path.join(path, "dense"), config, vocab))
      for d in sorted(glob.glob(os.path.join(path, "variants", "*"))):
        if os.path.exists(os.path.join(d, "metrics.json")):  # finished variants only
          out.append(_variant(os.path.basename(d), d, config, vocab))
      if not out:
        raise FileNotFoundError(f"{path} is a compression run folder without finished variants.")
      return out
    if "model" in run_config:  # a training run folder: its final model as "dense"
      from prunelm_tf.training.train import WEIGHTS_FILE
      if not os.path.exists(os.path.join(path, WEIGHTS_FILE)):
        raise FileNotFoundError(f"{path} is a training run folder without a final model.")
      return [Variant(name="dense", directory=path,
                      config=BiLMConfig.from_dict(run_config["model"]),
                      vocab=data_lib.Vocabulary.load(os.path.join(path, "vocab.txt")),
                      saved_model=(os.path.join(path, "saved_model")
                                   if os.path.isdir(os.path.join(path, "saved_model")) else ""))]
  # One variant folder: RUN/variants/NAME or RUN/dense.
  parent = os.path.dirname(path)
  run_dir = os.path.dirname(parent) if os.path.basename(parent) == "variants" else parent
  if os.path.exists(os.path.join(path, "metrics.json")) and \
      os.path.exists(os.path.join(run_dir, "config.json")):
    config, vocab = _source(files.read_json(os.path.join(run_dir, "config.json")))
    return [_variant(os.path.basename(path), path, config, vocab)]
  raise FileNotFoundError(
      f"{path} is neither a run folder of pipelines.compress or pipelines.train nor a variant "
      "folder of one (no config.json, no metrics.json).")
