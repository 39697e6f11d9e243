"""Small layers of the biLM graph: masks, representations, softmax, ScalarMix.

Every layer here implements ``PrunableLayer`` (weightless ones return no
weights) so that ``tfmot.sparsity.keras.prune_low_magnitude`` accepts the whole
functional biLM, not only hand-picked layers.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf.models import factors

keras = tf.keras
_Prunable = tfmot.sparsity.keras.PrunableLayer


class TokenMask(keras.layers.Layer, _Prunable):
  """1.0 at real token positions, 0.0 at batch padding.

  Input: token ids int32 [batch, time] or char ids int32 [batch, time, chars]
  (0 = padding in both). Output: float32 [batch, time].
  """

  def get_prunable_weights(self):
    return []

  def call(self, ids):
    present = ids > 0
    if ids.shape.rank == 3:
      present = tf.reduce_any(present, axis=-1)
    return tf.cast(present, tf.float32)


class ApplyMask(keras.layers.Layer, _Prunable):
  """Zeroes padding positions: ``x * mask[..., None]``."""

  def get_prunable_weights(self):
    return []

  def call(self, inputs):
    x, mask = inputs
    return x * mask[:, :, tf.newaxis]


class LayerRepresentations(keras.layers.Layer, _Prunable):
  """Stacks ELMo's layer outputs and drops the BOS/EOS positions.

  Inputs: ``[mask, embedding, fwd_1, bwd_1, ..., fwd_L, bwd_L]`` with mask
  float32 [batch, time] and the others float32 [batch, time, proj].
  Output: float32 [batch, L + 1, time - 2, 2 * proj]; layer 0 is
  ``[e; e]``, layer k is ``[fwd_k; bwd_k]``. Position j is the j-th word of the
  sentence; positions at or beyond a sentence's word count are zero.
  """

  def get_prunable_weights(self):
    return []

  def call(self, inputs):
    mask, embedding, *states = inputs
    layers = [tf.concat([embedding, embedding], axis=-1)]
    for fwd, bwd in zip(states[0::2], states[1::2]):
      layers.append(tf.concat([fwd, bwd], axis=-1))
    stacked = tf.stack(layers, axis=1)  # [batch, L + 1, time, 2 * proj]
    # Without BOS (first position) and EOS (last real position of each row).
    words = stacked[:, :, 1:-1]
    word_mask = mask[:, 2:]  # 1 for the first (length - 2) positions
    return words * word_mask[:, tf.newaxis, :, tf.newaxis]


class SharedSoftmax(keras.layers.Layer, _Prunable):
  """One softmax over the vocabulary for both directions (as ELMo).

  Inputs: ``[forward_top, backward_top]``, float32 [batch, time, proj] each.
  Outputs: ``(forward_logits, backward_logits)``, float32 [batch, time, vocab].
  Both directions go through one matmul (concatenated along the batch) so a
  pruning wrapper sees exactly one call per training step. With ``rank`` the
  kernel is held as factors ``kernel_a``/``kernel_b`` (`prunelm_tf.models.factors`).
  """

  def __init__(self, vocab_size: int, rank=None, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size = int(vocab_size)
    self.rank = None if rank is None else int(rank)

  def build(self, input_shape):
    dim = int(input_shape[0][-1])
    factors.add_matrix(self, "kernel", (dim, self.vocab_size), self.rank,
                       keras.initializers.GlorotUniform())
    self.bias = self.add_weight("bias", shape=(self.vocab_size,), initializer="zeros")
    super().build(input_shape)

  def get_prunable_weights(self):
    return list(factors.parts(self, "kernel"))

  def call(self, inputs):
    forward, backward = inputs
    both = tf.concat([forward, backward], axis=0)
    kernel = factors.parts(self, "kernel")
    if len(kernel) == 1:
      logits = tf.einsum("btd,dv->btv", both, kernel[0]) + self.bias
    else:
      logits = tf.einsum("btr,rv->btv", tf.einsum("btd,dr->btr", both, kernel[0]),
                         kernel[1]) + self.bias
    return tuple(tf.split(logits, 2, axis=0))

  def get_config(self):
    config = super().get_config()
    config.update(vocab_size=self.vocab_size, rank=self.rank)
    return config


class ScalarMix(keras.layers.Layer):
  """ELMo's task-specific layer mix: ``gamma * sum_j softmax(s)_j * h_j``.

  Input: float32 [batch, n_layers + 1, time, dim] (the biLM representations),
  optionally with a mask float32 [batch, time] for ``do_layer_norm``.
  Output: float32 [batch, time, dim].
  """

  def __init__(self, do_layer_norm: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.do_layer_norm = bool(do_layer_norm)

  def build(self, input_shape):
    shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and \
        isinstance(input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
    n_layers = int(shape[1])
    self.scalar_parameters = self.add_weight("scalar_parameters", shape=(n_layers,),
                                             initializer="zeros")
    self.gamma = self.add_weight("gamma", shape=(), initializer="ones")
    super().build(input_shape)

  def call(self, inputs):
    if isinstance(inputs, (list, tuple)):
      layers, mask = inputs
    else:
      layers, mask = inputs, None
    if self.do_layer_norm:
      if mask is None:
        raise ValueError("ScalarMix(do_layer_norm=True) needs [layers, mask] as input.")
      m = mask[:, tf.newaxis, :, tf.newaxis]
      count = tf.maximum(tf.reduce_sum(m, axis=[2, 3], keepdims=True) *
                         tf.cast(tf.shape(layers)[-1], layers.dtype), 1.0)
      mean = tf.reduce_sum(layers * m, axis=[2, 3], keepdims=True) / count
      var = tf.reduce_sum(((layers - mean) * m) ** 2, axis=[2, 3], keepdims=True) / count
      layers = (layers - mean) / tf.sqrt(var + 1e-12)
    weights = tf.nn.softmax(self.scalar_parameters)
    return self.gamma * tf.einsum("blti,l->bti", layers, weights)

  def get_config(self):
    config = super().get_config()
    config.update(do_layer_norm=self.do_layer_norm)
    return config
