"""Tests for benchmarks.elmo_ptb: the report's targets and the work shared between groups."""

import importlib.util
import json
import os

import pytest

from benchmarks.elmo_ptb import downstream as downstream_lib, groups, layout, run
from benchmarks.elmo_ptb import report as report_lib, rows as rows_lib
from prunelm_tf.compression import CompressConfig, recipes
from prunelm_tf.compression.methods import get_method
from prunelm_tf.compression.run_folder import CompressionRunFolder

EMBEDDER_BYTES = 21_000_000


def _row(group, variant, method, target, mean, *, epochs=None, dynamic=1_000_000):
  return {"group": group, "variant": variant, "method": method, "method_options": None,
          "target_sparsity": target, "sparsity": target * 0.8, "removed_fraction": None,
          "num_parameters": None,
          "ppl": {"forward": mean, "backward": mean, "mean": mean},
          "ppl_delta": {k: mean / 100.0 - 1 for k in ("forward", "backward", "mean")},
          "cosine_similarity": 0.99, "saved_model_zip_bytes": 5_000_000,
          "tflite_zip_bytes": {"none": 4 * dynamic, "dynamic": dynamic},
          "retraining": None if epochs is None else {"num_train_steps": int(1320 * epochs),
                                                     "num_train_epochs": epochs},
          "seconds": {"prune": 1.0}, "tflite_errors": None}


def test_report_checks_the_retraining_targets_within_one_epoch(tmp_path):
  rows = [_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000),
          _row("obs_osens", "obs_osens_70", "obs", 0.7, 107.0),
          _row("retrain_a", "retrain_obs_90", "retrain", 0.9, 104.0, epochs=1.0),
          # Better, but trained for two epochs: not a candidate for the 1-epoch target.
          _row("retrain_b", "retrain_long_90", "retrain", 0.9, 101.0, epochs=2.0,
               dynamic=1_050_000),
          _row("retrain_a", "retrain_obs_95", "retrain", 0.95, 120.0, epochs=1.0,
               dynamic=600_000)]
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert "one-shot 70% within +8%: **met** — best obs_osens_70" in text
  assert "retrained 90% within +5%: **met** — best retrain_obs_90 (retrain_a) +4.0 %" in text
  assert "retrain_long_90" not in text.split("## Retraining targets")[1]
  assert ("retrained 95% within +15%: **missed** — best retrain_obs_95 (retrain_a) +20.0 %, "
          "missed by 5.0 points") in text
  # The smallest within +5 % is the 1 MB retrained 90 % variant: 21x.
  assert ("smallest variant within +5 %: retrain_obs_90 (retrain_a), zipped dynamic TFLite "
          "21.0x smaller") in text
  assert (tmp_path / "report.md").read_text() == text


def test_report_says_when_a_retraining_target_was_not_run(tmp_path):
  rows = [_row("dense", "dense", "dense", 0.0, 100.0)]
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert "retrained 90% within +5%: not run." in text
  assert "retrained 95% within +15%: not run." in text


def _group(out_dir, name, config, caches):
  folder = CompressionRunFolder(os.path.join(out_dir, name))
  os.makedirs(folder.cache_dir)
  with open(folder.config_json, "w") as f:
    f.write(config.to_json())
  for cache, value in caches.items():
    with open(os.path.join(folder.cache_dir, cache), "w") as f:
      json.dump(value, f)


def test_sensitivity_caches_of_every_kind_are_shared_from_compatible_groups(tmp_path,
                                                                            tiny_run_dir,
                                                                            tiny_text):
  def config(sentences, layer_sparsity=(("softmax", 0.0),)):
    return CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, calibration=tiny_text,
                          calibration_sentences=sentences, method="threshold",
                          layer_sparsity=layer_sparsity)
  out = str(tmp_path)
  _group(out, "a", config(300), {"sensitivity.json": {"from": "a"}})
  # Another number of calibration sentences: shared (the cache checks its own count).
  _group(out, "b", config(1000), {"sensitivity.json": {"from": "b"},
                                  "sensitivity_obs_all.json": {"from": "b"}})
  # Other free weights: never shared.
  _group(out, "c", config(300, ()), {"sensitivity_obs_max.json": {"from": "c"}})
  run.share_finished_work(out, os.path.join(out, "new"), config(300))
  cache = CompressionRunFolder(os.path.join(out, "new")).cache_dir
  assert sorted(os.listdir(cache)) == ["sensitivity.json", "sensitivity_obs_all.json"]
  with open(os.path.join(cache, "sensitivity.json")) as f:
    assert json.load(f) == {"from": "a"}
  with open(os.path.join(cache, "sensitivity_obs_all.json")) as f:
    assert json.load(f) == {"from": "b"}
  # An existing group folder is never touched.
  run.share_finished_work(out, os.path.join(out, "a"), config(300))
  assert sorted(os.listdir(CompressionRunFolder(os.path.join(out, "a")).cache_dir)) == [
      "sensitivity.json"]


