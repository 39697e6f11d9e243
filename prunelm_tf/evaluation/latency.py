"""Latency and peak memory of exported biLMs, one sentence at a time.

Every measurement (one model file, one format, one thread count) runs in a
fresh child process, ``latency_child.py``, one after the other:

* the peak-memory figure is that of a process that did nothing but load and
  run this one model (the TFLite child does not even import TensorFlow);
* the thread pools of one runtime cannot disturb the timing of another;
* a native crash of an interpreter fails one measurement with a readable
  error instead of killing the benchmark.

Typical use::

  ids = latency_input(char_inputs=False, vocab_size=10002)
  result = measure_variant(f"{variant}/saved_model",
                           {"none": f"{variant}/bilm_none.tflite"}, ids, LatencyConfig())
  result["tflite"]["none"]["1"]["p50_ms"]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from prunelm_tf.data import characters

KINDS = ("tflite", "saved_model")

# Run as a script file, not with -m: -m would import prunelm_tf and
# prunelm_tf.evaluation (whose other modules import TensorFlow) into the
# child and inflate its memory figure. -P keeps this directory off sys.path.
_CHILD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "latency_child.py")

# Two children at once would compete for the CPU cores and skew both timings.
_ONE_CHILD_AT_A_TIME = threading.Lock()

# Model token ids of the sentence markers when the vocabulary was made by
# Vocabulary.build, which puts <S>, </S>, <UNK> first (index + 1, 0 = padding).
_BOS_ID, _EOS_ID, _FIRST_WORD_ID = 1, 2, 4

# The sentence for char-input models: ordinary English words of ordinary
# lengths, repeated when more than 20 tokens are asked for.
_WORDS = ("the company said it expects revenue to grow about ten percent next year as demand "
          "for its new products rises").split()

# Lines of a child's stderr that never explain a failure: TF's C++ start-up
# log and LiteRT's delegate notice.
_NOISE = re.compile(r"^([IWE]\d{4} |INFO: |WARNING: All log messages before absl::InitializeLog)")


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
  """How latency is measured for every variant of a comparison.

  Raises:
    ValueError: a field out of range (the message names it).
  """

  # Untimed invocations before the timed ones (caches, lazy allocations,
  # XNNPACK weight packing); 0 times the first call too.
  warmup: int = 10
  # Timed invocations per measurement; p50 and p90 are taken over these.
  runs: int = 100
  # Thread counts to measure, each in its own process: TFLite interpreter
  # threads, or TensorFlow intra-op threads (inter-op is always 1).
  threads: Tuple[int, ...] = (1, 2)
  # Words per sentence, without <S> and </S> (the ids have num_tokens + 2
  # positions); see latency_input.
  num_tokens: int = 20
  # Wall-clock limit per child process, load included; the child is killed
  # and the measurement fails when it is exceeded.
  timeout_seconds: float = 600.0

  def __post_init__(self):
    _check_int("warmup", self.warmup, 0)
    _check_int("runs", self.runs, 1)
    if isinstance(self.threads, (list, tuple)):
      object.__setattr__(self, "threads", tuple(self.threads))
    if not isinstance(self.threads, tuple) or not self.threads:
      raise ValueError(f"LatencyConfig.threads must be a non-empty tuple of thread counts, got "
                       f"{self.threads!r}; e.g. threads=(1, 2).")
    for t in self.threads:
      _check_int("threads", t, 1)
    if len(set(self.threads)) != len(self.threads):
      raise ValueError(f"LatencyConfig.threads must not repeat a thread count, got "
                       f"{self.threads!r}; list each count once.")
    _check_int("num_tokens", self.num_tokens, 1)
    _check_timeout(self.timeout_seconds)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def _check_int(name: str, value: object, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"latency {name} must be an integer >= {minimum}, got {value!r}; "
                     f"pass {name}={max(minimum, 1)} or more.")


def _check_timeout(timeout_seconds: object) -> None:
  if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or \
      not math.isfinite(timeout_seconds) or timeout_seconds <= 0:
    raise ValueError(f"latency timeout_seconds must be a finite number > 0, got "
                     f"{timeout_seconds!r}; the default is 600.")


def latency_input(char_inputs: bool, num_tokens: int = 20,
                  max_characters_per_token: int = characters.MAX_CHARACTERS_PER_TOKEN,
                  vocab_size: Optional[int] = None) -> np.ndarray:
  """A fixed sentence ``<S> w_1 .. w_n </S>`` as model ids, batch 1.

  Always the same for the same arguments, so dense and compressed variants
  are timed on identical input.

  Args:
    char_inputs: True for a char-CNN biLM, False for a word-embedding biLM.
    num_tokens: words n in the sentence (without <S> and </S>).
    max_characters_per_token: row length of the char ids (char input only);
      the model's char_cnn.max_characters_per_token.
    vocab_size: word input only (required there): the model's vocab_size.
      Words are drawn (seed 0) from the model ids [4, vocab_size]; <S> and
      </S> are ids 1 and 2 and <UNK> (3) is left out, as in vocabularies made
      by Vocabulary.build. The ids' values do not change the cost of the
      embedding lookup, only their number does.

  Returns:
    int32 [1, num_tokens + 2] token ids (word input), or int32
    [1, num_tokens + 2, max_characters_per_token] char ids (char input): the
    words of a fixed English sentence, via sentence_to_char_ids.

  Raises:
    ValueError: num_tokens < 1, or word input without a vocab_size >= 4.
  """
  _check_int("num_tokens", num_tokens, 1)
  if char_inputs:
    words = [_WORDS[i % len(_WORDS)] for i in range(num_tokens)]
    return characters.sentence_to_char_ids(words, max_characters_per_token)[np.newaxis]
  if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or \
      vocab_size < _FIRST_WORD_ID:
    raise ValueError(f"word-input latency ids need the model's vocab_size (>= {_FIRST_WORD_ID}: "
                     f"<S>, </S>, <UNK> and one word), got {vocab_size!r}; pass "
                     "vocab_size=config.vocab_size of the biLM.")
  rng = np.random.default_rng(0)
  words = rng.integers(_FIRST_WORD_ID, vocab_size + 1, size=num_tokens)
  return np.concatenate([[_BOS_ID], words, [_EOS_ID]]).astype(np.int32)[np.newaxis]


def _check_ids(ids: object, minimum_time: int = 3) -> None:
  if not isinstance(ids, np.ndarray) or ids.dtype != np.int32 or ids.ndim not in (2, 3) or \
      ids.shape[0] != 1 or ids.shape[1] < minimum_time:
    found = (f"{ids.dtype} {list(ids.shape)}" if isinstance(ids, np.ndarray)
             else type(ids).__name__)
    raise ValueError(f"latency ids must be a numpy int32 array [1, time] (token ids) or "
                     f"[1, time, chars] (char ids) with batch 1 and time >= {minimum_time}, got "
                     f"{found}; build them with latency_input().")


def _check_model_path(kind: str, path: str) -> None:
  if kind not in KINDS:
    raise ValueError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}.")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {kind} model at {path}; check the variant's export folder.")
  if kind == "tflite" and not os.path.isfile(path):
    raise ValueError(f"a tflite model is a file, but {path} is a directory; pass the .tflite "
                     "file.")
  if kind == "saved_model" and not os.path.isfile(os.path.join(path, "saved_model.pb")):
    raise ValueError(f"{path} is not a SavedModel directory (no saved_model.pb in it); pass the "
                     "directory written by export_saved_model.")


def _stderr_tail(stderr: str, lines: int = 5) -> str:
  useful = [line for line in (stderr or "").strip().splitlines()
            if line.strip() and not _NOISE.match(line)]
  return " | ".join(useful[-lines:]) or "(nothing on stderr)"


def measure_latency(kind: str, path: str, ids: np.ndarray, *, threads: int, warmup: int,
                    runs: int, timeout_seconds: float = 600.0) -> Dict[str, Any]:
  """Times one exported model in a fresh child process.

  Args:
    kind: "tflite" (run with ai_edge_litert's Interpreter) or "saved_model"
      (``tf.saved_model.load`` and its "serving_default" signature).
    path: the .tflite file or the SavedModel directory.
    ids: int32 [1, time] token ids or [1, time, chars] char ids, e.g. from
      latency_input.
    threads: TFLite interpreter threads, or TensorFlow intra-op threads.
    warmup: untimed invocations first.
    runs: timed invocations.
    timeout_seconds: the child is killed after this long.

  Returns:
    The child's JSON-safe dict: "p50_ms", "p90_ms", "mean_ms", "min_ms"
    (per invocation, input copy and output copy included), "runs", "warmup",
    "threads", "load_seconds", "peak_rss_bytes", "baseline_rss_bytes" (peak
    RSS after the imports, before loading the model), "model_rss_bytes"
    (peak - baseline), "input_shape", "output_shape", "tensorflow_imported",
    "prunelm_tf_imported", "kind" and "path".

  Raises:
    ValueError: unknown kind, bad ids or settings.
    FileNotFoundError: nothing at ``path``.
    RuntimeError: the child failed, crashed or timed out; the message names
      the model file, the exit code and the end of the child's stderr.
  """
  _check_model_path(kind, path)
  _check_ids(ids)
  _check_int("threads", threads, 1)
  _check_int("warmup", warmup, 0)
  _check_int("runs", runs, 1)
  _check_timeout(timeout_seconds)
  what = f"{kind} model {path} ({threads} thread{'s' if threads > 1 else ''})"
  with tempfile.TemporaryDirectory(prefix="latency_") as tmp:
    input_path = os.path.join(tmp, "ids.npy")
    np.save(input_path, ids)
    result = _run_child(["--kind", kind, "--path", path, "--input", input_path, "--threads",
                         str(threads), "--warmup", str(warmup), "--runs", str(runs)],
                        what, timeout_seconds)
  logging.info("latency of %s: p50 %.2f ms, p90 %.2f ms, peak RSS %.1f MB (model %.1f MB)",
               what, result["p50_ms"], result["p90_ms"], result["peak_rss_bytes"] / 1e6,
               result["model_rss_bytes"] / 1e6)
  return result


def measure_throughput(path: str, sentences: Sequence[np.ndarray], *, threads: int,
                       timeout_seconds: float = 600.0) -> Dict[str, Any]:
  """Embedding throughput of one TFLite file over many sentences, in a fresh child process.

  Every sentence runs once, batch 1 (as ``TFLiteEmbedder`` runs them); a
  fixed-length model (the "int8" export) gets each 0-padded to its length and
  leaves out longer ones (counted in "skipped_sentences").

  Args:
    path: the .tflite file.
    sentences: int32 ids [1, time(, chars)] per sentence, ``<S> words </S>``
      (e.g. 1,000 PTB test sentences through ``data.encode_sentence`` or
      ``data.sentence_to_char_ids``).
    threads: interpreter threads.
    timeout_seconds: the child is killed after this long.

  Returns:
    The child's dict: "words_per_second", "sentences", "words", "seconds",
    "skipped_sentences", "fixed_time", "threads", "kind", "path".

  Raises:
    ValueError: no sentences or bad ids; FileNotFoundError: no file;
    RuntimeError: the child failed, crashed or timed out.
  """
  _check_model_path("tflite", path)
  _check_int("threads", threads, 1)
  _check_timeout(timeout_seconds)
  if not sentences:
    raise ValueError("throughput needs at least one sentence; pass the encoded corpus.")
  for ids in sentences:
    _check_ids(ids, minimum_time=2)
  what = f"tflite model {path} ({threads} thread{'s' if threads > 1 else ''}, throughput)"
  with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
    sentences_path = os.path.join(tmp, "sentences.npz")
    np.savez(sentences_path, *sentences)
    result = _run_child(["--kind", "tflite", "--path", path, "--sentences", sentences_path,
                         "--threads", str(threads)], what, timeout_seconds)
  logging.info("throughput of %s: %.0f words/s over %d sentences", what,
               result["words_per_second"], result["sentences"])
  return result


def _run_child(args, what: str, timeout_seconds: float) -> Dict[str, Any]:
  """Runs latency_child.py with ``args`` (one child at a time); its last stdout line as JSON."""
  command = [sys.executable, "-P", _CHILD_SCRIPT] + list(args)
  with _ONE_CHILD_AT_A_TIME:
    try:
      proc = subprocess.run(command, capture_output=True, text=True, check=False,
                            timeout=timeout_seconds)
    except subprocess.TimeoutExpired as e:
      stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
      raise RuntimeError(
          f"measurement of {what} did not finish within {timeout_seconds:g} s and was "
          f"killed: {_stderr_tail(stderr)}. Raise LatencyConfig.timeout_seconds or lower "
          "runs.") from e
  if proc.returncode != 0:
    crash = f" (a native crash, signal {-proc.returncode})" if proc.returncode < 0 else ""
    raise RuntimeError(f"latency measurement of {what} failed with exit code "
                       f"{proc.returncode}{crash}: {_stderr_tail(proc.stderr)}")
  lines = (proc.stdout or "").strip().splitlines()
  try:
    return json.loads(lines[-1])
  except (IndexError, json.JSONDecodeError) as e:
    raise RuntimeError(f"latency measurement of {what} exited 0 but its last stdout line is not "
                       f"JSON: {lines[-1:]!r}; stderr: {_stderr_tail(proc.stderr)}") from e


def measure_variant(saved_model_dir: Optional[str], tflite_files: Dict[str, str],
                    ids: np.ndarray, config: LatencyConfig) -> Dict[str, Dict[str, Any]]:
  """Times every export of one variant, for every thread count, one at a time.

  All paths and the ids are checked before the first child starts.

  Args:
    saved_model_dir: the variant's SavedModel directory, or None to skip it.
    tflite_files: TFLite files by quantization mode, e.g. {"none":
      ".../bilm_none.tflite", "dynamic": ".../bilm_dynamic.tflite"}; modes
      without a file are simply left out.
    ids: int32 [1, config.num_tokens + 2(, chars)], from latency_input.
    config: the measurement settings.

  Returns:
    {"saved_model": {threads: result}, "tflite": {mode: {threads: result}}},
    with thread counts as strings ("1", "2") so it dumps to JSON as is; each
    result is measure_latency's dict. "saved_model" is {} when
    saved_model_dir is None.

  Raises:
    ValueError / FileNotFoundError / RuntimeError: as measure_latency, and a
      ValueError when the ids' time is not config.num_tokens + 2.
  """
  if not isinstance(config, LatencyConfig):
    raise TypeError(f"config must be a LatencyConfig, got {type(config).__name__}.")
  _check_ids(ids)
  if ids.shape[1] != config.num_tokens + 2:
    raise ValueError(f"the latency ids have time {ids.shape[1]} but config.num_tokens is "
                     f"{config.num_tokens} (time = num_tokens + 2 for <S> and </S>); build them "
                     "with latency_input(..., num_tokens=config.num_tokens).")
  if saved_model_dir is not None:
    _check_model_path("saved_model", saved_model_dir)
  for path in tflite_files.values():
    _check_model_path("tflite", path)
  settings = dict(warmup=config.warmup, runs=config.runs, timeout_seconds=config.timeout_seconds)
  result: Dict[str, Dict[str, Any]] = {"saved_model": {}, "tflite": {}}
  for mode, path in tflite_files.items():
    result["tflite"][mode] = {
        str(t): measure_latency("tflite", path, ids, threads=t, **settings)
        for t in config.threads}
  if saved_model_dir is not None:
    result["saved_model"] = {
        str(t): measure_latency("saved_model", saved_model_dir, ids, threads=t, **settings)
        for t in config.threads}
  return result
