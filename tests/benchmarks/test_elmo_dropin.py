"""benchmarks.elmo_dropin: the group table, the --dense_dir export, rows / targets / report on a
fake folder, the downstream wiring, and one end-to-end smoke on the tiny real ELMo (e2e)."""

import json
import os

import numpy as np
import pytest

from prunelm_tf import data as data_lib
from prunelm_tf.compression import recipes
from prunelm_tf.compression.run_folder import CompressionRunFolder
from prunelm_tf.elmo import load_elmo
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig, CharCNNConfig
from prunelm_tf.training.loop import model_input, representation_model
from prunelm_tf.training.run_folder import WEIGHTS_FILE
from prunelm_tf.utils import files
from benchmarks.elmo_dropin import downstream, groups, layout, report, rows as rows_lib, run
from benchmarks.elmo_dropin.groups import GROUPS, DropinGroup

CHAR = CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)), n_highway=1)
ELMO_SHAPE = BiLMConfig(vocab_size=0, lstm_dim=8, projection_dim=4, n_layers=2, char_cnn=CHAR)


# --- the group table -------------------------------------------------------------------------

@pytest.mark.parametrize("group", list(GROUPS))
def test_every_group_is_a_softmax_less_recipe_whose_overrides_and_sweep_validate(group):
  spec = GROUPS[group]
  assert spec.family in groups.FAMILIES
  assert spec.recipe in run.LOCAL_RECIPES or spec.recipe in recipes.recipe_names()
  assert "softmax_less" in run.base_recipe(spec.recipe).applies_to
  planned = run.planned_runs(group, calibration_sentences=50, retrain_steps=10)
  amounts = [a for _, r in planned for a in r.stages[run.sweep_stage(r)].amount]
  assert sorted(amounts) == sorted(spec.sweep)
  for tag, recipe in planned:
    assert bool(tag) == (len(planned) > 1 or run.sweep_stage(recipe) < len(recipe.stages) - 1)
    assert recipe.run["calibration_sentences"] == 50
    assert "dynamic" in recipe.run["tflite_quantization"]  # the size ratio's artifact
    for stage in recipe.stages:
      if stage.method == "finetune":
        assert stage.options["retrain"]["num_steps"] == 10
        assert stage.options["retrain"]["objective"] == "distill"


def test_the_distillation_groups_compare_the_objectives_on_one_recipe():
  distill = {g: s for g, s in GROUPS.items() if g.startswith("distill_")}
  assert {s.recipe for s in distill.values()} == {"retrain_80_elmo"}
  losses = {run.planned_runs(g)[0][1].stages[1].options["retrain"].get("distill_loss", "mse")
            for g in distill}
  assert losses == {"mse", "layer_nmse", "cosine"}
  weights = run.planned_runs("distill_mse_top2")[0][1].stages[1].options["retrain"]
  assert weights["distill_layer_weights"] == "1,1,2"


def test_families_select_their_groups_and_unknown_names_are_refused():
  assert groups.select(["one_shot", "obs"]) == tuple(
      g for g, s in GROUPS.items() if s.family == "one_shot")
  assert set(groups.select(list(groups.FAMILIES))) == set(GROUPS)
  with pytest.raises(ValueError, match="no such group or family.*one_shot"):
    groups.select(["obs_51"])
  with pytest.raises(ValueError, match="no such groups"):
    run.run_groups(run.ElmoFiles("o", "w"), "/nonexistent", ["obs_51"])
  with pytest.raises(ValueError, match="only run.FIELD=VALUE"):
    run.run_groups(run.ElmoFiles("o", "w"), "/nonexistent", ["obs"],
                   run_overrides=["obs.damp=0.1"])


def test_a_recipe_for_models_with_a_softmax_is_refused(monkeypatch):
  monkeypatch.setitem(GROUPS, "kd", DropinGroup("retrain_90", (), (0.9,), "retrained"))
  with pytest.raises(ValueError, match="not to a softmax-less ELMo"):
    run.planned_runs("kd")


