"""Perplexity of a biLM as a TFLite artifact, quantization included.

The representation files that ship (``prunelm_tf.export.tflite``) have no
softmax, so they have no perplexity. This module converts a second graph, the
"LM TFLite", with the same converter settings plus the shared softmax, and
runs it with the LiteRT interpreter: the perplexity of a quantized variant is
then that of its quantized weights, not of the float Keras model.

The LM graph returns only the log-probability of each target token (the
log-softmax gathered at the target inside the graph), so the output is
[1, 2, time - 1] instead of two [1, time, vocab] logit tensors. Targets and
weights are those of ``prunelm_tf.models.lm_targets``, so summing the negated
outputs gives exactly the NLL sums of ``lm_token_losses`` and perplexities
comparable with ``prunelm_tf.training.loop.evaluate_perplexity``.

Typical use::

  model, _, vocab = load_run(run_dir)
  export_lm_tflite(model, f"{run_dir}/lm_dynamic.tflite", "dynamic")
  tflite_perplexity(f"{run_dir}/lm_dynamic.tflite", sentences, vocab)["mean"]
"""

from __future__ import annotations

import math
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tqdm

from prunelm_tf import data as data_lib
from prunelm_tf.export.tflite import make_converter
from prunelm_tf.models.bilm import lm_targets, output_model
from prunelm_tf.utils.files import atomic_path
from prunelm_tf.utils import progress as progress_lib

keras = tf.keras

LM_QUANTIZATION_MODES = ("none", "dynamic", "float16")

# Output names of the LM graph; the interpreter tells them apart by dtype.
TARGET_LOG_PROBS = "target_log_probs"
VOCAB_SIZE = "vocab_size"


def _check_lm_quantization(quantization: str) -> None:
  if quantization == "int8":
    raise ValueError(
        "quantization='int8' (full-integer) is not supported for the LM TFLite: calibrating "
        "the LSTM WHILE loops crashes the TF 2.21 converter (tensorflow/tensorflow#41305). "
        "Use 'dynamic' (int8 weights, float activations) or 'float16'.")
  if quantization not in LM_QUANTIZATION_MODES:
    raise ValueError(f"unknown LM TFLite quantization mode {quantization!r}; choose from "
                     f"{', '.join(LM_QUANTIZATION_MODES)}.")


def _check_has_softmax(model: keras.Model) -> None:
  outputs = model.output if isinstance(model.output, dict) else {}
  if "forward_logits" not in outputs or "backward_logits" not in outputs:
    raise ValueError(
        f"perplexity needs a softmax, but model {model.name!r} has outputs "
        f"{sorted(outputs) or model.output_names} without forward_logits/backward_logits "
        "(BiLMConfig.vocab_size is 0); evaluate a biLM built with vocab_size > 0.")


