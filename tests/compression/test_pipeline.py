"""compress() on a tiny trained model: run folders, --valid, --reuse_dense, bad input. Each run writes only what its test asserts (no TFLite); the run through every artifact
is tests/integration/test_pipeline.py (e2e)."""

import json
import os

import pytest

from prunelm_tf.compression import CompressConfig, compress
from prunelm_tf.compression.methods.threshold import ThresholdOptions
from prunelm_tf.training.run_folder import load_run
from tests.conftest import THRESHOLD_50


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
                                                                  threshold_50_run, tmp_path):
  first = threshold_50_run
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


def test_run_folder_of_another_run_is_refused(tiny_run_dir, tiny_text, threshold_50_run):
  run_dir = threshold_50_run
  before = json.load(open(os.path.join(run_dir, "config.json")))
  with pytest.raises(ValueError, match="holds a different run"):
    compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text,
                            **dict(THRESHOLD_50, sparsity_sweep=(0.7,))), run_dir)
  assert os.path.exists(os.path.join(run_dir, "variants", "threshold_50", "metrics.json"))
  assert json.load(open(os.path.join(run_dir, "config.json"))) == before
  assert not os.path.exists(os.path.join(run_dir, "variants", "threshold_70"))


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
                                                                           tiny_text,
                                                                           threshold_50_run,
                                                                           tmp_path):
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
  donor = threshold_50_run  # method threshold, sweep (0.5,), the settings of ``base``
  assert json.loads(CompressConfig(**base, method="threshold", sparsity_sweep=(0.5,)).to_json()
                    ) == json.load(open(os.path.join(donor, "config.json")))
  first = json.load(open(os.path.join(donor, "metrics.json")))
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