# --- the --dense_dir export -------------------------------------------------------------------

def _train_run(path, config):
  """A pipelines.train run folder of a char model with a softmax (random weights)."""
  os.makedirs(path)
  vocab = data_lib.Vocabulary(["<S>", "</S>", "<UNK>", "the", "cat", "sat"])
  config = BiLMConfig.from_dict(dict(config.to_dict(), vocab_size=len(vocab)))
  model = build_bilm(config)
  model.save_weights(os.path.join(path, WEIGHTS_FILE))
  vocab.save(os.path.join(path, "vocab.txt"))
  files.write_json(os.path.join(path, "config.json"), {"model": config.to_dict()})
  return model, config, vocab


def test_dense_dir_is_exported_once_to_an_elmo_without_softmax_that_embeds_alike(tmp_path):
  model, config, vocab = _train_run(str(tmp_path / "train"), ELMO_SHAPE)
  assert config.has_softmax
  out = str(tmp_path / "bench")
  elmo = run.elmo_input(out, dense_dir=str(tmp_path / "train"))
  assert elmo.options_file == os.path.join(out, "elmo", "options.json")
  released, released_config = load_elmo(*elmo)
  assert not released_config.has_softmax
  batch = next(iter(data_lib.make_dataset([["the", "cat", "sat"], ["a", "dog"]], vocab,
                                          batch_size=2, char_inputs=True, shuffle=False)))
  theirs = representation_model(model)(model_input(model, batch), training=False).numpy()
  ours = representation_model(released)(model_input(released, batch), training=False).numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-6)
  # Once: a second call reuses the files; another run cannot reuse the folder.
  mtime = os.path.getmtime(elmo.weight_file)
  assert run.elmo_input(out, dense_dir=str(tmp_path / "train")) == elmo
  assert os.path.getmtime(elmo.weight_file) == mtime
  with pytest.raises(ValueError, match="was exported from"):
    run.elmo_input(out, dense_dir=str(tmp_path / "other"))
  with pytest.raises(ValueError, match="either --dense_dir"):
    run.elmo_input(out, dense_dir="x", options_file="o")
  with pytest.raises(FileNotFoundError, match="--weight_file"):
    run.elmo_input(out, options_file=elmo.options_file, weight_file=str(tmp_path / "no.hdf5"))


# --- rows, targets and the report on a fake folder --------------------------------------------

def _fidelity(*cosines):
  layers = {f"layer_{k}": {"cosine_mean": c, "cosine_worst_sentence": c - 0.1,
                           "rel_l2_mean": 1 - c, "rel_l2_worst_sentence": 1.1 - c}
            for k, c in enumerate(cosines)}
  if len(cosines) == 3:
    layers["mix"] = {"cosine_mean": sum(cosines) / 3, "cosine_worst_sentence": 0.5,
                     "rel_l2_mean": 0.1, "rel_l2_worst_sentence": 0.2}
  return {"layers": layers, "sentences": 3}


def _metrics(name, *, sparsity, params, dynamic, fidelity, **extra):
  return dict({"name": name, "num_parameters": params, "sparsity": {"overall": sparsity},
               "sizes": {"saved_model_bytes": 4_000_000,
                         "tflite": {"dynamic": {"bytes": dynamic * 2, "gzip_bytes": dynamic}}},
               "representation_fidelity": fidelity,
               "seconds": {"prune": 10.0, "export_tflite_dynamic": 99.0, "evaluate": 5.0}},
              **extra)


def _write_run(path, method, variants, *, dense=True, model=ELMO_SHAPE):
  """A compression run folder: its dense ELMo entry and ``variants`` ({name: metrics})."""
  folder = CompressionRunFolder(path)
  files.write_json(folder.config_json, {"method": method, "sparsity_sweep": [0.8],
                                        "eval": "test.txt", "max_sentences": 0})
  entries = [(folder.dense, _metrics("dense", sparsity=0.0, params=1000, dynamic=1_000_000,
                                     fidelity=_fidelity(1.0, 1.0, 1.0)), ELMO_SHAPE)] * dense
  for name, (m, config) in variants.items():
    entries.append((folder.variant(name), m, config))
  for entry, m, config in entries:
    entry.write_description(config, None, {"method": method})
    files.write_json(entry.metrics_json, m)
  return folder


