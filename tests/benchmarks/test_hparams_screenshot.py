"""The pure parts of benchmarks/hparams_screenshot.py (the browser run is a benchmark)."""

import socket

from benchmarks import hparams_screenshot as shot
from prunelm_tf.reporting import hparams as H


def test_written_sessions_pass_the_checks(tmp_path):
  sessions = [H.Session("dense-none", {"method": "dense"}, "none", {"perplexity/mean": 9.0}),
              H.Session("threshold_50-none", {"method": "threshold", "target_sparsity": 0.5},
                        "none", {"perplexity/mean": 10.0})]
  H.write_hparams(str(tmp_path / "h"), sessions)
  assert shot.check_sessions(H.read_hparams(str(tmp_path / "h"))) == []


def test_incomplete_sessions_are_reported():
  found = {"columns": ["method", "quantization"], "metrics": [],
           "sessions": {"a": {"hparams": {"method": "dense"}, "scalars": ["x"]},
                        "b": {"hparams": {"method": "dense", "quantization": "none",
                                          "group": "g"}, "scalars": []}}}
  problems = shot.check_sessions(found)
  assert "the experiment declares no metrics" in problems
  assert "session a: columns differ from the experiment's (missing ['quantization'], extra [])" \
      in problems
  assert "session b: columns differ from the experiment's (missing [], extra ['group'])" \
      in problems
  assert "session b: no scalars" in problems
  assert shot.check_sessions({"columns": [], "metrics": [], "sessions": {}})[-1].startswith(
      "no sessions")


def test_missing_rows_and_free_port():
  assert shot.missing_rows("Trial ID dense-none threshold_50-none", ["dense-none", "x-none"]) == [
      "x-none"]
  port = shot.free_port()
  with socket.socket() as s:
    s.bind(("127.0.0.1", port))  # still free
