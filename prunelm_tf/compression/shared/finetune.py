"""Retraining a compressed biLM: the optimisation settings and the resumable loop.

Shared by the methods that train: ``retrain`` (tfmot pruning on a schedule while
training) and ``finetune`` (training after the compression stages, their zeros and shared
values kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from prunelm_tf.compression.options import option
from prunelm_tf.compression.shared.targets import prunable_weights
from prunelm_tf.compression.source import EVAL_BATCH_SIZE
from prunelm_tf.training.loop import (DISTILL_LOSSES, LearningRate, LossSpec, Trainer,
                                      WeightAverage, evaluate_perplexity, run_training)

keras = tf.keras

OBJECTIVES = ("lm", "kd", "lm+kd", "distill", "lm+distill", "kd+distill")
LR_SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
  """Optimisation during retraining."""

  # Optimizer steps (>= the schedule's end_step so that the target is reached).
  num_steps: int = option(1200, "Retraining optimizer steps (>= --end_step).", flag="num_steps",
                          lower=1)
  # The budget in epochs of the training corpus instead (0 = num_steps gives it):
  # num_steps becomes ceil(num_epochs x the batches of one epoch).
  num_epochs: float = option(0.0, "Retraining budget in epochs of --train (0 = --num_steps "
                             "gives it): the steps are this many times the batches of one "
                             "epoch, rounded up; every variant records both.",
                             flag="num_epochs", lower=0, recorded_when_set=True)
  # The optimizer's learning rate (pruning-aware fine-tuning with Adam wants it small).
  learning_rate: float = option(5e-4, "Retraining learning rate (of --retrain_optimizer).",
                                flag="learning_rate", lower=0)
  # Linear warm-up of the learning rate over the first steps. A fresh Adam's
  # first updates are about +-lr on every weight whatever its gradient's size, at
  # the rates a pruned model needs (1e-2) a large move for a trained model (the
  # benchmark's dense control lost 4.3 % perplexity in one such epoch without it).
  warmup_steps: int = option(0, "Retraining linear learning-rate warm-up steps (then the "
                             "--lr_schedule decay); must be fewer than the retraining steps.",
                             flag="warmup_steps", lower=0, recorded_when_set=True)
  # Adam's epsilon (Keras's default 1e-7). Adam divides each step by the root of
  # the gradient's running square, so a weight whose gradient is tiny still moves
  # by about the learning rate each step: near a minimum, as in a dense model
  # distilled from itself, that is a random walk of that size. A larger epsilon
  # turns the steps of weights whose gradients are below it into plain gradient
  # steps of rate lr / epsilon and leaves the others as they are.
  adam_epsilon: float = option(1e-7, "Retraining Adam epsilon (> 0): weights whose gradient's "
                               "root mean square is below it take gradient steps of rate "
                               "--learning_rate / epsilon instead of steps of about "
                               "--learning_rate.", flag="adam_epsilon", lower=0,
                               recorded_when_set=True)
  # "adam", or "sgd": (heavy-ball) momentum SGD. Adam divides each step by the
  # root of the gradient's running square, so every weight moves by about the
  # rate whatever its gradient: a model at its teacher (the dense control, whose KD
  # gradient starts at zero) takes steps of that size in random directions and
  # drifts away. SGD steps are the rate times the gradient: weights whose gradient
  # is small stay, those of a pruned matrix far from its teacher move. Its rates are
  # those of SGD-trained LSTM LMs (AWD-LSTM: 30 without momentum), not Adam's.
  optimizer: str = option("adam", "Retraining optimizer: adam, or sgd (momentum SGD, steps "
                          "proportional to the gradient: --learning_rate then wants SGD's "
                          "scale, about 1 with --retrain_momentum 0.9).",
                          flag="retrain_optimizer", choices=OPTIMIZERS, recorded_when_set=True)
  # Momentum of --retrain_optimizer=sgd (0 = plain SGD).
  momentum: float = option(0.9, "Momentum of --retrain_optimizer=sgd, in [0, 1) (0 = plain "
                           "SGD).", flag="retrain_momentum", lower=0, upper=1,
                           recorded_when_set=True)
  # The weights kept are the uniform average of those after each of the last
  # this fraction of the steps (stochastic weight averaging; the averaged SGD of
  # AWD-LSTM), not the last step's: at a high learning rate the steps scatter
  # around a minimum that their mean is closer to. 0 = the last step's weights.
  average_last: float = option(0.0, "Fraction of the retraining steps, at their end, whose "
                               "weights are averaged (uniformly, as in stochastic weight "
                               "averaging) into the result, in [0, 1); 0 = the last step's "
                               "weights.", flag="retrain_average_last", lower=0,
                               recorded_when_set=True)
  # Layers whose weights the retraining leaves as they are, by name (comma-separated).
  # The benchmark compresses the embedder and keeps the softmax dense; trained at the
  # rates a pruned model needs, a softmax moves too (Adam moves the rows of rare words,
  # whose gradients are tiny, by about the rate each step), so freezing it makes the
  # retraining change only what was compressed, against the teacher's own softmax.
  frozen: str = option("", "Comma-separated layers whose weights the retraining leaves as "
                       "they are, e.g. softmax (names as in --layer_sparsity: char_cnn, "
                       "highway_0, token_projection, word_embedding, forward_lstm_0, "
                       "backward_lstm_1, softmax).", flag="retrain_frozen",
                       recorded_when_set=True)
  # "constant", or "linear" / "cosine" decay to zero at num_steps.
  lr_schedule: str = option("constant", "Retraining learning rate: constant, or linear/cosine "
                            "decay to zero at --num_steps.", flag="lr_schedule",
                            choices=LR_SCHEDULES)
  # "lm": LM loss on the corpus; "kd": KL divergence to the dense model's word
  # distributions (knowledge distillation, needs its softmax); "lm+kd": both;
  # "distill": MSE to the dense model's layer representations (needs no
  # softmax); "lm+distill": LM + that MSE; "kd+distill": KD + that MSE.
  objective: str = option("lm", "lm: LM loss on --train; kd: KL divergence to the dense model's "
                          "next/previous-word distributions (knowledge distillation, needs a "
                          "softmax); lm+kd: both; distill: MSE to the dense model's layer "
                          "representations (no softmax needed, the choice for an imported "
                          "ELMo); lm+distill: LM + MSE; kd+distill: KD + MSE (the teacher's "
                          "words and representations).", flag="retrain_objective",
                          choices=OBJECTIVES)
  # Weight of the representation-distillation term.
  distill_weight: float = option(1.0, "Weight of the representation-distillation term.",
                                 flag="distill_weight", lower=0)
  # How the distillation term compares the layers (`LossSpec.distill_loss`): "mse" over
  # every unit; "layer_nmse", each layer's squared error relative to the teacher layer's
  # squared norm (every layer counts alike, whatever its scale); "cosine", 1 - the cosine
  # of each word's vectors.
  distill_loss: str = option("mse", "What the distillation term measures: mse (mean squared "
                             "error over all units), layer_nmse (per layer, the squared error "
                             "over the teacher layer's squared norm, averaged over the layers: "
                             "every layer counts alike) or cosine (1 - the cosine of each "
                             "word's vectors per layer).", flag="distill_loss",
                             choices=DISTILL_LOSSES, recorded_when_set=True)
  # Relative weights of the layers (token layer first) in the distillation term; "" = equal.
  distill_layer_weights: str = option("", "Comma-separated relative weights of the layers in "
                                      "the distillation term, token layer first (e.g. 1,1,2 "
                                      "for an ELMo of 2 LSTM layers; unset: equal).",
                                      flag="distill_layer_weights", recorded_when_set=True)
  # Weight of the KD term (kd, lm+kd).
  kd_weight: float = option(1.0, "Weight of the knowledge-distillation term (kd, lm+kd).",
                            flag="kd_weight", lower=0)
  # Temperature of the KD term (both distributions divided by it; the term is
  # scaled by its square).
  kd_temperature: float = option(1.0, "Temperature of the knowledge-distillation term (> 0).",
                                 flag="kd_temperature")
  # Sampled-softmax samples for the LM term; 0 = full softmax.
  num_sampled: int = 0
  # Global gradient-norm clipping; 0 = none.
  clip_norm: float = 5.0
  # Dropout rate of the model's dropout layers while retraining; None = the
  # model's own (its config's). A pruned model that must recover in one epoch
  # underfits rather than overfits, so less dropout can pay.
  dropout: Optional[float] = option(None, "Dropout rate of the model's dropout layers while "
                                    "retraining or fine-tuning, in [0, 1) (unset: the "
                                    "model's own).", flag="retrain_dropout", lower=0,
                                    kind=float)
  # Sentences per batch.
  batch_size: int = option(64, "Retraining sentences per batch.", flag="batch_size", lower=1)
  # Checkpoint every this many steps.
  checkpoint_every_steps: int = option(200, "Retraining checkpoint cadence in steps.",
                                       flag="checkpoint_every_steps", lower=1)
  # Scalars every this many steps.
  log_every_steps: int = 25

  def __post_init__(self):
    if self.objective not in OBJECTIVES:
      raise ValueError(f"--retrain_objective must be one of {OBJECTIVES}, got {self.objective!r}.")
    if self.num_steps < 1:
      raise ValueError(f"--num_steps must be >= 1, got {self.num_steps}.")
    if not self.num_epochs >= 0 or self.num_epochs == float("inf"):
      raise ValueError(f"--num_epochs must be a finite number >= 0 (0 = --num_steps gives the "
                       f"budget), got {self.num_epochs}.")
    if self.batch_size < 1:
      raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}.")
    if self.warmup_steps < 0:
      raise ValueError(f"--warmup_steps must be >= 0, got {self.warmup_steps}.")
    if not self.num_epochs:
      check_warmup(self, self.num_steps)
    if self.learning_rate <= 0:
      raise ValueError(f"--learning_rate must be > 0, got {self.learning_rate}.")
    if not 0 < self.adam_epsilon < float("inf"):
      raise ValueError(f"--adam_epsilon must be a finite number > 0, got {self.adam_epsilon}.")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"--retrain_optimizer must be one of {OPTIMIZERS}, "
                       f"got {self.optimizer!r}.")
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f"--retrain_momentum must be in [0, 1), got {self.momentum}.")
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    if self.optimizer != "sgd" and self.momentum != defaults["momentum"]:
      raise ValueError("--retrain_momentum is an option of --retrain_optimizer=sgd; "
                       f"--retrain_optimizer is {self.optimizer!r}.")
    if self.optimizer != "adam" and self.adam_epsilon != defaults["adam_epsilon"]:
      raise ValueError("--adam_epsilon is an option of --retrain_optimizer=adam; "
                       f"--retrain_optimizer is {self.optimizer!r}.")
    if not 0.0 <= self.average_last < 1.0:
      raise ValueError(f"--retrain_average_last must be in [0, 1), got {self.average_last}.")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"--lr_schedule must be one of {LR_SCHEDULES}, "
                       f"got {self.lr_schedule!r}.")
    if self.distill_weight < 0 or self.num_sampled < 0 or self.clip_norm < 0:
      raise ValueError("--distill_weight, num_sampled and clip_norm must be >= 0.")
    if self.num_sampled:
      raise ValueError("sampled softmax is not available when retraining a compressed model: "
                       "its compressed softmax must be called every step. Use num_sampled=0.")
    if self.distill_loss not in DISTILL_LOSSES:
      raise ValueError(f"--distill_loss must be one of {DISTILL_LOSSES}, "
                       f"got {self.distill_loss!r}.")
    _ = self.layer_weights  # raises on a malformed --distill_layer_weights
    if self.kd_weight < 0:
      raise ValueError(f"--kd_weight must be >= 0, got {self.kd_weight}.")
    if self.kd_temperature <= 0:
      raise ValueError(f"--kd_temperature must be > 0, got {self.kd_temperature}.")
    if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"retraining dropout must be in [0, 1), got {self.dropout}.")
    if self.checkpoint_every_steps < 1 or self.log_every_steps < 1:
      raise ValueError("--checkpoint_every_steps and log_every_steps must be >= 1.")
    names = self.frozen_layers
    if not all(names) or len(set(names)) != len(names):
      raise ValueError(f"--retrain_frozen must be distinct comma-separated layer names, got "
                       f"{self.frozen!r}.")

  @property
  def frozen_layers(self) -> Tuple[str, ...]:
    """The names of the layers --retrain_frozen keeps as they are."""
    return tuple(n.strip() for n in self.frozen.split(",")) if self.frozen else ()

  @property
  def layer_weights(self) -> Tuple[float, ...]:
    """--distill_layer_weights as numbers (() = equal); each >= 0, at least one > 0."""
    if not self.distill_layer_weights:
      return ()
    try:
      weights = tuple(float(w) for w in self.distill_layer_weights.split(","))
    except ValueError:
      raise ValueError(f"--distill_layer_weights takes comma-separated numbers, got "
                       f"{self.distill_layer_weights!r}.") from None
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not sum(weights) > 0:
      raise ValueError(f"--distill_layer_weights must be finite numbers >= 0, not all 0, got "
                       f"{self.distill_layer_weights!r}.")
    return weights

  @property
  def uses_lm(self) -> bool:
    return self.objective in ("lm", "lm+kd", "lm+distill")

  @property
  def uses_kd(self) -> bool:
    return self.objective in ("kd", "lm+kd", "kd+distill")

  @property
  def uses_distill(self) -> bool:
    return self.objective in ("distill", "lm+distill", "kd+distill")

  @property
  def needs_softmax(self) -> bool:
    """The LM and KD terms need the model's (and teacher's) softmax."""
    return self.uses_lm or self.uses_kd


def check_warmup(config: RetrainConfig, num_steps: int, what: str = "") -> None:
  """Refuses a warm-up that is not shorter than the ``num_steps`` it belongs to.

  ``what`` names those steps when they are not --num_steps (an epoch budget, a stage).
  """
  if config.warmup_steps and config.warmup_steps >= num_steps:
    raise ValueError(f"--warmup_steps ({config.warmup_steps}) must be fewer than "
                     f"{what or '--num_steps'} ({num_steps}): the learning rate would never "
                     "leave its warm-up.")


def _layer_name(layer) -> str:
  """A layer's own name, also when tfmot wraps it (``prune_low_magnitude_<name>``)."""
  return getattr(layer, "layer", layer).name


