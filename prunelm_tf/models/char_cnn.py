"""ELMo's character CNN and highway layers (docs/elmo_format.md, "Character CNN")."""

from __future__ import annotations

from typing import Sequence, Tuple

import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf.models import factors

keras = tf.keras


class CharCNN(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """Character embedding, filter banks, max over positions, activation.

  Input: char_ids int32 [batch, time, max_chars], already shifted by +1 so 0
  means "no token". Output: float32 [batch, time, sum(counts)].

  Weights (ELMo names in brackets): ``char_embedding`` (n_characters - 1, dim)
  [char_embed] -- a zero row is prepended at run time for id 0;
  ``kernel_{i}`` (width_i, dim, count_i) [CNN/W_cnn_i without its leading 1];
  ``bias_{i}`` (count_i,) [CNN/b_cnn_i].

  The filter kernels are prunable. The character embedding is not: it is a few
  thousand parameters that every token reads, so pruning it saves nothing and
  costs accuracy.
  """

  def __init__(self, filters: Sequence[Tuple[int, int]], embedding_dim: int,
               n_characters: int = 262, activation: str = "relu", **kwargs):
    super().__init__(**kwargs)
    self.filters = tuple((int(w), int(n)) for w, n in filters)
    self.embedding_dim = int(embedding_dim)
    self.n_characters = int(n_characters)
    self.activation = activation
    self._activation_fn = keras.activations.get(activation)

  def build(self, input_shape):
    self.max_chars = int(input_shape[-1])
    # The weight file always holds the 261 real characters; run time uses 262
    # ids (0 = padding) whatever options.json says.
    self.char_embedding = self.add_weight(
        "char_embedding", shape=(261, self.embedding_dim),
        initializer=keras.initializers.RandomUniform(-1.0, 1.0))
    self.kernels, self.biases = [], []
    for i, (width, count) in enumerate(self.filters):
      self.kernels.append(self.add_weight(
          f"kernel_{i}", shape=(width, self.embedding_dim, count),
          initializer=keras.initializers.RandomNormal(
              stddev=(1.0 / (width * self.embedding_dim)) ** 0.5)))
      self.biases.append(self.add_weight(f"bias_{i}", shape=(count,),
                                         initializer="zeros"))
    super().build(input_shape)

  def get_prunable_weights(self):
    return list(self.kernels)

  def call(self, char_ids):
    shape = tf.shape(char_ids)
    flat_ids = tf.reshape(char_ids, [-1, self.max_chars])
    table = tf.concat([tf.zeros([1, self.embedding_dim], self.char_embedding.dtype),
                       self.char_embedding], axis=0)
    chars = tf.gather(table, flat_ids)  # [batch * time, max_chars, dim]
    banks = []
    for kernel, bias in zip(self.kernels, self.biases):
      conv = tf.nn.conv1d(chars, kernel, stride=1, padding="VALID") + bias
      banks.append(self._activation_fn(tf.reduce_max(conv, axis=1)))
    out = tf.concat(banks, axis=-1)
    return tf.reshape(out, tf.concat([shape[:2], [self.n_filters]], axis=0))

  @property
  def n_filters(self) -> int:
    return sum(n for _, n in self.filters)

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape[:2]).concatenate([self.n_filters])

  def get_config(self):
    config = super().get_config()
    config.update(filters=[list(f) for f in self.filters],
                  embedding_dim=self.embedding_dim,
                  n_characters=self.n_characters, activation=self.activation)
    return config


