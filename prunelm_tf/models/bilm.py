"""The ELMo-faithful bidirectional LM as a functional Keras model.

Layer names are stable and used by ELMo import/export and by per-layer
pruning overrides:

  char inputs:  ``char_cnn``, ``highway_{k}``, ``token_projection``
  word inputs:  ``word_embedding``
  both:         ``forward_lstm_{l}``, ``backward_lstm_{l}``, ``softmax``

Matrices named in ``config.ranks`` are held as two low-rank factors in the same
layers (`prunelm_tf.models.factors`); the layer names do not change.

Model inputs (0 is batch padding in both; every row is ``<S> words </S>``):
  ``token_ids`` int32 [batch, time]: vocabulary index + 1 (word models; also
    the LM targets of char models), or
  ``char_ids`` int32 [batch, time, max_chars] (char models), ELMo ids + 1.

Model outputs (a dict):
  ``representations`` float32 [batch, n_layers + 1, time - 2, 2 * proj]
  ``forward_hidden``/``backward_hidden`` float32 [batch, time, proj]: top
    layer states fed to the softmax (after dropout in training).
  ``forward_logits``/``backward_logits`` float32 [batch, time, vocab] (only
    when vocab_size > 0): position t of the forward direction predicts token
    t + 1, position t of the backward direction predicts token t - 1.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from prunelm_tf.models.char_cnn import CharCNN, GatherTokens, Highway, UniqueTokens
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.models.factors import FactorizedDense
from prunelm_tf.models.layers import (ApplyMask, LayerRepresentations, ScalarMix,
                                      SharedSoftmax, TokenMask)
from prunelm_tf.models.lstm_projection import LSTMWithProjection

keras = tf.keras

CUSTOM_OBJECTS = {
    "CharCNN": CharCNN,
    "Highway": Highway,
    "UniqueTokens": UniqueTokens,
    "GatherTokens": GatherTokens,
    "LSTMWithProjection": LSTMWithProjection,
    "TokenMask": TokenMask,
    "ApplyMask": ApplyMask,
    "LayerRepresentations": LayerRepresentations,
    "SharedSoftmax": SharedSoftmax,
    "ScalarMix": ScalarMix,
    "FactorizedDense": FactorizedDense,
}


def input_name(config: BiLMConfig) -> str:
  """The name of the model's single input."""
  return "char_ids" if config.token_encoder == "char" else "token_ids"