def frozen_layers(config: RetrainConfig, model: keras.Model) -> List:
  """The layers of ``model`` that --retrain_frozen names.

  Raises:
    ValueError: a name that is no layer with weights of ``model`` (the message lists
      those), or every layer with weights frozen (nothing would be retrained).
  """
  if not config.frozen_layers:
    return []
  layers = {_layer_name(layer): layer for layer in model.layers if layer.trainable_weights}
  unknown = [n for n in config.frozen_layers if n not in layers]
  if unknown:
    raise ValueError(f"--retrain_frozen: {', '.join(unknown)} is not a layer with weights of "
                     f"this model; its layers are {', '.join(sorted(layers))}.")
  if set(config.frozen_layers) == set(layers):
    raise ValueError("--retrain_frozen names every layer with weights: nothing would be "
                     "retrained.")
  return [layers[n] for n in config.frozen_layers]


def first_averaged_step(config: RetrainConfig, num_steps: int) -> Optional[int]:
  """The first (1-based) of the ``num_steps`` steps whose weights are averaged; None = none.

  At least the last step is averaged when ``config.average_last`` > 0.
  """
  if not config.average_last:
    return None
  return num_steps - max(1, round(config.average_last * num_steps)) + 1


def make_optimizer(config: RetrainConfig, learning_rate) -> keras.optimizers.Optimizer:
  """The retraining's optimizer (--retrain_optimizer) at ``learning_rate`` (a rate or a
  schedule)."""
  if config.optimizer == "sgd":
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum)
  return keras.optimizers.Adam(learning_rate, epsilon=config.adam_epsilon)