def test_the_dense_entry_is_shared_only_by_groups_that_describe_it_alike(tmp_path, tiny_run_dir,
                                                                        tiny_text):
  """A finished dense entry is copied whole into a new group of another method and sweep;
  never into one with another input model or eval text, nor from an unfinished one."""
  def config(**kw):
    return CompressConfig(**{**dict(model_dir=tiny_run_dir, eval=tiny_text, calibration=tiny_text,
                                    method="threshold", sparsity_sweep=(0.5,)), **kw})
  out = str(tmp_path)
  _group(out, "a", config(), {})
  dense = CompressionRunFolder(os.path.join(out, "a")).dense
  os.makedirs(os.path.join(dense.path, "saved_model"))
  with open(os.path.join(dense.path, "saved_model", "w.bin"), "wb") as f:
    f.write(b"weights")
  # Not finished yet (no metrics.json): nothing to share, no folder made.
  run.share_finished_work(out, os.path.join(out, "early"), config(method="wanda"))
  assert not os.path.exists(os.path.join(out, "early"))
  with open(dense.metrics_json, "w") as f:
    json.dump({"name": "dense", "perplexity": {"mean": 100.0}}, f)
  new = config(method="obs", sparsity_sweep=(0.7, 0.9), calibration_sentences=50,
               layer_sparsity=(("softmax", 0.0),))
  run.share_finished_work(out, os.path.join(out, "b"), new)
  copied = CompressionRunFolder(os.path.join(out, "b"))
  assert copied.dense.is_complete()
  with open(os.path.join(copied.dense.path, "saved_model", "w.bin"), "rb") as f:
    assert f.read() == b"weights"
  with open(copied.config_json) as f:
    assert json.load(f) == json.loads(new.to_json())
  for other in (dict(eval=tiny_run_dir + "/vocab.txt"), dict(num_parity_sentences=2),
                dict(model_dir=os.path.join(out, "a"))):
    name = "other_" + next(iter(other))
    run.share_finished_work(out, os.path.join(out, name), config(**other))
    assert not os.path.exists(os.path.join(out, name)), other


def _downstream(tmp_path, group, variant, ner, sst2, *, std=None, mode="none", seeds=None,
                majority=None):
  entry_dir = tmp_path / ("downstream_seeds" if seeds else "downstream") / group / variant / mode
  entry_dir.mkdir(parents=True)
  entry = {"ner_test_f1": ner, "sst2_accuracy": sst2, "mrpc_accuracy": 0.7, "mrpc_f1": 0.8}
  if majority:
    entry["mrpc"] = {"majority_baseline": {"accuracy": majority[0], "f1": majority[1]}}
  if std is not None:
    entry["ner_test_f1_std"] = std
  if seeds:
    entry["ner"] = {"seeds": seeds}
  (entry_dir / "evaluation.json").write_text(json.dumps(entry))


def test_report_checks_the_downstream_targets_on_the_variants_the_size_and_retraining_lines_pick(
    tmp_path):
  rows = [_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000),
          # The best 90 % variant: NER 0.4 below dense (met), SST-2 1.5 below (missed).
          _row("retrain_a", "retrain_obs_90", "retrain", 0.9, 104.0, epochs=1.0),
          _row("retrain_b", "retrain_obs_90", "retrain", 0.9, 108.0, epochs=1.0),
          # Within +5 % and smaller than the 90 % variant: the size line's variant.
          _row("lowrank", "lowrank_50", "lowrank", 0.5, 103.0, dynamic=800_000)]
  _downstream(tmp_path, "dense", "dense", 0.700, 0.660, std=0.009, majority=(0.684, 0.812))
  _downstream(tmp_path, "retrain_a", "retrain_obs_90", 0.696, 0.645)
  _downstream(tmp_path, "retrain_b", "retrain_obs_90", 0.600, 0.500)
  downstream_lib.with_downstream(rows, str(tmp_path), "none")
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert ("- dense: NER test F1 70.00 ± 0.90, SST-2 66.00; MRPC 70.00 / 80.00 against the "
          "majority class's 68.40 / 81.20 (at or below it, MRPC does not tell variants apart)."
          in text)
  assert ("- retrained 90 % (best perplexity): retrain_obs_90 (retrain_a) — NER 69.60 (-0.40; "
          "within 0.5: **met**); SST-2 64.50 (-1.50; within 1: **missed**).") in text
  assert ("- smallest within +5 % perplexity: lowrank_50 (lowrank) — NER not evaluated."
          in text)
  # The table's cells: the dense spread, a variant, one not evaluated.
  assert "| 70.00 ± 0.90 | 66.00 | 70.00 / 80.00 |" in text
  assert "| 69.60 | 64.50 | 70.00 / 80.00 |" in text
  assert "| — | — | — |" in text
  assert (tmp_path / "ner_f1_vs_size.png").exists()


def test_report_says_when_the_dense_downstream_evaluation_has_not_run(tmp_path):
  rows = [_row("dense", "dense", "dense", 0.0, 100.0)]
  downstream_lib.with_downstream(rows, str(tmp_path), "dynamic")
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd", "dynamic")
  assert "the variant's dynamic TFLite file" in text
  assert "the dense model's downstream evaluation has not run (--downstream)." in text


