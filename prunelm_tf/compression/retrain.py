"""Pruning with retraining: tfmot ``prune_low_magnitude`` with a schedule per layer."""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf.compression.config import ScheduleConfig
from prunelm_tf.compression.targets import prunable_weights

keras = tf.keras
sparsity_api = tfmot.sparsity.keras


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