class UniqueTokens(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """The distinct tokens of a batch, so the character path runs once per token type.

  Input: char_ids int32 [batch, time, max_chars]. Outputs ``(unique, index)``:
  ``unique`` int32 [1, n_unique, max_chars], the distinct rows of the batch
  (batch padding, the all-zero row, is one of them), and ``index`` int32
  [batch, time] with ``char_ids[b, t] == unique[0, index[b, t]]``.

  Why: the char CNN and highway layers are per-token functions, and a PTB
  batch of 64 sentences holds ~1,600 positions but only ~600 distinct tokens
  (and padding), so running them on the distinct rows and gathering the
  results (`GatherTokens`) gives the same values for a fraction of the work,
  in training (the gather's gradient sums over repeats) and in embedding.
  Reference ELMo implementations cache token embeddings for the same reason.

  With a static batch of 1 (the TFLite export), there is nothing to gain and
  TFLite's UNIQUE op takes 1-D input only: every position is its own row.
  """

  def get_prunable_weights(self):
    return []

  def call(self, char_ids):
    shape = tf.shape(char_ids)
    if char_ids.shape[0] == 1:
      return char_ids, tf.reshape(tf.range(shape[1], dtype=tf.int32), [1, -1])
    flat = tf.reshape(char_ids, [-1, shape[2]])
    unique, index = tf.raw_ops.UniqueV2(x=flat, axis=tf.constant([0], tf.int64),
                                        out_idx=tf.int32)
    unique.set_shape([None, char_ids.shape[-1]])
    return unique[tf.newaxis], tf.reshape(index, shape[:2])

  def compute_output_shape(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    return (tf.TensorShape([1, None, input_shape[-1]]), input_shape[:2])


class GatherTokens(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """Per-position values from per-distinct-token values (see `UniqueTokens`).

  Inputs ``[values, index]``: values float32 [1, n_unique, dim], index int32
  [batch, time]. Output float32 [batch, time, dim].
  """

  def get_prunable_weights(self):
    return []

  def call(self, inputs):
    values, index = inputs
    return tf.gather(values[0], index)

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape[1]).concatenate(tf.TensorShape(input_shape[0])[-1:])


class Highway(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """ELMo highway layer: ``g * relu(x Wt + bt) + (1 - g) * x``, g = sigmoid(x Wc + bc).

  ELMo's naming is kept: the "carry" gate multiplies the transformed branch.
  Weights: ``carry_kernel``/``carry_bias`` [W_carry/b_carry] and
  ``transform_kernel``/``transform_bias`` [W_transform/b_transform]. With
  ``carry_rank``/``transform_rank`` a kernel is held as factors ``_a``/``_b``
  (`prunelm_tf.models.factors`).
  """

  def __init__(self, carry_rank=None, transform_rank=None, **kwargs):
    super().__init__(**kwargs)
    self.carry_rank = None if carry_rank is None else int(carry_rank)
    self.transform_rank = None if transform_rank is None else int(transform_rank)

  def build(self, input_shape):
    dim = int(input_shape[-1])
    factors.add_matrix(self, "carry_kernel", (dim, dim), self.carry_rank,
                       keras.initializers.GlorotUniform())
    # A negative carry bias starts the layer close to the identity (as bilm-tf).
    self.carry_bias = self.add_weight("carry_bias", shape=(dim,),
                                      initializer=keras.initializers.Constant(-2.0))
    factors.add_matrix(self, "transform_kernel", (dim, dim), self.transform_rank,
                       keras.initializers.GlorotUniform())
    self.transform_bias = self.add_weight("transform_bias", shape=(dim,), initializer="zeros")
    super().build(input_shape)

  def get_prunable_weights(self):
    return list(factors.parts(self, "carry_kernel") + factors.parts(self, "transform_kernel"))

  def call(self, x):
    # Rank-2 matmuls: the gradient of einsum("...i,ij->...j") took ~10x the
    # time of the whole character CNN in training (measured on a PTB batch).
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, x.shape[-1]])
    gate = tf.sigmoid(factors.matmul(flat, factors.parts(self, "carry_kernel")) + self.carry_bias)
    transformed = tf.nn.relu(factors.matmul(flat, factors.parts(self, "transform_kernel"))
                             + self.transform_bias)
    return tf.reshape(gate * transformed + (1.0 - gate) * flat, shape)

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)

  def get_config(self):
    config = super().get_config()
    config.update(carry_rank=self.carry_rank, transform_rank=self.transform_rank)
    return config