def test_downstream_refuses_an_unknown_group_before_any_work(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(downstream_lib, "evaluate", lambda config, out, **kw: calls.append(out))
  (tmp_path / "obs").mkdir()
  try:
    downstream_lib.evaluate_downstream("dense_dir", str(tmp_path), ["obs/obs_50", "nosuch/x"])
  except ValueError as e:
    assert "no group 'nosuch'" in str(e)
  else:
    raise AssertionError("an unknown group was accepted")
  assert calls == []


def test_downstream_target_uses_the_mean_over_seeds_when_the_variant_has_one(tmp_path):
  rows = [_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000),
          _row("retrain_a", "retrain_obs_90", "retrain", 0.9, 104.0, epochs=1.0)]
  _downstream(tmp_path, "dense", "dense", 0.700, 0.660, std=0.009)
  _downstream(tmp_path, "retrain_a", "retrain_obs_90", 0.694, 0.665)
  _downstream(tmp_path, "retrain_a", "retrain_obs_90", 0.698, None, std=0.004, seeds=[0, 1, 2])
  downstream_lib.with_downstream(rows, str(tmp_path), "none")
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert ("retrain_obs_90 (retrain_a) — NER 69.80 mean ± 0.40 over seeds 0, 1, 2; seed 0 alone "
          "69.40, -0.60 (-0.20; within 0.5: **met**); SST-2 66.50 (+0.50; within 1: **met**).")\
      in text


def test_a_combination_group_is_measured_against_the_benchmark_dense_model():
  def metrics(name, mean):
    return {"name": name, "method": "obs", "target_sparsity": 0.5,
            "sparsity": {"overall": 0.4}, "perplexity": {"forward": mean, "backward": mean,
                                                         "mean": mean},
            "representation_similarity": {"layer_0": 0.9},
            "sizes": {"saved_model_zip_bytes": 1, "tflite": {"dynamic": {"gzip_bytes": 10}}}}
  # The group's "dense" entry is the variant it compressed further (ppl 103).
  result = {"dense": dict(metrics("dense", 103.0), method="dense"),
            "variants": [metrics("obs_sens_50", 106.0)]}
  rows = rows_lib.rows_of("structured_obs_ft_obs_sens", result,
                          reference={"perplexity": {"forward": 100.0, "backward": 100.0,
                                                    "mean": 100.0}})
  assert [r["variant"] for r in rows] == ["obs_sens_50"]  # no second "dense" row
  assert abs(rows[0]["ppl_delta"]["mean"] - 0.06) < 1e-12  # against the real dense model
  assert rows[0]["cosine_similarity"] is None  # it was measured against the variant


def test_report_sets_the_dense_control_beside_the_variants_of_its_budget(tmp_path):
  rows = [_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000),
          _row(groups.DENSE_CONTROL, "retrain_00", "retrain", 0.0, 98.0, epochs=1.0),
          _row("retrain_a", "retrain_obs_90", "retrain", 0.9, 107.8, epochs=1.0),
          _row("retrain_b", "retrain_obs_90", "retrain", 0.9, 109.0, epochs=1.0),
          _row("retrain_c", "retrain_long_90", "retrain", 0.9, 101.0, epochs=2.0)]
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd").split("## Dense control")[1]
  assert f"{groups.DENSE_CONTROL}: 1320 steps (1.00 ep), mean test perplexity 98.0 (-2.0 %" in text
  assert ("best 90% variant of the same budget (retrain_a): +10.0 % against the control, "
          "+7.8 % against the dense model") in text
  assert "retrain_long_90" not in text and "80%" not in text


def _finetune(group, amount=None):
  """The fine-tuning stage's RetrainConfig record of a recipe group's run."""
  sweep = groups.RECIPE_GROUPS[group][2]
  recipe = run.group_recipe(group, sweep[0] if amount is None else amount)
  (stage,) = [s for s in recipe.stages if s.method == "finetune"]
  return dict(stage.options["retrain"])


def _without(retrain, **defaults):
  """``retrain`` with ``defaults`` as its values (a field left out is at its default)."""
  return dict({k: v for k, v in retrain.items() if k not in defaults}, **defaults)


def test_every_recipe_group_loads_and_validates_at_each_amount():
  for group, (name, overrides, sweep) in groups.RECIPE_GROUPS.items():
    assert sweep and all(0.0 <= a < 1.0 for a in sweep), group
    for amount in sweep:
      recipe = run.group_recipe(group, amount, calibration_sentences=300)
      if name in run.LOCAL_RECIPES:
        assert amount == 0.0 and [s.method for s in recipe.stages] == ["finetune"]
        continue
      base = recipes.load_recipe(name)
      first = next(k for k, s in enumerate(base.stages)
                   if get_method(s.method).has_amount)
      again = recipes.apply_overrides(base, list(overrides) + [f"{first + 1}.amount={amount}"])
      assert recipe.stages == again.stages, group
      assert recipe.run["calibration_sentences"] == 300
      assert recipe.run["num_parity_sentences"] == 4
  for control in groups.DENSE_CONTROLS:
    assert groups.RECIPE_GROUPS[control][2] == (0.0,)
  with pytest.raises(ValueError, match="removes nothing"):
    run.group_recipe(groups.DENSE_CONTROL, 0.9)


