"""Tests for benchmarks.report: targets, Markdown, plots and the written files."""

import copy
import json
import os

import pytest

from benchmarks import report as report_lib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DENSE_BYTES = 40_000_000


def _entry(name, group, method, *, allocation=None, target=0.0, sparsity=0.0, ppl=None, acc=None,
           zip_bytes=None, p50=None, errors=None):
  variant, quantization = name.split("/")
  entry = {
      "name": name, "variant": variant, "group": group, "method": method,
      "method_options": None if allocation is None else {"allocation": allocation},
      "target_sparsity": target, "sparsity": sparsity,
      "quantization": quantization,
      "perplexity": None if ppl is None else {"forward": ppl[0], "backward": ppl[1],
                                              "mean": (ppl[0] + ppl[1]) / 2},
      "sst2_accuracy": acc,
      "sizes": {"saved_model_bytes": 10_000_000, "saved_model_zip_bytes": 9_000_000,
                "tflite_bytes": None if zip_bytes is None else 2 * zip_bytes,
                "tflite_gzip_bytes": None if zip_bytes is None else zip_bytes + 1000,
                "tflite_zip_bytes": zip_bytes},
      "latency": {"tflite": {} if p50 is None else {
          "1": {"p50_ms": p50, "p90_ms": p50 * 1.25, "peak_rss_bytes": 150_000_000,
                "model_rss_bytes": 20_000_000},
          "2": {"p50_ms": p50 * 0.6, "p90_ms": p50 * 0.8, "peak_rss_bytes": 160_000_000,
                "model_rss_bytes": 20_000_000}},
                  "saved_model": {} if p50 is None else {"1": {"p50_ms": p50 * 3}}},
  }
  if errors:
    entry["errors"] = errors
  return entry


def _report():
  entries = [
      _entry("dense/none", "dense", "dense", ppl=(100.0, 102.0), acc=0.82, zip_bytes=37_000_000,
             p50=20.0),
      _entry("dense/dynamic", "dense", "dense", ppl=(100.5, 102.5), zip_bytes=9_500_000, p50=10.0),
      # fwd +4 %, bwd +2.9 %: within 5 %.
      _entry("threshold_50/none", "threshold", "threshold", allocation="uniform", target=0.5,
             sparsity=0.5001, ppl=(104.0, 105.0), zip_bytes=30_000_000),
      # fwd +10 %: misses 5 % by 5 points.
      _entry("threshold_sens_50/none", "threshold_sens", "threshold", allocation="sensitivity",
             target=0.5, sparsity=None, ppl=(110.0, 112.0)),
      # fwd +2 %, bwd +1.96 %; accuracy exactly 1 point below dense (the boundary passes).
      _entry("retrain_90/none", "retrain", "retrain", target=0.9, sparsity=0.9003,
             ppl=(102.0, 104.0), acc=0.81, zip_bytes=5_000_000, p50=8.0),
      # Mean 104 vs dense/none 101: +3 %, within 5 %; 40e6 / 1.25e6 = 32x; 20 / 4 = 5x.
      _entry("retrain_90/dynamic", "retrain", "retrain", target=0.9, sparsity=0.9003,
             ppl=(103.0, 105.0), zip_bytes=1_250_000, p50=4.0),
      _entry("retrain_90/int8", "retrain", "retrain", target=0.9, sparsity=0.9003,
             errors={"tflite": "int8 conversion crashed"}),
  ]
  report = {
      "machine": {"cpus": 2, "cpu_model": "Test CPU", "python": "3.11", "tensorflow": "2.21.0",
                  "ai_edge_litert": "2.0", "platform": "Linux"},
      "command": "python -m benchmarks.run --out_dir=/tmp/x", "mode": "quick",
      "wall_seconds": 123.4, "stage_seconds": {"dense": 1.0, "compress": 100.0, "evaluate": None},
      "dense_saved_model_bytes": DENSE_BYTES, "entries": entries,
      "notes": ["first note", "second note"],
  }
  report["targets"] = report_lib.check_targets(entries, DENSE_BYTES)
  return report


