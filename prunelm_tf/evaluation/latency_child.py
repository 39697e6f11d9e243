"""One latency measurement of one exported biLM, in a process of its own.

Started by ``prunelm_tf.evaluation.latency.measure_latency``; not meant to be
run by hand, though it can be::

  python prunelm_tf/evaluation/latency_child.py --kind tflite \
      --path bilm.tflite --input ids.npy --threads 1 --warmup 10 --runs 100

It loads the model, runs ``--warmup`` untimed and ``--runs`` timed invocations
on the ids of ``--input`` and writes one JSON object on the last line of
stdout (see ``measure``). Errors go to stderr as one ``latency_child: error:``
line and exit code 1.

The TFLite path imports only the standard library, numpy and the LiteRT
interpreter -- never TensorFlow or prunelm_tf, which would add hundreds of MB
to the process and to its peak-memory figure. TensorFlow is imported only for
``--kind saved_model``, in ``_saved_model_loader``.
"""

import argparse
import gc
import json
import os
import resource
import sys
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np

KINDS = ("tflite", "saved_model")

# A function that feeds the ids once, runs the model and returns the
# representations as a numpy array (float32 [1, n_layers + 1, time - 2, dim]).
Runner = Callable[[], np.ndarray]
# Loads the model at a path for the given ids and returns its Runner.
Loader = Callable[[str, np.ndarray], Runner]


def peak_rss_bytes() -> int:
  """The process's peak resident set size so far, in bytes.

  VmHWM of /proc/self/status (Linux); elsewhere ``ru_maxrss``, which Linux
  reports in KiB (macOS in bytes, but the benchmarks run on Linux).
  """
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024  # "VmHWM:   35232 kB"
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _tflite_loader(threads: int) -> Loader:
  """Imports the LiteRT interpreter; returns a loader of TFLite biLMs.

  The loader resizes the input and allocates the tensors once, so the timed
  loop only copies the ids in, invokes and copies the representations out.
  """
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top

  def load(path: str, ids: np.ndarray) -> Runner:
    try:
      interpreter = Interpreter(model_path=path, num_threads=threads)
    except ValueError as e:
      raise ValueError(f"{path} is not a readable TFLite model ({e}).") from e
    inputs = interpreter.get_input_details()
    if len(inputs) != 1 or inputs[0]["dtype"] != np.int32 or \
        len(inputs[0]["shape_signature"]) != ids.ndim:
      found = [(tuple(int(d) for d in i["shape_signature"]), np.dtype(i["dtype"]).name)
               for i in inputs]
      raise ValueError(f"{path} has inputs {found} but the ids are int32 {list(ids.shape)}; a "
                       "word-input biLM takes [1, time], a char-input biLM [1, time, chars].")
    outputs = [o for o in interpreter.get_output_details() if len(o["shape_signature"]) == 4]
    if len(outputs) != 1:
      raise ValueError(f"{path} has {len(outputs)} rank-4 outputs; a biLM has exactly one, the "
                       "representations [1, n_layers + 1, time - 2, 2 * proj].")
    input_index, output_index = inputs[0]["index"], outputs[0]["index"]
    interpreter.resize_tensor_input(input_index, list(ids.shape))
    interpreter.allocate_tensors()

    def run() -> np.ndarray:
      interpreter.set_tensor(input_index, ids)
      interpreter.invoke()
      return interpreter.get_tensor(output_index)

    return run

  return load


