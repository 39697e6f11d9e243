"""Configuration of a compression run (validated once, frozen, written to config.json)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional, Tuple

from prunelm_tf.export.tflite import QUANTIZATION_MODES

METHODS = ("retrain", "threshold")
SCHEDULES = ("polynomial", "constant")
THRESHOLD_SCOPES = ("layer", "global")
ALLOCATIONS = ("uniform", "sensitivity")
OBJECTIVES = ("lm", "distill", "lm+distill")
LR_SCHEDULES = ("constant", "linear", "cosine")


def _check_sparsity(name: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {value}; e.g. 0.9 keeps 10% of the weights.")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """tfmot pruning schedule (steps are optimizer steps of the retraining)."""

  # "polynomial" (tfmot PolynomialDecay) or "constant" (ConstantSparsity).
  kind: str = "polynomial"
  # Sparsity when pruning starts (polynomial only).
  initial_sparsity: float = 0.0
  # Sparsity reached at end_step and kept afterwards.
  final_sparsity: float = 0.9
  # First step at which masks are updated.
  begin_step: int = 0
  # Step at which final_sparsity is reached (polynomial only).
  end_step: int = 1000
  # Exponent of the polynomial ramp (3 = prune fast early, slow late).
  power: float = 3.0
  # Masks are updated every this many steps.
  frequency: int = 100

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.kind!r}.")
    _check_sparsity("initial_sparsity", self.initial_sparsity)
    _check_sparsity("final_sparsity", self.final_sparsity)
    if self.initial_sparsity > self.final_sparsity:
      raise ValueError(f"initial_sparsity ({self.initial_sparsity}) must be <= final_sparsity "
                       f"({self.final_sparsity}).")
    if self.begin_step < 0:
      raise ValueError(f"begin_step must be >= 0, got {self.begin_step}.")
    if self.kind == "polynomial" and self.begin_step >= self.end_step:
      raise ValueError(f"begin_step ({self.begin_step}) must be < end_step ({self.end_step}): "
                       "the schedule needs at least one step to ramp up.")
    if self.frequency < 1:
      raise ValueError(f"frequency must be >= 1, got {self.frequency}.")
    if self.power <= 0:
      raise ValueError(f"power must be > 0, got {self.power}.")


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
  """Optimisation during pruning with retraining."""

  # Optimizer steps (>= end_step so that the final sparsity is reached).
  num_steps: int = 1200
  # Adam learning rate (pruning-aware fine-tuning wants it small).
  learning_rate: float = 5e-4
  # "constant", or "linear" / "cosine" decay to zero at num_steps (fine-tunes
  # the final mask at a falling rate after the schedule's end_step).
  lr_schedule: str = "constant"
  # "lm": LM loss on the corpus; "distill": MSE to the dense model's layer
  # representations (needs no softmax); "lm+distill": their sum.
  objective: str = "lm"
  # Weight of the distillation term.
  distill_weight: float = 1.0
  # Sampled-softmax samples for the LM term; 0 = full softmax.
  num_sampled: int = 0
  # Global gradient-norm clipping; 0 = none.
  clip_norm: float = 5.0
  # Sentences per batch.
  batch_size: int = 64
  # Checkpoint every this many steps.
  checkpoint_every_steps: int = 200
  # Scalars every this many steps.
  log_every_steps: int = 25

  def __post_init__(self):
    if self.objective not in OBJECTIVES:
      raise ValueError(f"retrain_objective must be one of {OBJECTIVES}, got {self.objective!r}.")
    if self.num_steps < 1 or self.batch_size < 1:
      raise ValueError("retrain num_steps and batch_size must be >= 1.")
    if self.learning_rate <= 0:
      raise ValueError(f"retrain learning_rate must be > 0, got {self.learning_rate}.")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"retrain lr_schedule must be one of {LR_SCHEDULES}, "
                       f"got {self.lr_schedule!r}.")
    if self.distill_weight < 0 or self.num_sampled < 0 or self.clip_norm < 0:
      raise ValueError("distill_weight, num_sampled and clip_norm must be >= 0.")
    if self.checkpoint_every_steps < 1 or self.log_every_steps < 1:
      raise ValueError("checkpoint_every_steps and log_every_steps must be >= 1.")


@dataclasses.dataclass(frozen=True)
class CompressConfig:
  """One compression run: its input model, method(s) and exports."""

  # A run folder of pipelines.train ("" when an ELMo options/weight pair is given).
  model_dir: str = ""
  # ELMo options.json + HDF5 weight file (instead of model_dir).
  options_file: str = ""
  weight_file: str = ""
  # Corpus for retraining (file glob or tfds:NAME/SPLIT); "" = none (threshold only).
  train: str = ""
  # Corpus for perplexity / similarity of every variant.
  eval: str = ""
  # Read at most this many sentences per corpus; 0 = all.
  max_sentences: int = 0
  # "retrain" (tfmot, schedule below) or "threshold" (magnitude, no retraining).
  method: str = "threshold"
  # Threshold: "layer" (each matrix to its target) or "global" (one threshold).
  threshold_scope: str = "layer"
  # Threshold: "uniform" (every weight to the sweep value) or "sensitivity"
  # (per-weight targets chosen from each weight's measured sensitivity on
  # `calibration`, so that the overall sparsity still equals the sweep value).
  threshold_allocation: str = "uniform"
  # Corpus for the sensitivity measurement (a held-out split, never the test
  # split that `eval` reports on).
  calibration: str = ""
  # Sentences of `calibration` used per sensitivity measurement.
  calibration_sentences: int = 300
  # One variant per target sparsity.
  sparsity_sweep: Tuple[float, ...] = (0.5,)
  # Per-weight overrides as ((regex, sparsity), ...); matched against names
  # like "softmax/kernel", "forward_lstm_0/projection", "char_cnn/kernel_2".
  layer_sparsity: Tuple[Tuple[str, float], ...] = ()
  # The tfmot schedule; final_sparsity is replaced by each sweep value.
  schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
  retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
  # TFLite files to write per variant.
  tflite_quantization: Tuple[str, ...] = ("none", "dynamic")
  # Sentences of `eval` used for TFLite parity and int8 calibration.
  num_parity_sentences: int = 8
  # Also write the compressed variant as an ELMo options.json + HDF5 pair.
  export_elmo: bool = False
  # Seed for data order and sampling.
  seed: int = 0

  def __post_init__(self):
    object.__setattr__(self, "sparsity_sweep", tuple(float(s) for s in self.sparsity_sweep))
    object.__setattr__(self, "tflite_quantization", tuple(self.tflite_quantization))
    object.__setattr__(self, "layer_sparsity",
                       tuple((str(p), float(s)) for p, s in self.layer_sparsity))
    has_run = bool(self.model_dir)
    has_elmo = bool(self.options_file or self.weight_file)
    if has_run == has_elmo:
      raise ValueError("give exactly one input model: --model_dir (a pipelines.train run folder) "
                       "or --options_file together with --weight_file (ELMo).")
    if has_elmo and not (self.options_file and self.weight_file):
      raise ValueError("--options_file and --weight_file go together; one of them is missing.")
    if self.method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {self.method!r}.")
    if self.threshold_scope not in THRESHOLD_SCOPES:
      raise ValueError(f"threshold_scope must be one of {THRESHOLD_SCOPES}, "
                       f"got {self.threshold_scope!r}.")
    if self.threshold_allocation not in ALLOCATIONS:
      raise ValueError(f"threshold_allocation must be one of {ALLOCATIONS}, "
                       f"got {self.threshold_allocation!r}.")
    if self.threshold_allocation == "sensitivity":
      if self.method != "threshold":
        raise ValueError("--threshold_allocation=sensitivity applies to --method=threshold only "
                         "(tfmot gives one schedule per layer; set per-layer targets with "
                         "--layer_sparsity instead).")
      if self.threshold_scope != "layer":
        raise ValueError("--threshold_allocation=sensitivity chooses a target per weight, so it "
                         "needs --threshold_scope=layer.")
      if not self.calibration:
        raise ValueError("--threshold_allocation=sensitivity measures each weight's sensitivity "
                         "on --calibration (a held-out split such as PTB valid); set it.")
      if self.calibration_sentences < 1:
        raise ValueError(f"calibration_sentences must be >= 1, got {self.calibration_sentences}.")
    if not self.sparsity_sweep:
      raise ValueError("sparsity_sweep needs at least one value, e.g. 0.5,0.7,0.9.")
    for s in self.sparsity_sweep:
      _check_sparsity("each --sparsity_sweep value", s)
    if len(set(self.sparsity_sweep)) != len(self.sparsity_sweep):
      raise ValueError(f"sparsity_sweep has repeated values: {self.sparsity_sweep}.")
    for pattern, s in self.layer_sparsity:
      _check_sparsity(f"--layer_sparsity value for {pattern!r}", s)
    for mode in self.tflite_quantization:
      if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown TFLite quantization mode {mode!r} in --tflite_quantization; "
                         f"choose from {', '.join(QUANTIZATION_MODES)}.")
    if self.method == "retrain":
      if not self.train:
        raise ValueError("--method=retrain needs a corpus to retrain on: set --train.")
      if self.schedule.kind == "polynomial" and self.retrain.num_steps < self.schedule.end_step:
        raise ValueError(f"retrain num_steps ({self.retrain.num_steps}) must be >= end_step "
                         f"({self.schedule.end_step}) or the final sparsity is never reached.")
      if self.retrain.num_sampled:
        raise ValueError("sampled softmax is not available when retraining with pruning: the "
                         "pruned softmax must be called every step. Use --num_sampled=0.")
    if self.max_sentences < 0 or self.num_parity_sentences < 1:
      raise ValueError("max_sentences must be >= 0 and num_parity_sentences >= 1.")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)


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
