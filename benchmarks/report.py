"""The PTB compression benchmark's targets and report (what ``benchmarks.run`` writes).

``benchmarks.run`` measures every (model variant, quantization) pair and hands
the result to this module as one ``report`` dict (the content of
``report.json``):

  check_targets(entries, dense_saved_model_bytes)  the pass/fail targets
  document(report, plots)                          the report as blocks (prunelm_tf.reporting)
  markdown(report)                                 ``report.md`` as a string
  plot(report, out_dir)                            the PNG figures
  write_report(report, out_dir)                    report.json, PNGs, report.md, report.html

The rendering (tables, figures, Markdown/HTML, HParams) is the library's
(`prunelm_tf.reporting`); what is benchmark-specific lives here: which variants
the targets are about (a group of ``benchmarks/ptb_sweep.py`` and a target
sparsity, found by the recorded data, never by parsing names), the thresholds,
the columns and figures chosen.

Anything may be missing (``None`` or an absent key) where it was not measured:
tables print "—", plots skip the point, and a target whose inputs are missing
is reported as not met with a detail starting "not measured:". SST-2, NER and
MRPC columns (and the NER figure and targets) appear when some entry has them.

Sizes in the report are in MB = 10^6 bytes. Perplexity increases are relative
to the dense model (``method == "dense"``); a target or a point "within +5 %"
has a mean perplexity at most 5 % above the unquantized dense model's.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

from benchmarks import ptb_sweep
from prunelm_tf.reporting import document as document_lib
from prunelm_tf.reporting import entries as E
from prunelm_tf.reporting import plots as plots_lib
from prunelm_tf.reporting import text
from prunelm_tf.reporting.hparams import options_text
from prunelm_tf.utils import files

MB = text.MB
PPL_WITHIN = 0.05  # "within +5 %" of the dense perplexity, for targets 3 and 4 and the plots
# Always written (a figure without data says so).
PLOT_FILES = ("ppl_vs_size.png", "ppl_vs_sparsity.png", "sst2_vs_sparsity.png",
              "latency_vs_size.png")
# Written when some entry has an NER F1 (the NER evaluation is optional).
NER_PLOT = "ner_f1_vs_size.png"
_PLOT_TITLES = {
    "ppl_vs_size.png": "Mean perplexity vs zipped TFLite size",
    "ppl_vs_sparsity.png": "Mean perplexity vs sparsity (unquantized)",
    "sst2_vs_sparsity.png": "SST-2 accuracy vs sparsity (unquantized)",
    "latency_vs_size.png": "TFLite latency (1 thread) vs zipped TFLite size",
    NER_PLOT: "CoNLL-2003 NER test F1 vs zipped TFLite size",
}
_EPS = 1e-9  # so that a value exactly on a threshold (0.80 vs 0.81 - 0.01) counts as met

# The variants the targets are about: (group of benchmarks/ptb_sweep.py, target sparsity).
RETRAIN_90 = (ptb_sweep.RETRAINED, 0.9)
THRESHOLD_50 = (ptb_sweep.UNIFORM, 0.5)
THRESHOLD_SENS_50 = (ptb_sweep.ALLOCATED, 0.5)


def _find(entries: Sequence[Mapping], which: Tuple[str, float]) -> Optional[Mapping]:
  """The unquantized entry of (group, target sparsity)."""
  return E.find(entries, group_name=which[0], target_sparsity=which[1])


def _describe(which: Tuple[str, float]) -> str:
  return f"group {which[0]!r} at target sparsity {which[1]:g}"


def _sst2(entry: Optional[Mapping]) -> Optional[float]:
  return E.score(entry, "sst2_accuracy")


def _ner(entry: Optional[Mapping]) -> Optional[float]:
  return E.score(entry, "ner_test_f1")


def _validate_report(report: Any) -> List[Mapping]:
  if not isinstance(report, Mapping):
    raise TypeError(f"report must be a dict (the content of report.json), got "
                    f"{type(report).__name__}.")
  return E.validate(report.get("entries") or [])


# ----------------------------------------------------------------------------- targets


def _target(name: str, description: str, met: bool, value: Optional[float], threshold: float,
            detail: str) -> Dict[str, Any]:
  return {"name": name, "description": description, "met": bool(met), "value": value,
          "threshold": threshold, "detail": detail}


def _not_measured(name: str, description: str, threshold: float, what: str) -> Dict[str, Any]:
  return _target(name, description, False, None, threshold, f"not measured: {what}")


def _points_margin(value: float, threshold: float, *, at_most: bool) -> str:
  """Margin of a fraction target in percentage points, e.g. "missed by 4.2 points"."""
  gap = (threshold - value) if at_most else (value - threshold)
  if gap >= -_EPS:
    return f"met with {max(gap, 0.0) * 100:.1f} points to spare"
  return f"missed by {-gap * 100:.1f} points"


def _ratio_margin(ratio: float, threshold: float) -> str:
  if ratio >= threshold - _EPS:
    return f"met with {ratio - threshold:.1f}x to spare"
  return f"missed by {threshold - ratio:.1f}x ({(1 - ratio / threshold) * 100:.0f} % short)"


def _perplexity_target(name: str, description: str, entries: Sequence[Mapping], which: Tuple,
                       dense: Optional[Mapping], threshold: float) -> Dict[str, Any]:
  """max(forward, backward) relative perplexity increase of ``which``, unquantized, <= threshold."""
  entry = _find(entries, which)
  if entry is None:
    return _not_measured(name, description, threshold,
                         f"no unquantized entry of {_describe(which)} in the report")
  if dense is None:
    return _not_measured(name, description, threshold, "no dense entry with quantization none")
  fwd = E.rel(E.perplexity(entry, "forward"), E.perplexity(dense, "forward"))
  bwd = E.rel(E.perplexity(entry, "backward"), E.perplexity(dense, "backward"))
  if fwd is not None and bwd is not None:
    value, measured = max(fwd, bwd), f"{text.pct(fwd)} fwd / {text.pct(bwd)} bwd"
  else:
    # Only the mean was reported: the best available, and said so in the detail.
    value = E.rel(E.perplexity(entry, "mean"), E.perplexity(dense, "mean"))
    if value is None:
      return _not_measured(name, description, threshold,
                           f"perplexity of '{entry['name']}' or of the dense model is missing")
    measured = f"{text.pct(value)} mean (fwd/bwd not reported)"
  met = value <= threshold + _EPS
  return _target(name, description, met, value, threshold,
                 f"{measured} vs dense; target <= {text.pct(threshold, 0)}; "
                 f"{_points_margin(value, threshold, at_most=True)}")


def _within(entries: Sequence[Mapping], dense_mean: float) -> Tuple[List[Mapping], List[Mapping]]:
  """(entries with a mean perplexity, those of them within +5 % of ``dense_mean``)."""
  measured = [e for e in entries if E.perplexity(e, "mean") is not None]
  within = [e for e in measured
            if (E.rel(E.perplexity(e, "mean"), dense_mean) is not None
                and E.rel(E.perplexity(e, "mean"), dense_mean) <= PPL_WITHIN + _EPS)]
  return measured, within


def _best_outside(measured: Sequence[Mapping], dense_mean: float) -> str:
  if not measured:
    return ""
  best = min(measured, key=lambda e: E.perplexity(e, "mean"))
  return f" (closest: {best['name']} at {text.pct(E.rel(E.perplexity(best, 'mean'), dense_mean))})"


def check_targets(entries: Sequence[Mapping],
                  dense_saved_model_bytes: Optional[float]) -> List[Dict[str, Any]]:
  """Evaluates the benchmark's targets on its entries.

  Targets (relative perplexity increases are vs the dense model, quantization none):
    retrain_90_perplexity_within_3pct: the retrained 90 % variant (group
      ``ptb_sweep.RETRAINED``, target sparsity 0.9), unquantized, max(forward,
      backward) increase <= +3 %.
    retrain_90_sst2_within_1pt: its SST-2 accuracy >= dense accuracy - 0.01.
    retrain_90_ner_within_half_pt (only if some entry has an NER F1): its NER
      test F1 >= dense F1 - 0.005.
    smallest_within_5pct_30x: the smallest zipped TFLite model among entries with a
      mean perplexity within +5 %: ``dense_saved_model_bytes / tflite_zip_bytes >= 30``.
    fastest_within_5pct_2x: the fastest (TFLite p50, 1 thread) entry within +5 %:
      dense TFLite p50 / its p50 >= 2.
    smallest_within_5pct_ner_within_1pt (only if some entry has an NER F1): the
      smallest zipped TFLite entry within +5 % has an NER test F1 >= dense - 0.01.
    threshold_50_perplexity_within_5pct: uniform thresholding to 50 % (group
      ``ptb_sweep.UNIFORM``), unquantized, max(forward, backward) increase <= +5 %;
      the same for sensitivity allocation (``ptb_sweep.ALLOCATED``) if the report has it.

  Variants are found by their group and recorded target sparsity, never by name.

  Args:
    entries: ``report["entries"]``; missing values are allowed.
    dense_saved_model_bytes: size of the dense SavedModel directory, or None.

  Returns:
    One dict per target with keys name, description, met, value (the measured
    increase as a fraction, accuracy difference, or ratio; None if not
    measured), threshold and detail (human readable, says by how much a target
    was met or missed). A target whose inputs are missing has met False and a
    detail starting "not measured:".

  Raises:
    TypeError: ``entries`` is not a list of dicts.
    ValueError: an entry has no name, or ``dense_saved_model_bytes`` is not positive.
  """
  entries = E.validate(entries)
  dense_bytes = E.num(dense_saved_model_bytes)
  if dense_saved_model_bytes is not None and (dense_bytes is None or dense_bytes <= 0):
    raise ValueError(f"dense_saved_model_bytes must be a positive number of bytes or None, got "
                     f"{dense_saved_model_bytes!r}.")
  dense = E.dense_entry(entries, "none")
  targets = []

  targets.append(_perplexity_target(
      "retrain_90_perplexity_within_3pct",
      "Pruned to 90 % with retraining (unquantized): forward and backward perplexity each at "
      "most 3 % above the dense model's.", entries, RETRAIN_90, dense, 0.03))

  name, threshold = "retrain_90_sst2_within_1pt", -0.01
  description = ("Pruned to 90 % with retraining (unquantized): SST-2 accuracy at most "
                 "1 point below the dense model's.")
  entry = _find(entries, RETRAIN_90)
  if _sst2(entry) is None or _sst2(dense) is None:
    targets.append(_not_measured(name, description, threshold,
                                 f"SST-2 accuracy of {_describe(RETRAIN_90)} or of dense/none "
                                 "is missing"))
  else:
    diff = _sst2(entry) - _sst2(dense)
    targets.append(_target(
        name, description, diff >= threshold - _EPS, diff, threshold,
        f"{_sst2(entry) * 100:.1f} % vs dense {_sst2(dense) * 100:.1f} % ({diff * 100:+.1f} pt); "
        f"target >= {threshold * 100:+.0f} pt; {_points_margin(diff, threshold, at_most=False)}"))

  dense_mean = E.perplexity(dense, "mean")
  name, threshold = "smallest_within_5pct_30x", 30.0
  description = ("The smallest zipped TFLite model with a mean perplexity within +5 % of the "
                 "dense model is at least 30x smaller than the dense SavedModel.")
  if dense_mean is None or dense_bytes is None:
    targets.append(_not_measured(name, description, threshold,
                                 "dense mean perplexity or dense SavedModel size is missing"))
  else:
    measured, within = _within(entries, dense_mean)
    sized = [e for e in within if E.size(e, "tflite_zip_bytes")]
    if not any(E.size(e, "tflite_zip_bytes") for e in measured):
      targets.append(_not_measured(name, description, threshold,
                                   "no entry has both a mean perplexity and a zipped TFLite size"))
    elif not sized:
      targets.append(_target(name, description, False, None, threshold,
                             f"no sized entry has a mean perplexity within +5 % of dense"
                             f"{_best_outside(measured, dense_mean)}"))
    else:
      best = min(sized, key=lambda e: E.size(e, "tflite_zip_bytes"))
      zip_bytes = E.size(best, "tflite_zip_bytes")
      ratio = dense_bytes / zip_bytes
      targets.append(_target(
          name, description, ratio >= threshold - _EPS, ratio, threshold,
          f"smallest within +5 %: {best['name']} ({text.mb(zip_bytes, 3)} MB zipped TFLite, mean "
          f"perplexity {text.pct(E.rel(E.perplexity(best, 'mean'), dense_mean))}); dense SavedModel "
          f"{text.mb(dense_bytes, 1)} MB / {text.mb(zip_bytes, 3)} MB = {ratio:.1f}x; target >= "
          f"{threshold:g}x; {_ratio_margin(ratio, threshold)}"))

  name, threshold = "fastest_within_5pct_2x", 2.0
  description = ("The fastest TFLite model (p50, 1 thread) with a mean perplexity within +5 % "
                 "of the dense model is at least 2x faster than the dense TFLite model.")
  dense_p50 = E.latency(dense, "tflite", 1)
  if dense_mean is None or not dense_p50:
    targets.append(_not_measured(name, description, threshold,
                                 "dense mean perplexity or dense TFLite p50 (1 thread) is missing"))
  else:
    measured, within = _within(entries, dense_mean)
    timed = [e for e in within if E.latency(e, "tflite", 1)]
    if not any(E.latency(e, "tflite", 1) for e in measured):
      targets.append(_not_measured(name, description, threshold,
                                   "no entry has both a mean perplexity and a TFLite p50"))
    elif not timed:
      targets.append(_target(name, description, False, None, threshold,
                             f"no timed entry has a mean perplexity within +5 % of dense"
                             f"{_best_outside(measured, dense_mean)}"))
    else:
      best = min(timed, key=lambda e: E.latency(e, "tflite", 1))
      p50 = E.latency(best, "tflite", 1)
      ratio = dense_p50 / p50
      targets.append(_target(
          name, description, ratio >= threshold - _EPS, ratio, threshold,
          f"fastest within +5 %: {best['name']} (p50 {text.ms(p50)} ms, mean perplexity "
          f"{text.pct(E.rel(E.perplexity(best, 'mean'), dense_mean))}); dense p50 {text.ms(dense_p50)} ms / "
          f"{text.ms(p50)} ms = {ratio:.2f}x; target >= {threshold:g}x; "
          f"{_ratio_margin(ratio, threshold)}"))

  targets.append(_perplexity_target(
      "threshold_50_perplexity_within_5pct",
      "Magnitude thresholding to 50 %, uniform over matrices, no retraining (unquantized): "
      "forward and backward perplexity each at most 5 % above the dense model's.",
      entries, THRESHOLD_50, dense, PPL_WITHIN))
  if any(E.group(e) == ptb_sweep.ALLOCATED and E.has_target(e, 0.5) for e in entries):
    targets.append(_perplexity_target(
        "threshold_sens_50_perplexity_within_5pct",
        "Magnitude thresholding to 50 %, sparsity allocated by sensitivity, no retraining "
        "(unquantized): forward and backward perplexity each at most 5 % above the dense "
        "model's.", entries, THRESHOLD_SENS_50, dense, PPL_WITHIN))
  if E.any_value(entries, _ner):
    targets += _ner_targets(entries, dense)
  return targets


def _ner_targets(entries: Sequence[Mapping], dense: Optional[Mapping]) -> List[Dict[str, Any]]:
  """The two NER targets of issue #12 (F1 differences are fractions: 0.005 = 0.5 point)."""
  out = []

  def f1_target(name: str, description: str, entry: Optional[Mapping], what: str,
                threshold: float) -> Dict[str, Any]:
    if _ner(entry) is None or _ner(dense) is None:
      return _not_measured(name, description, threshold,
                           f"NER test F1 of {what} or of dense/none is missing")
    diff = _ner(entry) - _ner(dense)
    return _target(name, description, diff >= threshold - _EPS, diff, threshold,
                   f"{entry['name']}: F1 {_ner(entry) * 100:.2f} vs dense {_ner(dense) * 100:.2f} "
                   f"({diff * 100:+.2f} pt); target >= {threshold * 100:+.1f} pt; "
                   f"{_points_margin(diff, threshold, at_most=False)}")

  out.append(f1_target(
      "retrain_90_ner_within_half_pt", "Pruned to 90 % with retraining (unquantized): NER test "
      "F1 at most 0.5 point below the dense model's.", _find(entries, RETRAIN_90),
      _describe(RETRAIN_90), -0.005))
  name = "smallest_within_5pct_ner_within_1pt"
  description = ("The smallest zipped TFLite model with a mean perplexity within +5 % of the "
                 "dense model: NER test F1 at most 1 point below the dense model's.")
  dense_mean = E.perplexity(dense, "mean")
  sized = ([e for e in _within(entries, dense_mean)[1] if E.size(e, "tflite_zip_bytes")]
           if dense_mean is not None else [])
  best = min(sized, key=lambda e: E.size(e, "tflite_zip_bytes")) if sized else None
  out.append(f1_target(name, description, best, "the smallest entry within +5 %", -0.01))
  return out


