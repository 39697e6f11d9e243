"""Configuration of a compression run (validated once, frozen, written to config.json).

The method-specific settings are the chosen method's own options dataclass
(``method_options``; see ``prunelm_tf.compression.methods``), so this file
never names a method.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Mapping, Optional, Tuple

from prunelm_tf.compression.amounts import amount_flag
from prunelm_tf.compression.options import options_record
from prunelm_tf.export.tflite import DEFAULT_INT8_MAX_TOKENS, QUANTIZATION_MODES
from prunelm_tf.export.unrolled import check_max_tokens


# CompressConfig fields left out of config.json at their default (see to_dict);
# method options mark theirs with option(recorded_when_set=True).
RECORDED_WHEN_SET = ("teacher_dir", "valid")


def _check_sparsity(name: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {value}; e.g. 0.9 keeps 10% of the weights.")


@dataclasses.dataclass(frozen=True)
class CompressConfig:
  """One compression run: its input model, method, target sparsities and exports."""

  # A run folder of pipelines.train, or a finished variant folder of
  # pipelines.compress to compress further ("" when an ELMo pair is given).
  model_dir: str = ""
  # ELMo options.json + HDF5 weight file (instead of model_dir).
  options_file: str = ""
  weight_file: str = ""
  # Corpus for retraining (file glob or tfds:NAME/SPLIT); "" = none.
  train: str = ""
  # Corpus for perplexity / similarity of every variant.
  eval: str = ""
  # Held-out corpus (e.g. PTB valid) whose perplexity every variant records
  # beside `eval`'s: the figure to choose recipes and settings by, so that the
  # test split `eval` holds is only reported. Needs a softmax.
  valid: str = ""
  # Read at most this many sentences of train/eval/valid; 0 = all.
  max_sentences: int = 0
  # A registered method (prunelm_tf.compression.methods.REGISTRY).
  method: str = "threshold"
  # That method's options (its Options dataclass, or its dict form); None = defaults.
  method_options: Any = None
  # Held-out corpus for data-aware methods and sensitivity measurements (a
  # held-out split such as PTB valid, never the test split `eval` reports on).
  calibration: str = ""
  # Sentences of `calibration` read.
  calibration_sentences: int = 300
  # One variant per value: the method's amount of compression, in its meaning (the
  # method's ``amount``: a sparsity, or a fraction of parameters, LSTM layers or int8
  # bits removed; the flag --sparsity_sweep, --params_removed_sweep, ...). The field
  # keeps this name, which recorded config.json files and benchmarks use.
  sparsity_sweep: Tuple[float, ...] = (0.5,)
  # Per-weight overrides as ((regex, sparsity), ...); matched against names
  # like "softmax/kernel", "forward_lstm_0/projection", "char_cnn/kernel_2".
  layer_sparsity: Tuple[Tuple[str, float], ...] = ()
  # TFLite files to write per variant.
  tflite_quantization: Tuple[str, ...] = ("none", "dynamic")
  # Sentences of `eval` used for TFLite parity (and int8 calibration without `calibration`).
  num_parity_sentences: int = 8
  # Words per sentence of the fixed-length (unrolled) "int8" TFLite: longer
  # sentences are refused by it, shorter ones cost as much as this many.
  tflite_int8_max_tokens: int = DEFAULT_INT8_MAX_TOKENS
  # Also write the compressed variant as an ELMo options.json + HDF5 pair.
  export_elmo: bool = False
  # Seed for data order and sampling.
  seed: int = 0
  # The model that KD / representation distillation learns from while a method
  # retrains or fine-tunes ("" = the input model). When --model_dir is a
  # compressed variant (a combination), this is typically the original dense
  # run folder, so that the variant is not taught by its own degraded self.
  teacher_dir: str = ""

  def __post_init__(self):
    from prunelm_tf.compression.methods import get_method  # pylint: disable=import-outside-toplevel
    object.__setattr__(self, "sparsity_sweep", tuple(float(s) for s in self.sparsity_sweep))
    object.__setattr__(self, "tflite_quantization", tuple(self.tflite_quantization))
    object.__setattr__(self, "layer_sparsity",
                       tuple((str(p), float(s)) for p, s in self.layer_sparsity))
    has_run = bool(self.model_dir)
    has_elmo = bool(self.options_file or self.weight_file)
    if has_run == has_elmo:
      raise ValueError("give exactly one input model: --model_dir (a pipelines.train run folder "
                       "or a pipelines.compress variant folder) or --options_file together with "
                       "--weight_file (ELMo).")
    if has_elmo and not (self.options_file and self.weight_file):
      raise ValueError("--options_file and --weight_file go together; one of them is missing.")
    method = get_method(self.method)
    options = self.method_options
    if options is None or isinstance(options, Mapping):
      options = method.options_from_dict(options)
    elif not isinstance(options, method.Options):
      raise TypeError(f"method_options of --method={self.method} must be a "
                      f"{method.Options.__name__}, got {type(options).__name__}.")
    object.__setattr__(self, "method_options", options)
    needs = method.needs(options)
    if needs.train and not self.train:
      raise ValueError(f"--method={self.method} retrains: set --train to the corpus to "
                       "retrain on.")
    if needs.calibration:
      if not self.calibration:
        raise ValueError(f"--method={self.method} with these options measures on --calibration "
                         "(a held-out split such as PTB valid, never the test split); set it.")
      if self.calibration_sentences < 1:
        raise ValueError(f"--calibration_sentences must be >= 1, got "
                         f"{self.calibration_sentences}.")
    flag = amount_flag(method.amount) if method.amount else "--sparsity_sweep"
    if not self.sparsity_sweep:
      raise ValueError(f"{flag} needs at least one value, e.g. 0.5,0.7,0.9.")
    for s in self.sparsity_sweep:
      _check_sparsity(f"each {flag} value", s)
    if len(set(self.sparsity_sweep)) != len(self.sparsity_sweep):
      raise ValueError(f"{flag} has repeated values: {self.sparsity_sweep}.")
    for pattern, s in self.layer_sparsity:
      _check_sparsity(f"--layer_sparsity value for {pattern!r}", s)
    for mode in self.tflite_quantization:
      if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown TFLite quantization mode {mode!r} in --tflite_quantization; "
                         f"choose from {', '.join(QUANTIZATION_MODES)}.")
    if self.max_sentences < 0:
      raise ValueError(f"--max_sentences must be >= 0 (0 = all), got {self.max_sentences}.")
    if self.num_parity_sentences < 1:
      raise ValueError(f"--num_parity_sentences must be >= 1, got {self.num_parity_sentences}.")
    check_max_tokens(self.tflite_int8_max_tokens, "--tflite_int8_max_tokens")
    if self.teacher_dir:
      retrain = getattr(options, "retrain", None)
      teaches = (needs.train and retrain is not None
                 and (retrain.uses_kd or retrain.uses_distill))
      if not teaches:
        raise ValueError(f"--teacher_dir applies to a method that retrains or fine-tunes with a "
                         f"kd or distill objective; --method={self.method} with these options "
                         "learns from no teacher.")

  @property
  def method_impl(self):
    """The registered method object."""
    from prunelm_tf.compression.methods import get_method  # pylint: disable=import-outside-toplevel
    return get_method(self.method)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    # Fields added after run folders existed are recorded only when set, so that
    # those folders (whose config.json lacks them) still resume.
    for name in RECORDED_WHEN_SET:
      if not d[name]:
        del d[name]
    d["method_options"] = options_record(self.method_options)
    return d

  @classmethod
  def canonical_json(cls, d: Mapping[str, Any]) -> Dict[str, Any]:
    """A recorded config.json as this version would write it (defaults filled in or left out).

    Raises:
      ValueError: the record is not a valid config of this version.
    """
    return json.loads(cls.from_dict(d).to_json())

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "CompressConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown compression config keys {sorted(unknown)}; known: "
                       f"{sorted(known)}.")
    d = dict(d)
    d["layer_sparsity"] = tuple(tuple(x) for x in d.get("layer_sparsity", ()))
    return cls(**d)


def parse_layer_sparsity(text: str) -> Tuple[Tuple[str, float], ...]:
  """Parses ``'softmax=0,char_cnn/.*=0.5'`` into ((pattern, sparsity), ...)."""
  if not text.strip():
    return ()
  out = []
  for item in text.split(","):
    pattern, sep, value = item.rpartition("=")
    if not sep or not pattern.strip():
      raise ValueError(f"--layer_sparsity entries look like PATTERN=SPARSITY; got {item!r} "
                       f"in {text!r}.")
    try:
      out.append((pattern.strip(), float(value)))
    except ValueError as e:
      raise ValueError(f"--layer_sparsity value {value!r} for {pattern!r} is not a number.") from e
  return tuple(out)