def test_the_cited_groups_are_the_book_recipes():
  """The groups docs/results.md and the recipe book cite run the book's recipes."""
  book = recipes.load_recipe("retrain_90")
  best = run.group_recipe("retrain_kd_obs_sens_nodrop_lr10_wu_avg25", 0.9)
  assert best.stages == book.stages and groups.RECIPE_GROUPS[
      "retrain_kd_obs_sens_nodrop_lr10_wu_avg25"][2] == (0.9, 0.8, 0.95)
  warm = _finetune("retrain_kd_obs_sens_nodrop_lr10_wu_avg25")
  assert warm == dict(book.stages[1].options["retrain"])
  assert warm["warmup_steps"] == 132 and warm["average_last"] == 0.25
  assert (run.group_recipe("retrain_kd_obs_osens_to99_nodrop_lr10", 0.95).stages
          == recipes.load_recipe("retrain_95").stages)
  assert (run.group_recipe("lowrank_data_ft_nodrop_lr3", 0.7).stages
          == recipes.load_recipe("lowrank_70_ft").stages)
  assert (run.group_recipe("lowrank_data_cluster_ft_lr3", 0.5).stages
          == recipes.load_recipe("lowrank_cluster_ft").stages)
  # structured_obs_ft's old options: OBS importance, one epoch of KD at lr 1e-3 with dropout.
  structured = run.group_recipe("structured_obs_ft", 0.3)
  assert structured.stages == recipes.load_recipe("structured_30_ft").stages
  assert structured.stages[0].options["importance"] == "obs"
  assert _finetune("structured_obs_ft")["learning_rate"] == 1e-3
  assert _finetune("structured_obs_ft")["dropout"] is None
  # lowrank_data_cluster_ft: a quarter epoch at lr 1e-3, 16 values; its 8-value sibling.
  quarter = _finetune("lowrank_data_cluster_ft")
  assert quarter["num_steps"] == 330 and quarter["learning_rate"] == 1e-3
  assert run.group_recipe("lowrank_data_cluster8_ft", 0.5).stages[1].amount == (0.625,)


def test_dense_controls_train_as_their_pruned_groups():
  """Each control is the dense model fine-tuned exactly as its pruned groups fine-tune."""
  control = _finetune(groups.DENSE_CONTROL)
  assert control == _finetune("retrain_kd_obs_sens_nodrop_lr10")
  assert control["learning_rate"] == 0.01 and control["dropout"] == 0.0
  warm = _finetune(groups.DENSE_CONTROL_WARMUP)
  assert warm["warmup_steps"] == 132 and _without(warm, warmup_steps=0) == _without(
      control, warmup_steps=0)
  for name in ("retrain_kd_obs_osens_nodrop_lr10_wu", "retrain_kd_obs_sens_nodrop_lr10_wu"):
    assert _finetune(name) == warm
  assert (run.group_recipe("retrain_kd_obs_osens_nodrop_lr10_wu", 0.9).stages[0]
          .options["allocation"] == "obs_sensitivity")
  tuned = _finetune(groups.DENSE_CONTROL_EPSILON)
  assert tuned["adam_epsilon"] == 1e-5 and _without(tuned, adam_epsilon=1e-7) == _without(
      warm, adam_epsilon=1e-7)
  assert _finetune("retrain_kd_obs_sens_nodrop_lr10_wu_eps5") == tuned
  frozen = _finetune(groups.DENSE_CONTROL_FROZEN)
  assert frozen["frozen"] == "softmax" and _finetune("retrain_kd_obs_sens_nodrop_lr10_wu_fs") == frozen
  avg25 = _finetune("retrain_kd_obs_sens_nodrop_lr10_wu_avg25")
  assert _without(avg25, average_last=0.0) == _without(warm, average_last=0.0)
  constant = _finetune("retrain_kd_obs_sens_nodrop_lr5c_wu_avg50")
  assert _without(constant, learning_rate=0, lr_schedule="", average_last=0) == _without(
      avg25, learning_rate=0, lr_schedule="", average_last=0)
  assert (constant["learning_rate"], constant["lr_schedule"], constant["average_last"]) == (
      0.005, "constant", 0.5)
  for lr in groups.SGD_RATES:
    sgd = _finetune(f"retrain_kd_obs_sens_nodrop_sgd{lr}_wu_avg25")
    assert sgd["optimizer"] == "sgd" and sgd["learning_rate"] == float(lr)
    assert _without(sgd, optimizer="", learning_rate=0) == _without(avg25, optimizer="",
                                                                    learning_rate=0)
    assert _finetune(groups.sgd_control(lr)) == sgd