@pytest.fixture
def track_dir(tmp_path):
  """DIR with a one-run group (obs at 80 and 90 %), a two-stage run per amount (distill_mse/80,
  its fidelity to the dense model cached), the layers group (not drop-in), an unfinished
  two-stage run, and downstream entries of the dense model and two variants."""
  out = str(tmp_path / "track")
  _write_run(os.path.join(out, "obs"), "obs", {
      "obs_80": (_metrics("obs_80", sparsity=0.8, params=1000, dynamic=300_000,
                          target_sparsity=0.8, fidelity=_fidelity(0.99, 0.97, 0.95)), ELMO_SHAPE),
      "obs_90": (_metrics("obs_90", sparsity=0.9, params=1000, dynamic=200_000,
                          target_sparsity=0.9, fidelity=_fidelity(0.95, 0.9, 0.85)), ELMO_SHAPE)})
  one_layer = BiLMConfig.from_dict(dict(ELMO_SHAPE.to_dict(), n_layers=1))
  _write_run(os.path.join(out, "layers"), "layers", {
      "layers_50": (_metrics("layers_50", sparsity=0.0, params=600, dynamic=500_000,
                             removed_fraction=0.5, fidelity={"layers": {
                                 "layer_0": {"cosine_mean": 1.0}, "top": {"cosine_mean": 0.7}}}),
                    one_layer)})
  two = os.path.join(out, "distill_mse", "80")
  stages = [os.path.join("stages", "1_obs"), os.path.join("stages", "2_finetune")]
  files.write_json(os.path.join(two, "config.json"), {
      "recipe": "retrain_80_elmo", "inputs": {},
      "recipe_config": {"stages": [{"method": "obs"}, {"method": "finetune"}]}})
  _write_run(os.path.join(two, stages[0]), "obs", {
      "obs_80": (_metrics("obs_80", sparsity=0.8, params=1000, dynamic=300_000,
                          target_sparsity=0.8, fidelity=_fidelity(0.99, 0.97, 0.95)), ELMO_SHAPE)})
  final = _write_run(os.path.join(two, stages[1]), "finetune", {
      "finetune": (_metrics("finetune", sparsity=0.8, params=1000, dynamic=90_000,
                            fidelity=_fidelity(0.5, 0.5, 0.5),  # against the obs variant
                            finetuning={"num_train_steps": 1320, "num_train_epochs": 1.0}),
                   ELMO_SHAPE)})
  files.write_json(os.path.join(two, "metrics.json"), {"stages": [{"run_dir": s} for s in stages]})
  unfinished = os.path.join(out, "distill_mse", "90")
  files.write_json(os.path.join(unfinished, "config.json"), {
      "recipe": "retrain_80_elmo", "inputs": {},
      "recipe_config": {"stages": [{"method": "obs"}, {"method": "finetune"}]}})
  _write_run(os.path.join(unfinished, stages[0]), "obs", {})
  run80 = layout.Run("distill_mse", "80", two, [os.path.join(two, s) for s in stages])
  variant = final.variant("finetune")
  files.write_json(layout.fidelity_path(out, run80, "finetune"), {
      "record": {"variant": variant.path, "eval": "test.txt", "max_sentences": 0,
                 "variant_metrics_mtime": os.path.getmtime(variant.metrics_json)},
      "fidelity": _fidelity(0.995, 0.99, 0.985)})

  def entry(group, tag, name, mode, **figures):
    files.write_json(os.path.join(layout.downstream_entry_dir(out, group, tag), name, mode,
                                  "evaluation.json"), figures)
  entry("dense", "", "dense", "none", ner_test_f1=0.90, ner_test_f1_std=0.002,
        sst2_accuracy=0.8, mrpc_accuracy=0.7, cola_mcc=0.2)
  entry("obs", "", "obs_80", "dynamic", ner_dropin_test_f1=0.885, ner_test_f1=0.895,
        ner_dropin_test_f1_std=0.001, sst2_dropin_accuracy=0.75)
  entry("distill_mse", "80", "finetune", "dynamic", ner_dropin_test_f1=0.898, ner_test_f1=0.9)
  entry("layers", "", "layers_50", "dynamic", ner_test_f1=0.85)
  return out