def _by_name(targets):
  return {t["name"]: t for t in targets}


def _all_null_report():
  entries = [{"name": n, "variant": n.split("/")[0], "group": g, "method": g,
              "quantization": n.split("/")[1], "perplexity": None, "sst2_accuracy": None,
              "sparsity": None, "target_sparsity": None, "allocation": None,
              "sizes": {"tflite_zip_bytes": None}, "latency": {"tflite": {}, "saved_model": {}}}
             for n, g in (("dense/none", "dense"), ("retrain_90/none", "retrain"))]
  entries.append({"name": "bare/none"})
  return {"entries": entries}


def _leftovers(directory):
  return [n for n in os.listdir(directory) if n.startswith(".") or ".tmp" in n]


class TestCheckTargets:

  def test_passing_and_failing_targets(self):
    targets = _by_name(_report()["targets"])
    assert list(targets) == [
        "retrain_90_perplexity_within_3pct", "retrain_90_sst2_within_1pt",
        "smallest_within_5pct_30x", "fastest_within_5pct_2x",
        "threshold_50_perplexity_within_5pct", "threshold_sens_50_perplexity_within_5pct"]
    met = {name: t["met"] for name, t in targets.items()}
    assert met == {
        "retrain_90_perplexity_within_3pct": True, "retrain_90_sst2_within_1pt": True,
        "smallest_within_5pct_30x": True, "fastest_within_5pct_2x": True,
        "threshold_50_perplexity_within_5pct": True,
        "threshold_sens_50_perplexity_within_5pct": False}
    assert targets["retrain_90_perplexity_within_3pct"]["value"] == pytest.approx(0.02)
    assert "+2.0 % fwd / +2.0 % bwd" in targets["retrain_90_perplexity_within_3pct"]["detail"]
    smallest = targets["smallest_within_5pct_30x"]
    assert smallest["value"] == pytest.approx(32.0)
    assert "retrain_90/dynamic" in smallest["detail"]
    fastest = targets["fastest_within_5pct_2x"]
    assert fastest["value"] == pytest.approx(5.0)
    assert "retrain_90/dynamic" in fastest["detail"]
    assert "missed by 5.0 points" in targets[
        "threshold_sens_50_perplexity_within_5pct"]["detail"]

  def test_constructed_misses(self):
    entries = _report()["entries"]
    entries[4]["perplexity"].update(forward=110.0, mean=107.0)  # fwd +10 %, mean +5.9 %
    entries[4]["sst2_accuracy"] = 0.79
    entries[5]["latency"]["tflite"]["1"]["p50_ms"] = 15.0  # 20 / 15 < 2; retrain_90/none is 2.5x
    targets = _by_name(report_lib.check_targets(entries, 35_000_000))
    ppl = targets["retrain_90_perplexity_within_3pct"]
    assert not ppl["met"] and ppl["value"] == pytest.approx(0.10)
    assert "missed by 7.0 points" in ppl["detail"]
    sst2 = targets["retrain_90_sst2_within_1pt"]
    assert not sst2["met"] and sst2["value"] == pytest.approx(-0.03)
    assert "missed by 2.0 points" in sst2["detail"]
    smallest = targets["smallest_within_5pct_30x"]  # 35e6 / 1.25e6 = 28x
    assert not smallest["met"] and smallest["value"] == pytest.approx(28.0)
    assert "missed by 2.0x" in smallest["detail"]
    # retrain_90/none is no longer within 5 % (mean 107 vs 101), so dense/dynamic (10 ms) wins.
    fastest = targets["fastest_within_5pct_2x"]
    assert fastest["met"] and "dense/dynamic" in fastest["detail"]

  def test_missing_data_is_not_measured(self):
    entries = [e for e in _report()["entries"] if e["name"] != "dense/none"]
    targets = report_lib.check_targets(entries, None)
    assert len(targets) == 6
    assert all(not t["met"] and t["detail"].startswith("not measured") for t in targets)
    assert report_lib.check_targets([], None)[0]["detail"].startswith("not measured")

  def test_bad_input_raises(self):
    with pytest.raises(TypeError, match="list of dicts"):
      report_lib.check_targets("entries", DENSE_BYTES)
    with pytest.raises(ValueError, match="no 'name'"):
      report_lib.check_targets([{"variant": "dense"}], DENSE_BYTES)
    with pytest.raises(ValueError, match="dense_saved_model_bytes"):
      report_lib.check_targets([], 0)