def test_the_benchmark_settings_become_overrides_and_the_group_keeps_its_own():
  recipe = run.group_recipe("retrain_kd_obs_osens_nodrop_lr10_b16", 0.9,
                                 calibration_sentences=500, prune_softmax=True,
                                 retrain_steps=660)
  assert recipe.run["calibration_sentences"] == 500 and recipe.stages[0].layer_sparsity == ()
  assert recipe.stages[1].options["retrain"]["num_steps"] == 2620  # the group's own
  assert _finetune("retrain_kd_obs_sens_nodrop_lr10")["num_steps"] == 1320
  assert run.group_recipe("retrain_kd_obs_sens_nodrop_lr10", 0.9, retrain_steps=660).stages[
      1].options["retrain"]["num_steps"] == 660


def test_plain_retrain_groups_prune_on_a_schedule_from_the_dense_model():
  plain = run.method_retrain_groups(1320)
  assert set(plain) == {"retrain_lm_dense", "retrain_kd_dense"}
  assert not set(plain) & set(groups.RECIPE_GROUPS)
  method, options = plain["retrain_kd_dense"]
  assert method == "retrain" and options.retrain.objective == "kd"
  assert options.schedule.end_step == 660


def _write_run(path, method, variants, dense_ppl=100.0, sweep=(0.5,)):
  """A finished compression run folder: config.json, dense and variant metrics."""
  folder = CompressionRunFolder(path)
  os.makedirs(folder.dense.path)
  with open(folder.config_json, "w") as f:
    json.dump({"method": method, "sparsity_sweep": list(sweep)}, f)

  def metrics(name, mean, **extra):
    return dict({"name": name, "method": method, "target_sparsity": 0.0,
                 "sparsity": {"overall": 0.0, "num_weights": {}},
                 "perplexity": {"forward": mean, "backward": mean, "mean": mean},
                 "sizes": {"saved_model_zip_bytes": 1, "tflite": {"dynamic": {"gzip_bytes": 10}}}},
                **extra)
  with open(folder.dense.metrics_json, "w") as f:
    json.dump(dict(metrics("dense", dense_ppl), method="dense"), f)
  for name, mean, extra in variants:
    os.makedirs(folder.variant(name).path)
    with open(folder.variant(name).metrics_json, "w") as f:
      json.dump(metrics(name, mean, **extra), f)


def test_a_recipe_run_reports_its_final_stage_against_the_dense_model(tmp_path):
  run_dir = str(tmp_path / "lowrank_data_ft_nodrop_lr3" / "70")
  _write_run(os.path.join(run_dir, "stages", "1_lowrank"), "lowrank",
             [("lowrank_data_70", 130.0, {"removed_fraction": 0.7, "target_sparsity": 0.7})])
  _write_run(os.path.join(run_dir, "stages", "2_finetune"), "finetune",
             [("finetune", 104.0, {"retraining": {"num_train_steps": 1320,
                                                   "num_train_epochs": 1.0}})],
             dense_ppl=130.0, sweep=(0.0,))
  with open(os.path.join(run_dir, "metrics.json"), "w") as f:
    json.dump({"stages": [{"run_dir": "stages/1_lowrank"}, {"run_dir": "stages/2_finetune"}],
               "final_stage_dir": "stages/2_finetune"}, f)
  (row,) = rows_lib.recipe_rows("lowrank_data_ft_nodrop_lr3", run_dir, 0.7)
  assert row["group"] == "lowrank_data_ft_nodrop_lr3" and row["variant"] == "70/finetune"
  assert row["amount"] == row["target_sparsity"] == 0.7 and row["recipe"] == "lowrank_70_ft"
  assert row["stages"] == ["lowrank", "finetune"]
  assert abs(row["ppl_delta"]["mean"] - 0.04) < 1e-12  # against the dense model, not stage 1
  assert abs(row["removed_fraction"] - 0.7) < 1e-12 and not rows_lib.pruned_and_retrained(row)
  assert row["retraining"]["num_train_steps"] == 1320
  # The combination of that variant finds it.
  source = groups.COMBINED["lowrank_data_ft_cluster"]
  assert layout.source_variant_dir(str(tmp_path), *source[:2]) == CompressionRunFolder(
      os.path.join(run_dir, "stages", "2_finetune")).variant("finetune").path
  assert os.path.join(run_dir, "stages", "1_lowrank") in run.dense_donors(str(tmp_path))
  # A dense control: one stage, the run folder is the compression run.
  control_dir = str(tmp_path / groups.DENSE_CONTROL / "0")
  _write_run(control_dir, "finetune", [("finetune", 103.0, {"retraining": {
      "num_train_steps": 1320, "num_train_epochs": 1.0}})], sweep=(0.0,))
  dense, control = rows_lib.recipe_rows(groups.DENSE_CONTROL, control_dir, 0.0)
  assert dense["variant"] == "dense" and control["variant"] == "0/finetune"
  assert control["target_sparsity"] == 0.0 and rows_lib.pruned_and_retrained(control)
  # Unfinished (no final metrics): no rows.
  os.remove(os.path.join(run_dir, "stages", "2_finetune", "dense", "metrics.json"))
  assert rows_lib.recipe_rows("lowrank_data_ft_nodrop_lr3", run_dir, 0.7) == []