def _saved_model_loader(threads: int) -> Loader:
  """Imports TensorFlow; returns a loader of ``serving_default`` signatures.

  TensorFlow is set to ``threads`` intra-op threads and one inter-op thread
  here, before it runs any op (afterwards the settings cannot change).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)

  def load(path: str, ids: np.ndarray) -> Runner:
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
      raise ValueError(f"{path} has signatures {sorted(loaded.signatures)} but no "
                       "'serving_default'; export it with prunelm_tf.export.export_saved_model.")
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    if len(specs) != 1:
      raise ValueError(f"{path}: serving_default takes {sorted(specs)}; a biLM takes one "
                       "int32 input, the ids.")
    (name, spec), = specs.items()
    if spec.dtype != tf.int32 or spec.shape.rank != ids.ndim:
      raise ValueError(f"{path}: serving_default takes {spec.dtype.name} {spec.shape} but the "
                       f"ids are int32 {list(ids.shape)}; a word-input biLM takes [batch, time], "
                       "a char-input biLM [batch, time, chars].")
    if "representations" not in fn.structured_outputs:
      raise ValueError(f"{path}: serving_default returns {sorted(fn.structured_outputs)}, not "
                       "'representations'; export it with prunelm_tf.export.export_saved_model.")

    def run() -> np.ndarray:
      # Converting from and to numpy is part of the cost, as for TFLite's
      # set_tensor / get_tensor copies.
      return fn(**{name: tf.constant(ids)})["representations"].numpy()

    # Keeps the loaded object (which owns the variables) alive with the runner.
    run.loaded = loaded
    return run

  return load


def measure(kind: str, path: str, ids: np.ndarray, *, threads: int, warmup: int,
            runs: int) -> Dict[str, object]:
  """Loads the model, warms it up and times ``runs`` invocations.

  Args:
    kind: "tflite" or "saved_model".
    path: the .tflite file or the SavedModel directory.
    ids: int32 [1, time] token ids or [1, time, chars] char ids.
    threads: interpreter threads (TFLite) or intra-op threads (TensorFlow).
    warmup: untimed invocations before the timed ones.
    runs: timed invocations.

  Returns:
    A JSON-safe dict: latency in milliseconds ("p50_ms", "p90_ms", "mean_ms",
    "min_ms"), "load_seconds", memory in bytes ("baseline_rss_bytes": peak
    RSS after the imports, before loading; "peak_rss_bytes": peak RSS at the
    end; "model_rss_bytes": their difference), the settings, the input and
    output shapes and "tensorflow_imported" / "prunelm_tf_imported".

  Raises:
    ValueError: unknown kind, or a model that is not a biLM taking ``ids``.
  """
  if kind not in KINDS:
    raise ValueError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}.")
  # The runtime is imported before the baseline, so that "model_rss_bytes"
  # is what loading and running this model added, not the runtime itself.
  load = (_tflite_loader if kind == "tflite" else _saved_model_loader)(threads)
  baseline_rss = peak_rss_bytes()
  start = time.perf_counter()
  run = load(path, ids)
  load_seconds = time.perf_counter() - start
  for _ in range(warmup):
    run()
  durations_ns = np.empty([runs], np.int64)
  # A collection pause inside one run would be charged to the model.
  gc.disable()
  try:
    for i in range(runs):
      start_ns = time.perf_counter_ns()
      out = run()
      durations_ns[i] = time.perf_counter_ns() - start_ns
  finally:
    gc.enable()
  if out.ndim != 4:
    raise ValueError(f"{path} returned shape {list(out.shape)}; the representations of a biLM "
                     "are rank 4 [1, n_layers + 1, time - 2, 2 * proj].")
  peak_rss = peak_rss_bytes()
  ms = durations_ns / 1e6
  return {
      "kind": kind,
      "path": path,
      "p50_ms": float(np.percentile(ms, 50)),
      "p90_ms": float(np.percentile(ms, 90)),
      "mean_ms": float(ms.mean()),
      "min_ms": float(ms.min()),
      "runs": runs,
      "warmup": warmup,
      "threads": threads,
      "load_seconds": load_seconds,
      "peak_rss_bytes": peak_rss,
      "baseline_rss_bytes": baseline_rss,
      "model_rss_bytes": peak_rss - baseline_rss,
      "input_shape": [int(d) for d in ids.shape],
      "output_shape": [int(d) for d in out.shape],
      "tensorflow_imported": "tensorflow" in sys.modules,
      "prunelm_tf_imported": "prunelm_tf" in sys.modules,
  }


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--kind", required=True, choices=KINDS,
                      help="Format of --path: a .tflite file or a SavedModel directory.")
  parser.add_argument("--path", required=True, help="The exported model.")
  parser.add_argument("--input", required=True,
                      help="A .npy file of int32 ids [1, time] or [1, time, chars].")
  parser.add_argument("--threads", type=int, default=1,
                      help="Interpreter threads (TFLite) or intra-op threads (TensorFlow).")
  parser.add_argument("--warmup", type=int, default=10, help="Untimed invocations first.")
  parser.add_argument("--runs", type=int, default=100, help="Timed invocations.")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parse_args(argv)
  if args.kind == "saved_model":
    # Before TensorFlow's first import (as prunelm_tf/_keras_env.py does).
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    if args.threads < 1 or args.warmup < 0 or args.runs < 1:
      raise ValueError(f"need --threads >= 1, --warmup >= 0 and --runs >= 1, got "
                       f"{args.threads}, {args.warmup} and {args.runs}.")
    if not os.path.exists(args.path):
      raise FileNotFoundError(f"no model at {args.path}.")
    ids = np.load(args.input)
    if ids.dtype != np.int32 or ids.ndim not in (2, 3) or ids.shape[0] != 1:
      raise ValueError(f"{args.input} holds {ids.dtype} {list(ids.shape)}; expected int32 ids "
                       "[1, time] or [1, time, chars].")
    result = measure(args.kind, args.path, ids, threads=args.threads, warmup=args.warmup,
                     runs=args.runs)
  except Exception as e:  # pylint: disable=broad-except
    # One readable line for the parent's error message instead of a traceback.
    sys.stderr.write(f"latency_child: error: {type(e).__name__}: {e}\n")
    return 1
  sys.stdout.write(json.dumps(result) + "\n")
  sys.stdout.flush()
  return 0


if __name__ == "__main__":
  sys.exit(main())