def _pruning_masks(model: keras.Model) -> Dict:
  """``{weight.ref(): mask}`` of every tfmot-wrapped weight of ``model``."""
  return {weight.ref(): mask for layer in model.layers
          for weight, mask, _ in getattr(getattr(layer, "pruning_obj", None), "_pruning_vars", ())}


def steps_per_epoch(config: RetrainConfig, context) -> int:
  """Batches of one epoch of the context's training corpus at ``config.batch_size``."""
  return max(1, sum(1 for _ in context.dataset(context.train_sentences, config.batch_size,
                                               shuffle=False)))


def with_steps(config: RetrainConfig, batches_per_epoch: int) -> RetrainConfig:
  """``config`` with ``num_steps`` from ``num_epochs`` when the budget is given in epochs."""
  if not config.num_epochs:
    return config
  return dataclasses.replace(
      config, num_steps=max(1, math.ceil(config.num_epochs * batches_per_epoch - 1e-9)))


def retrain(model: keras.Model, teacher: keras.Model, config: RetrainConfig, context, *,
            callbacks: Sequence = ()) -> Dict[str, float]:
  """Trains ``model`` (wrapped or plain) on the context's training corpus; resumable.

  Under ``context.strategy`` (several workers), ``model`` must have been
  created in ``context.training_scope()``; every worker reads the same
  batches and trains on its share of their rows (see `Trainer`).

  Args:
    model: the model to train in place (tfmot wrappers allowed).
    teacher: the dense model, the distillation target (never trained).
    config: the optimisation settings.
    context: the method's `MethodContext` (corpus, folders, seed).
    callbacks: Keras callbacks for a custom loop (tfmot's UpdatePruningStep).

  Returns:
    Throughput figures of `run_training` plus ``num_train_steps`` and
    ``steps_per_epoch`` (the budget in both units). When the weights are
    averaged (``config.average_last``) and the context has --valid text, also
    ``valid_perplexity_before_average``: the perplexity there of the last
    step's weights, so that one run shows what the averaging changed.
  """
  per_epoch = steps_per_epoch(config, context)
  config = with_steps(config, per_epoch)
  loss = LossSpec(lm_weight=1.0 if config.uses_lm else 0.0,
                  distill_weight=config.distill_weight if config.uses_distill else 0.0,
                  distill_loss=config.distill_loss, distill_layer_weights=config.layer_weights,
                  kd_weight=config.kd_weight if config.uses_kd else 0.0,
                  temperature=config.kd_temperature,
                  teacher=teacher if (config.uses_distill or config.uses_kd) else None)
  check_warmup(config, config.num_steps, "the retraining steps")
  # Before the optimizer, the average and the traced step see the weights and the rates.
  with _retraining_settings(model, config):
    return _retrain(model, config, context, callbacks, per_epoch, loss)


