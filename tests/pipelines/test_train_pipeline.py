"""pipelines.train end to end with the committed tiny flagfile."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_train_entry_point_with_tiny_flagfile(shared_data, tmp_path):
  run_dir = tmp_path / "tiny"
  result = subprocess.run(
      [sys.executable, "-m", "pipelines.train", "--flagfile=pipelines/flags/tiny.flags",
       f"--run_dir={run_dir}", "--num_epochs=1"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "test perplexity: forward" in result.stdout
  metrics = json.loads((run_dir / "metrics.json").read_text())
  assert set(metrics["perplexity"]) == {"valid", "test"}
  flags_txt = (run_dir / "flags.txt").read_text()
  assert "--num_epochs=1.0" in flags_txt and "--token_encoder=word" in flags_txt


def test_train_entry_point_names_the_flag_for_a_missing_corpus(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "pipelines.train", f"--train={tmp_path}/missing.txt",
       f"--run_dir={tmp_path}/run"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "--train" in result.stderr and "missing.txt" in result.stderr
  assert not os.path.exists(tmp_path / "run")
