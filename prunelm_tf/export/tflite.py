"""TFLite export of the biLM's representations and reloading with LiteRT.

The converted graph takes one sentence (batch 1) and returns its layer
representations. In the modes "none", "dynamic" and "float16" the time
dimension stays dynamic and the LSTM loops become TFLite WHILE loops of
builtin ops. "int8" (full-integer) converts a fixed-length graph whose time
loop is unrolled (``export.unrolled``): the TF 2.21 converter crashes
calibrating WHILE loops (tensorflow/tensorflow#41305). Its input has a static
time ``max_tokens + 2``; ``TFLiteBiLM`` pads shorter sentences and refuses
longer ones. No Flex (select TF) ops are allowed, so a model that would need
them fails at conversion instead of on the phone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from prunelm_tf.export.saved_model import serving_function
from prunelm_tf.export.unrolled import check_max_tokens, unrolled_function
from prunelm_tf.models.config import MAX_CHARACTERS_PER_TOKEN
from prunelm_tf.utils.files import atomic_path

keras = tf.keras

QUANTIZATION_MODES = ("none", "dynamic", "float16", "int8")

# Words per sentence of the fixed-length "int8" export unless told otherwise:
# above the 99th percentile of PTB valid/test (47-48 words) and every SST-2
# sentence (52), so the benchmark's texts fit; every sentence costs this many
# unrolled steps, however short it is.
DEFAULT_INT8_MAX_TOKENS = 64


def check_quantization_mode(mode: str) -> None:
  if mode not in QUANTIZATION_MODES:
    raise ValueError(f"unknown TFLite quantization mode {mode!r}; choose from "
                     f"{', '.join(QUANTIZATION_MODES)}.")


def make_converter(fn, model: keras.Model, quantization: str) -> tf.lite.TFLiteConverter:
  """A converter of concrete function ``fn`` with builtin ops only and the mode's weight types.

  No SELECT_TF_OPS: a graph that would need Flex ops fails at conversion, not on
  the phone. "int8" allows int8 builtins only (an op without an int8 kernel
  fails the conversion rather than silently staying float) and also needs a
  representative dataset (set by the caller).
  """
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantization != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if quantization == "int8":
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  return converter


class SentenceTooLong(ValueError):
  """A sentence has more words than a fixed-length (int8) export takes."""


def pad_to_time(ids: np.ndarray, time: int, what: str = "ids") -> np.ndarray:
  """int32 ids [1, t(, chars)] 0-padded at the end to [1, time(, chars)].

  Raises:
    ValueError: not int32 [1, t(, chars)]; SentenceTooLong (a ValueError): t >
      time (the sentence does not fit the fixed-length export; the message
      names its length and the limit).
  """
  ids = np.asarray(ids)
  if ids.dtype != np.int32 or ids.ndim not in (2, 3) or ids.shape[0] != 1:
    raise ValueError(f"{what} must be int32 [1, time] or [1, time, chars], got {ids.dtype} "
                     f"{list(ids.shape)}.")
  if ids.shape[1] > time:
    raise SentenceTooLong(f"{what} hold {ids.shape[1] - 2} words but the fixed-length int8 export "
                     f"takes at most {time - 2} (time {time} with <S> and </S>); export with a "
                     "larger --tflite_int8_max_tokens or split the sentence.")
  out = np.zeros((1, time) + ids.shape[2:], np.int32)
  out[:, :ids.shape[1]] = ids
  return out


def int8_calibration(representative_inputs: Optional[Callable[[], Iterable[np.ndarray]]],
                     max_tokens: int) -> List[np.ndarray]:
  """The representative dataset of an "int8" conversion, checked, padded to ``max_tokens + 2``.

  Every unrolled step has tensors of its own with int8 ranges of their own,
  and a step beyond the calibration sentences' lengths would see nothing but
  padding (ranges [0, 0], which XNNPACK refuses). So besides the sentences
  themselves (0-padded) the dataset holds full-length windows ``<S> w_k ..
  w_{k + max_tokens - 1} </S>`` of their words run together (repeated if they
  hold fewer than ``max_tokens`` words).

  Args:
    representative_inputs: a callable yielding int32 ids [1, time(, chars)],
      one sentence ``<S> words </S>`` each, at most ``max_tokens`` words.
    max_tokens: words per sentence of the fixed-length graph.

  Raises:
    ValueError: no representative inputs, none at all, or one that is longer
      than ``max_tokens`` words (each message says which and the fix).
  """
  check_max_tokens(max_tokens, "tflite_int8_max_tokens")
  if representative_inputs is None:
    raise ValueError("int8 (full-integer) quantization needs representative_inputs: sentences "
                     "of real text (e.g. --calibration) to measure the activation ranges.")
  sentences = [np.asarray(x) for x in representative_inputs()]
  inputs = [pad_to_time(x, max_tokens + 2, f"representative input {k}")
            for k, x in enumerate(sentences)]
  if not inputs:
    raise ValueError("int8 (full-integer) quantization got an empty representative dataset; "
                     "give at least one calibration sentence (e.g. --calibration).")
  words = np.concatenate([x[0, 1:-1] for x in sentences], axis=0)
  if len(words):
    if len(words) < max_tokens:
      words = np.concatenate([words] * (max_tokens // len(words) + 1), axis=0)
    bos, eos = sentences[0][0, :1], sentences[0][0, -1:]
    for k in range(0, len(words) - max_tokens + 1, max_tokens):
      inputs.append(np.concatenate([bos, words[k:k + max_tokens], eos], axis=0)[np.newaxis])
  return inputs


def convert_to_tflite(model: keras.Model, quantization: str = "none", *,
                      representative_inputs: Optional[Callable[[], Iterable[np.ndarray]]] = None,
                      max_tokens: int = DEFAULT_INT8_MAX_TOKENS) -> bytes:
  """Converts the representations of ``model`` to a TFLite flatbuffer.

  Args:
    model: a biLM from ``build_bilm`` (pruning wrappers stripped).
    quantization: "none" (float32), "dynamic" (int8 weights, float
      activations), "float16" (float16 weights), or "int8" (full-integer:
      int8 weights and activations, int32 ids in, float32 representations
      out; a fixed-length unrolled graph, see the module docstring).
    representative_inputs: for "int8": a callable yielding int32 input arrays
      of shape [1, time(, chars)] drawn from real text, each at most
      ``max_tokens`` words (padded here).
    max_tokens: for "int8": words per sentence of the fixed-length graph.

  Returns:
    The flatbuffer bytes.

  Raises:
    ValueError: unknown mode; for "int8", missing or too long representative
      inputs, or a model the unrolled graph cannot run.
  """
  check_quantization_mode(quantization)
  if quantization != "int8":
    return make_converter(serving_function(model, batch_size=1), model, quantization).convert()
  inputs = int8_calibration(representative_inputs, max_tokens)
  converter = make_converter(unrolled_function(model, max_tokens), model, quantization)
  converter.representative_dataset = lambda: ([x] for x in inputs)
  return converter.convert()


class ConverterCrashed(RuntimeError):
  """The TFLite converter died (a native crash), not a Python error."""


def export_tflite(model: keras.Model, path: str, quantization: str = "none", *,
                  representative_inputs: Optional[Callable[[], Iterable[np.ndarray]]] = None,
                  saved_model_dir: Optional[str] = None,
                  max_tokens: int = DEFAULT_INT8_MAX_TOKENS) -> int:
  """Converts and writes atomically; returns the file size in bytes.

  "int8" (a fixed-length graph of ``max_tokens`` words, see
  ``convert_to_tflite``) is converted in a child process from
  ``saved_model_dir`` (the model's exported SavedModel), so that a native
  crash of the quantizer (as on the WHILE loops, tensorflow/tensorflow#41305)
  is reported instead of taking the whole compression run with it. Its
  representative inputs are checked here, before the child starts.

  Raises:
    ValueError: bad mode or int8 inputs (see ``int8_calibration``).
    ConverterCrashed: the converter failed or crashed; nothing is written.
  """
  check_quantization_mode(quantization)
  if quantization == "int8":
    if saved_model_dir is None:
      raise ValueError("int8 export needs saved_model_dir, the model's exported SavedModel.")
    inputs = int8_calibration(representative_inputs, max_tokens)
    flatbuffer = _convert_int8_in_child(saved_model_dir, inputs, max_tokens)
  else:
    flatbuffer = convert_to_tflite(model, quantization)
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(flatbuffer)
  return len(flatbuffer)


def _convert_int8_in_child(saved_model_dir: str, inputs: List[np.ndarray],
                           max_tokens: int) -> bytes:
  with tempfile.TemporaryDirectory() as tmp:
    calibration = os.path.join(tmp, "calibration.npz")
    np.savez(calibration, *inputs)
    out = os.path.join(tmp, "model.tflite")
    proc = subprocess.run(
        [sys.executable, "-m", "prunelm_tf.export.tflite_int8", saved_model_dir, calibration, out,
         str(max_tokens)],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      # TF's C++ start-up log lines say nothing about the failure.
      tail = [line for line in (proc.stderr or "").strip().splitlines()
              if not re.match(r"^[IWE]\d{4} ", line) and "absl::InitializeLog" not in line][-3:]
      raise ConverterCrashed(
          f"int8 (full-integer) TFLite conversion of the unrolled {max_tokens}-word graph failed "
          f"with exit code {proc.returncode}"
          f"{' (a native crash)' if proc.returncode < 0 else ''}: {' | '.join(tail)}. "
          "Use --tflite_quantization=dynamic (int8 weights, float activations) for this model.")
    with open(out, "rb") as f:
      return f.read()


class TFLiteBiLM:
  """Runs an exported biLM with the LiteRT interpreter, one sentence at a time.

  The file is checked when opened, before any sentence is run: it must be a
  TFLite flatbuffer whose tensors can be allocated, with this package's
  signature (one int32 input, ``char_ids`` [1, time, chars] with a fixed
  ``chars`` of at most ``MAX_CHARACTERS_PER_TOKEN``, or ``token_ids`` [1,
  time]; one float32 rank-4 output, ``representations``).

  Args:
    model_path: a flatbuffer with one int32 input, token ids [1, time] or char
      ids [1, time, chars], and one rank-4 float32 output, the representations
      [1, n_layers + 1, time - 2, 2 * proj].
    num_threads: interpreter threads.

  Raises:
    FileNotFoundError / ValueError: no file, not a TFLite model (corrupt or
      truncated), or not a biLM of this shape (the message says what was
      found and what a biLM has).
  """

  def __init__(self, model_path: str, num_threads: int = 1):
    if not os.path.isfile(model_path):
      raise FileNotFoundError(f"TFLite file {model_path} does not exist.")
    from ai_edge_litert.interpreter import Interpreter  # heavy; only when used
    not_tflite = (f"{model_path} is not a readable TFLite model ({{}}); it may be truncated or "
                  "corrupt. Export it again (pipelines.compress writes one per --tflite_"
                  "quantization mode) or copy it again.")
    try:
      self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
      inputs = self.interpreter.get_input_details()
      all_outputs = self.interpreter.get_output_details()
      signatures = self.interpreter.get_signature_list()
    except (ValueError, RuntimeError) as e:
      raise ValueError(not_tflite.format(e)) from e
    outputs = [o for o in all_outputs if len(o["shape"]) == 4]
    found = [(i["name"], tuple(int(d) for d in i["shape_signature"]), np.dtype(i["dtype"]).name)
             for i in inputs]
    expected = ("a biLM exported by this package has one int32 input, token ids [1, time] or "
                f"char ids [1, time, max_chars] with 3 <= max_chars <= {MAX_CHARACTERS_PER_TOKEN}")
    if len(inputs) != 1 or len(inputs[0]["shape"]) not in (2, 3) or \
        inputs[0]["dtype"] != np.int32:
      raise ValueError(f"{model_path} has inputs {found}; {expected}. It is not a biLM "
                       "export; use a file written by export_tflite.")
    signature = tuple(int(d) for d in inputs[0]["shape_signature"])
    if signature[0] not in (1, -1) or (
        len(signature) == 3 and not 3 <= signature[2] <= MAX_CHARACTERS_PER_TOKEN):
      raise ValueError(f"{model_path} has input {found[0]}; {expected}. It is not a biLM "
                       "export; use a file written by export_tflite.")
    if len(outputs) != 1 or outputs[0]["dtype"] != np.float32:
      raise ValueError(f"{model_path} has {len(outputs)} rank-4 outputs "
                       f"{[(o['name'], np.dtype(o['dtype']).name) for o in outputs]}; expected "
                       "exactly one float32 output, the representations [1, n_layers + 1, "
                       "time - 2, 2 * proj]. It is not a biLM export.")
    ours = {"inputs": ["char_ids" if len(signature) == 3 else "token_ids"],
            "outputs": ["representations"]}
    # export_tflite always writes this signature (the converter gets the model).
    if ours not in [{k: sorted(v) for k, v in s.items()} for s in signatures.values()]:
      raise ValueError(f"{model_path} has signatures {signatures or 'none'}; a biLM export has "
                       f"{{'serving_default': {ours}}}. It is not a biLM export; use a file "
                       "written by export_tflite.")
    try:
      # Every tensor and WHILE body is checked here, not at the first sentence.
      self.interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
      raise ValueError(not_tflite.format(e)) from e
    self.model_path = model_path
    self._input, self._output = inputs[0], outputs[0]
    self._shape = None

  @property
  def input_rank(self) -> int:
    return len(self._input["shape"])

  @property
  def input_shape_signature(self) -> Tuple[int, ...]:
    """The input shape with -1 for dynamic dimensions."""
    return tuple(int(d) for d in self._input["shape_signature"])

  @property
  def max_tokens(self) -> Optional[int]:
    """Words per sentence of a fixed-length export ("int8"); None when the time is dynamic."""
    time = self.input_shape_signature[1]
    return None if time < 0 else time - 2

  def __call__(self, ids: np.ndarray) -> np.ndarray:
    """ids: int32 [1, time(, chars)] -> float32 [1, n_layers + 1, time - 2, 2 * proj].

    A fixed-length export gets the ids 0-padded to its length and its output
    cut back to ``time - 2``; ids longer than its length are refused
    (ValueError naming both lengths).
    """
    ids = np.asarray(ids, np.int32)
    time = ids.shape[1] if ids.ndim >= 2 else 0
    if self.max_tokens is not None:
      ids = pad_to_time(ids, self.max_tokens + 2, f"ids for {self.model_path}")
    try:
      if ids.shape != self._shape:
        self.interpreter.resize_tensor_input(self._input["index"], ids.shape)
        self.interpreter.allocate_tensors()
        self._shape = ids.shape
      self.interpreter.set_tensor(self._input["index"], ids)
      self.interpreter.invoke()
    except RuntimeError as e:
      self._shape = None
      raise ValueError(f"{self.model_path} failed on input of shape {ids.shape} ({e}); the file "
                       "is corrupt or not a biLM export. Export it again.") from e
    out = self.interpreter.get_tensor(self._output["index"])
    return out[:, :, :max(time - 2, 0)] if self.max_tokens is not None else out


def representation_parity(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> Dict:
  """How close exported representations are to the Keras model's, sentence by sentence.

  Args:
    got, expected: per sentence float32 [1, n_layers + 1, words, dim] (the
      exported model's and the Keras model's representations).

  Returns:
    {"max_abs_diff": largest |got - expected| over every sentence,
    "min_cosine" / "mean_cosine": cosine similarity of each sentence's whole
    flattened representation, the worst and the mean}.
  """
  if len(got) != len(expected) or not got:
    raise ValueError(f"representation_parity needs as many outputs as references (>= 1), got "
                     f"{len(got)} and {len(expected)}.")
  diffs, cosines = [], []
  for g, e in zip(got, expected):
    g, e = np.asarray(g, np.float64).ravel(), np.asarray(e, np.float64).ravel()
    if g.shape != e.shape:
      raise ValueError(f"representation shapes differ: {g.shape} vs {e.shape}.")
    diffs.append(float(np.abs(g - e).max()) if g.size else 0.0)
    norm = np.linalg.norm(g) * np.linalg.norm(e)
    cosines.append(float(g @ e / norm) if norm > 0 else float(np.allclose(g, e)))
  return {"max_abs_diff": max(diffs), "min_cosine": min(cosines),
          "mean_cosine": float(np.mean(cosines))}
