"""ELMo layer representations of tokenized sentences, stateless or stateful.

Two runtimes share one interface (``embed_batch``, ``iter_embeddings``,
``embed_sentences``):

* ``ElmoEmbedder`` runs a Keras biLM (an imported ELMo model or a training
  run of ``pipelines.train``, char or word input). Stateless (the default)
  starts every sentence from a zero LSTM state. Stateful reproduces
  ``allennlp elmo`` and bilm-tf: every
  (direction, layer) keeps (c, h) per batch row across calls; row r of a batch
  starts from the final state of row r of the previous batch (forward: after
  EOS, backward: after BOS); rows a batch does not fill, or fills with padding
  only, keep their state.
* ``TFLiteElmoEmbedder`` runs a TFLite export with the LiteRT interpreter,
  one sentence at a time, stateless only.

Every embedding is float32 [n_layers + 1, n_tokens, 2 * projection_dim]:
layer 0 is the token embedding twice, layer k the forward and backward
outputs of LSTM layer k (BOS and EOS dropped).
"""

from __future__ import annotations

import abc
import os
from typing import Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.export.tflite import TFLiteBiLM
from prunelm_tf.elmo.weights import load_elmo
from prunelm_tf.models.bilm import representation_model
from prunelm_tf.models.config import BiLMConfig

keras = tf.keras

DIRECTIONS = ("forward", "backward")


