"""find_variants on a tiny compression run: stray TFLite files in a variant folder."""

import logging
import os
import shutil

import pytest

from prunelm_tf.compression import CompressConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.evaluation.variants import find_variants
from tests.dense_reuse import compress


@pytest.fixture(scope="module")
def compressed(tiny_run_dir, tiny_text, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("variants") / "c")
  # No TFLite export: the stray files below are all these tests look at.
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.5,), tflite_quantization=(),
                          num_parity_sentences=1), run_dir)
  return run_dir


@pytest.fixture
def run_copy(compressed, tmp_path):
  run_dir = str(tmp_path / "run")
  shutil.copytree(compressed, run_dir)
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
