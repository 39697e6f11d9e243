"""Tests for benchmarks.elmo_int8: the report, and the variants found in a benchmark folder."""

import os

from benchmarks import elmo_int8


def test_report_gives_ratio_parity_and_the_converter_error(tmp_path):
  ok = {"variant": "obs_50", "ppl_mean": 117.5, "gzip_bytes": 2_000_000,
        "dynamic_gzip_bytes": 3_000_000, "dynamic_parity": {"mean_cosine": 0.9999},
        "parity": {"mean_cosine": 0.98, "min_cosine": 0.9}, "convert_seconds": 120.0}
  failed = {"variant": "lowrank_50", "ppl_mean": 119.3, "dynamic_gzip_bytes": 2_500_000,
            "dynamic_parity": None, "convert_seconds": 30.0,
            "error": "the converter crashed (signal 11)\nlong trace"}
  text = elmo_int8.report([("obs", ok), ("lowrank", failed)], 20_000_000, str(tmp_path), "cmd")
  assert "| obs | obs_50 | 117.5 | 2.00 | 10.0x | 3.00 | 0.9800 / 0.9000 | 0.9999 | 120 |  |" \
      in text
  assert "| lowrank | lowrank_50 | 119.3 | — | — | 2.50 | — | — | 30 | " \
         "the converter crashed (signal 11) |" in text
  assert "1 of 2 variants have an int8 TFLite." in text
  assert (tmp_path / "int8_report.md").read_text() == text


def test_every_finished_variant_is_converted_under_its_report_name(bench_dir):
  """A recipe group's variant is its final stage's, named and cached as "<amount>/<variant>"
  (DIR/int8/<group>/30/finetune); the dense model once."""
  found = [(group, v.name, v.directory) for group, v in elmo_int8.benchmark_variants(bench_dir)]
  assert [(group, name) for group, name, _ in found] == [
      ("dense", "dense"), ("lowrank_data_cluster", "cluster_8"), ("obs", "obs_50"),
      ("retrain_kd_dense_control_nodrop_lr10", "0/finetune"),
      ("structured_obs_ft", "30/finetune")]
  assert found[-1][2] == os.path.join(bench_dir, "structured_obs_ft", "30", "stages",
                                      "2_finetune", "variants", "finetune")
  assert [v.name for _, v in elmo_int8.benchmark_variants(bench_dir, {"obs"})] == [
      "dense", "obs_50"]
