"""The interface every compression method implements, and what a method is given.

A method is one folder in this package (``<name>/method.py``, its algorithm
beside it; what several methods use is in ``compression.shared``) plus one line
in ``registry.py``. It declares:

* ``Options``: a frozen, validated dataclass of its own settings. Fields made
  with `option(...)` become command-line flags of ``pipelines.compress`` (name,
  help, choices and bounds come from the field), nested option dataclasses are
  walked, so the entry point never lists a method's settings by hand.
* ``amount``: what its amount of compression means (`amounts`: ``SPARSITY``,
  ``PARAMS_REMOVED``, ...; None when it removes nothing): the flag that takes it
  and the name metrics.json and the reports give it.
* ``needs(options)``: which corpora it reads (training, calibration) and
  whether it needs the source model's softmax.
* ``check(options, config, source)``: every rule that involves the input model
  or the rest of the run config, run before any work.
* ``variant_name(options, target_sparsity)``: the variant's folder name. Names
  are for people; results are keyed by the recorded method, options and
  target sparsity, never by parsing a name.
* ``compress(options, context)``: the work. Returns a `CompressedModel`: a
  plain Keras biLM (no pruning wrappers) with **its own** `BiLMConfig`, which
  may differ from the source's (fewer units, layers, factorized matrices), and
  any extra metrics.
* ``hparams(options)``: its keys for TensorBoard's HParams, with their domain
  in ``hparam_domains``; other methods' keys read "n/a".
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from prunelm_tf.compression.amounts import SPARSITY, Amount
from prunelm_tf.compression.options import options_from_dict
from prunelm_tf.compression.source import Source
from prunelm_tf.models.config import BiLMConfig

keras = tf.keras


@dataclasses.dataclass(frozen=True)
class Needs:
  """What a method reads besides the source model."""
  # A training corpus (--train).
  train: bool = False
  # A held-out calibration corpus (--calibration).
  calibration: bool = False
  # The source model's softmax (an LM objective, or a perplexity-based criterion).
  softmax: bool = False


@dataclasses.dataclass
class CompressedModel:
  """What ``compress`` returns for one variant."""
  # The compressed biLM: plain Keras layers, no tfmot wrappers.
  model: keras.Model
  # Its own architecture (the source's unless the method changed the shape).
  config: BiLMConfig
  # Extra per-variant figures for metrics.json (JSON-serialisable).
  metrics: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # Seconds of the method's own stages, e.g. {"prune": 1.2} or {"retrain": 900}.
  seconds: Dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class MethodContext:
  """Everything a method gets for one variant (one target sparsity).

  The source model is shared by every variant: a method copies it
  (`copy_source`) before changing weights.
  """
  # The dense input model, its architecture and vocabulary.
  source: Source
  # The sweep value this variant is made for, in [0, 1).
  target_sparsity: float
  # Per-weight targets: the sweep value, with --layer_sparsity overrides.
  targets: Dict[str, float]
  # Weights whose target is not fixed by --layer_sparsity (free for allocation).
  free_weights: List[str]
  # Corpora (tokenized sentences), None when not given.
  train_sentences: Optional[List[List[str]]]
  calibration_sentences: Optional[List[List[str]]]
  # The variant's own folder (checkpoints of a resumable retraining go here).
  variant_dir: str
  # The variant's TensorBoard folder for training scalars.
  tensorboard_dir: str
  # A run-level folder for caches shared by every variant of the sweep.
  cache_dir: str
  # Seed for data order and any randomness.
  seed: int
  # ``(sentences, batch_size, shuffle, seed) -> tf.data.Dataset`` for the source.
  make_dataset: Callable[..., tf.data.Dataset]
  # Data-parallel training over several workers (`prunelm_tf.training.distribute`),
  # or None (one process). A method that trains creates the model it trains
  # and its optimizer in ``training_scope()``.
  strategy: Optional[tf.distribute.Strategy] = None
  # The model KD / distillation learns from (--teacher_dir), None = the source.
  teacher: Optional[keras.Model] = None
  # The --valid text (models with a softmax), None when not given: what a method
  # may measure its intermediate states on (never the evaluation text).
  valid_sentences: Optional[List[List[str]]] = None

  @property
  def teacher_model(self) -> keras.Model:
    """What retraining and fine-tuning distill from: --teacher_dir, else the source model."""
    return self.teacher if self.teacher is not None else self.source.model

  def training_scope(self):
    """The strategy's scope, or a no-op without one."""
    return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

  def copy_source(self) -> keras.Model:
    """A fresh copy of the dense model (same architecture and weights)."""
    return self.source.copy_model()

  def dataset(self, sentences, batch_size: int, *, shuffle: bool, seed: int = 0):
    return self.make_dataset(sentences, batch_size, shuffle=shuffle, seed=seed)


class CompressionMethod(abc.ABC):
  """A registered compression method; see the module docstring."""

  # Registry key and --method value.
  name: ClassVar[str]
  # One sentence: what it does (flag help and docs are built from it).
  summary: ClassVar[str]
  # Its frozen options dataclass.
  Options: ClassVar[type]
  # HParams keys of this method -> their discrete values ("n/a" is added).
  hparam_domains: ClassVar[Mapping[str, Tuple[str, ...]]] = {}
  # What its amount of compression (its sweep values, a recipe stage's amount) means, and
  # so the flag that takes it (`amounts`); None for a stage that removes nothing
  # (``finetune``), whose sweep is (0,).
  amount: ClassVar[Optional[Amount]] = SPARSITY
  # Whether it compresses in one shot, without training (cheap to measure at many amounts).
  one_shot: ClassVar[bool] = False

  @property
  def has_amount(self) -> bool:
    """Whether the method removes an amount (its ``amount`` is not None)."""
    return self.amount is not None

  def needs(self, options) -> Needs:  # pylint: disable=unused-argument
    return Needs()

  def check(self, options, config, source: Source) -> None:  # pylint: disable=unused-argument
    """Rules involving the run config or the input model; raise ValueError."""

  def variant_name(self, options, target_sparsity: float) -> str:  # pylint: disable=unused-argument
    return f"{self.name}_{round(target_sparsity * 100):02d}"

  @abc.abstractmethod
  def compress(self, options, context: MethodContext) -> CompressedModel:
    """Makes one variant; see `MethodContext` and `CompressedModel`."""

  def hparams(self, options) -> Dict[str, str]:  # pylint: disable=unused-argument
    return {}

  def options_from_dict(self, d: Optional[Mapping[str, Any]]):
    """The options from their JSON form (config.json); None = defaults."""
    return options_from_dict(self.Options, d or {})