# ----------------------------------------------------------------------------- table


def _ppl_cell(entry: Mapping, which: str, reference: Optional[Mapping], is_reference: bool) -> str:
  value = E.perplexity(entry, which)
  if value is None:
    return text.DASH
  if is_reference:
    return f"{text.perplexity(value)} (ref)"
  delta = E.rel(value, E.perplexity(reference, which))
  return (text.perplexity(value) if delta is None
          else f"{text.perplexity(value)} ({text.pct(delta)})")


# Task scores shown when some entry has them: (column, entry key).
_SCORES = (("SST-2 (Δ pt)", "sst2_accuracy"), ("NER test F1 (Δ pt)", "ner_test_f1"),
           ("MRPC acc (Δ pt)", "mrpc_accuracy"), ("MRPC F1 (Δ pt)", "mrpc_f1"),
           ("CoLA MCC (Δ pt)", "cola_mcc"))


def table(entries: Sequence[Mapping], dense_bytes: Optional[float]) -> Tuple[List[str],
                                                                               List[List[str]]]:
  """(header, rows) of the results table: one row per entry, in order."""
  scores = [(column, key) for column, key in _SCORES
            if E.any_value(entries, lambda e, k=key: E.score(e, k))]
  header = (["variant / quantization", "method", "method options", "target", "sparsity",
             "ppl fwd (Δ)", "ppl bwd (Δ)", "ppl mean (Δ)"] + [c for c, _ in scores] +
            ["SavedModel zip MB", "TFLite MB", "TFLite gzip MB", "TFLite zip MB", "ratio",
             "TFLite p50 / p90 ms, 1 thr", "TFLite p50 / p90 ms, 2 thr",
             "SavedModel p50 ms, 1 thr", "TFLite peak RSS MB", "failures"])
  rows = []
  dense_none = E.dense_entry(entries, "none")
  for entry in entries:
    # Pruned entries compare with the dense model of the same quantization, so the Δ is
    # the cost of pruning alone; a quantized dense entry compares with dense/none, so its
    # Δ is the cost of quantization. Task scores compare with dense/none.
    reference = E.dense_entry(entries, E.quantization(entry))
    if reference is None or reference is entry:
      reference = dense_none
    is_reference = reference is entry
    target = E.num(entry.get("target_sparsity"))
    sparsity = E.num(entry.get("sparsity"))
    zip_bytes = E.size(entry, "tflite_zip_bytes")
    ratio = dense_bytes / zip_bytes if dense_bytes and zip_bytes else None

    def p50_p90(threads: int) -> str:
      p50 = E.latency(entry, "tflite", threads)
      p90 = E.latency(entry, "tflite", threads, "p90_ms")
      return text.DASH if p50 is None and p90 is None else f"{text.ms(p50)} / {text.ms(p90)}"

    rows.append(
        [entry["name"], E.method(entry), options_text(entry),
         text.DASH if target is None else f"{target * 100:.0f} %",
         text.DASH if sparsity is None else f"{sparsity * 100:.2f} %",
         _ppl_cell(entry, "forward", reference, is_reference),
         _ppl_cell(entry, "backward", reference, is_reference),
         _ppl_cell(entry, "mean", reference, is_reference)] +
        [text.percent_with_delta(E.score(entry, key), E.score(dense_none, key),
                                 entry is dense_none) for _, key in scores] +
        [text.mb(E.size(entry, "saved_model_zip_bytes")), text.mb(E.size(entry, "tflite_bytes")),
         text.mb(E.size(entry, "tflite_gzip_bytes")), text.mb(zip_bytes),
         text.DASH if ratio is None else f"{ratio:.1f}x",
         p50_p90(1), p50_p90(2), text.ms(E.latency(entry, "saved_model", 1)),
         text.mb(E.peak_rss(entry), 0), text.failures(E.failures(entry))])
  return header, rows


