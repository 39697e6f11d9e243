"""One latency measurement of one exported biLM, in a process of its own.

Started by ``prunelm_tf.evaluation.latency.measure_latency``; not meant to be
run by hand, though it can be::

  python prunelm_tf/evaluation/latency_child.py --kind tflite \
      --path bilm.tflite --input ids.npy --threads 1 --warmup 10 --runs 100

It loads the model, runs ``--warmup`` untimed and ``--runs`` timed invocations
on the ids of ``--input`` and writes one JSON object on the last line of
stdout (see ``measure``). With ``--sentences SENTENCES.npz`` (one int32 id
array per sentence) instead, it embeds every sentence once and reports the
throughput in words per second (see ``measure_throughput``). Errors go to
stderr as one ``latency_child: error:`` line and exit code 1.

A TFLite file with a fixed time (the "int8" export, an unrolled graph of
``max_tokens + 2`` positions) gets the ids 0-padded to its length: that is
what running it costs for any shorter sentence.

The TFLite path imports only the standard library, numpy and the LiteRT
interpreter -- never TensorFlow or prunelm_tf, which would add hundreds of MB
to the process and to its peak-memory figure. TensorFlow and prunelm_tf are imported
only for ``--kind saved_model``, in ``_saved_model_loader``, which times a graph it traces
itself from the checked SavedModel's layers and weights (``export.saved_model``).
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


def _pad(ids: np.ndarray, time: int, path: str) -> np.ndarray:
  if ids.shape[1] > time:
    raise ValueError(f"{path} has a fixed length of {time - 2} words (time {time}) but the ids "
                     f"hold {ids.shape[1] - 2}; measure it on sentences that fit.")
  out = np.zeros((1, time) + ids.shape[2:], np.int32)
  out[:, :ids.shape[1]] = ids
  return out


def _open_tflite(path: str, threads: int, rank: int):
  """(interpreter, input detail, output index, fixed time or None) of a biLM TFLite file."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  try:
    interpreter = Interpreter(model_path=path, num_threads=threads)
  except ValueError as e:
    raise ValueError(f"{path} is not a readable TFLite model ({e}).") from e
  inputs = interpreter.get_input_details()
  if len(inputs) != 1 or inputs[0]["dtype"] != np.int32 or \
      len(inputs[0]["shape_signature"]) != rank:
    found = [(tuple(int(d) for d in i["shape_signature"]), np.dtype(i["dtype"]).name)
             for i in inputs]
    raise ValueError(f"{path} has inputs {found} but the ids are int32 of rank {rank}; a "
                     "word-input biLM takes [1, time], a char-input biLM [1, time, chars].")
  outputs = [o for o in interpreter.get_output_details() if len(o["shape_signature"]) == 4]
  if len(outputs) != 1:
    raise ValueError(f"{path} has {len(outputs)} rank-4 outputs; a biLM has exactly one, the "
                     "representations [1, n_layers + 1, time - 2, 2 * proj].")
  time = int(inputs[0]["shape_signature"][1])
  return interpreter, inputs[0], outputs[0]["index"], (time if time > 0 else None)


def _tflite_loader(threads: int) -> Loader:
  """Imports the LiteRT interpreter; returns a loader of TFLite biLMs.

  The loader resizes the input (or pads the ids to a fixed-length model's
  time) and allocates the tensors once, so the timed loop only copies the ids
  in, invokes and copies the representations out. The runner's
  ``input_shape`` is the shape it feeds.
  """
  import ai_edge_litert.interpreter  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  def load(path: str, ids: np.ndarray) -> Runner:
    interpreter, input_detail, output_index, fixed_time = _open_tflite(path, threads, ids.ndim)
    input_index = input_detail["index"]
    if fixed_time is None:
      interpreter.resize_tensor_input(input_index, list(ids.shape))
    else:
      ids = _pad(ids, fixed_time, path)
    interpreter.allocate_tensors()

    def run() -> np.ndarray:
      interpreter.set_tensor(input_index, ids)
      interpreter.invoke()
      return interpreter.get_tensor(output_index)

    run.input_shape = [int(d) for d in ids.shape]
    return run

  return load


def _tflite_embedder(threads: int) -> Callable[[str, int], Callable[[np.ndarray], np.ndarray]]:
  """Returns ``open(path, rank) -> embed(ids)`` for sentences of any length (throughput)."""
  import ai_edge_litert.interpreter  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  def open_model(path: str, rank: int):
    interpreter, input_detail, output_index, fixed_time = _open_tflite(path, threads, rank)
    input_index = input_detail["index"]
    state = {"shape": None}
    if fixed_time is not None:
      interpreter.allocate_tensors()

    def embed(ids: np.ndarray) -> np.ndarray:
      if fixed_time is not None:
        ids = _pad(ids, fixed_time, path)
      elif ids.shape != state["shape"]:
        interpreter.resize_tensor_input(input_index, list(ids.shape))
        interpreter.allocate_tensors()
        state["shape"] = ids.shape
      interpreter.set_tensor(input_index, ids)
      interpreter.invoke()
      return interpreter.get_tensor(output_index)

    embed.fixed_time = fixed_time
    return embed

  return open_model