@contextlib.contextmanager
def _retraining_settings(model: keras.Model, config: RetrainConfig):
  """``model`` as ``config`` retrains it (--retrain_frozen layers not trainable, dropout
  layers at --retrain_dropout); restores the model's own settings (they are in its config)
  afterwards, also when the retraining fails."""
  frozen = frozen_layers(config, model)
  dropouts = ([layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
              if config.dropout is not None else [])
  saved = [(layer, "trainable", layer.trainable) for layer in frozen] + [
      (layer, "rate", layer.rate) for layer in dropouts]
  try:
    for layer in frozen:
      layer.trainable = False
    for layer in dropouts:
      layer.rate = config.dropout
    yield
  finally:
    for layer, name, value in saved:
      setattr(layer, name, value)


def _retrain(model, config, context, callbacks, per_epoch, loss):
  learning_rate = LearningRate(config.learning_rate, config.num_steps,
                               warmup_steps=config.warmup_steps, schedule=config.lr_schedule)
  with context.training_scope():
    optimizer = make_optimizer(config, learning_rate)
    first = first_averaged_step(config, config.num_steps)
    average = (None if first is None else
               WeightAverage(model.trainable_variables, first, masks=_pruning_masks(model)))
  trainer = Trainer(model, optimizer, loss, clip_norm=config.clip_norm, seed=context.seed,
                    strategy=context.strategy)
  sentences = context.train_sentences
  weights = prunable_weights(model)
  sizes = {n: int(np.prod(w.shape)) for n, w in weights.items()}

  def sparsity_scalars(step):  # pylint: disable=unused-argument
    zeros = {n: sizes[n] - np.count_nonzero(w.numpy()) for n, w in weights.items()}
    out = {f"sparsity/{n}": zeros[n] / sizes[n] for n in weights}
    out["sparsity/overall"] = sum(zeros.values()) / max(sum(sizes.values()), 1)
    return out

  os.makedirs(context.variant_dir, exist_ok=True)
  eval_fn = None
  if average is not None and context.valid_sentences and context.source.config.has_softmax:
    valid = context.valid_sentences
    eval_fn = lambda: evaluate_perplexity(  # pylint: disable=unnecessary-lambda-assignment
        model, context.dataset(valid, EVAL_BATCH_SIZE, shuffle=False))
  result = _run(trainer, sentences, config, context, per_epoch, callbacks, sparsity_scalars,
                average, eval_fn)
  return {**result, "num_train_steps": config.num_steps, "steps_per_epoch": per_epoch,
          "num_train_epochs": config.num_steps / per_epoch,
          "budget_given_in": "epochs" if config.num_epochs else "steps",
          "num_replicas": trainer.num_replicas}


def _run(trainer, sentences, config, context, steps_per_epoch, callbacks, sparsity_scalars,
         average, eval_fn=None):
  result = run_training(
      trainer, lambda epoch: context.dataset(sentences, config.batch_size, shuffle=True,
                                             seed=context.seed + epoch),
      run_dir=context.variant_dir, steps_per_epoch=steps_per_epoch, total_steps=config.num_steps,
      log_every_steps=config.log_every_steps,
      checkpoint_every_steps=config.checkpoint_every_steps, callbacks=list(callbacks),
      extra_scalars=sparsity_scalars, tensorboard_dir=context.tensorboard_dir, average=average,
      eval_fn=eval_fn, eval_every_epoch=False)  # only the last step's figures are recorded
  if "valid_perplexity" in result:  # measured at the epoch end, before the averaging
    result["valid_perplexity_before_average"] = result.pop("valid_perplexity")
  return result


def budget_record(budget: Dict, keys: Sequence[str]) -> Dict:
  """The ``keys`` of `retrain`'s result that a variant records, and ``averaged_steps``
  (and ``valid_perplexity_before_average`` with --valid) when its weights are an
  average (--retrain_average_last)."""
  return {k: budget[k] for k in (*keys, "averaged_steps", "valid_perplexity_before_average")
          if k in budget}