def test_recipe_rows_count_as_retrained_in_the_report(tmp_path):
  rows = [_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000),
          _row(groups.DENSE_CONTROL, "0/finetune", "finetune", 0.0, 98.0, epochs=1.0),
          _row("retrain_kd_obs_sens_nodrop_lr10", "90/finetune", "finetune", 0.9, 104.0,
               epochs=1.0)]
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert ("retrained 90% within +5%: **met** — best 90/finetune "
          "(retrain_kd_obs_sens_nodrop_lr10) +4.0 %") in text
  assert f"{groups.DENSE_CONTROL}: 1320 steps (1.00 ep)" in text


def test_targets_choose_on_valid_and_report_test(tmp_path):
  """The best variant on PTB valid is the one whose test figure a target line gives, even
  when another is better on test; without valid for every candidate the line says so."""
  def row(group, mean, valid):
    r = _row(group, "retrain_obs_90", "retrain", 0.9, mean, epochs=1.0)
    if valid is not None:
      r.update(valid_ppl={"mean": valid}, valid_delta={"mean": valid / 110.0 - 1})
    return r
  dense = dict(_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000),
               valid_ppl={"mean": 110.0}, valid_delta={"mean": 0.0})
  rows = [dense, row("a", 104.0, 116.6), row("b", 103.0, 117.7)]
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert ("retrained 90% within +5%: **met** — best retrain_obs_90 (a) +4.0 %, chosen on valid "
          "(+6.0 % there); all (test): a +4.0 %, b +3.0 %.") in text
  assert "| a | retrain_obs_90 | 0.720 (all matrices) | 104.0 / 104.0 / 104.0 | +4.0 % | +6.0 % |" in text
  text = report_lib.report([dense, row("a", 104.0, 116.6), row("old", 103.0, None)],
                         EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert ("best retrain_obs_90 (old) +3.0 %, chosen on test: not every candidate measured "
          "valid") in text


def test_rows_carry_valid_perplexity_against_the_dense_models():
  """A group's valid Δ is against its own dense entry; a combination's against the
  benchmark's dense model (its reference)."""
  def record(name, mean, valid):
    return {"name": name, "method": "retrain", "target_sparsity": 0.9,
            "sparsity": {"overall": 0.9, "per_weight": {}},
            "perplexity": {"mean": mean}, "valid_perplexity": {"mean": valid},
            "sizes": {"saved_model_zip_bytes": 1, "tflite": {}}}
  result = {"dense": dict(record("dense", 100.0, 110.0), method="dense"),
            "variants": [record("retrain_obs_90", 105.0, 121.0)]}
  dense, variant = rows_lib.rows_of("g", result)
  assert dense["valid_delta"]["mean"] == 0.0 and abs(variant["valid_delta"]["mean"] - 0.1) < 1e-12
  (combined,) = rows_lib.rows_of("g", result, reference={
      "perplexity": {"mean": 100.0}, "valid_perplexity": {"mean": 100.0}})
  assert abs(combined["valid_delta"]["mean"] - 0.21) < 1e-12
  assert variant["valid_delta_before_average"] == {}
  # An averaged retraining's last step on valid, against the same dense valid.
  result["variants"][0]["retraining"] = {"averaged_steps": 660,
                                         "valid_perplexity_before_average": {"mean": 123.2}}
  averaged = rows_lib.rows_of("g", result)[1]
  assert abs(averaged["valid_delta_before_average"]["mean"] - 0.12) < 1e-12
  # An older record without valid: no valid figures, nothing invented.
  del result["variants"][0]["valid_perplexity"]
  assert rows_lib.rows_of("g", result)[1]["valid_delta"] == {}


def test_each_dense_control_is_set_beside_the_variants_of_its_own_recipe(tmp_path):
  """Two controls of the same budget: each against the variants trained as it was."""
  def recipe(warmup):
    return {"retrain": {"learning_rate": 0.01, "warmup_steps": warmup}}
  rows = [_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000)]
  for group, variant, target, mean, warmup in (
      ("control", "retrain_00", 0.0, 104.0, 0), ("control_wu", "retrain_00", 0.0, 100.5, 132),
      ("cold", "retrain_obs_90", 0.9, 109.2, 0), ("warm", "retrain_obs_90", 0.9, 104.52, 132)):
    rows.append(dict(_row(group, variant, "retrain", target, mean, epochs=1.0),
                     method_options=recipe(warmup)))
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd").split("## Dense control")[1]
  cold, warm = text.split("- control_wu")
  assert ("best 90% variant of the same recipe (cold): +5.0 % against the control, +9.2 % "
          "against the dense model") in cold
  assert ("best 90% variant of the same recipe (warm): +4.0 % against the control, +4.5 % "
          "against the dense model") in warm


