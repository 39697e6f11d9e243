"""compress() end to end on a tiny trained model: both methods, exports, report, bad input."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.compression import (CompressConfig, compress, prunable_weights)
from prunelm_tf.compression.methods.threshold import ThresholdOptions
from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.training.run_folder import load_run
from tests.tolerance import assert_float32_close


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


def test_every_variant_records_the_perplexity_of_valid_beside_eval(tiny_run_dir, tiny_text,
                                                                   tmp_path):
  """--valid: a held-out perplexity per variant (what settings are chosen by), in the record,
  the summary and the HParams scalars; not recorded when unset."""
  lines = open(tiny_text).read().splitlines()
  valid = tmp_path / "valid.txt"
  valid.write_text("\n".join(lines[: len(lines) // 3]) + "\n")
  config = CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, valid=str(valid),
                          method="threshold", sparsity_sweep=(0.5,),
                          tflite_quantization=(), num_parity_sentences=1)
  run_dir = str(tmp_path / "c")
  result = compress(config, run_dir)
  for v in (result["dense"], result["variants"][0]):
    assert set(v["valid_perplexity"]) == {"forward", "backward", "mean"}
    assert v["valid_perplexity"]["mean"] != v["perplexity"]["mean"]  # another text
  assert (result["variants"][0]["valid_perplexity"]["mean"]
          > result["dense"]["valid_perplexity"]["mean"])
  summary = open(os.path.join(run_dir, "summary.md")).read()
  assert "| valid ppl mean |" in summary
  assert f"| {result['variants'][0]['valid_perplexity']['mean']:.2f} |" in summary
  assert json.load(open(os.path.join(run_dir, "config.json")))["valid"] == str(valid)
  unset = CompressConfig(model_dir=tiny_run_dir, eval=tiny_text)
  assert "valid" not in json.loads(unset.to_json())  # older run folders still resume


def test_a_valid_corpus_that_does_not_fit_the_vocabulary_is_refused(tiny_run_dir, tiny_text,
                                                                    tmp_path):
  other = tmp_path / "other.txt"
  other.write_text("Das ist ein ganz anderer Text .\nNoch ein Satz hier .\n")
  with pytest.raises(ValueError, match="--valid: .* not in the model's vocabulary"):
    compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, valid=str(other)),
             str(tmp_path / "o"))
  assert not (tmp_path / "o").exists()


def test_model_folder_without_model(tmp_path, tiny_text):
  (tmp_path / "m").mkdir()
  (tmp_path / "m" / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match="--model_dir.*holds no model"):
    compress(CompressConfig(model_dir=str(tmp_path / "m"), eval=tiny_text), str(tmp_path / "o"))
  assert not (tmp_path / "o").exists()


def test_a_compression_run_folder_as_model_dir_names_its_variants(tiny_run_dir, tiny_text,
                                                                  tmp_path):
  first = str(tmp_path / "c")
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, sparsity_sweep=(0.5,),
                          tflite_quantization=(), num_parity_sentences=1), first)
  with pytest.raises(FileNotFoundError) as e:
    compress(CompressConfig(model_dir=first, eval=tiny_text), str(tmp_path / "o"))
  message = str(e.value)
  assert message.startswith(f"--model_dir: {first} is a run folder of pipelines.compress, "
                            "not of pipelines.train")
  assert os.path.join(first, "variants", "threshold_50") in message
  assert tiny_run_dir in message  # the training run folder it compressed
  assert "did not finish" not in message and "pipelines.train again" not in message
  assert not (tmp_path / "o").exists()


def test_corpus_that_does_not_fit_the_vocabulary(tiny_run_dir, tmp_path):
  other = tmp_path / "other.txt"
  other.write_text("Das ist ein ganz anderer Text .\nNoch ein Satz hier .\n")
  with pytest.raises(ValueError, match="--eval: .* not in the model's vocabulary"):
    compress(CompressConfig(model_dir=tiny_run_dir, eval=str(other)), str(tmp_path / "o"))
  assert not (tmp_path / "o").exists()


def test_pattern_matching_nothing_fails_before_work(tiny_run_dir, tiny_text, tmp_path):
  with pytest.raises(ValueError, match="matches no prunable weight"):
    compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text,
                            layer_sparsity=(("highway_.*", 0.5),)), str(tmp_path / "o"))
  assert not (tmp_path / "o").exists()


def test_run_folder_of_another_run_is_refused(tiny_run_dir, tiny_text, tmp_path):
  run_dir = str(tmp_path / "o")
  base = dict(model_dir=tiny_run_dir, eval=tiny_text, tflite_quantization=(),
              num_parity_sentences=1)
  compress(CompressConfig(**base, sparsity_sweep=(0.5,)), run_dir)
  with pytest.raises(ValueError, match="holds a different run"):
    compress(CompressConfig(**base, sparsity_sweep=(0.7,)), run_dir)
  assert os.path.exists(os.path.join(run_dir, "variants", "threshold_50", "metrics.json"))


def test_sensitivity_allocation_keeps_overall_sparsity(tiny_run_dir, tiny_text, tmp_path):
  config = CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.6,), method_options=ThresholdOptions(allocation="sensitivity"),
                          calibration=tiny_text, calibration_sentences=4,
                          layer_sparsity=(("softmax", 0.0),), tflite_quantization=(),
                          num_parity_sentences=1)
  run_dir = str(tmp_path / "s")
  result = compress(config, run_dir)
  v = result["variants"][0]
  assert v["name"] == "threshold_sens_60" and v["allocation"] == "sensitivity"
  assert v["method_options"] == {"scope": "layer", "allocation": "sensitivity"}
  per_weight = v["sparsity"]["per_weight"]
  assert per_weight["softmax/kernel"] == 0.0  # an explicit override is kept
  free = [n for n in per_weight if not n.startswith("softmax")]
  assert set(v["allocated_targets"]) == set(free)
  sizes = {n: w.shape.num_elements()
           for n, w in prunable_weights(load_run(tiny_run_dir)[0]).items()}
  zeros = sum(per_weight[n] * sizes[n] for n in free)
  assert zeros / sum(sizes[n] for n in free) == pytest.approx(0.6, abs=1e-3)
  assert len({round(per_weight[n], 2) for n in free}) > 1  # not uniform
  curves = json.load(open(os.path.join(run_dir, "cache", "sensitivity.json")))
  assert set(curves["curves"]) == set(free) and curves["num_sentences"] == 4


def test_overwrite_never_deletes_the_input_model(tiny_run_dir, tiny_text):
  """--model_dir=X --run_dir=X --overwrite used to delete the trained model."""
  before = sorted(os.listdir(tiny_run_dir))
  config = CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.5,), tflite_quantization=())
  with pytest.raises(ValueError, match="is or holds the input --model_dir"):
    compress(config, tiny_run_dir, overwrite=True)
  assert sorted(os.listdir(tiny_run_dir)) == before
  load_run(tiny_run_dir)  # still loads


def test_reuse_dense_copies_an_agreeing_dense_entry_instead_of_measuring_it(monkeypatch,
                                                                           tiny_run_dir,
                                                                           tiny_text, tmp_path):
  """--reuse_dense: another method on the same model and settings copies the dense entry
  (nothing of it exported again, the same figures); other settings measure their own."""
  from prunelm_tf.compression import pipeline  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.run_folder import (CompressionRunFolder,  # pylint: disable=import-outside-toplevel
                                                 reuse_dense_entry)
  exported = []
  real_export = pipeline.export_saved_model
  monkeypatch.setattr(pipeline, "export_saved_model",
                      lambda model, path: (exported.append(path), real_export(model, path))[1])
  base = dict(model_dir=tiny_run_dir, eval=tiny_text, tflite_quantization=(),
              num_parity_sentences=1)
  donor = str(tmp_path / "threshold")
  first = compress(CompressConfig(**base, method="threshold", sparsity_sweep=(0.5,)), donor)
  exported.clear()
  other = CompressConfig(**base, method="threshold", sparsity_sweep=(0.6,),
                         method_options=ThresholdOptions(allocation="sensitivity"),
                         calibration=tiny_text, calibration_sentences=4)
  second = compress(other, str(tmp_path / "sens"), reuse_dense=(donor,))
  assert [os.path.basename(os.path.dirname(p)) for p in exported] == ["threshold_sens_60"]
  assert second["dense"] == first["dense"]
  for name in ("saved_model/saved_model.pb", "saved_model.zip", "metrics.json", "config.json"):
    assert os.path.exists(tmp_path / "sens" / "dense" / name), name
  # Other parity sentences describe the dense model otherwise: that donor is not used.
  parity2 = json.loads(CompressConfig(**dict(base, num_parity_sentences=2)).to_json())
  used, refused = reuse_dense_entry(CompressionRunFolder(str(tmp_path / "parity2")), parity2,
                                    [donor, str(tmp_path / "sens")])
  assert used is None and not os.path.exists(tmp_path / "parity2" / "dense")
  assert refused == {donor: ["num_parity_sentences"],
                     str(tmp_path / "sens"): ["num_parity_sentences"]}
  # --train and --calibration do not describe the dense entry (with --eval, without int8).
  other_train = json.loads(CompressConfig(**base, train=tiny_text, calibration=tiny_text,
                                          calibration_sentences=3).to_json())
  used, _ = reuse_dense_entry(CompressionRunFolder(str(tmp_path / "train")), other_train,
                              [donor])
  assert used == donor and os.path.exists(tmp_path / "train" / "dense" / "metrics.json")


def test_reuse_dense_of_a_folder_that_is_no_compression_run_is_refused(tiny_run_dir, tiny_text,
                                                                       tmp_path):
  config = CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, tflite_quantization=())
  for donor, why in ((str(tmp_path / "missing"), "no config.json"),
                     (tiny_run_dir, "not a pipelines.compress config")):
    with pytest.raises(ValueError, match=f"--reuse_dense: .* is not a compression run folder "
                                         f"\\(.*{why}"):
      compress(config, str(tmp_path / "c"), reuse_dense=(donor,))
    assert not os.path.exists(tmp_path / "c")