def test_rows_read_every_finished_variant_against_the_dense_elmo(track_dir):
  rows = rows_lib.finished_rows(track_dir)
  assert [(r["group"], r["variant"]) for r in rows] == [
      ("dense", "dense"), ("obs", "obs_80"), ("obs", "obs_90"), ("layers", "layers_50"),
      ("distill_mse", "80/finetune")]
  by = {r["variant"]: r for r in rows}
  assert by["obs_80"]["size_ratio"] == pytest.approx(4_000_000 / 300_000)
  assert by["obs_80"]["compression_seconds"] == 10.0  # exports and measurements left out
  assert by["obs_80"]["amount"] == 0.8 and by["obs_80"]["family"] == "one_shot"
  # A two-stage run: fidelity to the dense model (not to its previous stage), the chain's
  # seconds, its budget, the amount of its tag.
  ft = by["80/finetune"]
  assert ft["top_cosine"] == 0.985 and ft["amount"] == 0.8
  assert ft["stages"] == ["obs", "finetune"] and ft["compression_seconds"] == 20.0
  assert ft["retraining"]["num_train_steps"] == 1320
  assert ft["size_ratio"] == pytest.approx(4_000_000 / 90_000)
  # Fewer layers: not drop-in, its top layer compared.
  assert not by["layers_50"]["dropin"] and by["layers_50"]["top_cosine"] == 0.7
  assert by["layers_50"]["params_removed"] == pytest.approx(0.4)
  assert by["layers_50"]["removed_fraction"] == 0.5


def test_the_report_says_which_target_is_met_with_its_figures(track_dir):
  rows = rows_lib.finished_rows(track_dir)
  downstream.with_downstream(track_dir, rows, "dynamic")
  text = report.report(rows, track_dir, "python -m benchmarks.elmo_dropin ...")
  # 44x within 0.2 (met, both lines); top layer at 80 %: the distilled 0.985.
  assert ("at least 10x smaller with drop-in NER test F1 within 1 of dense: **met** — "
          "distill_mse/80/finetune: 44.4x, drop-in F1 89.80 (-0.20 against dense 90.00)") in text
  assert "at least 5x smaller with drop-in NER test F1 within 0.3 of dense: **met**" in text
  assert ("top-layer mean cosine at 80% sparsity >= 0.98: **met** — best "
          "distill_mse/80/finetune 0.9850 (sparsity 0.800); others: obs/obs_80 0.9500") in text
  assert "| layers | layers_50 | layers | 0.000 | 0.400 (shape 0.50) |" in text
  assert "not drop-in / 85.00" in text
  assert "| 88.50 ± 0.10 / 89.50 |" in text
  assert "## Distillation objectives" in text and "| 80% | distill_mse | mse | equal |" in text
  record = files.read_json(os.path.join(track_dir, "report.json"))
  assert [t["met"] for t in record["targets"]] == [True, True, True]
  assert len(record["rows"]) == 5


def test_targets_that_are_missed_name_the_closest_variants(track_dir):
  rows = rows_lib.finished_rows(track_dir)
  downstream.with_downstream(track_dir, rows, "dynamic")
  rows[0]["downstream"]["ner_test_f1"] = 0.91  # the distilled variant now -1.2, obs -2.5
  text = report.report(rows, track_dir, "c")
  assert ("10x smaller with drop-in NER test F1 within 1 of dense: **not met** — best drop-in "
          "F1 at >= 10x: distill_mse/80/finetune 89.80 (-1.20, 44.4x)") in text
  rows[0]["downstream"] = None
  assert "**not measured** — the dense model's NER has not been evaluated" in report.report(
      rows, track_dir, "c")


