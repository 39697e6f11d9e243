"""pipelines.evaluate end to end (a subprocess, as a user starts it)."""

import json
import os
import subprocess
import sys

from prunelm_tf.compression import CompressConfig, compress
from tests.conftest import REPO_ROOT


def test_evaluate_a_compression_run(tiny_run_dir, tiny_text, tmp_path):
  run_dir = str(tmp_path / "c")
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, sparsity_sweep=(0.5,),
                          tflite_quantization=("none",), num_parity_sentences=1), run_dir)
  result = subprocess.run(
      [sys.executable, "-m", "pipelines.evaluate", f"--target={run_dir}",
       f"--perplexity_corpus={tiny_text}", "--latency_runs=3", "--latency_threads=1",
       "--latency_tokens=4"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  saved = json.load(open(os.path.join(run_dir, "evaluation", "evaluation.json")))
  assert [e["name"] for e in saved["entries"]] == ["dense/none", "threshold_50/none"]
  assert all(e["perplexity"]["mean"] > 1 for e in saved["entries"])
  assert all(e["latency"]["tflite"]["1"]["p50_ms"] > 0 for e in saved["entries"])
  assert "threshold_50/none" in result.stdout


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path):
  result = subprocess.run([sys.executable, "-m", "pipelines.evaluate", f"--target={tmp_path}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "neither a run folder" in result.stderr
