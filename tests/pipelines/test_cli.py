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


def test_debug_shows_the_traceback():
  result = _run("pipelines.compress", "--model_dir=m", "--eval=e", "--sparsity_sweep=1.0",
                "--debug")
  assert result.returncode != 0 and "Traceback" in result.stderr


def test_final_sparsity_is_a_one_value_sweep_and_not_combined():
  result = _run("pipelines.compress", "--model_dir=m", "--eval=e", "--final_sparsity=0.8",
                "--sparsity_sweep=0.5")
  assert result.returncode != 0 and "--final_sparsity is a one-value --sparsity_sweep" in \
      result.stderr
