"""pipelines.evaluate as a user starts it (a subprocess): bad input. The command run to the
end on a compression run is in tests/integration/test_evaluate.py (e2e) and, killed and
resumed, in tests/integration/test_kill_resume.py."""

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path):
  result = subprocess.run([sys.executable, "-m", "pipelines.evaluate", f"--target={tmp_path}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "neither a run folder" in result.stderr
