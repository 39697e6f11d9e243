"""Latency measurement in child processes: tiny biLM, few runs, every error path."""

import subprocess

import numpy as np
import pytest

from prunelm_tf.evaluation import latency
from prunelm_tf.evaluation.latency import (LatencyConfig, latency_input, measure_latency,
                                           measure_variant)
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.export.tflite import export_tflite
from prunelm_tf.models import BiLMConfig, build_bilm

_VOCAB_SIZE = 20
_NUM_TOKENS = 5  # time 7
_FAST = dict(warmup=1, runs=5, timeout_seconds=120)
_KEYS = {"p50_ms", "p90_ms", "mean_ms", "min_ms", "runs", "warmup", "threads", "load_seconds",
         "peak_rss_bytes", "baseline_rss_bytes", "model_rss_bytes", "tensorflow_imported"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A tiny word-input biLM as a float TFLite file and a SavedModel."""
  model = build_bilm(BiLMConfig(vocab_size=_VOCAB_SIZE, token_encoder="word", lstm_dim=16,
                                projection_dim=8, n_layers=2))
  folder = tmp_path_factory.mktemp("latency")
  tflite_path = str(folder / "bilm_none.tflite")
  export_tflite(model, tflite_path)
  saved_model_dir = export_saved_model(model, str(folder / "saved_model"))
  return tflite_path, saved_model_dir


@pytest.fixture(scope="module")
def ids():
  return latency_input(char_inputs=False, num_tokens=_NUM_TOKENS, vocab_size=_VOCAB_SIZE)


def _check_result(result, threads):
  assert _KEYS <= set(result)
  assert 0 < result["min_ms"] <= result["p50_ms"] <= result["p90_ms"]
  assert result["runs"] == 5 and result["warmup"] == 1 and result["threads"] == threads
  assert result["peak_rss_bytes"] >= result["baseline_rss_bytes"] > 0
  assert result["model_rss_bytes"] == result["peak_rss_bytes"] - result["baseline_rss_bytes"]
  assert result["output_shape"] == [1, 3, _NUM_TOKENS, 16]


def test_measure_variant_times_each_tflite_mode_per_thread_count(exported, ids):
  config = LatencyConfig(warmup=1, runs=5, threads=(1, 2), num_tokens=_NUM_TOKENS,
                         timeout_seconds=120)
  # No SavedModel: that piece is skipped (it costs a TensorFlow import per thread count).
  result = measure_variant(None, {"none": exported[0]}, ids, config)
  assert result["saved_model"] == {} and set(result["tflite"]) == {"none"}
  assert set(result["tflite"]["none"]) == {"1", "2"}
  for threads, one in result["tflite"]["none"].items():
    _check_result(one, int(threads))
    # The TFLite process must not carry TensorFlow's memory.
    assert not one["tensorflow_imported"] and not one["prunelm_tf_imported"]
  assert measure_variant(None, {}, ids, config) == {"saved_model": {}, "tflite": {}}


def test_measure_latency_of_a_saved_model(exported, ids):
  one = measure_latency("saved_model", exported[1], ids, threads=2, **_FAST)
  _check_result(one, 2)
  # A graph of ours, rebuilt from the checked folder's layers and weights.
  assert one["tensorflow_imported"] and one["prunelm_tf_imported"] and one["graph"] == "rebuilt"


def test_measure_variant_rejects_ids_of_another_length(exported, ids):
  with pytest.raises(ValueError, match="time 7 but config.num_tokens is 20"):
    measure_variant(None, {"none": exported[0]}, ids, LatencyConfig())


def test_a_file_that_is_not_tflite_fails_with_a_readable_error(tmp_path, ids):
  path = tmp_path / "not_a_model.tflite"
  path.write_bytes(b"this is not a flatbuffer" * 10)
  with pytest.raises(RuntimeError, match=r"not_a_model\.tflite.*exit code 1.*not a readable"):
    measure_latency("tflite", str(path), ids, threads=1, **_FAST)


def test_a_native_crash_names_the_file_and_the_signal(exported, ids, monkeypatch):
  def crashed(command, **kwargs):
    return subprocess.CompletedProcess(command, -11, "", "I0000 start-up\nFatal Python error")
  monkeypatch.setattr(latency.subprocess, "run", crashed)
  with pytest.raises(RuntimeError, match=r"bilm_none\.tflite.*exit code -11 \(a native crash, "
                     r"signal 11\): Fatal Python error$"):
    measure_latency("tflite", exported[0], ids, threads=1, **_FAST)


@pytest.mark.parametrize("kind, path, bad_ids, error, message", [
    ("onnx", "MODEL", None, ValueError, "unknown model kind 'onnx'"),
    ("tflite", "missing.tflite", None, FileNotFoundError, "no tflite model at"),
    ("saved_model", "TFLITE", None, ValueError, "not a SavedModel directory"),
    ("tflite", "MODEL", np.zeros([7], np.int32), ValueError, r"got int32 \[7\]"),
    ("tflite", "MODEL", np.zeros([2, 7], np.int32), ValueError, r"batch 1.*got int32 \[2, 7\]"),
    ("tflite", "MODEL", np.zeros([1, 7], np.int64), ValueError, r"got int64 \[1, 7\]"),
    ("tflite", "MODEL", np.zeros([1, 7, 5, 2], np.int32), ValueError, r"\[1, 7, 5, 2\]"),
    ("tflite", "MODEL", [[1, 2, 3]], ValueError, "got list"),
])
def test_bad_arguments_fail_before_any_child(exported, ids, kind, path, bad_ids, error, message,
                                             tmp_path):
  path = {"MODEL": exported[0], "TFLITE": exported[0]}.get(path, str(tmp_path / path))
  with pytest.raises(error, match=message):
    measure_latency(kind, path, ids if bad_ids is None else bad_ids, threads=1, **_FAST)


@pytest.mark.parametrize("field, value, message", [
    ("warmup", -1, "warmup must be an integer >= 0"),
    ("warmup", 1.5, "warmup must be an integer >= 0"),
    ("runs", 0, "runs must be an integer >= 1"),
    ("runs", True, "runs must be an integer >= 1"),
    ("threads", (), "non-empty tuple"),
    ("threads", 2, "non-empty tuple"),
    ("threads", (1, 0), "threads must be an integer >= 1"),
    ("threads", (2, 2), "must not repeat"),
    ("num_tokens", 0, "num_tokens must be an integer >= 1"),
    ("timeout_seconds", 0, "timeout_seconds must be a finite number > 0"),
    ("timeout_seconds", float("inf"), "timeout_seconds must be a finite number > 0"),
])
def test_config_rejects_out_of_range_fields(field, value, message):
  with pytest.raises(ValueError, match=message):
    LatencyConfig(**{field: value})


def test_config_boundaries_are_accepted():
  config = LatencyConfig(warmup=0, runs=1, threads=[1], num_tokens=1, timeout_seconds=0.5)
  assert config.threads == (1,)
  assert config.to_dict()["threads"] == (1,)
  assert LatencyConfig().to_dict() == {"warmup": 10, "runs": 100, "threads": (1, 2),
                                       "num_tokens": 20, "timeout_seconds": 600.0}


def test_latency_input_is_a_fixed_sentence():
  words = latency_input(char_inputs=False, vocab_size=10002)
  assert words.dtype == np.int32 and words.shape == (1, 22)
  assert words[0, 0] == 1 and words[0, -1] == 2
  assert np.all((words[0, 1:-1] >= 4) & (words[0, 1:-1] <= 10002))
  np.testing.assert_array_equal(words, latency_input(char_inputs=False, vocab_size=10002))
  chars = latency_input(char_inputs=True, num_tokens=30, max_characters_per_token=16)
  assert chars.dtype == np.int32 and chars.shape == (1, 32, 16)
  assert chars[0, 1, 1] == ord("t") + 1  # "the", shifted by +1
  with pytest.raises(ValueError, match="need the model's vocab_size"):
    latency_input(char_inputs=False)
  with pytest.raises(ValueError, match="num_tokens must be an integer >= 1"):
    latency_input(char_inputs=True, num_tokens=0)


# --- fixed-length (int8) files and throughput ---------------------------------

@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
  """The tiny biLM as a fixed-length int8 TFLite file of 8 words (time 10)."""
  from prunelm_tf.export.tflite import convert_to_tflite
  model = build_bilm(BiLMConfig(vocab_size=_VOCAB_SIZE, token_encoder="word", lstm_dim=16,
                                projection_dim=8, n_layers=1))
  rng = np.random.default_rng(0)
  calibration = [np.concatenate([[1], rng.integers(4, _VOCAB_SIZE + 1, n), [2]])
                 .astype(np.int32)[np.newaxis] for n in (3, 5, 8, 8)]
  path = tmp_path_factory.mktemp("int8") / "bilm_int8.tflite"
  path.write_bytes(convert_to_tflite(model, "int8", representative_inputs=lambda: calibration,
                                     max_tokens=8))
  return str(path)


def test_fixed_length_file_is_timed_on_padded_ids(int8_file, ids):
  result = measure_latency("tflite", int8_file, ids, threads=1, **_FAST)
  assert result["input_shape"] == [1, _NUM_TOKENS + 2]
  assert result["model_input_shape"] == [1, 10]  # every sentence costs the fixed length
  assert result["output_shape"] == [1, 2, 8, 16]
  long_ids = latency_input(char_inputs=False, num_tokens=9, vocab_size=_VOCAB_SIZE)
  with pytest.raises(RuntimeError, match=r"fixed length of 8 words .* hold 9"):
    measure_latency("tflite", int8_file, long_ids, threads=1, **_FAST)


def test_throughput_counts_words_and_skips_what_a_fixed_length_file_cannot_take(
    exported, int8_file):
  sentences = [latency_input(char_inputs=False, num_tokens=n, vocab_size=_VOCAB_SIZE)
               for n in (3, 9, 5, 1)]
  dynamic = latency.measure_throughput(exported[0], sentences, threads=2, timeout_seconds=120)
  assert dynamic["words"] == 18 and dynamic["sentences"] == 4
  assert dynamic["skipped_sentences"] == 0 and dynamic["fixed_time"] is None
  assert dynamic["words_per_second"] == pytest.approx(18 / dynamic["seconds"])
  fixed = latency.measure_throughput(int8_file, sentences, threads=1, timeout_seconds=120)
  assert fixed["words"] == 9 and fixed["skipped_sentences"] == 1 and fixed["fixed_time"] == 10
  with pytest.raises(ValueError, match="at least one sentence"):
    latency.measure_throughput(exported[0], [], threads=1)
  with pytest.raises(ValueError, match="int32"):
    latency.measure_throughput(exported[0], [sentences[0].astype(np.int64)], threads=1)