class Embedder(abc.ABC):
  """Embeds batches of tokenized sentences (see the module docstring)."""

  #: Whether LSTM states carry over from one batch to the next.
  stateful: bool = False

  @abc.abstractmethod
  def embed_batch(self, sentences: Sequence[Sequence[str]]) -> List[np.ndarray]:
    """Embeds one batch; sentence i is row i (which matters when stateful).

    Args:
      sentences: tokenized sentences (without ``<S>``/``</S>``).

    Returns:
      One float32 [n_layers + 1, len(sentences[i]), 2 * proj] array each.
    """

  def iter_embeddings(self, sentences: Sequence[Sequence[str]],
                      batch_size: int = 64) -> Iterator[Tuple[int, np.ndarray]]:
    """Embeds all ``sentences``, yielding ``(index, embedding)`` pairs.

    Stateful embedders take consecutive batches in input order (row r of
    batch k is sentence ``k * batch_size + r``, as the reference tools do).
    Stateless ones may sort the sentences by length first, which cuts
    padding; the pairs then come in that order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    order = self._processing_order(sentences)
    for start in range(0, len(order), batch_size):
      indices = order[start:start + batch_size]
      for index, embedding in zip(indices, self.embed_batch([sentences[i] for i in indices])):
        yield index, embedding

  def embed_sentences(self, sentences: Sequence[Sequence[str]],
                      batch_size: int = 64) -> List[np.ndarray]:
    """Like ``iter_embeddings`` but returns the embeddings in input order."""
    out: List[Optional[np.ndarray]] = [None] * len(sentences)
    for index, embedding in self.iter_embeddings(sentences, batch_size):
      out[index] = embedding
    return out

  def _processing_order(self, sentences) -> List[int]:
    if self.stateful:
      return list(range(len(sentences)))
    return sorted(range(len(sentences)), key=lambda i: len(sentences[i]))


class ElmoEmbedder(Embedder):
  """Embeds sentences with a Keras biLM from ``build_bilm``.

  Args:
    model: the biLM (pruning wrappers stripped for stateful mode).
    config: its architecture.
    vocab: the vocabulary of a word-input model (ignored for char input).
    stateful: carry LSTM states across batches (module docstring).
  """

  def __init__(self, model: keras.Model, config: BiLMConfig, *,
               vocab: Optional[data_lib.Vocabulary] = None, stateful: bool = False):
    if config.token_encoder == "word" and vocab is None:
      raise ValueError("a word-input biLM needs its vocabulary (vocab.txt of the run folder) "
                       "to map tokens to ids; pass vocab=.")
    self.model = model
    self.config = config
    self.vocab = vocab
    self.stateful = bool(stateful)
    if config.token_encoder == "char":
      ids_spec = tf.TensorSpec([None, None, config.char_cnn.max_characters_per_token],
                               tf.int32)
    else:
      ids_spec = tf.TensorSpec([None, None], tf.int32)
    if self.stateful:
      self._states = self._zero_states(0)
      self._run = self._build_stateful(ids_spec)
    else:
      reps = representation_model(model)
      self._run = tf.function(lambda ids: reps(ids, training=False), input_signature=[ids_spec])

  @classmethod
  def from_elmo(cls, options_file: str, weight_file: str, **kwargs) -> "ElmoEmbedder":
    """An embedder of a released ELMo model (options.json + HDF5 weights)."""
    model, config = load_elmo(options_file, weight_file)
    return cls(model, config, **kwargs)

  @classmethod
  def from_run_dir(cls, model_dir: str, **kwargs) -> "ElmoEmbedder":
    """An embedder of a ``pipelines.train`` run folder's final model, or of a
    ``pipelines.compress`` variant folder (``RUN/variants/NAME``, ``RUN/dense``),
    with that variant's own architecture and vocabulary."""
    # Imported here: the training stack is heavy and only this path needs it.
    from prunelm_tf.compression.run_folder import locate_variant
    located = locate_variant(model_dir)
    if located is not None:
      from prunelm_tf.export.saved_model import load_saved_model
      folder = located[1]
      config, vocab, _ = folder.read_description()
      return cls(load_saved_model(folder.saved_model), config, vocab=vocab, **kwargs)
    from prunelm_tf.training.run_folder import load_run
    model, config, vocab = load_run(model_dir)
    return cls(model, config, vocab=vocab, **kwargs)

  @property
  def n_layers(self) -> int:
    """Representation layers per sentence: LSTM layers + 1."""
    return self.config.n_layers + 1

  @property
  def output_dim(self) -> int:
    return self.config.output_dim

  def reset_states(self) -> None:
    """Sets every stored LSTM state back to zero (stateful mode)."""
    self._states = self._zero_states(0)

  def encode(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """Model input ids of a batch, 0-padded.

    Returns:
      int32 [batch, max_n + 2, max_chars] char ids (+1-shifted) for char
      models, or int32 [batch, max_n + 2] token ids (vocabulary index + 1)
      for word models.
    """
    if self.config.token_encoder == "char":
      rows = [data_lib.sentence_to_char_ids(s, self.config.char_cnn.max_characters_per_token)
              for s in sentences]
    else:
      rows = [data_lib.encode_sentence(s, self.vocab) for s in sentences]
    if not rows:
      raise ValueError("encode needs at least one sentence.")
    ids = np.zeros((len(rows), max(len(r) for r in rows)) + rows[0].shape[1:], np.int32)
    for i, r in enumerate(rows):
      ids[i, :len(r)] = r
    return ids

  def embed_ids(self, ids: np.ndarray) -> np.ndarray:
    """Runs the biLM on encoded ids (as from ``encode``).

    Rows that are entirely 0 are padding rows: in stateful mode they keep
    their stored state. Rows beyond ``ids.shape[0]`` keep theirs too.

    Args:
      ids: int32 [batch, time, max_chars] or [batch, time], each non-padding
        row ``<S> words </S>`` then zeros.

    Returns:
      float32 [batch, n_layers + 1, time - 2, 2 * proj], zero past each
      sentence's words.
    """
    ids = np.asarray(ids, np.int32)
    if not self.stateful:
      return self._run(ids).numpy()
    batch = ids.shape[0]
    if batch > self._states[0][0].shape[0]:
      grown = self._zero_states(batch)
      for (c, h), (old_c, old_h) in zip(grown, self._states):
        c[:old_c.shape[0]], h[:old_h.shape[0]] = old_c, old_h
      self._states = grown
    initial = [(c[:batch], h[:batch]) for c, h in self._states]
    reps, finals = self._run(ids, initial)
    for (c, h), (new_c, new_h) in zip(self._states, finals):
      c[:batch], h[:batch] = new_c.numpy(), new_h.numpy()
    return reps.numpy()

  def embed_batch(self, sentences: Sequence[Sequence[str]]) -> List[np.ndarray]:
    if not sentences:
      return []
    reps = self.embed_ids(self.encode(sentences))
    return [reps[i, :, :len(s)] for i, s in enumerate(sentences)]

  def _zero_states(self, rows: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    return [(np.zeros((rows, self.config.lstm_dim), np.float32),
             np.zeros((rows, self.config.projection_dim), np.float32))
            for _ in DIRECTIONS for _ in range(self.config.n_layers)]

  def _build_stateful(self, ids_spec: tf.TensorSpec):
    """A tf.function ``(ids, states) -> (representations, final states)``.

    States are ordered forward layers 0..L-1, then backward layers 0..L-1,
    each ``(c [batch, lstm_dim], h [batch, proj])``.
    """
    model, config = self.model, self.config
    try:
      # The token embedding (padding zeroed) and the mask as the model computes them.
      embed = keras.Model(model.inputs, [model.get_layer("token_embedding").output,
                                         model.get_layer("token_mask").output])
      lstms = [model.get_layer(f"{d}_lstm_{l}") for d in DIRECTIONS
               for l in range(config.n_layers)]
      assemble = model.get_layer("representations")
    except ValueError as e:
      raise ValueError(
          f"stateful embedding runs the biLM's layers one by one and needs build_bilm's layer "
          f"names ({e}); strip pruning wrappers with tfmot.sparsity.keras.strip_pruning "
          "first.") from e
    state_spec = [(tf.TensorSpec([None, config.lstm_dim], tf.float32),
                   tf.TensorSpec([None, config.projection_dim], tf.float32))
                  for _ in lstms]

    @tf.function(input_signature=[ids_spec, state_spec])
    def run(ids, states):
      embedding, mask = embed(ids, training=False)
      outputs, finals = {}, []
      k = 0
      for d in DIRECTIONS:
        x = embedding
        for l in range(config.n_layers):
          out, c, h = lstms[k]([x, mask], initial_state=tuple(states[k]), return_state=True)
          # The recurrence used h before the skip connection, and so do the
          # stored states (bilm-tf's ResidualWrapper, AllenNLP's ElmoLstm).
          if config.use_skip_connections and l > 0:
            out = out + x
          outputs[d, l] = out
          finals.append((c, h))
          x = out
          k += 1
      layers = [outputs[d, l] for l in range(config.n_layers) for d in DIRECTIONS]
      return assemble([mask, embedding] + layers), finals

    return run


class TFLiteElmoEmbedder(Embedder):
  """Embeds sentences with a TFLite biLM (char-id input), one at a time.

  Args:
    tflite_file: a flatbuffer whose input is int32 char ids
      [1, time, max_chars] (+1-shifted, ``<S> words </S>``) and whose output
      is float32 [1, n_layers + 1, time - 2, 2 * proj].
    num_threads: interpreter threads.
  """

  stateful = False

  def __init__(self, tflite_file: str, *, num_threads: int = 1):
    self._runner = TFLiteBiLM(tflite_file, num_threads=num_threads)
    if self._runner.input_rank != 3:
      raise ValueError(
          f"{tflite_file} takes token ids [1, time]; embedding text needs a char-id input "
          "[1, time, max_chars]. Word-input (token id) TFLite models cannot embed text "
          "without their vocabulary; use --model_dir for those.")
    signature = self._runner.input_shape_signature
    self.max_characters_per_token = signature[2]
    # A converter may fix the time dimension; sentences are then padded to it.
    self._fixed_time = None if signature[1] == -1 else signature[1]
    if self._fixed_time is not None and self._fixed_time < 3:
      raise ValueError(
          f"{tflite_file} has a fixed time dimension of {self._fixed_time}; a sentence needs "
          "at least 3 positions (<S>, one token, </S>). Export it with a dynamic time "
          "dimension (export_tflite does).")
    self.tflite_file = tflite_file

  def _embed_one(self, tokens: Sequence[str]) -> np.ndarray:
    ids = data_lib.sentence_to_char_ids(tokens, self.max_characters_per_token)[np.newaxis]
    if self._fixed_time is not None:
      if ids.shape[1] > self._fixed_time:
        raise ValueError(
            f"{self.tflite_file} takes at most {self._fixed_time - 2} tokens per sentence "
            f"(fixed time dimension {self._fixed_time}); got {len(tokens)}. Export it with a "
            "dynamic time dimension or split the sentence.")
      ids = np.pad(ids, [(0, 0), (0, self._fixed_time - ids.shape[1]), (0, 0)])
    return np.array(self._runner(ids)[0, :, :len(tokens)], np.float32)

  def embed_batch(self, sentences: Sequence[Sequence[str]]) -> List[np.ndarray]:
    return [self._embed_one(s) for s in sentences]

  def _processing_order(self, sentences) -> List[int]:
    return list(range(len(sentences)))


def check_model_source(*, options_file: str = "", weight_file: str = "", model_dir: str = "",
                       tflite_file: str = "", stateful: bool = False) -> None:
  """Checks that the arguments name exactly one model source (see ``open_embedder``).

  Raises:
    ValueError: not exactly one source, half of an ELMo pair, or stateful
      with TFLite.
  """
  sources = [name for name, given in (("options_file/weight_file", options_file or weight_file),
                                      ("model_dir", model_dir), ("tflite_file", tflite_file))
             if given]
  if len(sources) != 1:
    raise ValueError(
        f"give exactly one model: options_file with weight_file (a released ELMo model), "
        f"model_dir (a pipelines.train run folder) or tflite_file; got "
        f"{', '.join(sources) if sources else 'none'}.")
  if (options_file or weight_file) and not (options_file and weight_file):
    missing = "weight_file" if options_file else "options_file"
    raise ValueError(f"an ELMo model is two files; {missing} is missing. Pass the "
                     "options.json and the HDF5 weight file released together.")
  if tflite_file and stateful:
    raise ValueError(
        "stateful embedding is not available with tflite_file: the TFLite export runs one "
        "sentence at a time from a zero state and exposes no LSTM states. Embed "
        "statelessly, or use options_file/weight_file or model_dir for stateful mode.")


def open_embedder(*, options_file: str = "", weight_file: str = "", model_dir: str = "",
                  tflite_file: str = "", stateful: bool = False) -> Embedder:
  """The embedder of exactly one model source.

  Args:
    options_file, weight_file: a released ELMo model (both needed).
    model_dir: a run folder of ``pipelines.train`` (char or word input).
    tflite_file: a TFLite export with char-id input (stateless only).
    stateful: carry LSTM states across batches (not with ``tflite_file``).

  Raises:
    ValueError: see ``check_model_source``; plus the errors of the chosen
      loader (missing files, malformed or mismatching models).
  """
  check_model_source(options_file=options_file, weight_file=weight_file, model_dir=model_dir,
                     tflite_file=tflite_file, stateful=stateful)
  if options_file:
    return ElmoEmbedder.from_elmo(options_file, weight_file, stateful=stateful)
  if model_dir:
    return ElmoEmbedder.from_run_dir(model_dir, stateful=stateful)
  logging.info("Embedding with TFLite model %s (stateless, one sentence at a time).",
               tflite_file)
  return TFLiteElmoEmbedder(tflite_file)