def _machine_line(machine: Any) -> str:
  if not isinstance(machine, Mapping) or not machine:
    return f"**Machine:** {text.DASH}"
  parts = []
  if machine.get("cpus") is not None or machine.get("cpu_model"):
    cpus = machine.get("cpus")
    parts.append(f"{cpus if cpus is not None else '?'} CPUs"
                 + (f" ({machine['cpu_model']})" if machine.get("cpu_model") else ""))
  for key, label in (("python", "Python"), ("tensorflow", "TensorFlow"),
                     ("ai_edge_litert", "ai-edge-litert"), ("platform", "")):
    if machine.get(key):
      parts.append(f"{label} {machine[key]}".strip())
  return "**Machine:** " + (", ".join(parts) if parts else text.DASH)


def document(report: Mapping, plots: Optional[Sequence[str]] = None) -> document_lib.Document:
  """The benchmark report as blocks (rendered by ``markdown`` and ``write_report``).

  Args:
    report: the ``report.json`` dict; any measurement may be None or absent. If
      it has no "targets", they are computed with ``check_targets``.
    plots: PNG file names (relative to the report) to show; defaults to
      ``PLOT_FILES``. Pass ``[]`` to show none.

  Raises:
    TypeError: ``report`` is not a dict or its entries are not dicts.
    ValueError: an entry has no name.
  """
  entries = _validate_report(report)
  dense_bytes = E.num(report.get("dense_saved_model_bytes"))
  mode = report.get("mode") or "unknown mode"
  doc = document_lib.Document(f"PruneLM-TF compression benchmark ({mode})")
  if mode == "quick":
    doc.quote("Quick mode: short retraining and few evaluation sentences; the numbers check "
              "the pipeline, they do not measure the methods.")
  wall = E.num(report.get("wall_seconds"))
  stages = report.get("stage_seconds")
  stage_text = ""
  if isinstance(stages, Mapping) and stages:
    stage_text = " (" + ", ".join(
        f"{k} {E.num(v):.0f} s" if E.num(v) is not None else f"{k} {text.DASH}"
        for k, v in stages.items()) + ")"
  wall_text = text.DASH if wall is None else f"{wall:.0f} s ({wall / 60:.1f} min)"
  doc.paragraph(_machine_line(report.get("machine")),
                f"**Command:** `{report.get('command') or text.DASH}`",
                f"**Wall time:** {wall_text}{stage_text}",
                f"**Dense SavedModel:** {text.mb(dense_bytes)} MB")

  targets = report.get("targets")
  if targets is None:
    targets = check_targets(entries, dense_bytes)
  doc.heading("Targets")
  if not targets:
    doc.paragraph(f"{text.DASH} no targets were evaluated.")
  else:
    met = sum(1 for t in targets if isinstance(t, Mapping) and t.get("met"))
    doc.paragraph(f"{met} of {len(targets)} met.")
  items = []
  for t in targets or []:
    if not isinstance(t, Mapping):
      continue
    status = "MET" if t.get("met") else "MISSED"
    description = f" — {t['description']}" if t.get("description") else ""
    items.append(f"**{status}** `{t.get('name', '?')}`{description} "
                 f"{t.get('detail') or text.DASH} (value {text.value(t.get('value'))}, "
                 f"threshold {text.value(t.get('threshold'))})")
  if items:
    doc.bullets(items)

  doc.heading("Results")
  if entries:
    doc.table(*table(entries, dense_bytes))
  else:
    doc.paragraph(f"{text.DASH} no entries.")
  doc.paragraph(
      "MB = 10^6 bytes. Perplexity Δ is relative to the dense model of the same quantization "
      "(for a quantized dense model: relative to dense/none, i.e. the cost of quantization). "
      "SST-2, NER and MRPC Δ are in points vs dense/none. ratio = dense SavedModel bytes / "
      "zipped TFLite bytes. Latencies are per call, p50 / p90 over the timed runs; peak RSS is "
      "the largest over the TFLite runs. sparsity is measured over the pruned weights. method "
      "options are the method's HParams. failures: what could not be made or measured (first "
      f"line; the full message is below and in report.json). {text.DASH} = not measured.")

  failed = [(e["name"], E.failures(e)) for e in entries if E.failures(e)]
  if failed:
    doc.heading("Errors")
    doc.bullets([f"`{name}` {key}: {message}" for name, found in failed
                 for key, message in found.items()])

  plot_files = PLOT_FILES if plots is None else plots
  if plot_files:
    doc.heading("Plots")
    for file_name in plot_files:
      base = os.path.basename(file_name)
      doc.image(file_name, _PLOT_TITLES.get(base, base))

  notes = report.get("notes") or []
  if notes:
    doc.heading("Notes")
    doc.bullets([str(n) for n in notes])
  return doc


