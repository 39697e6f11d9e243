"""TFLite export of the biLM's representations and reloading with LiteRT.

The converted graph takes one sentence (batch 1; the time dimension stays
dynamic) and returns its layer representations. The LSTM loops become TFLite
WHILE loops of builtin ops; no Flex (select TF) ops are allowed, so a model
that would need them fails at conversion instead of on the phone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from prunelm_tf.export.saved_model import serving_function
from prunelm_tf.models.config import MAX_CHARACTERS_PER_TOKEN
from prunelm_tf.utils.files import atomic_path

keras = tf.keras

QUANTIZATION_MODES = ("none", "dynamic", "float16", "int8")


def check_quantization_mode(mode: str) -> None:
  if mode not in QUANTIZATION_MODES:
    raise ValueError(f"unknown TFLite quantization mode {mode!r}; choose from "
                     f"{', '.join(QUANTIZATION_MODES)}.")


def make_converter(fn, model: keras.Model, quantization: str) -> tf.lite.TFLiteConverter:
  """A converter of concrete function ``fn`` with builtin ops only and the mode's weight types.

  No SELECT_TF_OPS: a graph that would need Flex ops fails at conversion, not on
  the phone. "int8" also needs a representative dataset (set by the caller).
  """
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantization != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == "float16":
    converter.target_spec.supported_types = [tf.float16]
  return converter


def convert_to_tflite(model: keras.Model, quantization: str = "none", *,
                      representative_inputs: Optional[Callable[[], Iterable[np.ndarray]]] = None
                      ) -> bytes:
  """Converts the representations of ``model`` to a TFLite flatbuffer.

  Args:
    model: a biLM from ``build_bilm`` (pruning wrappers stripped).
    quantization: "none" (float32), "dynamic" (int8 weights, float
      activations), "float16" (float16 weights), or "int8" (int8 weights and
      activations where the kernels allow; float inputs/outputs remain).
    representative_inputs: for "int8": a callable yielding int32 input arrays
      of shape [1, time(, chars)] drawn from real text.

  Returns:
    The flatbuffer bytes.
  """
  check_quantization_mode(quantization)
  converter = make_converter(serving_function(model, batch_size=1), model, quantization)
  if quantization == "int8":
    if representative_inputs is None:
      raise ValueError("int8 quantization needs representative_inputs drawn from the corpus.")
    converter.representative_dataset = lambda: ([x] for x in representative_inputs())
  return converter.convert()


class ConverterCrashed(RuntimeError):
  """The TFLite converter died (a native crash), not a Python error."""


def export_tflite(model: keras.Model, path: str, quantization: str = "none", *,
                  representative_inputs: Optional[Callable[[], Iterable[np.ndarray]]] = None,
                  saved_model_dir: Optional[str] = None) -> int:
  """Converts and writes atomically; returns the file size in bytes.

  "int8" is converted in a child process from ``saved_model_dir`` (the
  model's exported SavedModel): calibrating a graph with WHILE loops crashes
  the converter natively in TF 2.21 (tensorflow/tensorflow#41305), and a
  segfault must not take the whole compression run with it.

  Raises:
    ConverterCrashed: the converter crashed; nothing is written.
  """
  if quantization == "int8":
    if saved_model_dir is None or representative_inputs is None:
      raise ValueError("int8 export needs saved_model_dir and representative_inputs.")
    flatbuffer = _convert_int8_in_child(saved_model_dir, list(representative_inputs()))
  else:
    flatbuffer = convert_to_tflite(model, quantization,
                                   representative_inputs=representative_inputs)
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(flatbuffer)
  return len(flatbuffer)


def _convert_int8_in_child(saved_model_dir: str, inputs: List[np.ndarray]) -> bytes:
  with tempfile.TemporaryDirectory() as tmp:
    calibration = os.path.join(tmp, "calibration.npz")
    np.savez(calibration, *inputs)
    out = os.path.join(tmp, "model.tflite")
    proc = subprocess.run(
        [sys.executable, "-m", "prunelm_tf.export.tflite_int8", saved_model_dir, calibration, out],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      # TF's C++ start-up log lines say nothing about the failure.
      tail = [line for line in (proc.stderr or "").strip().splitlines()
              if not re.match(r"^[IWE]\d{4} ", line) and "absl::InitializeLog" not in line][-3:]
      raise ConverterCrashed(
          f"int8 (full-integer) TFLite conversion failed with exit code {proc.returncode}"
          f"{' (a native crash)' if proc.returncode < 0 else ''}: {' | '.join(tail)}. "
          "The TF 2.21 converter crashes calibrating WHILE loops (tensorflow/tensorflow#41305); "
          "use --tflite_quantization=dynamic (int8 weights) instead.")
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

  def __call__(self, ids: np.ndarray) -> np.ndarray:
    """ids: int32 [1, time(, chars)] -> float32 [1, n_layers + 1, time - 2, 2 * proj]."""
    ids = np.asarray(ids, np.int32)
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
    return self.interpreter.get_tensor(self._output["index"])
