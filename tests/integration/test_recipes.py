"""Recipes end to end on the tiny model: a book recipe, its exact rerun, and three stages."""

import os

import numpy as np

from prunelm_tf.compression import recipes, staged
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.evaluation.variants import find_variants
from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.utils import files

# Seconds on the tiny model: every stage's training and calibration shrunk.
TINY = ["run.calibration_sentences=5", "run.num_parity_sentences=2",
        'run.tflite_quantization=["none"]']


def _weights(variant_dir):
  return [w.numpy() for w in load_saved_model(os.path.join(variant_dir, "saved_model")).weights]


def test_a_book_recipe_and_its_config_file_give_identical_masks(tiny_run_dir, tiny_text,
                                                                tmp_path):
  recipe = recipes.apply_overrides(recipes.load_recipe("obs_50"), TINY)
  inputs = {"model_dir": tiny_run_dir, "eval": tiny_text, "calibration": tiny_text}
  first = staged.run_recipe(recipe, inputs, str(tmp_path / "a"))
  again = staged.rerun(str(tmp_path / "a" / "config.json"), str(tmp_path / "b"))
  assert [v["name"] for v in first["variants"]] == ["obs_osens_50"]
  assert files.read_json(str(tmp_path / "a" / "config.json")) == \
      files.read_json(str(tmp_path / "b" / "config.json"))
  a = _weights(str(tmp_path / "a" / "variants" / "obs_osens_50"))
  b = _weights(str(tmp_path / "b" / "variants" / "obs_osens_50"))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x == 0, y == 0)
    np.testing.assert_array_equal(x, y)
  assert first["variants"][0]["sparsity"]["overall"] > 0.3


def test_three_stages_run_through_export_parity_and_evaluation(tiny_run_dir, tiny_text, tmp_path):
  recipe = recipes.recipe_from_dict("three", {
      "purpose": "test only: structured, then OBS, then clustering",
      "applies_to": ["softmax"],
      "stages": [{"method": "structured", "amount": [0.25]},
                 {"method": "obs", "amount": [0.5], "layer_sparsity": [["softmax", 0.0]]},
                 {"method": "cluster", "amount": [0.75], "layer_sparsity": [["softmax", 0.0]]}],
      "run": {"calibration_sentences": 5, "num_parity_sentences": 2,
              "tflite_quantization": ["none", "dynamic"]}})
  run_dir = str(tmp_path / "three")
  inputs = {"model_dir": tiny_run_dir, "eval": tiny_text, "calibration": tiny_text}
  result = staged.run_recipe(recipe, inputs, run_dir)
  assert [s["method"] for s in result["stages"]] == ["structured", "obs", "cluster"]
  structured, obs, cluster = result["stages"]
  assert structured["variants"][0]["num_parameters"] < structured["variants"][0][
      "num_parameters_before"]
  assert obs["variants"][0]["num_parameters_before"] == structured["variants"][0][
      "num_parameters"]
  assert obs["variants"][0]["sparsity"] > 0.3
  for stage in result["stages"]:
    assert stage["variants"][0]["perplexity_delta_pct"] is not None
  metrics = files.read_json(os.path.join(run_dir, "metrics.json"))
  assert metrics["final_stage_dir"] == os.path.join("stages", "3_cluster")
  assert "| 3 | cluster |" in open(os.path.join(run_dir, "summary.md")).read()
  final = os.path.join(run_dir, metrics["final_stage_dir"])
  variant = files.read_json(os.path.join(final, "metrics.json"))["variants"][0]
  assert set(variant["tflite_parity"]) == {"none", "dynamic"}
  assert variant["tflite_parity"]["none"]["min_cosine"] > 0.999
  # Evaluation reads the recipe run as its last stage.
  assert [v.name for v in find_variants(run_dir)] == ["dense", "cluster_4"]
  entries = evaluate(EvaluateConfig(target=run_dir, perplexity_corpus=tiny_text,
                                    measure_latency=False), str(tmp_path / "eval"))
  assert {e["name"] for e in entries} == {"dense/none", "dense/dynamic", "cluster_4/none",
                                          "cluster_4/dynamic"}
  assert all(e["perplexity"]["mean"] > 1 for e in entries)
  # The recorded recipe resumes in its folder: every stage's variant is kept, not redone.
  made = os.path.join(final, "variants", "cluster_4", "metrics.json")
  stamp = os.path.getmtime(made)
  staged.rerun(os.path.join(run_dir, "config.json"), run_dir)
  assert os.path.getmtime(made) == stamp
