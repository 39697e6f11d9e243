"""Low-rank factorized matrices inside the biLM's layers (``BiLMConfig.ranks``).

A factorized matrix ``W`` [m, n] of rank r is held as two weights, ``<name>_a``
[m, r] and ``<name>_b`` [r, n], and applied as two matmuls ``(x A) B``: r (m + n)
parameters and multiply-adds per row instead of m n. A dense matrix keeps its
single weight ``<name>``, so a config without ranks builds exactly ELMo's
layout (same weight names and order).

Whole-model surgery (reading and writing a biLM's matrices by their
`factorizable_matrices` name, rebuilding with other ranks, multiplying the factors
back for formats that hold dense matrices only) is in ``models.surgery``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_model_optimization as tfmot

keras = tf.keras


def add_matrix(layer: keras.layers.Layer, name: str, shape: Tuple[int, int],
               rank: Optional[int], initializer) -> None:
  """Adds matrix ``name`` to ``layer``: weight ``name``, or factors ``name_a``, ``name_b``.

  The weights become attributes of ``layer`` of the same names.
  """
  def fresh():
    # One initializer instance per weight: an unseeded Keras initializer called
    # twice returns identical values (and warns).
    init = keras.initializers.get(initializer)
    return init.__class__.from_config(init.get_config())

  if rank is None:
    setattr(layer, name, layer.add_weight(name, shape=tuple(shape), initializer=fresh()))
    return
  setattr(layer, f"{name}_a", layer.add_weight(f"{name}_a", shape=(shape[0], rank),
                                               initializer=fresh()))
  setattr(layer, f"{name}_b", layer.add_weight(f"{name}_b", shape=(rank, shape[1]),
                                               initializer=fresh()))


def parts(layer: keras.layers.Layer, name: str) -> Tuple[tf.Variable, ...]:
  """The weights of matrix ``name`` of ``layer``: ``(W,)`` or ``(A, B)``."""
  if f"{name}_a" in layer.__dict__:
    return (getattr(layer, f"{name}_a"), getattr(layer, f"{name}_b"))
  return (getattr(layer, name),)


def matmul(x: tf.Tensor, factors: Sequence[tf.Tensor]) -> tf.Tensor:
  """``x @ W`` for rank-2 ``x`` [rows, m]: one matmul, or two for ``(A, B)``."""
  for f in factors:
    x = tf.matmul(x, f)
  return x


class FactorizedDense(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """``x A B + bias``: a Dense layer whose kernel is factorized (no activation).

  Input float32 [..., in]; output float32 [..., units]. Weights ``kernel_a``
  [in, rank], ``kernel_b`` [rank, units], ``bias`` [units]. Used for the token
  projection when ``BiLMConfig.ranks`` names ``token_projection/kernel``.
  """

  def __init__(self, units: int, rank: int, **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.rank = int(rank)

  def build(self, input_shape):
    dim = int(input_shape[-1])
    add_matrix(self, "kernel", (dim, self.units), self.rank,
               keras.initializers.GlorotUniform())
    self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros")
    super().build(input_shape)

  def get_prunable_weights(self):
    return list(parts(self, "kernel"))

  def call(self, x):
    # Rank-2 matmuls (TFLite FULLY_CONNECTED), as Highway does.
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, x.shape[-1]])
    out = matmul(flat, parts(self, "kernel")) + self.bias
    return tf.reshape(out, tf.concat([shape[:-1], [self.units]], axis=0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, rank=self.rank)
    return config
