"""Tests for prunelm_tf.reporting.entries and text: found by data, failures collected."""

from prunelm_tf.reporting import entries as E
from prunelm_tf.reporting import text


def test_find_uses_group_and_recorded_target_not_the_name():
  entries = [
      {"name": "dense/none", "method": "dense", "target_sparsity": 0.0},
      {"name": "x/none", "group": "g", "method": "m", "target_sparsity": 0.9000000001},
      {"name": "g_90/dynamic", "group": "g", "method": "m", "target_sparsity": 0.9,
       "quantization": "dynamic"},
      {"name": "g_90/none", "group": "other", "method": "m", "target_sparsity": 0.9},
  ]
  assert E.find(entries, group_name="g", target_sparsity=0.9)["name"] == "x/none"
  assert E.find(entries, group_name="g", target_sparsity=0.9,
                quantization_mode="dynamic")["name"] == "g_90/dynamic"
  assert E.find(entries, group_name="g", target_sparsity=0.5) is None
  assert E.dense_entry(entries)["name"] == "dense/none"
  assert E.group(entries[0]) == "dense" and E.group({"method": "m"}) == "m"


def test_failures_of_evaluation_entries_and_variant_records():
  assert E.failures({"errors": {"tflite": "int8 crashed\ntrace"}, "tflite_errors": {
      "int8": "converter died"}}) == {"tflite": "int8 crashed\ntrace",
                                      "tflite_int8": "converter died"}
  assert E.failures({"errors": {}, "tflite_errors": None}) == {}
  cell = text.failures({"tflite_int8": "x" * 200 + "\nsecond line", "perplexity": "bad"})
  assert cell.startswith("tflite_int8: " + "x" * 79 + "…; perplexity: bad")
  assert text.failures({}) == text.DASH


def test_number_formatting():
  assert text.pct(0.021) == "+2.1 %" and text.pct(None) == text.DASH
  assert text.mb(2_500_000) == "2.50" and text.ms(4.0) == "4.00" and text.ms(12.0) == "12.0"
  assert text.percent_with_delta(0.81, 0.82, False) == "81.0 % (-1.0)"
  assert text.percent_with_delta(0.82, 0.82, True) == "82.0 %"
  assert E.num(float("nan")) is None and E.num(True) is None and E.num(3) == 3.0
