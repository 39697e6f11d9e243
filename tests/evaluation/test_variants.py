"""find_variants on a tiny compression run: stray TFLite files in a variant folder."""

import logging
import os
import shutil

import pytest

from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.evaluation.variants import find_variants


@pytest.fixture
def run_copy(threshold_50_run, tmp_path):
  """A copy of the shared threshold run: no TFLite export, so the stray files the tests add
  are all the TFLite files it holds."""
  run_dir = str(tmp_path / "run")
  shutil.copytree(threshold_50_run, run_dir)
  return run_dir


def test_our_tflite_name_with_an_unknown_mode_is_refused_before_any_work(run_copy, tmp_path):
  stray = os.path.join(run_copy, "variants", "threshold_50", "bilm_int4.tflite")
  with open(stray, "wb") as f:
    f.write(b"not a model")
  with pytest.raises(ValueError, match=r"bilm_int4\.tflite.*'int4'.*none, dynamic"):
    find_variants(run_copy)
  out_dir = tmp_path / "evaluation"
  with pytest.raises(ValueError, match=r"bilm_int4\.tflite"):
    evaluate(EvaluateConfig(target=run_copy, measure_latency=False), str(out_dir))
  assert not out_dir.exists()  # refused before the dense entry was evaluated


def test_a_foreign_tflite_file_is_ignored_with_a_warning(run_copy, caplog):
  stray = os.path.join(run_copy, "variants", "threshold_50", "extra.tflite")
  with open(stray, "wb") as f:
    f.write(b"not a model")
  with caplog.at_level(logging.WARNING):
    variants = find_variants(run_copy)
  assert [v.name for v in variants] == ["dense", "threshold_50"]
  assert all(v.tflite == {} for v in variants)
  assert any("extra.tflite" in r.getMessage() and "ignored" in r.getMessage()
             for r in caplog.records)
