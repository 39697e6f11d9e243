"""benchmarks.latency_frontier: the Pareto front and the variants found in a benchmark folder."""

import json
import os

from benchmarks.elmo_ptb.layout import downstream_of
from benchmarks.latency_frontier import collect, int8_files, pareto


def test_pareto_keeps_only_undominated_points():
  points = [(10.0, 120.0), (5.0, 130.0), (6.0, 140.0), (3.0, 300.0), (10.0, 119.0), (5.0, 130.0)]
  # (10,120) is dominated by (10,119); (6,140) by (5,130); the two (5,130) tie and both stay.
  assert pareto(points) == [1, 3, 4, 5]


def test_int8_files_and_downstream_entries_are_found_where_the_other_benchmarks_write_them(
    tmp_path):
  ok = tmp_path / "int8" / "obs" / "obs_50"
  ok.mkdir(parents=True)
  (ok / "result.json").write_text(json.dumps({"gzip_bytes": 123}))
  failed = tmp_path / "int8" / "lowrank" / "lowrank_50"
  failed.mkdir(parents=True)
  (failed / "result.json").write_text(json.dumps({"error": "crashed"}))
  assert int8_files(str(tmp_path), "obs", "obs_50") == {
      "int8": (str(ok / "bilm_int8.tflite"), 123)}
  assert int8_files(str(tmp_path), "lowrank", "lowrank_50") == {}  # its error: no file
  assert int8_files(str(tmp_path), "obs", "obs_70") == {}
  dense = tmp_path / "downstream" / "dense" / "dense" / "none"
  dense.mkdir(parents=True)
  (dense / "evaluation.json").write_text(json.dumps({"sst2_accuracy": 0.66}))
  # The dense model's entry is found whichever group its row came from.
  assert downstream_of(str(tmp_path), "obs", "dense") == {"sst2_accuracy": 0.66}
  assert downstream_of(str(tmp_path), "obs", "obs_50") is None
  # A recipe group's variant: its entries are nested under the run's amount.
  nested = tmp_path / "int8" / "structured_obs_ft" / "30" / "finetune"
  nested.mkdir(parents=True)
  (nested / "result.json").write_text(json.dumps({"gzip_bytes": 7}))
  assert int8_files(str(tmp_path), "structured_obs_ft", "30/finetune") == {
      "int8": (str(nested / "bilm_int8.tflite"), 7)}
  entry = tmp_path / "downstream" / "structured_obs_ft" / "30" / "finetune" / "none"
  entry.mkdir(parents=True)
  (entry / "evaluation.json").write_text(json.dumps({"ner_test_f1": 0.7}))
  assert downstream_of(str(tmp_path), "structured_obs_ft", "30/finetune") == {"ner_test_f1": 0.7}


def test_collect_finds_the_final_stage_of_every_finished_recipe_run(bench_dir):
  """Method groups, a recipe group's finished run (its final stage, not the stage before it
  or an unfinished run) and a one-stage recipe run; the dense model once, not from the
  combination that sorts first."""
  found = [(group, name, os.path.relpath(v.path, bench_dir), metrics["perplexity"]["mean"])
           for group, name, v, metrics in collect(bench_dir, set())]
  assert found == [
      ("dense", "dense", os.path.join("obs", "dense"), 100.0),
      ("lowrank_data_cluster", "cluster_8",
       os.path.join("lowrank_data_cluster", "variants", "cluster_8"), 105.0),
      ("obs", "obs_50", os.path.join("obs", "variants", "obs_50"), 101.0),
      ("retrain_kd_dense_control_nodrop_lr10", "0/finetune",
       os.path.join("retrain_kd_dense_control_nodrop_lr10", "0", "variants", "finetune"), 99.0),
      ("structured_obs_ft", "30/finetune",
       os.path.join("structured_obs_ft", "30", "stages", "2_finetune", "variants", "finetune"),
       105.0)]
  # --groups: only those; the dense model comes from the first group that is no combination.
  only = [(group, name) for group, name, _, _ in collect(bench_dir, {"structured_obs_ft"})]
  assert only == [("dense", "dense"), ("structured_obs_ft", "30/finetune")]
  dense_path = collect(bench_dir, {"structured_obs_ft"})[0][2].path
  assert dense_path == os.path.join(bench_dir, "structured_obs_ft", "30", "stages",
                                    "1_structured", "dense")
  assert [g for g, *_ in collect(bench_dir, {"lowrank_data_cluster"})] == ["lowrank_data_cluster"]