def _saved_model_loader(threads: int) -> Loader:
  """Imports TensorFlow; returns a loader of biLM SavedModels run through a graph of ours.

  TensorFlow is set to ``threads`` intra-op threads and one inter-op thread
  here, before it runs any op (afterwards the settings cannot change). The
  folder may come from anyone: ``load_saved_model`` checks its signature, layer
  classes and every op against the allow-list before reading it, and rebuilds
  the Keras model from our layer classes and its weights; the timed function
  is ``serving_function`` of that model, traced here. No function stored in
  the folder (its ``serving_default`` included) is ever called.
  """
  # This file runs as a script (-P): the package is found beside it.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  from prunelm_tf.export.saved_model import (  # pylint: disable=g-import-not-at-top
      load_saved_model, serving_function)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)

  def load(path: str, ids: np.ndarray) -> Runner:
    model = load_saved_model(path)
    spec = model.inputs[0]
    if spec.shape.rank != ids.ndim:
      raise ValueError(f"{path}: the model takes {spec.shape} ids but the ids are int32 "
                       f"{list(ids.shape)}; a word-input biLM takes [batch, time], a char-input "
                       "biLM [batch, time, chars].")
    fn = serving_function(model)

    def run() -> np.ndarray:
      # Converting from and to numpy is part of the cost, as for TFLite's
      # set_tensor / get_tensor copies.
      return fn(tf.constant(ids))["representations"].numpy()

    # Keeps the model (which owns the variables) alive with the runner.
    run.model = model
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
  fed_shape = getattr(run, "input_shape", [int(d) for d in ids.shape])
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
      # What the model was fed: input_shape, or padded to a fixed-length model's time.
      "model_input_shape": fed_shape,
      "output_shape": [int(d) for d in out.shape],
      # What ran: the TFLite file's builtin ops, or a graph traced here from the
      # SavedModel's layers and weights (never a function stored in the folder).
      "graph": "tflite file" if kind == "tflite" else "rebuilt",
      "tensorflow_imported": "tensorflow" in sys.modules,
      "prunelm_tf_imported": "prunelm_tf" in sys.modules,
  }


def measure_throughput(path: str, sentences: Sequence[np.ndarray], *,
                       threads: int) -> Dict[str, object]:
  """Embeds every sentence once with a TFLite file; words per second of the whole pass.

  Sentences run shortest first (as ``TFLiteEmbedder`` orders them), so a
  dynamic-length model re-allocates its tensors once per distinct length.
  The first sentence is run once untimed (lazy allocations, weight packing).

  Args:
    path: the .tflite file.
    sentences: int32 ids [1, time(, chars)] each, ``<S> words </S>``.
    threads: interpreter threads.

  Returns:
    A JSON-safe dict: "words_per_second" (words = time - 2 per sentence, <S>
    and </S> not counted), "sentences", "words", "seconds", "threads",
    "skipped_sentences" (longer than a fixed-length model, left out),
    "fixed_time" (None for dynamic models), "kind" and "path".

  Raises:
    ValueError: no sentences, or a model that is not a biLM taking them.
  """
  if not sentences:
    raise ValueError("throughput needs at least one sentence.")
  embed = _tflite_embedder(threads)(path, sentences[0].ndim)
  fixed = embed.fixed_time
  kept = [s for s in sentences if fixed is None or s.shape[1] <= fixed]
  if not kept:
    raise ValueError(f"{path} has a fixed length of {fixed - 2} words and every sentence is "
                     "longer.")
  kept.sort(key=lambda s: s.shape[1])
  embed(kept[0])
  start = time.perf_counter()
  for s in kept:
    embed(s)
  seconds = time.perf_counter() - start
  words = int(sum(s.shape[1] - 2 for s in kept))
  return {"kind": "tflite", "path": path, "words_per_second": words / seconds,
          "sentences": len(kept), "words": words, "seconds": seconds, "threads": threads,
          "skipped_sentences": len(sentences) - len(kept), "fixed_time": fixed}


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--kind", required=True, choices=KINDS,
                      help="Format of --path: a .tflite file or a SavedModel directory.")
  parser.add_argument("--path", required=True, help="The exported model.")
  parser.add_argument("--input", default=None,
                      help="A .npy file of int32 ids [1, time] or [1, time, chars] (latency).")
  parser.add_argument("--sentences", default=None,
                      help="A .npz file of int32 ids, one [1, time(, chars)] array per "
                      "sentence: measure TFLite throughput instead of latency.")
  parser.add_argument("--threads", type=int, default=1,
                      help="Interpreter threads (TFLite) or intra-op threads (TensorFlow).")
  parser.add_argument("--warmup", type=int, default=10, help="Untimed invocations first.")
  parser.add_argument("--runs", type=int, default=100, help="Timed invocations.")
  return parser.parse_args(argv)


def _check_ids(ids: np.ndarray, what: str) -> None:
  if ids.dtype != np.int32 or ids.ndim not in (2, 3) or ids.shape[0] != 1 or ids.shape[1] < 2:
    raise ValueError(f"{what} holds {ids.dtype} {list(ids.shape)}; expected int32 ids "
                     "[1, time] or [1, time, chars] with time >= 2.")


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
    if (args.input is None) == (args.sentences is None):
      raise ValueError("give exactly one of --input (latency) and --sentences (throughput).")
    if args.sentences is not None:
      if args.kind != "tflite":
        raise ValueError("--sentences (throughput) measures TFLite files only (--kind tflite).")
      with np.load(args.sentences, allow_pickle=False) as npz:  # never unpickle a file
        sentences = [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split("_")[-1]))]
      for k, ids in enumerate(sentences):
        _check_ids(ids, f"{args.sentences} sentence {k}")
      result = measure_throughput(args.path, sentences, threads=args.threads)
    else:
      ids = np.load(args.input, allow_pickle=False)
      _check_ids(ids, args.input)
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