def build_bilm(config: BiLMConfig, *, batch_size=None, unique_tokens: bool = True) -> keras.Model:
  """Builds the biLM; see the module docstring for inputs and outputs.

  Args:
    config: the architecture.
    batch_size: a static batch size (TFLite needs 1), or None.
    unique_tokens: char models only: run the character CNN, highway and token
      projection once per distinct token of a batch and gather the results
      (same values and weights, several times faster on real text). False
      runs them at every position (kept for the throughput benchmark).

  Returns:
    A built functional ``keras.Model`` named "bilm".
  """
  if config.token_encoder == "word" and not config.has_softmax:
    raise ValueError("a word-input biLM needs vocab_size > 0 to size its embedding table.")
  if config.token_encoder == "char":
    ids = keras.Input((None, config.char_cnn.max_characters_per_token), batch_size=batch_size,
                      dtype=tf.int32, name="char_ids")
    # The token encoder runs once per distinct token of the batch (UniqueTokens).
    if unique_tokens:
      unique, index = UniqueTokens(name="unique_tokens")(ids)
    else:
      unique, index = ids, None
    x = CharCNN(config.char_cnn.filters, config.char_cnn.embedding_dim,
                n_characters=config.char_cnn.n_characters,
                activation=config.char_cnn.activation, name="char_cnn")(unique)
    for k in range(config.char_cnn.n_highway):
      x = Highway(carry_rank=config.rank_of(f"highway_{k}/carry_kernel"),
                  transform_rank=config.rank_of(f"highway_{k}/transform_kernel"),
                  name=f"highway_{k}")(x)
    rank = config.rank_of("token_projection/kernel")
    if rank is None:
      x = keras.layers.Dense(config.projection_dim, name="token_projection")(x)
    else:
      x = FactorizedDense(config.projection_dim, rank, name="token_projection")(x)
    if unique_tokens:
      x = GatherTokens(name="gather_tokens")([x, index])
  else:
    ids = keras.Input((None,), batch_size=batch_size, dtype=tf.int32, name="token_ids")
    x = keras.layers.Embedding(config.vocab_size + 1, config.projection_dim,
                               name="word_embedding")(ids)
  mask = TokenMask(name="token_mask")(ids)
  embedding = ApplyMask(name="token_embedding")([x, mask])

  layer_outputs = []
  tops = {}
  for direction in ("forward", "backward"):
    h = embedding
    outputs = []
    for l in range(config.n_layers):
      dropped = keras.layers.Dropout(config.dropout, name=f"{direction}_dropout_{l}")(h)
      layer = f"{direction}_lstm_{l}"
      out = LSTMWithProjection(
          config.lstm_dim, config.projection_dim, cell_clip=config.cell_clip,
          proj_clip=config.proj_clip, go_backwards=direction == "backward",
          input_rank=config.rank_of(f"{layer}/input_kernel"),
          recurrent_rank=config.rank_of(f"{layer}/recurrent_kernel"),
          projection_rank=config.rank_of(f"{layer}/projection"),
          name=layer)([dropped, mask])
      if config.use_skip_connections and l > 0:
        out = keras.layers.Add(name=f"{direction}_skip_{l}")([out, h])
      outputs.append(out)
      h = out
    layer_outputs.append(outputs)
    tops[direction] = keras.layers.Dropout(config.dropout, name=f"{direction}_top_dropout")(h)

  states = [t for pair in zip(*layer_outputs) for t in pair]
  representations = LayerRepresentations(name="representations")([mask, embedding] + states)
  outputs: Dict[str, tf.Tensor] = {
      "representations": representations,
      "forward_hidden": tops["forward"],
      "backward_hidden": tops["backward"],
  }
  if config.has_softmax:
    fwd_logits, bwd_logits = SharedSoftmax(config.vocab_size,
                                           rank=config.rank_of("softmax/kernel"),
                                           name="softmax")(
        [tops["forward"], tops["backward"]])
    outputs["forward_logits"] = fwd_logits
    outputs["backward_logits"] = bwd_logits
  return keras.Model(ids, outputs, name="bilm")


def representation_model(model: keras.Model) -> keras.Model:
  """A view of ``model`` (shared weights) that returns only the representations."""
  return keras.Model(model.inputs, model.output["representations"], name="bilm_representations")


def output_model(model: keras.Model, keys) -> keras.Model:
  """A view of ``model`` (shared weights) returning the dict of ``keys``."""
  return keras.Model(model.inputs, {k: model.output[k] for k in keys}, name="bilm_view")


def lm_targets(token_ids: tf.Tensor):
  """LM targets and weights from the padded token ids.

  Args:
    token_ids: int32 [batch, time], vocabulary index + 1, 0 = padding.

  Returns:
    ``(forward_targets, backward_targets, weights)``, each [batch, time - 1]:
    forward position t (t < time - 1) predicts token t + 1; backward position
    t + 1 predicts token t. Targets are vocabulary indices (padding → 0 with
    weight 0). ``weights`` is float32, 1.0 for real predictions.
  """
  weights = tf.cast(token_ids[:, 1:] > 0, tf.float32)
  forward_targets = tf.maximum(token_ids[:, 1:] - 1, 0)
  backward_targets = tf.maximum(token_ids[:, :-1] - 1, 0)
  return forward_targets, backward_targets, weights


def lm_token_losses(outputs: Dict[str, tf.Tensor], token_ids: tf.Tensor):
  """Summed negative log-likelihood per direction with the full softmax.

  Returns ``(forward_nll_sum, backward_nll_sum, num_predictions)``; the mean
  per-token loss of a direction is its sum divided by ``num_predictions``.
  """
  fwd_t, bwd_t, weights = lm_targets(token_ids)
  fwd = tf.nn.sparse_softmax_cross_entropy_with_logits(fwd_t, outputs["forward_logits"][:, :-1])
  bwd = tf.nn.sparse_softmax_cross_entropy_with_logits(bwd_t, outputs["backward_logits"][:, 1:])
  return (tf.reduce_sum(fwd * weights), tf.reduce_sum(bwd * weights), tf.reduce_sum(weights))