class TestMarkdown:

  def test_contains_entries_targets_and_deltas(self):
    report = _report()
    text = report_lib.markdown(report)
    assert text.startswith("# PruneLM-TF compression benchmark (quick)")
    for entry in report["entries"]:
      assert f"| {entry['name']} |" in text
    for target in report["targets"]:
      status = "MET" if target["met"] else "MISSED"
      assert f"- **{status}** `{target['name']}`" in text
    assert "5 of 6 met." in text
    assert "MB = 10^6 bytes" in text
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "102.0 (+2.0 %)" in rows["retrain_90/none"]
    # Δ vs dense/dynamic (103 / 100.5), not vs dense/none (+3.0 %).
    assert "103.0 (+2.5 %)" in rows["retrain_90/dynamic"]
    assert "100.5 (+0.5 %)" in rows["dense/dynamic"]  # quantization cost vs dense/none
    assert "100.0 (ref)" in rows["dense/none"]
    assert "81.0 % (-1.0)" in rows["retrain_90/none"]
    assert "32.0x" in rows["retrain_90/dynamic"]
    assert "8.00 / 10.0" in rows["retrain_90/none"]  # p50 / p90 ms at 1 thread
    assert "—" in rows["retrain_90/int8"]
    assert "int8 conversion crashed" in text
    for name in report_lib.PLOT_FILES:
      assert f"]({name})" in text
    assert "- second note" in text

  def test_tolerates_nulls_and_computes_missing_targets(self):
    text = report_lib.markdown(_all_null_report(), plots=[])
    assert "| bare/none |" in text and "**MISSED**" in text and "![" not in text
    with pytest.raises(TypeError, match="report must be a dict"):
      report_lib.markdown([])


class TestFiles:

  def test_plot_writes_pngs(self, tmp_path):
    names = report_lib.plot(_report(), str(tmp_path))
    assert names == list(report_lib.PLOT_FILES)
    for name in names:
      data = (tmp_path / name).read_bytes()
      assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert not _leftovers(tmp_path)

  @pytest.mark.parametrize("report", [_all_null_report(), {"entries": []}])
  def test_plot_tolerates_missing_data(self, tmp_path, report):
    names = report_lib.plot(report, str(tmp_path / "plots"))
    for name in names:
      assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_MAGIC)
    assert len(names) == 4 and not _leftovers(tmp_path / "plots")

  def test_write_report(self, tmp_path):
    report = _report()
    out = tmp_path / "out"
    written = report_lib.write_report(copy.deepcopy(report), str(out))
    assert sorted(written) == sorted(["report.json", "report.md", "report.html",
                                      *report_lib.PLOT_FILES])
    assert sorted(os.listdir(out)) == sorted(written)
    assert json.loads((out / "report.json").read_text()) == report
    assert "![Mean perplexity vs zipped TFLite size](ppl_vs_size.png)" in (
        out / "report.md").read_text()


def _with_tasks(report):
  """The report with NER and MRPC scores on some entries (as evaluate --ner_dir/--mrpc_dir)."""
  report = copy.deepcopy(report)
  scores = {"dense/none": (0.90, 0.70, 0.80), "retrain_90/none": (0.896, 0.69, 0.79),
            "retrain_90/dynamic": (0.88, 0.68, 0.78)}
  for entry in report["entries"]:
    if entry["name"] in scores:
      entry["ner_test_f1"], entry["mrpc_accuracy"], entry["mrpc_f1"] = scores[entry["name"]]
  del report["targets"]
  return report


