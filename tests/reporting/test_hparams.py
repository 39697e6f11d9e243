"""Tests for prunelm_tf.reporting.hparams: the registry's columns on every session, read back."""

import os

import pytest

from prunelm_tf.compression import report as compression_report
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.reporting import hparams as H


def _sessions():
  dense = {"method": "dense"}
  uniform = {"method": "threshold", "method_options": {"allocation": "uniform"},
             "target_sparsity": 0.5}
  retrained = {"method": "retrain", "method_options": None, "target_sparsity": 0.9}
  unknown = {"method": "not_registered", "target_sparsity": 0.3}
  return [H.Session("dense/none", dense, "none", {"perplexity/mean": 100.0, "sst2/accuracy": None}),
          H.Session("threshold_50/dynamic", uniform, "dynamic", {"perplexity/mean": 104.0}),
          H.Session("retrain_90/none", retrained, "none", {"perplexity/mean": 102.0,
                                                           "ner/test_f1": 0.8}),
          H.Session("other_30/none", unknown, "none", {})]


def test_every_session_has_the_same_columns(tmp_path):
  log_dir = str(tmp_path / "hparams")
  H.write_hparams(log_dir, _sessions(), metrics=["perplexity/mean", "sst2/accuracy"])
  found = H.read_hparams(log_dir)
  columns = set(H.hparam_domains()) | {"target_sparsity", "quantization"}
  assert set(found["columns"]) == columns
  # The registry's keys are columns: every key of every method's hparam_domains.
  for method in REGISTRY.values():
    assert set(method.hparam_domains) <= columns
  assert found["metrics"] == ["perplexity/mean", "sst2/accuracy", "ner/test_f1"]
  sessions = found["sessions"]
  assert sorted(sessions) == ["dense-none", "other_30-none", "retrain_90-none",
                              "threshold_50-dynamic"]
  for name, session in sessions.items():
    assert set(session["hparams"]) == columns, name
  assert sessions["threshold_50-dynamic"]["hparams"]["allocation"] == "uniform"
  assert sessions["threshold_50-dynamic"]["hparams"]["retrain_objective"] == H.NOT_APPLICABLE
  assert sessions["threshold_50-dynamic"]["hparams"]["target_sparsity"] == pytest.approx(0.5)
  assert sessions["retrain_90-none"]["hparams"]["allocation"] == H.NOT_APPLICABLE
  assert sessions["dense-none"]["hparams"]["method"] == "dense"
  # Scalars: the measured ones only (None is not written).
  assert sessions["dense-none"]["scalars"] == ["perplexity/mean"]
  assert sessions["retrain_90-none"]["scalars"] == ["ner/test_f1", "perplexity/mean"]
  assert sessions["other_30-none"]["scalars"] == []


def test_rewrite_replaces_the_sessions(tmp_path):
  log_dir = str(tmp_path / "hparams")
  H.write_hparams(log_dir, _sessions())
  H.write_hparams(log_dir, _sessions()[:1])
  assert sorted(os.listdir(log_dir))[0] == "dense-none"
  assert [d for d in os.listdir(log_dir) if os.path.isdir(os.path.join(log_dir, d))] == [
      "dense-none"]
  assert len([f for f in os.listdir(log_dir) if f.startswith("events")]) == 1
  assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_bad_input():
  with pytest.raises(ValueError, match="distinct trial ids"):
    H.write_hparams("/nonexistent/never", [_sessions()[0], _sessions()[0]])
  with pytest.raises(FileNotFoundError, match="no TensorBoard event file"):
    H.read_hparams("/nonexistent/never")


def test_compression_sessions_and_options_text():
  def record(name, method, options, modes, **extra):
    return {"name": name, "method": method, "method_options": options, "target_sparsity": 0.5,
            "sparsity": {"overall": 0.5}, "perplexity": {"forward": 1.0, "backward": 2.0,
                                                        "mean": 1.5},
            "sizes": {"saved_model_bytes": 10, "saved_model_zip_bytes": 5,
                      "tflite": {m: {"bytes": 4, "gzip_bytes": 3} for m in modes}},
            "tflite_max_abs_diff": {m: 0.0 for m in modes}, **extra}
  result = {"dense": record("dense", "dense", None, ["none", "dynamic"]),
            "variants": [record("threshold_50", "threshold", {"scope": "layer"}, ["none"],
                                tflite_errors={"int8": "crashed"})]}
  sessions = compression_report.hparam_sessions(result)
  assert [s.trial_id for s in sessions] == ["dense-none", "dense-dynamic", "threshold_50-none"]
  assert sessions[2].scalars["size/tflite_gzip_bytes"] == 3
  assert H.options_text(result["variants"][0]) == (
      "threshold_scope=layer, allocation=uniform")
  assert H.options_text(result["dense"]) == "—"
  table = compression_report.markdown_table(result)
  assert "| threshold_50 | threshold | sparsity 0.50 |" in table  # the amount by its name
  assert "tflite_int8: crashed" in table  # the failure is in the summary table