def test_downstream_trains_the_reference_once_and_feeds_every_chosen_variant(track_dir,
                                                                             monkeypatch):
  calls = []

  class FakeVariant:
    def __init__(self, path):
      self.path, self.tflite = path, {"dynamic": "x"} if "obs_80" in path else {}

  monkeypatch.setattr(downstream, "find_variants", lambda p: [FakeVariant(p)])
  monkeypatch.setattr(downstream, "dropin_reference",
                      lambda dense, config, folder, settings: calls.append(("ref", folder))
                      or {"shape": [3, 8]})
  monkeypatch.setattr(downstream, "evaluate_variant",
                      lambda v, mode, config, out, **kw: calls.append(
                          (os.path.relpath(v.path, track_dir), mode,
                           os.path.relpath(out, track_dir), kw["reference"] is not None)))
  rows = rows_lib.finished_rows(track_dir)
  downstream.evaluate_downstream(track_dir, rows, ["obs/obs_80", "distill_mse"],
                                 data={"ner_dir": ""})
  assert calls == [
      ("ref", os.path.join(track_dir, "downstream")),
      # The dense ELMo of the first run found (every run reads the same file).
      ("distill_mse/80/stages/1_obs/dense", "none", "downstream", True),
      ("obs/variants/obs_80", "dynamic", "downstream/obs", True),
      # No dynamic TFLite file: its float model.
      ("distill_mse/80/stages/2_finetune/variants/finetune", "none",
       "downstream/distill_mse/80", True)]


# --- end to end on the tiny real ELMo ---------------------------------------------------------

@pytest.mark.e2e
def test_the_track_runs_and_resumes_on_a_released_elmo(shared_data, tmp_path, monkeypatch):
  d = shared_data / "elmo_fixture"
  text = str(d / "sentences.txt")
  monkeypatch.setitem(GROUPS, "obs", GROUPS["obs"]._replace(sweep=(0.8,)))
  # The fixture's char-CNN filters (16 and 64 weights) are too small for 16 clusters each.
  monkeypatch.setitem(GROUPS, "obs_cluster", GROUPS["obs_cluster"]._replace(
      sweep=(0.5,), overrides=('cluster.layer_sparsity=[["char_cnn", 0.0]]',)))
  out = str(tmp_path / "track")
  elmo = run.elmo_input(out, options_file=str(d / "options.json"),
                        weight_file=str(d / "lm_weights.hdf5"))
  settings = dict(corpora=run.Corpora(train=text, eval=text, calibration=text),
                  max_sentences=30, calibration_sentences=30,
                  run_overrides=['run.tflite_quantization=["dynamic"]'])
  run.run_groups(elmo, out, ["obs", "obs_cluster"], **settings)
  rows = rows_lib.finished_rows(out)
  assert [(r["group"], r["variant"]) for r in rows] == [
      ("dense", "dense"), ("obs", "obs_80"), ("obs_cluster", "50/cluster_16")]
  obs, cluster = rows[1:]
  assert obs["sparsity"] > 0.7 and obs["size_ratio"] > 1 and obs["dropin"]
  assert cluster["stages"] == ["obs", "cluster"] and cluster["size_ratio"] > 1
  # The two-stage run's fidelity is measured against the dense ELMo, per layer and mixed.
  assert set(cluster["fidelity"]["layers"]) == {"layer_0", "layer_1", "layer_2", "mix"}
  assert os.path.exists(os.path.join(out, "fidelity", "obs_cluster", "50", "cluster_16.json"))
  assert 0 < cluster["top_cosine"] < 1
  # Resumed: nothing is made again.
  seconds = run.run_groups(elmo, out, ["obs", "obs_cluster"], **settings)
  assert max(seconds.values()) < 30
  text = report.report(rows, out, "c")
  assert "| obs | obs_80 | obs |" in text
