"""Pruning with retraining: tfmot ``prune_low_magnitude`` with a schedule per layer."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

from prunelm_tf.compression.options import option
from prunelm_tf.compression.shared.targets import prunable_weights

keras = tf.keras
sparsity_api = tfmot.sparsity.keras

SCHEDULES = ("polynomial", "constant")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """tfmot pruning schedule (steps are optimizer steps of the retraining).

  The target it reaches is the variant's target sparsity (one sweep value),
  given when the schedule is made (`make_schedule`), not stored here.
  """

  # "polynomial" (tfmot PolynomialDecay) or "constant" (ConstantSparsity).
  kind: str = option("polynomial", "tfmot schedule: PolynomialDecay or ConstantSparsity.",
                     flag="schedule", choices=SCHEDULES)
  # Sparsity when pruning starts (polynomial only; capped at the target).
  initial_sparsity: float = option(0.0, "PolynomialDecay initial sparsity, in [0, 1).",
                                   flag="initial_sparsity", lower=0.0)
  # First step at which masks are updated.
  begin_step: int = option(0, "First optimizer step that updates the masks.", flag="begin_step",
                           lower=0)
  # Step at which the target is reached (polynomial only).
  end_step: int = option(1000, "Step at which the target sparsity is reached.",
                         flag="end_step", lower=1)
  # Exponent of the polynomial ramp (3 = prune fast early, slow late).
  power: float = option(3.0, "PolynomialDecay exponent (> 0).", flag="power")
  # Masks are updated every this many steps.
  frequency: int = option(100, "Masks are updated every this many steps (>= 1).",
                          flag="frequency")

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise ValueError(f"--schedule must be one of {SCHEDULES}, got {self.kind!r}.")
    if not 0.0 <= self.initial_sparsity < 1.0:
      raise ValueError(f"--initial_sparsity must be in [0, 1), got {self.initial_sparsity}.")
    if self.begin_step < 0:
      raise ValueError(f"--begin_step must be >= 0, got {self.begin_step}.")
    if self.kind == "polynomial" and self.begin_step >= self.end_step:
      raise ValueError(f"--begin_step ({self.begin_step}) must be < --end_step "
                       f"({self.end_step}): the schedule needs at least one step to ramp up.")
    if self.frequency < 1:
      raise ValueError(f"--frequency must be >= 1 (masks updated every N steps), got "
                       f"{self.frequency}.")
    if self.power <= 0:
      raise ValueError(f"--power must be > 0, got {self.power}.")


def make_schedule(config: ScheduleConfig, final_sparsity: float):
  """The tfmot schedule of ``config`` with ``final_sparsity`` as its target."""
  if config.kind == "constant":
    return sparsity_api.ConstantSparsity(final_sparsity, begin_step=config.begin_step,
                                         frequency=config.frequency)
  return sparsity_api.PolynomialDecay(
      initial_sparsity=min(config.initial_sparsity, final_sparsity),
      final_sparsity=final_sparsity, begin_step=config.begin_step, end_step=config.end_step,
      power=config.power, frequency=config.frequency)


def layer_targets(model: keras.Model, targets: Dict[str, float]) -> Dict[str, float]:
  """One target per layer from per-weight targets.

  tfmot applies one schedule per wrapped layer, so every prunable weight of a
  layer must share its target under retraining.

  Raises:
    ValueError: two weights of one layer were given different targets.
  """
  per_layer: Dict[str, float] = {}
  for name in prunable_weights(model):
    layer = name.split("/")[0]
    value = targets[name]
    if layer in per_layer and not math.isclose(per_layer[layer], value):
      raise ValueError(
          f"--method=retrain prunes each layer with one tfmot schedule, but the weights of layer "
          f"{layer!r} got different targets ({per_layer[layer]} and {value} for {name}). Give "
          f"the whole layer one value (e.g. '{layer}=...'), or use --method=threshold, which "
          "prunes each weight separately.")
    per_layer[layer] = value
  return per_layer


def wrap_for_pruning(model: keras.Model, schedule: ScheduleConfig,
                     targets: Dict[str, float]) -> keras.Model:
  """A copy of ``model`` (weights copied) with tfmot wrappers on every layer to prune.

  Layers whose target is 0 are left unwrapped (not pruned at all).
  """
  per_layer = layer_targets(model, targets)

  def clone(layer):
    target = per_layer.get(layer.name, 0.0)
    if target <= 0.0:
      return layer.__class__.from_config(layer.get_config())
    return sparsity_api.prune_low_magnitude(
        layer.__class__.from_config(layer.get_config()),
        pruning_schedule=make_schedule(schedule, target))

  wrapped = keras.models.clone_model(model, clone_function=clone)
  wrapped.set_weights(_weights_for(wrapped, model))
  return wrapped


class KeepMasks(pruning_schedule.PruningSchedule):
  """A tfmot schedule that never changes the masks: they were set from a one-shot start.

  tfmot applies one schedule (one sparsity) per wrapped layer and prunes each of
  the layer's weights to it, which would undo a per-matrix allocation (an LSTM's
  kernel, recurrent kernel and projection get different targets). With this
  schedule the masks given to `wrap_for_pruning(..., keep_masks=True)` stay as
  they are and retraining only updates the surviving weights.
  """

  def __init__(self, sparsity: float):
    self.sparsity = float(sparsity)

  def __call__(self, step):
    del step
    return tf.constant(False), tf.constant(self.sparsity, dtype=tf.float32)

  def get_config(self):
    return {"class_name": self.__class__.__name__, "config": {"sparsity": self.sparsity}}


def wrap_keeping_masks(model: keras.Model) -> keras.Model:
  """A copy of ``model`` whose zero weights stay zero while it retrains (fixed masks).

  Every layer with a zero in a prunable matrix is wrapped; its masks are
  ``weight != 0`` and never updated (`KeepMasks`), so each matrix keeps the
  exact sparsity the one-shot method gave it.
  """
  zeros = {n: w.numpy() == 0 for n, w in prunable_weights(model).items()}
  per_layer: Dict[str, float] = {}
  for name, mask in zeros.items():
    layer = name.split("/")[0]
    per_layer.setdefault(layer, 0.0)
    per_layer[layer] = max(per_layer[layer], float(mask.mean()))

  def clone(layer):
    if per_layer.get(layer.name, 0.0) <= 0.0:
      return layer.__class__.from_config(layer.get_config())
    return sparsity_api.prune_low_magnitude(
        layer.__class__.from_config(layer.get_config()),
        pruning_schedule=KeepMasks(per_layer[layer.name]))

  wrapped = keras.models.clone_model(model, clone_function=clone)
  wrapped.set_weights(_weights_for(wrapped, model))
  for layer in wrapped.layers:
    for weight, mask, _ in getattr(getattr(layer, "pruning_obj", None), "_pruning_vars", ()):
      name = f"{layer.layer.name}/{weight.name.split('/')[-1].split(':')[0]}"
      mask.assign(np.logical_not(zeros[name]).astype(mask.dtype.as_numpy_dtype))
  return wrapped


def _weights_for(wrapped: keras.Model, dense: keras.Model):
  """Dense weights in the order of the wrapped model's weights (wrappers add mask/threshold/step)."""
  dense_by_name = {w.name: w.numpy() for w in dense.weights}
  values = []
  for w in wrapped.weights:
    name = w.name.replace("prune_low_magnitude_", "")
    if name in dense_by_name:
      values.append(dense_by_name[name])
    else:  # tfmot state: masks start at 1, thresholds at 0, step at -1
      values.append(w.numpy())
  return values


def strip(model: keras.Model) -> keras.Model:
  """``strip_pruning``: the plain biLM with the final (masked) weights."""
  return sparsity_api.strip_pruning(model)
