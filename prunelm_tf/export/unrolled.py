"""A fixed-length, unrolled graph of the biLM's representations (for full-integer TFLite).

Why: the TF 2.21 converter crashes natively when it calibrates the LSTM WHILE
loops for full-integer (int8) quantization (tensorflow/tensorflow#41305;
``benchmarks/int8_crash.py`` reproduces it). With a static sentence length
the time loop can be a Python loop, so the traced graph has no control flow:
every step is a handful of FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD ops that
the int8 quantizer handles. The price is a fixed input length: shorter
sentences are 0-padded to it (and cost as much as a full one), longer ones
are refused.

The graph is built from the layers of the same Keras model (same weights,
any ``BiLMConfig``): the token encoder layers (``char_cnn``, ``highway_{k}``,
``token_projection`` or ``word_embedding``) and ``representations`` are
called as they are (they act on each position independently); only the
recurrence of every ``{direction}_lstm_{l}`` is rewritten, with the weights
and the padding rules of ``LSTMWithProjection``.
"""

from __future__ import annotations

from typing import List

import tensorflow as tf

from prunelm_tf.models import factors
from prunelm_tf.models.lstm_projection import LSTMWithProjection

keras = tf.keras

# The most words a fixed-length export may take: every step is unrolled into
# the graph, so conversion time and file structure grow with it.
MAX_UNROLLED_TOKENS = 512


def check_max_tokens(max_tokens: object, what: str = "max_tokens") -> None:
  """``max_tokens``: words per sentence (without <S> and </S>), 1..MAX_UNROLLED_TOKENS."""
  if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or \
      not 1 <= max_tokens <= MAX_UNROLLED_TOKENS:
    raise ValueError(f"{what} must be an integer in [1, {MAX_UNROLLED_TOKENS}] (words per "
                     f"sentence of the fixed-length int8 export), got {max_tokens!r}.")


def _layer(model: keras.Model, name: str):
  try:
    return model.get_layer(name)
  except ValueError:
    return None


def _n_layers(model: keras.Model) -> int:
  n = 0
  while _layer(model, f"forward_lstm_{n}") is not None:
    n += 1
  return n


def _lstm_weights(layer) -> tuple:
  """(input kernel, recurrent kernel, bias with the forget bias, projection) of one LSTM.

  Each matrix is a tuple of its parts: ``(W,)``, or the two factors ``(A, B)`` of a
  low-rank layer (`prunelm_tf.models.factors`), multiplied in turn.
  """
  if not isinstance(layer, LSTMWithProjection) or not hasattr(layer, "bias"):
    raise ValueError(
        f"layer {layer.name} is a {type(layer).__name__}; the unrolled (int8) export runs "
        "LSTMWithProjection layers only. Export this model with --tflite_quantization=dynamic "
        "instead.")
  d = layer.input_dim
  if getattr(layer, "_split_kernel", False):
    x_kernel = tuple(tf.convert_to_tensor(w) for w in factors.parts(layer, "input_kernel"))
    h_kernel = tuple(tf.convert_to_tensor(w) for w in factors.parts(layer, "recurrent_kernel"))
  else:
    kernel = tf.convert_to_tensor(layer.kernel)
    x_kernel, h_kernel = (kernel[:d],), (kernel[d:],)
  forget = tf.concat([tf.zeros([2 * layer.units]), tf.fill([layer.units], layer.forget_bias),
                      tf.zeros([layer.units])], axis=0)
  projection = tuple(tf.convert_to_tensor(w) for w in factors.parts(layer, "projection"))
  return x_kernel, h_kernel, tf.convert_to_tensor(layer.bias) + forget, projection


# Positions that hold a token in every input of at least one word: <S>, w_1, </S>.
_ALWAYS_REAL = 3


def _clip(x, value):
  return x if value is None else tf.clip_by_value(x, -value, value)


