"""compress() end to end on the tiny model: a threshold sweep through every artifact (sizes,
TFLite per mode, report, HParams), the exported model reloaded, and the same run again.

The default suite's tests of the pipeline (tests/compression/test_pipeline.py) each write
only what they assert; this one writes everything (minutes): `python -m pytest -m e2e`.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.compression import CompressConfig, compress
from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.training.run_folder import load_run
from tests.tolerance import assert_float32_close

pytestmark = pytest.mark.e2e


def test_threshold_sweep_exports_measures_and_shrinks(tiny_run_dir, tiny_text, tmp_path):
  config = CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.3, 0.6, 0.9), tflite_quantization=("none", "dynamic"),
                          num_parity_sentences=2)
  run_dir = str(tmp_path / "c")
  result = compress(config, run_dir)
  saved = json.load(open(os.path.join(run_dir, "metrics.json")))
  assert [v["name"] for v in saved["variants"]] == ["threshold_30", "threshold_60", "threshold_90"]
  zips = [saved["dense"]["sizes"]["saved_model_zip_bytes"]] + \
      [v["sizes"]["saved_model_zip_bytes"] for v in saved["variants"]]
  assert zips == sorted(zips, reverse=True) and zips[-1] < zips[0]  # zip falls as sparsity rises
  gz = [v["sizes"]["tflite"]["none"]["gzip_bytes"] for v in saved["variants"]]
  assert gz == sorted(gz, reverse=True)
  for v in saved["variants"]:
    for name, value in v["sparsity"]["per_weight"].items():
      assert abs(value - v["target_sparsity"]) < 0.01, (v["name"], name)  # exact up to rounding
    assert v["tflite_max_abs_diff"]["none"] <= 1e-5
    assert v["tflite_max_abs_diff"]["dynamic"] < 0.5
    assert set(v["perplexity"]) == {"forward", "backward", "mean"}
    assert set(v["representation_similarity"]) == {"layer_0", "layer_1", "layer_2"}
    for f in ("saved_model", "saved_model.zip", "bilm_none.tflite", "bilm_dynamic.tflite"):
      assert os.path.exists(os.path.join(run_dir, "variants", v["name"], f))
  ppl = [saved["dense"]["perplexity"]["forward"]] + [v["perplexity"]["forward"]
                                                    for v in saved["variants"]]
  assert ppl[-1] > ppl[0]  # 90% thresholding costs perplexity
  assert "| threshold_90 | threshold | 0.90 |" in open(os.path.join(run_dir, "summary.md")).read()
  assert os.listdir(os.path.join(run_dir, "tensorboard", "hparams"))
  # The stripped, exported SavedModel reloads with the same outputs and sparsity.
  exported = load_saved_model(os.path.join(run_dir, "variants", "threshold_60", "saved_model"))
  ids = tf.constant([[1, 5, 6, 7, 2]], tf.int32)
  dense, _, _ = load_run(tiny_run_dir)
  kernel = exported.get_layer("forward_lstm_0").kernel.numpy()
  assert abs(1 - np.count_nonzero(kernel) / kernel.size - 0.6) < 0.01
  served = tf.saved_model.load(os.path.join(run_dir, "variants", "threshold_60", "saved_model"))
  assert_float32_close(served.signatures["serving_default"](token_ids=ids)["representations"],
                       exported(ids)["representations"])
  assert not np.allclose(exported(ids)["representations"], dense(ids)["representations"])
  # Same run again: finished variants are kept, not recomputed.
  again = compress(config, run_dir)
  assert again["variants"] == saved["variants"]
