"""A biLM with only some of its LSTM layers (LD-Net layer selection), and what they cost."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Tuple

import tensorflow as tf

from prunelm_tf.compression.shared.units import check_kept
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig, weight_shapes

keras = tf.keras

DIRECTIONS = ("forward", "backward")


def select_layers(model: keras.Model, config: BiLMConfig, kept: Sequence[int]
                  ) -> Tuple[keras.Model, BiLMConfig]:
  """A new biLM with only LSTM layers ``kept`` (in order, both directions); others unchanged.

  Kept layer ``kept[i]`` becomes layer i; the new layer 0 reads the token
  embedding and has no skip connection (as every first layer).

  Raises:
    ValueError: no layer kept, indices out of range or repeated.
  """
  kept = check_kept("LSTM layers", kept, config.n_layers).tolist()
  new_config = dataclasses.replace(config, n_layers=len(kept))
  new = build_bilm(new_config)
  for layer in new.layers:
    if not layer.weights:
      continue
    source = layer.name
    for d in DIRECTIONS:
      if layer.name.startswith(f"{d}_lstm_"):
        source = f"{d}_lstm_{kept[int(layer.name.rsplit('_', 1)[1])]}"
    layer.set_weights(model.get_layer(source).get_weights())
  return new, new_config


def lstm_parameters(config: BiLMConfig) -> int:
  """Parameters of every LSTM layer (kernels, biases, projections) of ``config``."""
  return sum(math.prod(shape) for n, shape, _ in weight_shapes(config) if "_lstm_" in n)
