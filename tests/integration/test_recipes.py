"""Recipes end to end on the tiny model: a book recipe, its exact rerun, and three stages."""

import os

import numpy as np
import pytest

from prunelm_tf.compression import recipes, staged
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.evaluation.variants import find_variants
from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.utils import files

pytestmark = pytest.mark.e2e

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


def _zeros(variant_dir):
  return [w == 0 for w in _weights(variant_dir)]


def test_retrain_90_is_obs_then_finetuning_that_keeps_the_masks(tiny_run_dir, tiny_text,
                                                              tmp_path):
  """The book's best 90 % recipe, shrunk to seconds: the finetune stage keeps the OBS
  stage's zeros exactly, trains the rest, and is taught by the original model."""
  recipe = recipes.apply_overrides(recipes.load_recipe("retrain_90"), TINY + [
      "obs.amount=0.6", "finetune.retrain.num_steps=4", "finetune.retrain.batch_size=2",
      "finetune.retrain.warmup_steps=1", "finetune.retrain.checkpoint_every_steps=2"])
  run_dir = str(tmp_path / "r")
  inputs = {"model_dir": tiny_run_dir, "train": tiny_text, "eval": tiny_text,
            "calibration": tiny_text}
  result = staged.run_recipe(recipe, inputs, run_dir)
  obs, finetune = result["stages"]
  assert (obs["method"], finetune["method"]) == ("obs", "finetune")
  assert [v["name"] for v in finetune["variants"]] == ["finetune"]
  pruned = os.path.join(run_dir, obs["run_dir"], "variants", obs["variants"][0]["name"])
  tuned = os.path.join(run_dir, finetune["run_dir"], "variants", "finetune")
  for before, after in zip(_zeros(pruned), _zeros(tuned)):
    np.testing.assert_array_equal(before, after)
  assert any(not np.allclose(a, b) for a, b in zip(_weights(pruned), _weights(tuned)))
  recorded = files.read_json(os.path.join(run_dir, finetune["run_dir"], "config.json"))
  assert recorded["teacher_dir"] == tiny_run_dir
  variant = files.read_json(os.path.join(run_dir, finetune["run_dir"], "metrics.json"))[
      "variants"][0]
  assert variant["finetuning"]["num_train_steps"] == 4
  assert abs(variant["sparsity"]["overall"] - obs["variants"][0]["sparsity"]) < 1e-9


def test_an_elmo_recipe_distils_its_later_stage_from_the_released_model(shared_data,
                                                                        tmp_path):
  """A released ELMo (no softmax) through obs -> finetune (distill): the second stage is
  taught by the ELMo itself (the first stage's dense entry), not by the pruned variant."""
  d = shared_data / "elmo_fixture"
  recipe = recipes.apply_overrides(recipes.load_recipe("retrain_80_elmo"), TINY + [
      "run.calibration_sentences=30", "finetune.retrain.num_steps=3", "finetune.retrain.batch_size=2",
      "finetune.retrain.warmup_steps=1"])
  run_dir = str(tmp_path / "e")
  inputs = {"options_file": str(d / "options.json"), "weight_file": str(d / "lm_weights.hdf5"),
            "train": str(d / "sentences.txt"), "eval": str(d / "sentences.txt"),
            "calibration": str(d / "sentences.txt")}
  result = staged.run_recipe(recipe, inputs, run_dir)
  first = os.path.join(run_dir, result["stages"][0]["run_dir"])
  recorded = files.read_json(os.path.join(run_dir, result["stages"][1]["run_dir"],
                                          "config.json"))
  assert recorded["teacher_dir"] == os.path.join(first, "dense")
  variant = files.read_json(os.path.join(run_dir, result["stages"][1]["run_dir"],
                                         "metrics.json"))["variants"][0]
  assert variant["sparsity"]["overall"] > 0.5
  assert min(variant["representation_similarity"].values()) > 0.5