def markdown(report: Mapping, plots: Optional[Sequence[str]] = None) -> str:
  """The content of ``report.md``; see ``document``."""
  return document(report, plots).markdown()


# ----------------------------------------------------------------------------- plots


def plot(report: Mapping, out_dir: str) -> List[str]:
  """Writes the benchmark figures as PNG files (dpi 120, 900 px wide).

  ppl_vs_size.png: mean perplexity vs zipped TFLite size, colour = group,
    marker = quantization, dense highlighted, every point labelled.
  ppl_vs_sparsity.png: mean perplexity (log) vs measured sparsity, one line per
    pruned group, unquantized; dense and dense +5 % as horizontal lines.
  sst2_vs_sparsity.png: SST-2 accuracy vs measured sparsity, as above.
  latency_vs_size.png: TFLite p50 (1 thread) vs zipped TFLite size.
  ner_f1_vs_size.png (only if some entry has an NER F1): NER test F1 vs
    zipped TFLite size, dense and dense -1 point as lines.

  Each file is written under a temporary name and renamed.

  Args:
    report: the ``report.json`` dict.
    out_dir: directory for the PNGs; created if missing.

  Returns:
    The file names written (relative to ``out_dir``): ``PLOT_FILES``, then
    ``NER_PLOT`` if written.

  Raises:
    TypeError: ``report`` is not a dict or its entries are not dicts.
    ValueError: an entry has no name.
  """
  entries = _validate_report(report)
  styles = plots_lib.Styles.of(entries)
  dense = E.dense_entry(entries, "none")
  dense_ppl, dense_p50 = E.perplexity(dense, "mean"), E.latency(dense, "tflite", 1)
  Ref = plots_lib.Reference  # pylint: disable=invalid-name
  ppl_refs = [Ref(dense_ppl, "dense (none)"),
              Ref(None if dense_ppl is None else dense_ppl * (1 + PPL_WITHIN), "dense +5 %",
                  dashed=False)]

  def percent(key):
    return lambda e: None if E.score(e, key) is None else E.score(e, key) * 100

  makers = {
      "ppl_vs_size.png": lambda: plots_lib.scatter_vs_size(
          entries, lambda e: E.perplexity(e, "mean"), styles,
          ylabel="mean perplexity (fwd & bwd, PTB test)", title=_PLOT_TITLES["ppl_vs_size.png"],
          what="a mean perplexity", references=ppl_refs),
      "ppl_vs_sparsity.png": lambda: plots_lib.lines_vs_sparsity(
          entries, lambda e: E.perplexity(e, "mean"), styles,
          ylabel="mean perplexity (fwd & bwd, PTB test, log scale)",
          title=_PLOT_TITLES["ppl_vs_sparsity.png"], what="a mean perplexity",
          references=ppl_refs, log_y=True),
      "sst2_vs_sparsity.png": lambda: plots_lib.lines_vs_sparsity(
          entries, percent("sst2_accuracy"), styles, ylabel="SST-2 accuracy (%)",
          title=_PLOT_TITLES["sst2_vs_sparsity.png"], what="an SST-2 accuracy",
          references=[Ref(percent("sst2_accuracy")(dense) if dense else None, "dense (none)"),
                      Ref(percent("sst2_accuracy")(dense) - 1.0 if _sst2(dense) is not None
                          else None, "dense -1 pt", dashed=False)]),
      "latency_vs_size.png": lambda: plots_lib.scatter_vs_size(
          entries, lambda e: E.latency(e, "tflite", 1), styles,
          ylabel="TFLite latency p50, 1 thread (ms per call)",
          title=_PLOT_TITLES["latency_vs_size.png"], what="a TFLite p50", log_y="never",
          references=[Ref(dense_p50, "dense (none)"),
                      Ref(None if dense_p50 is None else dense_p50 / 2, "2x faster than dense",
                          dashed=False)]),
  }
  if E.any_value(entries, _ner):
    dense_f1 = percent("ner_test_f1")(dense) if dense else None
    makers[NER_PLOT] = lambda: plots_lib.scatter_vs_size(
        entries, percent("ner_test_f1"), styles, ylabel="CoNLL-2003 NER test F1 (%)",
        title=_PLOT_TITLES[NER_PLOT], what="an NER test F1", log_y="never",
        references=[Ref(dense_f1, "dense (none)"),
                    Ref(None if dense_f1 is None else dense_f1 - 1.0, "dense -1 pt",
                        dashed=False)])
  return plots_lib.write_figures(makers, out_dir)


