"""Configuration of a training run: data, optimisation, and the biLM."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional

from prunelm_tf.models.config import BiLMConfig

LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the text comes from and how it is batched."""

  # Training corpus: a file glob (one whitespace-tokenized sentence per line)
  # or "tfds:NAME/SPLIT" (e.g. "tfds:lm1b/train").
  train: str = ""
  # Validation corpus (same forms); "" = no validation.
  valid: str = ""
  # Test corpus (same forms); "" = no test perplexity.
  test: str = ""
  # An ELMo vocabulary file (one token per line); "" = build from `train`.
  vocab_file: str = ""
  # When building the vocabulary: at most this many tokens incl. specials; 0 = no limit.
  max_vocab_size: int = 0
  # When building the vocabulary: drop tokens seen fewer times.
  min_count: int = 1
  # Sentences per batch.
  batch_size: int = 64
  # Length buckets are this many tokens wide.
  bucket_width: int = 10
  # Truncate longer sentences (tokens incl. <S> and </S>); 0 = never.
  max_length: int = 0
  # Read at most this many sentences per corpus; 0 = all (for quick runs).
  max_sentences: int = 0
  # TFDS data directory; "" = TFDS default.
  tfds_data_dir: str = ""

  def __post_init__(self):
    if not self.train:
      raise ValueError("data.train is required: a file glob or tfds:NAME/SPLIT.")
    for name in ("batch_size", "bucket_width", "min_count"):
      if getattr(self, name) < 1:
        raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}.")
    for name in ("max_vocab_size", "max_length", "max_sentences"):
      if getattr(self, name) < 0:
        raise ValueError(f"data.{name} must be >= 0 (0 = no limit), got {getattr(self, name)}.")
    if 0 < self.max_vocab_size < 4:
      raise ValueError("data.max_vocab_size must be 0 or >= 4 (<S>, </S>, <UNK> and a word), "
                       f"got {self.max_vocab_size}.")
    if 0 < self.max_length < 3:
      raise ValueError(f"data.max_length must be 0 or >= 3, got {self.max_length}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation of the LM loss (mean of forward and backward NLL)."""

  # Passes over the training corpus.
  num_epochs: float = 1.0
  # Stop after this many optimizer steps; 0 = run num_epochs.
  max_steps: int = 0
  # Peak Adam learning rate.
  learning_rate: float = 2e-3
  # "constant", or "linear"/"cosine" decay to zero at the last step.
  lr_schedule: str = "linear"
  # Steps of linear warm-up from 0 to the peak rate.
  warmup_steps: int = 0
  # Clip gradients to this global norm; 0 = no clipping.
  clip_norm: float = 5.0
  # Sampled-softmax samples per step; 0 = full softmax (always used for evaluation).
  num_sampled: int = 0
  # Write TensorBoard scalars every this many steps.
  log_every_steps: int = 50
  # Save a checkpoint every this many steps (and at every epoch end).
  checkpoint_every_steps: int = 500
  # Seed for weight initialisation, dropout and shuffling.
  seed: int = 0

  def __post_init__(self):
    if self.num_epochs <= 0 and self.max_steps <= 0:
      raise ValueError("train.num_epochs must be > 0 unless train.max_steps > 0; got "
                       f"num_epochs={self.num_epochs}, max_steps={self.max_steps}.")
    if self.max_steps < 0:
      raise ValueError(f"train.max_steps must be >= 0, got {self.max_steps}.")
    if self.learning_rate <= 0:
      raise ValueError(f"train.learning_rate must be > 0, got {self.learning_rate}.")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"train.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
    if self.warmup_steps < 0 or self.clip_norm < 0 or self.num_sampled < 0:
      raise ValueError("train.warmup_steps, clip_norm and num_sampled must be >= 0.")
    if self.log_every_steps < 1 or self.checkpoint_every_steps < 1:
      raise ValueError("train.log_every_steps and checkpoint_every_steps must be >= 1.")


@dataclasses.dataclass(frozen=True)
class TrainingRunConfig:
  """Everything that defines a dense training run (written to config.json)."""

  model: BiLMConfig
  data: DataConfig
  train: TrainConfig

  def __post_init__(self):
    # model.vocab_size == 0 means "the vocabulary's size": train_and_evaluate
    # fills it in before anything is written.
    if self.model.vocab_size and self.train.num_sampled >= self.model.vocab_size:
      raise ValueError(f"train.num_sampled={self.train.num_sampled} must be smaller than the "
                       f"vocabulary ({self.model.vocab_size}); use 0 for the full softmax.")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "TrainingRunConfig":
    return cls(model=BiLMConfig.from_dict(d["model"]), data=DataConfig(**d["data"]),
               train=TrainConfig(**d["train"]))
