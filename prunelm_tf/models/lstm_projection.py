"""ELMo's LSTM with a projection layer, as one prunable Keras layer.

Weights use ELMo's layout so released files load without reshuffling:
``kernel`` (input_dim + projection_dim, 4 * units) with rows ``[x_t; h_{t-1}]``
and gate columns in the order i, j, f, o; ``bias`` (4 * units) without the
forget bias of +1.0 (added at run time); ``projection`` (units, projection_dim),
no bias. See docs/elmo_format.md, "LSTM".

Why not ``keras.layers.RNN`` with a cell: the input half of the kernel is
applied to all time steps in one large matmul before the loop, so the loop only
does the recurrent half. That halves the work inside the sequential loop, which
dominates on CPU.

Low-rank (``input_rank``, ``recurrent_rank``, ``projection_rank``; see
`prunelm_tf.models.factors`): once either half of the kernel is factorized the
halves are separate weights, ``input_kernel`` (input_dim, 4 * units) and
``recurrent_kernel`` (projection_dim, 4 * units), each dense or as factors
``_a``/``_b``; ``projection`` likewise. Without ranks the weights are ELMo's.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf.models import factors

keras = tf.keras


def _clip(x: tf.Tensor, value: Optional[float]) -> tf.Tensor:
  if value is None:
    return x
  return tf.clip_by_value(x, -value, value)


class LSTMWithProjection(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """One direction of one ELMo LSTM layer over a padded batch.

  Call with ``[inputs, mask]``:
    inputs: float32 [batch, time, input_dim].
    mask: float32 [batch, time], 1.0 at real positions (a prefix of each row).
  Optional ``initial_state=(c, h)`` with c: [batch, units], h: [batch, proj].

  Returns float32 [batch, time, projection_dim] with zeros at padding, or with
  ``return_state=True`` the tuple (outputs, c_final, h_final), where the final
  state of each row is the state after its last real position (a row that is
  all padding keeps its initial state).

  With ``go_backwards=True`` each row is reversed within its own length, so the
  recurrence runs from the last real position to the first and padding is
  never fed in; outputs are written back at their original positions.
  """

  def __init__(self, units: int, projection_units: int, *,
               cell_clip: Optional[float] = None,
               proj_clip: Optional[float] = None,
               forget_bias: float = 1.0,
               go_backwards: bool = False,
               kernel_initializer="glorot_uniform",
               projection_initializer="glorot_uniform",
               input_rank: Optional[int] = None,
               recurrent_rank: Optional[int] = None,
               projection_rank: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.projection_units = int(projection_units)
    self.cell_clip = cell_clip
    self.proj_clip = proj_clip
    self.forget_bias = float(forget_bias)
    self.go_backwards = bool(go_backwards)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.projection_initializer = keras.initializers.get(projection_initializer)
    self.input_rank = None if input_rank is None else int(input_rank)
    self.recurrent_rank = None if recurrent_rank is None else int(recurrent_rank)
    self.projection_rank = None if projection_rank is None else int(projection_rank)

  def build(self, input_shape):
    x_shape = tf.TensorShape(input_shape[0])
    input_dim = x_shape[-1]
    if input_dim is None:
      raise ValueError(f"{self.name}: the last input dimension must be known, got {x_shape}.")
    self.input_dim = int(input_dim)
    if self._split_kernel:
      factors.add_matrix(self, "input_kernel", (self.input_dim, 4 * self.units),
                         self.input_rank, self.kernel_initializer)
      factors.add_matrix(self, "recurrent_kernel", (self.projection_units, 4 * self.units),
                         self.recurrent_rank, self.kernel_initializer)
    else:
      self.kernel = self.add_weight(
          "kernel", shape=(self.input_dim + self.projection_units, 4 * self.units),
          initializer=self.kernel_initializer)
    self.bias = self.add_weight("bias", shape=(4 * self.units,), initializer="zeros")
    factors.add_matrix(self, "projection", (self.units, self.projection_units),
                       self.projection_rank, self.projection_initializer)
    super().build(input_shape)

  @property
  def _split_kernel(self) -> bool:
    return self.input_rank is not None or self.recurrent_rank is not None

  def get_prunable_weights(self):
    if self._split_kernel:
      kernels = factors.parts(self, "input_kernel") + factors.parts(self, "recurrent_kernel")
    else:
      kernels = (self.kernel,)
    return list(kernels + factors.parts(self, "projection"))

  def call(self, inputs, initial_state=None, return_state=False):
    outputs, c_last, h_last = self._scan(inputs, initial_state, collect=False)
    if return_state:
      return outputs, c_last, h_last
    return outputs

  def internals(self, inputs, initial_state=None):
    """What the two prunable matrices multiply, per time step (for calibration).

    Same recurrence, weights and padding rules as ``call`` (one shared loop).

    Args:
      inputs: ``[x, mask]`` as for ``call``: x float32 [batch, time, input_dim],
        mask float32 [batch, time].
      initial_state: optional ``(c, h)`` as for ``call``.

    Returns:
      ``(kernel_inputs, cell_outputs)`` at the original positions (also for
      ``go_backwards``), zeros at padding:
      kernel_inputs: float32 [batch, time, input_dim + projection_dim], the rows
        ``[x_t; h_{t-1}]`` that ``kernel`` multiplies (h_{t-1} is the state
        before step t in the layer's own direction).
      cell_outputs: float32 [batch, time, units], ``o_t * tanh(c_t)`` (c_t
        clipped as the layer clips it), the input of ``projection``; the
        layer's output is ``clip(cell_outputs @ projection, proj_clip)``.
    """
    _, _, _, kernel_inputs, cell_outputs = self._scan(inputs, initial_state, collect=True)
    return kernel_inputs, cell_outputs

  def _scan(self, inputs, initial_state, collect: bool):
    """The recurrence; with ``collect`` also the kernel inputs and cell outputs."""
    x, mask = inputs
    mask = tf.cast(mask, x.dtype)
    lengths = tf.cast(tf.reduce_sum(mask, axis=1), tf.int32)
    if self.go_backwards:
      x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    batch = tf.shape(x)[0]
    if initial_state is None:
      c0 = tf.zeros([batch, self.units], x.dtype)
      h0 = tf.zeros([batch, self.projection_units], x.dtype)
    else:
      c0, h0 = initial_state

    # Input half of the kernel for all steps at once: [batch, time, 4 * units].
    if self._split_kernel:
      x_kernel = factors.parts(self, "input_kernel")
      h_kernel = factors.parts(self, "recurrent_kernel")
    else:
      x_kernel = (self.kernel[:self.input_dim],)
      h_kernel = (self.kernel[self.input_dim:],)
    projection = factors.parts(self, "projection")
    # Time-major first, then one rank-2 matmul (einsum's gradient is slower).
    # The mask is a prefix in both directions (the reversal is within each
    # row's own length).
    x_tm = tf.transpose(x, [1, 0, 2])
    tm_shape = tf.shape(x_tm)
    xw_tm = tf.reshape(
        factors.matmul(tf.reshape(x_tm, [-1, self.input_dim]), x_kernel) + self.bias,
        tf.concat([tm_shape[:2], [4 * self.units]], axis=0))
    mask_tm = tf.transpose(mask, [1, 0])[:, :, tf.newaxis]
    steps = tf.shape(xw_tm)[0]
    arrays = [tf.TensorArray(x.dtype, size=steps, element_shape=h0.shape)]
    if collect:
      arrays.append(tf.TensorArray(x.dtype, size=steps, element_shape=h0.shape))
      arrays.append(tf.TensorArray(x.dtype, size=steps, element_shape=c0.shape))

    def step(t, c_prev, h_prev, arrays):
      z = xw_tm[t] + factors.matmul(h_prev, h_kernel)
      i, j, f, o = tf.split(z, 4, axis=-1)
      c = tf.sigmoid(f + self.forget_bias) * c_prev + tf.sigmoid(i) * tf.tanh(j)
      c = _clip(c, self.cell_clip)
      cell_out = tf.sigmoid(o) * tf.tanh(c)
      h = _clip(factors.matmul(cell_out, projection), self.proj_clip)
      m = mask_tm[t]
      c = m * c + (1.0 - m) * c_prev
      h_out = m * h
      arrays = [arrays[0].write(t, h_out)] + (
          [arrays[1].write(t, m * h_prev), arrays[2].write(t, m * cell_out)] if collect else [])
      h = h_out + (1.0 - m) * h_prev
      return t + 1, c, h, arrays

    _, c_last, h_last, arrays = tf.while_loop(
        lambda t, *_: t < steps, step, (tf.constant(0), c0, h0, arrays),
        maximum_iterations=steps)
    sequences = [tf.transpose(a.stack(), [1, 0, 2]) for a in arrays]
    if collect:
      # [x_t; h_{t-1}], with x zeroed at padding like the other sequences.
      sequences[1] = tf.concat([x * mask[:, :, tf.newaxis], sequences[1]], axis=-1)
    if self.go_backwards:
      sequences = [tf.reverse_sequence(s, lengths, seq_axis=1, batch_axis=0) for s in sequences]
    if collect:
      return (sequences[0], c_last, h_last, sequences[1], sequences[2])
    return sequences[0], c_last, h_last

  def compute_output_shape(self, input_shape):
    x_shape = tf.TensorShape(input_shape[0])
    return x_shape[:-1].concatenate([self.projection_units])

  def get_config(self):
    config = super().get_config()
    config.update(
        units=self.units, projection_units=self.projection_units,
        cell_clip=self.cell_clip, proj_clip=self.proj_clip,
        forget_bias=self.forget_bias, go_backwards=self.go_backwards,
        kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        projection_initializer=keras.initializers.serialize(self.projection_initializer),
        input_rank=self.input_rank, recurrent_rank=self.recurrent_rank,
        projection_rank=self.projection_rank)
    return config