def unrolled_lstm(layer: LSTMWithProjection, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """``layer([x, mask])`` for a static time, as a Python loop over the steps.

  Args:
    layer: a built ``LSTMWithProjection`` (its weights are read, not copied).
    x: float32 [1, time, input_dim] with a static time.
    mask: float32 [1, time], 1.0 at real positions (a prefix of the row).

  Returns:
    float32 [1, time, projection_dim]: the layer's outputs, zeros at padding.

  With ``go_backwards`` the recurrence runs from the last position to the
  first and steps over padding without changing the state, which equals
  ``LSTMWithProjection``'s reversal within the row's own length because the
  padding is a suffix. The forward direction needs no state masking: padding
  comes after every real position, so it can only change outputs at padding,
  which are zeroed.
  """
  time = int(x.shape[1])
  x_kernel, h_kernel, bias, projection = _lstm_weights(layer)
  xw = factors.matmul(tf.reshape(x, [time, layer.input_dim]), x_kernel) + bias  # [time, 4 units]
  c = h = None  # the zero initial state, left out of the first step's graph
  outputs: List[tf.Tensor] = [None] * time
  steps = range(time - 1, -1, -1) if layer.go_backwards else range(time)
  for t in steps:
    # Terms that are constant zeros are not written into the graph: besides
    # saving work, a tensor that is always 0 gets a degenerate int8 scale
    # (range [0, 0]) that XNNPACK refuses to prepare.
    z = xw[t:t + 1] if h is None else xw[t:t + 1] + factors.matmul(h, h_kernel)
    i, j, f, o = tf.split(z, 4, axis=-1)
    c_new = tf.sigmoid(i) * tf.tanh(j)
    if c is not None:
      c_new = tf.sigmoid(f) * c + c_new
    c_new = _clip(c_new, layer.cell_clip)
    h_new = _clip(factors.matmul(tf.sigmoid(o) * tf.tanh(c_new), projection), layer.proj_clip)
    # Positions 0..2 (<S>, the first word, </S> at the latest) are real in
    # every sentence of at least one word, so only later steps need the mask
    # (which would be the constant 1 there).
    if layer.go_backwards and t >= _ALWAYS_REAL and c is not None:
      m = mask[:, t:t + 1]
      c = c + m * (c_new - c)
      h_new = m * h_new
      h = h + m * (h_new - h)
    elif layer.go_backwards and t >= _ALWAYS_REAL:  # the first step: the previous state is 0
      m = mask[:, t:t + 1]
      c, h_new = m * c_new, m * h_new
      h = h_new
    else:
      c, h = c_new, h_new
    outputs[t] = h_new
  return tf.stack(outputs, axis=1) * mask[:, :, tf.newaxis]


def unrolled_representations(model: keras.Model, ids: tf.Tensor) -> tf.Tensor:
  """The representations of ``model`` for ids of a static shape, without WHILE loops.

  Args:
    model: a biLM of ``build_bilm`` (pruning wrappers stripped).
    ids: int32 [1, time] token ids or [1, time, chars] char ids, 0-padded at
      the end, with a static time >= 3.

  Returns:
    float32 [1, n_layers + 1, time - 2, 2 * proj], as ``model``'s
    "representations".
  """
  present = ids > 0
  if ids.shape.rank == 3:
    present = tf.reduce_any(present, axis=-1)
  mask = tf.cast(present, tf.float32)
  if _layer(model, "char_cnn") is not None:
    x = model.get_layer("char_cnn")(ids)
    k = 0
    while _layer(model, f"highway_{k}") is not None:
      x = model.get_layer(f"highway_{k}")(x)
      k += 1
    x = model.get_layer("token_projection")(x)
  else:
    x = model.get_layer("word_embedding")(ids)
  embedding = x * mask[:, :, tf.newaxis]
  n_layers = _n_layers(model)
  if n_layers == 0:
    raise ValueError(f"model {model.name} has no layer forward_lstm_0; it is not a biLM of "
                     "build_bilm.")
  states = {}
  for direction in ("forward", "backward"):
    h = embedding
    for l in range(n_layers):
      out = unrolled_lstm(model.get_layer(f"{direction}_lstm_{l}"), h, mask)
      if _layer(model, f"{direction}_skip_{l}") is not None:
        out = out + h
      states[direction, l] = out
      h = out
  ordered = [states[d, l] for l in range(n_layers) for d in ("forward", "backward")]
  return model.get_layer("representations")([mask, embedding] + ordered)


def unrolled_function(model: keras.Model, max_tokens: int) -> tf.types.experimental.ConcreteFunction:
  """A concrete function ``ids -> {"representations": ...}`` for one fixed sentence length.

  Args:
    model: a biLM of ``build_bilm``.
    max_tokens: words per sentence; the input is int32 [1, max_tokens + 2]
      (token ids) or [1, max_tokens + 2, chars] (char ids), ``<S> words
      </S>`` 0-padded at the end.

  Returns:
    The concrete function, with the input name of ``model`` (``token_ids`` or
    ``char_ids``), as ``saved_model.serving_function`` but with a static time.
  """
  check_max_tokens(max_tokens)
  spec = model.inputs[0]
  name = spec.name.split(":")[0]
  shape = [1, max_tokens + 2] + spec.shape[2:].as_list()
  if any(d is None for d in shape):
    raise ValueError(f"model input {name} has shape {spec.shape}; the unrolled export needs a "
                     "known chars dimension.")

  @tf.function(input_signature=[tf.TensorSpec(shape, tf.int32, name=name)])
  def serve(ids):
    return {"representations": unrolled_representations(model, ids)}

  return serve.get_concrete_function()