class TestTasksFailuresAndHtml:

  def test_task_columns_only_when_measured(self):
    header, _ = report_lib.table(_report()["entries"], DENSE_BYTES)
    assert "SST-2 (Δ pt)" in header and "failures" in header and "method options" in header
    assert not {"NER test F1 (Δ pt)", "MRPC acc (Δ pt)", "MRPC F1 (Δ pt)"} & set(header)
    header, rows = report_lib.table(_with_tasks(_report())["entries"], DENSE_BYTES)
    by_name = {row[0]: dict(zip(header, row)) for row in rows}
    assert by_name["retrain_90/none"]["NER test F1 (Δ pt)"] == "89.6 % (-0.4)"
    assert by_name["dense/none"]["NER test F1 (Δ pt)"] == "90.0 %"
    assert by_name["retrain_90/none"]["MRPC acc (Δ pt)"] == "69.0 % (-1.0)"
    assert by_name["retrain_90/none"]["MRPC F1 (Δ pt)"] == "79.0 % (-1.0)"
    assert by_name["threshold_50/none"]["NER test F1 (Δ pt)"] == "—"
    assert by_name["retrain_90/int8"]["failures"] == "tflite: int8 conversion crashed"
    assert by_name["threshold_50/none"]["method options"] == (
        "threshold_scope=layer, allocation=uniform")
    assert by_name["threshold_sens_50/none"]["method options"].endswith(
        "allocation=sensitivity")

  def test_ner_targets_and_plot(self, tmp_path):
    report = _with_tasks(_report())
    targets = _by_name(report_lib.check_targets(report["entries"], DENSE_BYTES))
    assert targets["retrain_90_ner_within_half_pt"]["met"]  # -0.4 pt
    assert targets["retrain_90_ner_within_half_pt"]["value"] == pytest.approx(-0.004)
    smallest = targets["smallest_within_5pct_ner_within_1pt"]  # retrain_90/dynamic: -2 pt
    assert not smallest["met"] and "retrain_90/dynamic" in smallest["detail"]
    names = report_lib.plot(report, str(tmp_path))
    assert names == list(report_lib.PLOT_FILES) + [report_lib.NER_PLOT]
    assert (tmp_path / report_lib.NER_PLOT).read_bytes().startswith(PNG_MAGIC)

  def test_targets_find_variants_by_data_not_by_name(self):
    report = _report()
    for entry in report["entries"]:
      if entry["method"] != "dense":
        entry["name"] = "renamed_" + entry["name"].replace("_", "-")
        entry["variant"] = entry["name"].split("/")[0]
    renamed = _by_name(report_lib.check_targets(report["entries"], DENSE_BYTES))
    assert {n: t["met"] for n, t in renamed.items()} == {
        n: t["met"] for n, t in _by_name(_report()["targets"]).items()}

  def test_html_beside_markdown(self, tmp_path):
    report = _with_tasks(_report())
    written = report_lib.write_report(report, str(tmp_path))
    assert written[-2:] == ["report.md", "report.html"] and report_lib.NER_PLOT in written
    page = (tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    assert page.count('src="data:image/png;base64,') == len(report_lib.PLOT_FILES) + 1
    assert "http" not in page.replace("python -m", "") and "<script" not in page
    for entry in report["entries"]:
      assert f"<td>{entry['name']}</td>" in page and f"| {entry['name']} |" in md
    assert "<th>NER test F1 (Δ pt)</th>" in page and "| NER test F1 (Δ pt) |" in md
    assert "<td>tflite: int8 conversion crashed</td>" in page
    assert "| tflite: int8 conversion crashed |" in md
    assert "![CoNLL-2003 NER test F1 vs zipped TFLite size](ner_f1_vs_size.png)" in md