def test_embedder_sparsity_leaves_the_softmax_out_and_reads_older_records_sizes(tmp_path):
  from prunelm_tf.models.config import BiLMConfig  # pylint: disable=import-outside-toplevel
  model = BiLMConfig(vocab_size=50, token_encoder="word", lstm_dim=16, projection_dim=8,
                     n_layers=1, dropout=0.0)
  group_dir = str(tmp_path / "g")
  variant_dir = CompressionRunFolder(group_dir).variant("threshold_50").path
  os.makedirs(variant_dir)
  with open(os.path.join(variant_dir, "config.json"), "w") as f:
    json.dump({"model": model.to_dict()}, f)
  sizes = rows_lib.recorded_weight_sizes(variant_dir)
  assert sizes["softmax/kernel"] == 8 * 50 and sizes["forward_lstm_0/projection"] == 16 * 8
  per_weight = {n: 0.5 for n in sizes}
  per_weight["softmax/kernel"] = 0.0

  def metrics(sparsity):
    return {"name": "threshold_50", "method": "threshold", "target_sparsity": 0.5,
            "sparsity": sparsity, "perplexity": {"forward": 1.0, "backward": 1.0, "mean": 1.0},
            "sizes": {"saved_model_zip_bytes": 1, "tflite": {"dynamic": {"gzip_bytes": 10}}}}
  dense = dict(metrics({"overall": 0.0, "per_weight": {n: 0.0 for n in sizes}}), name="dense")
  overall = sum(per_weight[n] * sizes[n] for n in sizes) / sum(sizes.values())
  old = {"overall": overall, "per_weight": per_weight}  # written before "num_weights"
  for record, where in ((old, group_dir), (dict(old, num_weights=sizes), "")):
    rows = rows_lib.rows_of("g", {"dense": dense, "variants": [metrics(record)]},
                            group_dir=where)
    assert overall < 0.45 and abs(rows[1]["embedder_sparsity"] - 0.5) < 1e-12
    assert abs(rows_lib.embedder_removed(rows[1], rows) - 0.5) < 1e-12
  # Without the sizes the report says which sparsity it shows.
  (row,) = rows_lib.rows_of("g", {"dense": dense, "variants": [metrics(old)]})[1:]
  assert row["embedder_sparsity"] is None and rows_lib.embedder_removed(row, [row]) is None
  assert report_lib._removed_cell(row, [row]) == f"{overall:.3f} (all matrices)"  # pylint: disable=protected-access


def test_a_combination_counts_what_its_source_took_out():
  group = "lowrank_data_threshold_sens"
  source_group, source_variant = groups.COMBINED[group][:2]
  source = dict(_row(source_group, source_variant, "lowrank", 0.5, 102.0),
                removed_fraction=0.5, embedder_sparsity=0.0)
  combined = dict(_row(group, "threshold_sensitivity_80", "threshold", 0.8, 110.0),
                  embedder_sparsity=0.8)
  rows = [source, combined]
  assert abs(rows_lib.embedder_removed(combined, rows) - 0.9) < 1e-12
  assert rows_lib.embedder_removed(combined, [combined]) is None  # source not in the report
  assert report_lib._removed_cell(source, rows) == "0.500 (shape 0.50)"  # pylint: disable=protected-access


def test_the_retrained_frontier_keeps_the_best_recipe_per_target_within_one_epoch():
  rows = [dict(_row(groups.DENSE_CONTROL, "retrain_00", "retrain", 0.0, 98.0, epochs=1.0),
               embedder_sparsity=0.0),
          dict(_row("retrain_a", "retrain_obs_90", "retrain", 0.9, 107.8, epochs=1.0),
               embedder_sparsity=0.9),
          dict(_row("retrain_b", "retrain_obs_90", "retrain", 0.9, 106.0, epochs=1.0),
               embedder_sparsity=0.9),
          dict(_row("retrain_c", "retrain_long_90", "retrain", 0.9, 101.0, epochs=2.0),
               embedder_sparsity=0.9),
          dict(_row("retrain_a", "retrain_obs_95", "retrain", 0.95, 120.0, epochs=1.0),
               embedder_sparsity=0.95)]
  assert rows_lib.retrained_frontier(rows) == [(0.9, 106.0, "retrain_b"),
                                               (0.95, 120.0, "retrain_a")]