def _target_log_probs(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
  """log softmax(logits)[..., target]: [batch, n, vocab], [batch, n] -> [batch, n]."""
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  vocab_size = tf.shape(logits)[-1]
  positions = tf.range(tf.size(targets))
  # A flat GATHER is a plain TFLite builtin; gather with batch_dims is not
  # supported by every runtime version.
  flat = tf.gather(tf.reshape(log_probs, [-1]),
                   positions * vocab_size + tf.reshape(targets, [-1]))
  return tf.reshape(flat, tf.shape(targets))


def lm_serving_function(model: keras.Model,
                        batch_size: Optional[int] = 1) -> tf.types.experimental.ConcreteFunction:
  """A concrete function returning the log-probability of every LM target.

  Word-input models take one input, ``token_ids`` int32 [batch, time];
  char-input models take ``char_ids`` int32 [batch, time, max_chars] and, for
  the targets, ``token_ids`` int32 [batch, time]. Rows are ``<S> words </S>``
  (model ids, vocabulary index + 1), 0-padded.

  Returns (a dict):
    ``target_log_probs``: float32 [batch, 2, time - 1]. Row 0 (forward) at
      position t is log p(token t + 1 | tokens <= t); row 1 (backward) at t is
      log p(token t | tokens > t). Entries whose target is padding are 0, so
      ``-sum(row)`` is the direction's NLL sum of ``lm_token_losses``.
    ``vocab_size``: int32 [1], the softmax width, to check the vocabulary.

  Raises:
    ValueError: the model has no softmax.
  """
  _check_has_softmax(model)
  view = output_model(model, ["forward_logits", "backward_logits"])
  spec = model.inputs[0]
  ids_spec = tf.TensorSpec([batch_size] + spec.shape[1:].as_list(), tf.int32,
                           name=spec.name.split(":")[0])
  token_spec = tf.TensorSpec([batch_size, None], tf.int32, name="token_ids")

  def log_probs(inputs, token_ids):
    logits = view(inputs, training=False)
    forward_targets, backward_targets, weights = lm_targets(token_ids)
    forward = _target_log_probs(logits["forward_logits"][:, :-1], forward_targets)
    backward = _target_log_probs(logits["backward_logits"][:, 1:], backward_targets)
    return {TARGET_LOG_PROBS: tf.stack([forward * weights, backward * weights], axis=1),
            VOCAB_SIZE: tf.shape(logits["forward_logits"])[-1:]}

  if spec.shape.rank == 3:
    @tf.function(input_signature=[ids_spec, token_spec])
    def serve_chars(char_ids, token_ids):
      return log_probs(char_ids, token_ids)
    return serve_chars.get_concrete_function()

  @tf.function(input_signature=[ids_spec])
  def serve_words(token_ids):
    return log_probs(token_ids, token_ids)
  return serve_words.get_concrete_function()


def convert_lm_to_tflite(model: keras.Model, quantization: str = "none") -> bytes:
  """Converts the biLM with its softmax (see ``lm_serving_function``) to TFLite.

  The converter settings are those of ``prunelm_tf.export.tflite`` (batch 1,
  dynamic time, builtin ops only), so the shared layers are quantized exactly
  like the shipped representation file, and the softmax the same way.

  Args:
    model: a biLM from ``build_bilm`` with vocab_size > 0 (pruning wrappers
      stripped).
    quantization: "none" (float32), "dynamic" (int8 weights, float
      activations) or "float16" (float16 weights).

  Returns:
    The flatbuffer bytes.

  Raises:
    ValueError: the mode is unknown or "int8", or the model has no softmax.
  """
  _check_lm_quantization(quantization)
  return make_converter(lm_serving_function(model, batch_size=1), model, quantization).convert()


def export_lm_tflite(model: keras.Model, path: str, quantization: str = "none") -> int:
  """Converts with ``convert_lm_to_tflite`` and writes ``path`` atomically.

  Returns:
    The file size in bytes.
  """
  flatbuffer = convert_lm_to_tflite(model, quantization)
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(flatbuffer)
  return len(flatbuffer)


class _TFLiteLM:
  """Runs an LM TFLite file one sentence at a time, reallocating only on a new length."""

  def __init__(self, model_path: str, num_threads: int):
    if not os.path.isfile(model_path):
      raise FileNotFoundError(f"LM TFLite file {model_path} does not exist; write it with "
                              "export_lm_tflite().")
    from ai_edge_litert.interpreter import Interpreter  # heavy; only when used
    try:
      self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
    except ValueError as e:
      raise ValueError(f"{model_path} is not a readable TFLite model ({e}).") from e
    inputs = {len(d["shape"]): d for d in self.interpreter.get_input_details()
              if d["dtype"] == np.int32}
    outputs = self.interpreter.get_output_details()
    log_probs = [d for d in outputs if d["dtype"] == np.float32 and len(d["shape"]) == 3]
    vocab_size = [d for d in outputs if d["dtype"] == np.int32 and len(d["shape"]) == 1]
    n_inputs = len(self.interpreter.get_input_details())
    if 2 not in inputs or n_inputs != len(inputs) or len(log_probs) != 1 or \
        len(vocab_size) != 1:
      found = [(tuple(d["shape_signature"]), np.dtype(d["dtype"]).name) for d in outputs]
      raise ValueError(
          f"{model_path} is not an LM TFLite file (inputs of ranks {sorted(inputs)}, outputs "
          f"{found}); expected int32 token ids [1, time] (and char ids [1, time, chars]) in, "
          "target log-probs [1, 2, time - 1] and vocab size [1] out. The representation files "
          "of export_tflite() have no softmax; write an LM file with export_lm_tflite().")
    self._token_input = inputs[2]
    self._char_input = inputs.get(3)
    self._log_probs = log_probs[0]
    self._time: Optional[int] = None
    # A probe sentence of vocabulary index 0 only (valid for any vocabulary)
    # reads the softmax width before real ids could index past the tables.
    chars = self.max_characters_per_token
    self(np.ones([1, 2], np.int32),
         None if chars is None else data_lib.sentence_to_char_ids([], chars)[np.newaxis])
    self.vocab_size = int(self.interpreter.get_tensor(vocab_size[0]["index"])[0])

  @property
  def max_characters_per_token(self) -> Optional[int]:
    """Chars per token of a char-input model, or None for word input."""
    return None if self._char_input is None else int(self._char_input["shape"][-1])

  def __call__(self, token_ids: np.ndarray, char_ids: Optional[np.ndarray]) -> np.ndarray:
    """int32 [1, time] (and [1, time, chars]) -> float32 [1, 2, time - 1]."""
    feeds = [(self._token_input, token_ids)]
    if self._char_input is not None:
      feeds.append((self._char_input, char_ids))
    if token_ids.shape[1] != self._time:
      for detail, value in feeds:
        self.interpreter.resize_tensor_input(detail["index"], value.shape)
      self.interpreter.allocate_tensors()
      self._time = token_ids.shape[1]
    for detail, value in feeds:
      self.interpreter.set_tensor(detail["index"], value)
    self.interpreter.invoke()
    return self.interpreter.get_tensor(self._log_probs["index"])


def tflite_perplexity(tflite_path: str, sentences: Sequence[Sequence[str]],
                      vocab: data_lib.Vocabulary, *, num_threads: int = 2,
                      max_sentences: int = 0, progress: bool = True) -> Dict[str, float]:
  """Full-softmax perplexity of an LM TFLite file (``export_lm_tflite``).

  Sentences are encoded as ``make_dataset`` does (``<S> words </S>``, model
  id = vocabulary index + 1, unknown words -> ``<UNK>``) and run one at a
  time, shortest first, so the interpreter reallocates once per distinct
  length. NLL sums are accumulated in float64.

  Args:
    tflite_path: the LM TFLite file.
    sentences: tokenized sentences (without ``<S>``/``</S>``).
    vocab: the vocabulary the model was trained with.
    num_threads: interpreter threads.
    max_sentences: evaluate only the first this many sentences; 0 = all.
    progress: show a progress bar.

  Returns:
    {"forward", "backward", "mean", "num_predictions"} as
    ``evaluate_perplexity``: "mean" is exp of the mean of both directions'
    per-token NLL; num_predictions (per direction) is sum(len + 1).

  Raises:
    ValueError: no sentences, a bad argument, not an LM TFLite file, or a
      vocabulary whose size differs from the model's softmax.
    FileNotFoundError: no file at ``tflite_path``.
  """
  if isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 0:
    raise ValueError(f"max_sentences must be an integer >= 0 (0 = all sentences), got "
                     f"{max_sentences!r}.")
  if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
    raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}.")
  chosen: List[Sequence[str]] = list(sentences[:max_sentences] if max_sentences else sentences)
  if not chosen:
    raise ValueError("tflite_perplexity needs at least one sentence, got 0; check the corpus "
                     "path and max_sentences.")
  runner = _TFLiteLM(tflite_path, num_threads)
  if runner.vocab_size != len(vocab):
    raise ValueError(
        f"the vocabulary has {len(vocab)} tokens but the softmax of {tflite_path} has "
        f"{runner.vocab_size}; pass the vocabulary (vocab.txt) the model was trained with.")
  max_chars = runner.max_characters_per_token
  forward_nll = backward_nll = 0.0
  num_predictions = 0
  start = time.perf_counter()
  for index in tqdm.tqdm(sorted(range(len(chosen)), key=lambda k: len(chosen[k])),
                         unit="sentence", desc="LM TFLite", disable=progress_lib.bar_disabled(not progress)):
    tokens = chosen[index]
    token_ids = data_lib.encode_sentence(tokens, vocab)[np.newaxis]
    char_ids = (None if max_chars is None else
                data_lib.sentence_to_char_ids(tokens, max_chars)[np.newaxis])
    log_probs = runner(token_ids, char_ids)
    forward_nll -= float(log_probs[0, 0].sum(dtype=np.float64))
    backward_nll -= float(log_probs[0, 1].sum(dtype=np.float64))
    num_predictions += len(tokens) + 1
  result = {"forward": math.exp(forward_nll / num_predictions),
            "backward": math.exp(backward_nll / num_predictions),
            "mean": math.exp((forward_nll + backward_nll) / (2 * num_predictions)),
            "num_predictions": num_predictions}
  logging.info("LM TFLite %s: perplexity %.3f (forward %.3f, backward %.3f) over %d sentences, "
               "%d predictions per direction, in %.1f s.", tflite_path, result["mean"],
               result["forward"], result["backward"], len(chosen), num_predictions,
               time.perf_counter() - start)
  return result
