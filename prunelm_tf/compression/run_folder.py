"""The compression run folder: where every artifact lives (the one place that knows).

::

  RUN/config.json, flags.txt     the run's CompressConfig and flags
  RUN/metrics.json, summary.md   the report
  RUN/cache/                     caches shared by the sweep (e.g. sensitivity.json)
  RUN/dense/                     the input model's own exports (the reference)
  RUN/variants/<name>/           one folder per variant (`VariantFolder`)
  RUN/tensorboard/<name>/        training scalars; RUN/tensorboard/hparams/

A variant folder (also ``RUN/dense``) holds everything needed to use it on its
own: ``config.json`` (its own architecture, method, options and target
sparsity), ``vocab.txt`` (if the model has a vocabulary), ``saved_model/``,
``saved_model.zip``, ``bilm_<mode>.tflite``, ``elmo/options.json`` +
``elmo/weights.hdf5`` (if exported), ``checkpoints/`` (retraining) and
``metrics.json`` (written last: a variant without it is unfinished).
"""

from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Optional, Tuple

from prunelm_tf import data as data_lib
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.utils import files

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
VOCAB_FILE = "vocab.txt"
# The value of "kind" in a variant's config.json.
VARIANT_KIND = "compression_variant"


class VariantFolder:
  """One variant (or the dense reference) of a compression run."""

  def __init__(self, path: str):
    self.path = path

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(self.path))

  config_json = property(lambda self: os.path.join(self.path, CONFIG_FILE))
  metrics_json = property(lambda self: os.path.join(self.path, METRICS_FILE))
  vocab_txt = property(lambda self: os.path.join(self.path, VOCAB_FILE))
  saved_model = property(lambda self: os.path.join(self.path, "saved_model"))
  saved_model_zip = property(lambda self: os.path.join(self.path, "saved_model.zip"))
  checkpoints = property(lambda self: os.path.join(self.path, "checkpoints"))
  elmo_options = property(lambda self: os.path.join(self.path, "elmo", "options.json"))
  elmo_weights = property(lambda self: os.path.join(self.path, "elmo", "weights.hdf5"))

  def tflite(self, mode: str) -> str:
    """The representation TFLite file of quantization ``mode``."""
    return os.path.join(self.path, f"bilm_{mode}.tflite")

  def tflite_files(self) -> Dict[str, str]:
    """{mode: path} of the TFLite files present."""
    out = {}
    for path in sorted(glob.glob(os.path.join(self.path, "bilm_*.tflite"))):
      out[os.path.basename(path)[len("bilm_"):-len(".tflite")]] = path
    return out

  def is_complete(self) -> bool:
    return os.path.exists(self.metrics_json)

  def write_description(self, config: BiLMConfig, vocab: Optional[data_lib.Vocabulary],
                        record: Dict[str, Any]) -> None:
    """Writes ``config.json`` (architecture + ``record``) and ``vocab.txt``."""
    os.makedirs(self.path, exist_ok=True)
    if vocab is not None:
      vocab.save(self.vocab_txt)
    files.write_json(self.config_json, {"kind": VARIANT_KIND, "model": config.to_dict(),
                                        **record})

  def read_description(self) -> Tuple[BiLMConfig, Optional[data_lib.Vocabulary], Dict[str, Any]]:
    """Its architecture, vocabulary (None without one) and the rest of config.json.

    Raises:
      FileNotFoundError: no config.json (a folder written before variants
        described themselves, or not a variant folder).
    """
    if not os.path.exists(self.config_json):
      raise FileNotFoundError(f"{self.path} has no {CONFIG_FILE}: it is not a variant folder "
                              "of pipelines.compress (or was written by an older version; "
                              "compress again).")
    d = files.read_config_json(self.config_json)
    if not isinstance(d, dict) or "model" not in d:
      raise ValueError(f"{self.config_json} must be a JSON object with a \"model\" entry (the "
                       "variant's architecture); compress again into a new run folder.")
    config = BiLMConfig.from_dict(d["model"], source=self.config_json, prefix="model.")
    vocab = data_lib.Vocabulary.load(self.vocab_txt) if os.path.exists(self.vocab_txt) else None
    return config, vocab, {k: v for k, v in d.items() if k not in ("kind", "model")}


class CompressionRunFolder:
  """A run folder of ``pipelines.compress`` (see the module docstring)."""

  def __init__(self, path: str):
    self.path = path

  config_json = property(lambda self: os.path.join(self.path, CONFIG_FILE))
  flags_txt = property(lambda self: os.path.join(self.path, "flags.txt"))
  metrics_json = property(lambda self: os.path.join(self.path, METRICS_FILE))
  summary_md = property(lambda self: os.path.join(self.path, "summary.md"))
  cache_dir = property(lambda self: os.path.join(self.path, "cache"))
  hparams_dir = property(lambda self: os.path.join(self.path, "tensorboard", "hparams"))

  @property
  def dense(self) -> VariantFolder:
    return VariantFolder(os.path.join(self.path, "dense"))

  def variant(self, name: str) -> VariantFolder:
    return VariantFolder(os.path.join(self.path, "variants", name))

  def variants(self) -> List[VariantFolder]:
    """Every variant folder (finished or not), sorted by name."""
    return [VariantFolder(d) for d in sorted(glob.glob(os.path.join(self.path, "variants", "*")))
            if os.path.isdir(d)]

  def tensorboard_dir(self, name: str) -> str:
    return os.path.join(self.path, "tensorboard", name)

  @staticmethod
  def holds_compression_config(config: Dict[str, Any]) -> bool:
    """Whether a parsed config.json is a compression run's (vs training, variant)."""
    return "method" in config and "sparsity_sweep" in config


def locate_variant(path: str) -> Optional[Tuple[CompressionRunFolder, VariantFolder]]:
  """(run folder, variant) if ``path`` is ``RUN/dense`` or ``RUN/variants/NAME``."""
  path = os.path.normpath(path)
  parent = os.path.dirname(path)
  run = os.path.dirname(parent) if os.path.basename(parent) == "variants" else parent
  folder = CompressionRunFolder(run)
  if os.path.exists(folder.config_json) and os.path.exists(os.path.join(path, CONFIG_FILE)):
    return folder, VariantFolder(path)
  return None
