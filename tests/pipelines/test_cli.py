"""User errors of the entry points: one line naming the flag or file, status 2, no traceback."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _run(*args):
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,expected", [
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--sparsity_sweep=1.0"],
     "error: each --sparsity_sweep (--final_sparsity) value must be in [0, 1), got 1.0"),
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--method=retrain", "--train=t",
      "--frequency=0"], "error: --frequency must be >= 1"),
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--method=retrain", "--train=t",
      "--retrain_dropout=1.0"], "error: retraining dropout must be in [0, 1), got 1.0"),
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--method=retrain", "--train=t",
      "--num_steps=10", "--warmup_steps=10"],
     "error: --warmup_steps (10) must be fewer than --num_steps (10)"),
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--method=retrain", "--train=t",
      "--adam_epsilon=0"], "error: --adam_epsilon must be a finite number > 0, got 0.0"),
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--method=retrain", "--train=t",
      "--retrain_average_last=1"], "error: --retrain_average_last must be in [0, 1), got 1.0"),
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--method=retrain", "--train=t",
      "--retrain_frozen=softmax,softmax"],
     "error: --retrain_frozen must be distinct comma-separated layer names, got 'softmax,softmax'"),
    (["pipelines.compress", "--model_dir=/nonexistent/run", "--eval=e"],
     "error: --model_dir: /nonexistent/run has no config.json"),
])
def test_user_error_is_one_line_without_traceback(args, expected):
  result = _run(*args)
  assert result.returncode == 2, result.stderr
  assert expected in result.stderr
  assert "Traceback" not in result.stderr
  # TensorFlow's own start-up lines are hidden too.
  assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr
  assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


@pytest.mark.parametrize("args,expected", [
    # Parsed by absl before main: an integer flag given a word, a required flag missing, an
    # unknown flag.
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--num_parity_sentences=x"],
     "error: flag --num_parity_sentences=x: invalid literal for int() with base 10: 'x'"),
    (["pipelines.evaluate", "--target=t", "--latency_runs=x"],
     "error: flag --latency_runs=x: invalid literal for int() with base 10: 'x'"),
    (["pipelines.evaluate"], "error: flag --target=None: Flag --target must have a value"),
    (["pipelines.train", "--no_such_flag=1"], "error: Unknown command line flag 'no_such_flag'"),
    (["pipelines.embed", "--input_file=i", "--output_file=o", "--batch_size=x"],
     "error: flag --batch_size=x: invalid literal for int() with base 10: 'x'"),
    # Refused by main with absl's UsageError.
    (["pipelines.compress", "--model_dir=m", "--eval=e", "--sparsity_sweep=abc"],
     "error: --sparsity_sweep takes numbers, got ['abc']."),
    (["pipelines.evaluate", "--target=t", "stray"], "error: unexpected arguments: ['stray']"),
])
def test_flag_error_is_one_line_and_a_hint_with_status_2(args, expected):
  result = _run(*args)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-2000:]
  assert lines[0].startswith(expected), result.stderr[-2000:]
  assert len(lines) == 2 and "--helpfull" in lines[1], result.stderr[-2000:]
  assert result.stdout == ""


def test_debug_shows_the_traceback():
  result = _run("pipelines.compress", "--model_dir=m", "--eval=e", "--sparsity_sweep=1.0",
                "--debug")
  assert result.returncode != 0 and "Traceback" in result.stderr


def test_final_sparsity_is_a_one_value_sweep_and_not_combined():
  result = _run("pipelines.compress", "--model_dir=m", "--eval=e", "--final_sparsity=0.8",
                "--sparsity_sweep=0.5")
  assert result.returncode != 0 and "--final_sparsity is a one-value --sparsity_sweep" in \
      result.stderr


def test_stderr_filter_drops_only_cpp_log_lines():
  from pipelines._stderr_filter import _CPP_LINE  # pylint: disable=import-outside-toplevel
  dropped = [b"I0000 00:00:1795389726.759761   28736 cudart_stub.cc:31] Could not find cuda",
             b"E0000 00:00:1795389530.780838    2527 cuda_platform.cc:52] failed call to cuInit",
             b"WARNING: All log messages before absl::InitializeLog() is called are written",
             b"2026-11-22 23:19:22.500669: I tensorflow/core/util/port.cc:153] oneDNN custom",
             b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."]
  kept = [b"I1122 23:45:08.630376 139997856582528 weights.py:308] Loaded ELMo biLM",
          b"error: --frequency must be >= 1, got 0.", b"Traceback (most recent call last):"]
  assert all(_CPP_LINE.match(line) for line in dropped)
  assert not any(_CPP_LINE.match(line) for line in kept)


def test_library_info_records_are_dropped_but_ours_and_warnings_kept():
  import logging  # pylint: disable=import-outside-toplevel
  from pipelines.cli import _not_a_library_info  # pylint: disable=import-outside-toplevel

  def record(path, level):
    return logging.LogRecord("absl", level, path, 1, "m", (), None)
  site = "/venv/lib/python3.11/site-packages"
  assert not _not_a_library_info(record(f"{site}/tensorflow/python/saved_model/x.py",
                                        logging.INFO))
  assert _not_a_library_info(record(f"{site}/tensorflow/python/x.py", logging.WARNING))
  assert _not_a_library_info(record("/repo/prunelm_tf/compression/pipeline.py", logging.INFO))
