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
import shutil
from typing import Any, Dict, List, Optional, Tuple

from prunelm_tf import data as data_lib
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.utils import files

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
VOCAB_FILE = "vocab.txt"
# The value of "kind" in a variant's config.json.
VARIANT_KIND = "compression_variant"
# CompressConfig fields that the "dense" entry (the input model's exports, sizes,
# perplexities) does not depend on: what is done to the model. See `dense_settings`.
_NOT_IN_DENSE_ENTRY = ("method", "method_options", "sparsity_sweep", "teacher_dir",
                       "layer_sparsity")


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

  def models_to_pass_instead(self, config: Dict[str, Any]) -> str:
    """Where one model is expected but this run folder was given: the folders to pass instead.

    Args:
      config: this run's parsed config.json (a compression config).

    Returns:
      Sentences naming its finished variant folders (each is a model folder that
      ``pipelines.compress`` and ``pipelines.embed`` take as ``--model_dir``) and
      the input model it compressed.
    """
    finished = [f.path for f in self.variants() if f.is_complete()]
    if self.dense.is_complete():
      finished.append(f"{self.dense.path} (the uncompressed input model)")
    if finished:
      text = f"Pass one of its variant folders instead: {', '.join(finished)}."
    else:
      text = (f"It has no finished variant yet; finish it by running pipelines.compress again "
              f"with the flags in {self.flags_txt}, then pass {self.path}/variants/<name>.")
    if config.get("model_dir"):
      text += f" Or pass the model it compressed: {config['model_dir']}."
    elif config.get("options_file"):
      text += (f" Or pass the ELMo model it compressed: options_file {config['options_file']} "
               f"with weight_file {config.get('weight_file', '')}.")
    return text


def is_recipe_run_config(config: Any) -> bool:
  """Whether a parsed config.json is that of a recipe run of several stages."""
  return isinstance(config, dict) and {"recipe", "recipe_config", "inputs"} <= set(config)


def stage_dir(run_dir: str, k: int, method: str) -> str:
  """The compression run folder of stage ``k`` (0-based) of a recipe run."""
  return os.path.join(run_dir, "stages", f"{k + 1}_{method}")


def recipe_stage_dirs(run_dir: str, config: Dict[str, Any]) -> List[str]:
  """The stage folders of a recipe run, in order, from its parsed config.json."""
  return [stage_dir(run_dir, k, s["method"])
          for k, s in enumerate(config["recipe_config"]["stages"])]


def locate_variant(path: str) -> Optional[Tuple[CompressionRunFolder, VariantFolder]]:
  """(run folder, variant) if ``path`` is ``RUN/dense`` or ``RUN/variants/NAME``."""
  path = os.path.normpath(path)
  parent = os.path.dirname(path)
  run = os.path.dirname(parent) if os.path.basename(parent) == "variants" else parent
  folder = CompressionRunFolder(run)
  if os.path.exists(folder.config_json) and os.path.exists(os.path.join(path, CONFIG_FILE)):
    return folder, VariantFolder(path)
  return None


def dense_settings(config: Dict[str, Any]) -> Dict[str, Any]:
  """The fields of a parsed compression config.json that its "dense" entry depends on.

  Two runs whose dense settings are equal describe the input model identically.
  --calibration counts only when an int8 TFLite is written (it calibrates on
  it), --train only when there is no --eval (its sentences are then the parity
  sentences).
  """
  ignored = set(_NOT_IN_DENSE_ENTRY)
  if "int8" not in config.get("tflite_quantization", ()):
    ignored |= {"calibration", "calibration_sentences"}
  if config.get("eval"):
    ignored.add("train")
  return {k: v for k, v in config.items() if k not in ignored}


def check_dense_donors(donors) -> None:
  """Refuses a --reuse_dense folder that is not a compression run folder."""
  for donor in donors:
    path = os.path.join(donor, CONFIG_FILE)
    if not os.path.isfile(path):
      raise ValueError(f"--reuse_dense: {donor} is not a compression run folder (no {CONFIG_FILE}).")
    if not CompressionRunFolder.holds_compression_config(files.read_json(path)):
      raise ValueError(f"--reuse_dense: {donor} is not a compression run folder (its "
                       f"{CONFIG_FILE} is not a pipelines.compress config).")


def reuse_dense_entry(folder: CompressionRunFolder, config: Dict[str, Any],
                      donors) -> Tuple[Optional[str], Dict[str, List[str]]]:
  """Copies the finished dense entry of the first donor run whose dense settings agree.

  Returns ``(donor, refused)``: the run folder it was copied from (None if
  none agreed) and, per donor not used, why (the differing fields, or
  "unfinished"). The copy is atomic; ``folder``'s own is replaced only whole.
  """
  wanted = dense_settings(config)
  refused: Dict[str, List[str]] = {}
  for donor in donors:
    if os.path.realpath(donor) == os.path.realpath(folder.path):
      continue
    source = CompressionRunFolder(donor)
    theirs = dense_settings(files.read_json(source.config_json))
    differ = sorted(k for k in set(wanted) | set(theirs) if wanted.get(k) != theirs.get(k))
    if differ or not source.dense.is_complete():
      refused[donor] = differ or ["unfinished"]
      continue
    with files.atomic_path(folder.dense.path) as tmp:
      shutil.copytree(source.dense.path, tmp)
    return donor, refused
  return None, refused
