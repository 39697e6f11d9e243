"""The Pareto front of benchmarks.latency_frontier."""

from benchmarks.latency_frontier import pareto


def test_pareto_keeps_only_undominated_points():
  points = [(10.0, 120.0), (5.0, 130.0), (6.0, 140.0), (3.0, 300.0), (10.0, 119.0), (5.0, 130.0)]
  # (10,120) is dominated by (10,119); (6,140) by (5,130); the two (5,130) tie and both stay.
  assert pareto(points) == [1, 3, 4, 5]


def test_int8_files_and_downstream_entries_are_found_where_the_other_benchmarks_write_them(
    tmp_path):
  import json  # pylint: disable=import-outside-toplevel
  from benchmarks.latency_frontier import downstream, int8_files  # pylint: disable=import-outside-toplevel
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
  assert downstream(str(tmp_path), "obs", "dense") == {"sst2_accuracy": 0.66}
  assert downstream(str(tmp_path), "obs", "obs_50") == {}