def test_a_clustered_fine_tuned_variant_reports_its_source_budget_and_size(tmp_path):
  """The cluster combination of a fine-tuned low-rank variant: its retraining is its
  source's fine-tuning, its removed fraction the source's, and it can be the smallest
  variant within +5 %."""
  group = "lowrank_data_ft_cluster"
  source_group, source_variant, method = groups.COMBINED[group][:3]
  assert method == "cluster" and source_group in groups.RECIPE_GROUPS
  source = dict(_row(source_group, source_variant, "lowrank", 0.7, 103.0, epochs=1.0,
                     dynamic=1_400_000), removed_fraction=0.7, embedder_sparsity=0.0)
  clustered = dict(_row(group, "cluster_8", "cluster", 0.625, 104.0, dynamic=700_000),
                   embedder_sparsity=0.0)
  rows = [_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000), source, clustered]
  assert rows_lib.retraining_of(clustered, rows) == source["retraining"]
  assert rows_lib.retraining_of(clustered, [clustered]) is None
  assert abs(rows_lib.embedder_removed(clustered, rows) - 0.7) < 1e-12
  text = report_lib.report(rows, EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert f"| {group} | cluster_8 | 0.700 | " in text and "| 1320 steps (1.00 ep) |" in text
  assert f"smallest variant within +5 %: cluster_8 ({group}), zipped dynamic TFLite 30.0x" in text
  assert "(target 30x: **met**)" in text
  if importlib.util.find_spec("matplotlib") is None:
    return  # plots are optional
  assert os.path.getsize(os.path.join(str(tmp_path), "ppl_vs_size.png")) > 0


def test_report_sets_the_last_step_beside_the_average_on_valid(tmp_path):
  """An averaged variant that recorded its last step's valid perplexity gets a line with
  both valid Δs (against the dense valid); a variant without that record gets none."""
  dense = dict(_row("dense", "dense", "dense", 0.0, 100.0, dynamic=5_000_000),
               valid_ppl={"mean": 110.0}, valid_delta={"mean": 0.0})
  averaged = _row("avg", "retrain_obs_90", "retrain", 0.9, 104.0, epochs=1.0)
  averaged.update(valid_ppl={"mean": 115.5}, valid_delta={"mean": 0.05},
                  valid_delta_before_average={"mean": 117.7 / 110.0 - 1})
  averaged["retraining"].update(averaged_steps=660,
                                valid_perplexity_before_average={"mean": 117.7})
  plain = dict(_row("plain", "retrain_obs_90", "retrain", 0.9, 105.0, epochs=1.0),
               valid_ppl={"mean": 116.0}, valid_delta={"mean": 116.0 / 110.0 - 1})
  text = report_lib.report([dense, averaged, plain], EMBEDDER_BYTES, str(tmp_path), "cmd")
  assert "## Weight averaging" in text
  assert ("- retrain_obs_90 (avg): valid Δ mean +7.00% with the last step's weights, +5.00% "
          "with the average of the last 660 steps.") in text
  assert "(plain): valid Δ" not in text
  assert "## Weight averaging" not in report_lib.report([dense, plain], EMBEDDER_BYTES,
                                                      str(tmp_path), "cmd")


def test_a_word_models_embedder_is_the_model_without_its_softmax(tiny_run_dir, tmp_path):
  """The size reference of the word model's rows: its embedding and LSTMs, not its softmax."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from prunelm_tf.training.run_folder import load_run  # pylint: disable=import-outside-toplevel
  size = run.embedder_saved_model_bytes(tiny_run_dir, str(tmp_path))
  loaded = tf.saved_model.load(str(tmp_path / "dense_embedder" / "saved_model"))
  names = [v.name for v in loaded.variables]
  assert any("word_embedding" in n for n in names) and not any("softmax" in n for n in names)
  model, _, _ = load_run(tiny_run_dir)
  ids = tf.constant([[1, 5, 6, 2]], tf.int32)
  (got,) = loaded.signatures["serving_default"](ids).values()
  np.testing.assert_allclose(got.numpy(), model(ids, training=False)["representations"].numpy(),
                             atol=1e-6)
  assert 0 < size < sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in
                        os.walk(os.path.join(tiny_run_dir, "saved_model")) for f in fs)


def test_every_method_group_names_a_registered_method_with_valid_options():
  """The tables of one-shot, shape-changing and combined groups are checked before any work:
  a method of the registry, options it accepts, and a combination's source in a table."""
  tables = {"one-shot": {g: (m, o) for g, (m, o) in groups.ONE_SHOT.items()},
            "shaped": {g: (m, o) for g, (m, o, _) in groups.SHAPED.items()},
            "combined": {g: (m, o) for g, (_, _, m, o, _) in groups.COMBINED.items()}}
  for table in tables.values():
    for group, (method, options) in table.items():
      get_method(method).options_from_dict(options)  # raises on an unknown option
  names = [set(t) for t in tables.values()] + [set(groups.RECIPE_GROUPS)]
  assert sum(map(len, names)) == len(set().union(*names))  # one table per group name
  for group, (source, variant, *_rest) in groups.COMBINED.items():
    assert source in groups.ONE_SHOT or source in groups.SHAPED or source in groups.RECIPE_GROUPS
    assert ("/" in variant) == (source in groups.RECIPE_GROUPS), group


def test_unknown_group_names_are_refused_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="--shaped_groups=lowrank_nosuch: no such group"):
    run.run_groups("dense_dir", str(tmp_path), shaped_groups=["lowrank_nosuch"])
  with pytest.raises(ValueError, match="--finetuned_groups=nosuch is not a group"):
    run.run_groups("dense_dir", str(tmp_path), groups=[], finetuned_groups=["nosuch"])
  assert os.listdir(tmp_path) == []