# ----------------------------------------------------------------------------- all files


def write_report(report: Mapping, out_dir: str) -> List[str]:
  """Writes report.json, the PNG figures, report.md and report.html into ``out_dir``, atomically.

  report.json is written first, so the measurements survive a failure in
  plotting. Without matplotlib the figures are skipped (with a warning) and
  the reports show none. report.html is one self-contained page (figures
  embedded) with the same content as report.md.

  Args:
    report: the ``report.json`` dict (JSON-serialisable).
    out_dir: the benchmark's output directory; created if missing.

  Returns:
    The file names written, relative to ``out_dir``.

  Raises:
    TypeError: ``report`` is not a dict, its entries are not dicts, or it is
      not JSON-serialisable.
    ValueError: an entry has no name.
  """
  _validate_report(report)
  os.makedirs(out_dir, exist_ok=True)
  files.write_json(os.path.join(out_dir, "report.json"), report)
  written = ["report.json"]
  try:
    plots = plot(report, out_dir)
  except ImportError as e:
    logging.warning("Skipping the report's plots: %s (pip install 'prunelm-tf[plots]').", e)
    plots = []
  written += plots
  written += document_lib.write(document(report, plots=plots), out_dir, "report")
  logging.info("Wrote %s to %s", ", ".join(written), out_dir)
  return written
