"""Targets, plots and the human-readable report of the compression benchmark.

``benchmarks.run`` measures every (model variant, quantization) pair and hands
the result to this module as one ``report`` dict (the content of
``report.json``):

  check_targets(entries, dense_saved_model_bytes)  the pass/fail targets
  markdown(report)                                 ``report.md`` as a string
  plot(report, out_dir)                            the four PNG figures
  write_report(report, out_dir)                    all of the above, atomically

Anything may be missing (``None`` or an absent key) where it was not measured:
tables print "—", plots skip the point, and a target whose inputs are missing
is reported as not met with a detail starting "not measured:".

Sizes in the report are in MB = 10^6 bytes. Perplexity increases are relative
to the dense model (``variant == "dense"``); a target or a point "within +5 %"
has a mean perplexity at most 5 % above the unquantized dense model's.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

from prunelm_tf.utils import files

MB = 1e6  # bytes per MB in every table and plot
PPL_WITHIN = 0.05  # "within +5 %" of the dense perplexity, for targets 3 and 4 and the plots
PLOT_FILES = ("ppl_vs_size.png", "ppl_vs_sparsity.png", "sst2_vs_sparsity.png",
              "latency_vs_size.png")
_PLOT_TITLES = {
    "ppl_vs_size.png": "Mean perplexity vs zipped TFLite size",
    "ppl_vs_sparsity.png": "Mean perplexity vs sparsity (unquantized)",
    "sst2_vs_sparsity.png": "SST-2 accuracy vs sparsity (unquantized)",
    "latency_vs_size.png": "TFLite latency (1 thread) vs zipped TFLite size",
}
_EPS = 1e-9  # so that a value exactly on a threshold (0.80 vs 0.81 - 0.01) counts as met
_DASH = "—"

# Fixed colours and markers, so the same group / quantization looks the same in every plot.
_GROUP_COLOURS = {"dense": "black", "threshold": "tab:orange", "threshold_sens": "tab:red",
                  "retrain": "tab:blue"}
_EXTRA_COLOURS = ("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
_QUANT_MARKERS = {"none": "o", "dynamic": "s", "float16": "^", "int8": "D"}
_EXTRA_MARKERS = ("v", "P", "X", "*", "h")


# ----------------------------------------------------------------------------- entry access


def _num(x: Any) -> Optional[float]:
  """``x`` as a float, or None if it is missing, not a number, or NaN (inf is kept)."""
  if isinstance(x, bool) or not isinstance(x, (int, float)):
    return None
  x = float(x)
  return None if math.isnan(x) else x


def _get(d: Any, *keys: str) -> Any:
  """``d[k1][k2]...`` or None; thread-count keys may be ints or strings."""
  for key in keys:
    if not isinstance(d, Mapping):
      return None
    value = d.get(key)
    if value is None and key.isdigit():
      value = d.get(int(key))
    d = value
  return d


def _quant(entry: Mapping) -> str:
  return entry.get("quantization") or "none"


def _variant(entry: Mapping) -> str:
  return entry.get("variant") or str(entry.get("name", "")).split("/")[0]


def _group(entry: Mapping) -> str:
  return entry.get("group") or entry.get("method") or "other"


def _is_dense(entry: Mapping) -> bool:
  return _variant(entry) == "dense" or entry.get("method") == "dense"


def _ppl(entry: Optional[Mapping], which: str) -> Optional[float]:
  return None if entry is None else _num(_get(entry, "perplexity", which))


def _acc(entry: Optional[Mapping]) -> Optional[float]:
  return None if entry is None else _num(entry.get("sst2_accuracy"))


def _size(entry: Optional[Mapping], key: str) -> Optional[float]:
  return None if entry is None else _num(_get(entry, "sizes", key))


def _latency(entry: Optional[Mapping], runtime: str, threads: int,
             stat: str = "p50_ms") -> Optional[float]:
  return None if entry is None else _num(_get(entry, "latency", runtime, str(threads), stat))


def _peak_rss(entry: Mapping) -> Optional[float]:
  """Largest peak RSS of the TFLite benchmark process over all thread counts."""
  per_threads = _get(entry, "latency", "tflite")
  if not isinstance(per_threads, Mapping):
    return None
  values = [_num(_get(v, "peak_rss_bytes")) for v in per_threads.values()]
  values = [v for v in values if v is not None]
  return max(values) if values else None


def _find(entries: Sequence[Mapping], variant: str, quantization: str) -> Optional[Mapping]:
  for entry in entries:
    if _variant(entry) == variant and _quant(entry) == quantization:
      return entry
  return None


def _dense(entries: Sequence[Mapping], quantization: str = "none") -> Optional[Mapping]:
  for entry in entries:
    if _is_dense(entry) and _quant(entry) == quantization:
      return entry
  return None


def _rel(value: Optional[float], reference: Optional[float]) -> Optional[float]:
  """Relative change ``value / reference - 1``, or None if either is missing."""
  if value is None or reference is None or reference <= 0 or math.isinf(reference):
    return None
  return value / reference - 1.0


def _validate_entries(entries: Any) -> List[Mapping]:
  if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
    raise TypeError(f"entries must be a list of dicts, got {type(entries).__name__}. Pass "
                    "report['entries'].")
  for i, entry in enumerate(entries):
    if not isinstance(entry, Mapping):
      raise TypeError(f"entries[{i}] must be a dict, got {type(entry).__name__}.")
    if not entry.get("name"):
      raise ValueError(f"entries[{i}] has no 'name' (keys: {sorted(entry)}); every entry needs "
                       "a name such as 'retrain_90/dynamic'.")
  return list(entries)


def _validate_report(report: Any) -> List[Mapping]:
  if not isinstance(report, Mapping):
    raise TypeError(f"report must be a dict (the content of report.json), got "
                    f"{type(report).__name__}.")
  return _validate_entries(report.get("entries") or [])


# ----------------------------------------------------------------------------- formatting


def _pct(fraction: Optional[float], digits: int = 1) -> str:
  """0.021 -> "+2.1 %"."""
  if fraction is None:
    return _DASH
  if math.isinf(fraction):
    return "+inf %" if fraction > 0 else "-inf %"
  return f"{fraction * 100:+.{digits}f} %"


def _mb(n: Optional[float], digits: int = 2) -> str:
  return _DASH if n is None else f"{n / MB:.{digits}f}"


def _ms(v: Optional[float]) -> str:
  if v is None:
    return _DASH
  return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _perplexity_text(v: Optional[float]) -> str:
  if v is None:
    return _DASH
  if math.isinf(v):
    return "inf"
  return f"{v:.1f}" if v < 1e5 else f"{v:.3g}"


def _value_text(v: Any) -> str:
  v = _num(v)
  return _DASH if v is None else f"{v:.4g}"


def _cell(text: Any) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


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


def _perplexity_target(name: str, description: str, entries: Sequence[Mapping], variant: str,
                       dense: Optional[Mapping], threshold: float) -> Dict[str, Any]:
  """max(forward, backward) relative perplexity increase of ``variant``/none <= threshold."""
  entry = _find(entries, variant, "none")
  if entry is None:
    return _not_measured(name, description, threshold, f"no entry '{variant}/none' in the report")
  if dense is None:
    return _not_measured(name, description, threshold, "no dense entry with quantization none")
  fwd = _rel(_ppl(entry, "forward"), _ppl(dense, "forward"))
  bwd = _rel(_ppl(entry, "backward"), _ppl(dense, "backward"))
  if fwd is not None and bwd is not None:
    value, measured = max(fwd, bwd), f"{_pct(fwd)} fwd / {_pct(bwd)} bwd"
  else:
    # Only the mean was reported: the best available, and said so in the detail.
    value = _rel(_ppl(entry, "mean"), _ppl(dense, "mean"))
    if value is None:
      return _not_measured(name, description, threshold,
                           f"perplexity of '{entry['name']}' or of the dense model is missing")
    measured = f"{_pct(value)} mean (fwd/bwd not reported)"
  met = value <= threshold + _EPS
  return _target(name, description, met, value, threshold,
                 f"{measured} vs dense; target <= {_pct(threshold, 0)}; "
                 f"{_points_margin(value, threshold, at_most=True)}")


def _within(entries: Sequence[Mapping], dense_mean: float) -> Tuple[List[Mapping], List[Mapping]]:
  """(entries with a mean perplexity, those of them within +5 % of ``dense_mean``)."""
  measured = [e for e in entries if _ppl(e, "mean") is not None]
  within = [e for e in measured
            if (_rel(_ppl(e, "mean"), dense_mean) is not None
                and _rel(_ppl(e, "mean"), dense_mean) <= PPL_WITHIN + _EPS)]
  return measured, within


def _best_outside(measured: Sequence[Mapping], dense_mean: float) -> str:
  if not measured:
    return ""
  best = min(measured, key=lambda e: _ppl(e, "mean"))
  return f" (closest: {best['name']} at {_pct(_rel(_ppl(best, 'mean'), dense_mean))})"


def check_targets(entries: Sequence[Mapping],
                  dense_saved_model_bytes: Optional[float]) -> List[Dict[str, Any]]:
  """Evaluates the benchmark's targets on its entries.

  Targets (relative perplexity increases are vs the dense model, quantization none):
    retrain_90_perplexity_within_3pct: ``retrain_90``/none, max(forward, backward)
      increase <= +3 %.
    retrain_90_sst2_within_1pt: its SST-2 accuracy >= dense accuracy - 0.01.
    smallest_within_5pct_30x: the smallest zipped TFLite model among entries with a
      mean perplexity within +5 %: ``dense_saved_model_bytes / tflite_zip_bytes >= 30``.
    fastest_within_5pct_2x: the fastest (TFLite p50, 1 thread) entry within +5 %:
      dense TFLite p50 / its p50 >= 2.
    threshold_50_perplexity_within_5pct: ``threshold_50``/none, max(forward, backward)
      increase <= +5 %; the same for ``threshold_sens_50`` if the report has it.

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
  entries = _validate_entries(entries)
  dense_bytes = _num(dense_saved_model_bytes)
  if dense_saved_model_bytes is not None and (dense_bytes is None or dense_bytes <= 0):
    raise ValueError(f"dense_saved_model_bytes must be a positive number of bytes or None, got "
                     f"{dense_saved_model_bytes!r}.")
  dense = _dense(entries, "none")
  targets = []

  targets.append(_perplexity_target(
      "retrain_90_perplexity_within_3pct",
      "Pruned to 90 % with retraining (unquantized): forward and backward perplexity each at "
      "most 3 % above the dense model's.", entries, "retrain_90", dense, 0.03))

  name, threshold = "retrain_90_sst2_within_1pt", -0.01
  description = ("Pruned to 90 % with retraining (unquantized): SST-2 accuracy at most "
                 "1 point below the dense model's.")
  entry = _find(entries, "retrain_90", "none")
  if _acc(entry) is None or _acc(dense) is None:
    targets.append(_not_measured(name, description, threshold,
                                 "SST-2 accuracy of retrain_90/none or of dense/none is missing"))
  else:
    diff = _acc(entry) - _acc(dense)
    targets.append(_target(
        name, description, diff >= threshold - _EPS, diff, threshold,
        f"{_acc(entry) * 100:.1f} % vs dense {_acc(dense) * 100:.1f} % ({diff * 100:+.1f} pt); "
        f"target >= {threshold * 100:+.0f} pt; {_points_margin(diff, threshold, at_most=False)}"))

  dense_mean = _ppl(dense, "mean")
  name, threshold = "smallest_within_5pct_30x", 30.0
  description = ("The smallest zipped TFLite model with a mean perplexity within +5 % of the "
                 "dense model is at least 30x smaller than the dense SavedModel.")
  if dense_mean is None or dense_bytes is None:
    targets.append(_not_measured(name, description, threshold,
                                 "dense mean perplexity or dense SavedModel size is missing"))
  else:
    measured, within = _within(entries, dense_mean)
    sized = [e for e in within if _size(e, "tflite_zip_bytes")]
    if not any(_size(e, "tflite_zip_bytes") for e in measured):
      targets.append(_not_measured(name, description, threshold,
                                   "no entry has both a mean perplexity and a zipped TFLite size"))
    elif not sized:
      targets.append(_target(name, description, False, None, threshold,
                             f"no sized entry has a mean perplexity within +5 % of dense"
                             f"{_best_outside(measured, dense_mean)}"))
    else:
      best = min(sized, key=lambda e: _size(e, "tflite_zip_bytes"))
      zip_bytes = _size(best, "tflite_zip_bytes")
      ratio = dense_bytes / zip_bytes
      targets.append(_target(
          name, description, ratio >= threshold - _EPS, ratio, threshold,
          f"smallest within +5 %: {best['name']} ({_mb(zip_bytes, 3)} MB zipped TFLite, mean "
          f"perplexity {_pct(_rel(_ppl(best, 'mean'), dense_mean))}); dense SavedModel "
          f"{_mb(dense_bytes, 1)} MB / {_mb(zip_bytes, 3)} MB = {ratio:.1f}x; target >= "
          f"{threshold:g}x; {_ratio_margin(ratio, threshold)}"))

  name, threshold = "fastest_within_5pct_2x", 2.0
  description = ("The fastest TFLite model (p50, 1 thread) with a mean perplexity within +5 % "
                 "of the dense model is at least 2x faster than the dense TFLite model.")
  dense_p50 = _latency(dense, "tflite", 1)
  if dense_mean is None or not dense_p50:
    targets.append(_not_measured(name, description, threshold,
                                 "dense mean perplexity or dense TFLite p50 (1 thread) is missing"))
  else:
    measured, within = _within(entries, dense_mean)
    timed = [e for e in within if _latency(e, "tflite", 1)]
    if not any(_latency(e, "tflite", 1) for e in measured):
      targets.append(_not_measured(name, description, threshold,
                                   "no entry has both a mean perplexity and a TFLite p50"))
    elif not timed:
      targets.append(_target(name, description, False, None, threshold,
                             f"no timed entry has a mean perplexity within +5 % of dense"
                             f"{_best_outside(measured, dense_mean)}"))
    else:
      best = min(timed, key=lambda e: _latency(e, "tflite", 1))
      p50 = _latency(best, "tflite", 1)
      ratio = dense_p50 / p50
      targets.append(_target(
          name, description, ratio >= threshold - _EPS, ratio, threshold,
          f"fastest within +5 %: {best['name']} (p50 {_ms(p50)} ms, mean perplexity "
          f"{_pct(_rel(_ppl(best, 'mean'), dense_mean))}); dense p50 {_ms(dense_p50)} ms / "
          f"{_ms(p50)} ms = {ratio:.2f}x; target >= {threshold:g}x; "
          f"{_ratio_margin(ratio, threshold)}"))

  targets.append(_perplexity_target(
      "threshold_50_perplexity_within_5pct",
      "Magnitude thresholding to 50 %, uniform over matrices, no retraining (unquantized): "
      "forward and backward perplexity each at most 5 % above the dense model's.",
      entries, "threshold_50", dense, PPL_WITHIN))
  if any(_variant(e) == "threshold_sens_50" for e in entries):
    targets.append(_perplexity_target(
        "threshold_sens_50_perplexity_within_5pct",
        "Magnitude thresholding to 50 %, sparsity allocated by sensitivity, no retraining "
        "(unquantized): forward and backward perplexity each at most 5 % above the dense "
        "model's.", entries, "threshold_sens_50", dense, PPL_WITHIN))
  return targets


# ----------------------------------------------------------------------------- markdown


def _ppl_cell(entry: Mapping, which: str, reference: Optional[Mapping], is_reference: bool) -> str:
  value = _ppl(entry, which)
  if value is None:
    return _DASH
  if is_reference:
    return f"{_perplexity_text(value)} (ref)"
  delta = _rel(value, _ppl(reference, which))
  return _perplexity_text(value) if delta is None else f"{_perplexity_text(value)} ({_pct(delta)})"


def _table(entries: Sequence[Mapping], dense_bytes: Optional[float]) -> List[str]:
  header = ["variant / quantization", "method", "allocation", "target", "sparsity",
            "ppl fwd (Δ)", "ppl bwd (Δ)", "ppl mean (Δ)", "SST-2 (Δ pt)", "SavedModel zip MB",
            "TFLite MB", "TFLite gzip MB", "TFLite zip MB", "ratio",
            "TFLite p50 / p90 ms, 1 thr", "TFLite p50 / p90 ms, 2 thr", "SavedModel p50 ms, 1 thr",
            "TFLite peak RSS MB"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  dense_none = _dense(entries, "none")
  for entry in entries:
    # Pruned entries compare with the dense model of the same quantization, so the Δ is
    # the cost of pruning alone; a quantized dense entry compares with dense/none, so its
    # Δ is the cost of quantization.
    reference = _dense(entries, _quant(entry))
    if reference is None or reference is entry:
      reference = dense_none
    is_reference = reference is entry
    acc, dense_acc = _acc(entry), _acc(dense_none)
    if acc is None:
      acc_text = _DASH
    elif entry is dense_none or dense_acc is None:
      acc_text = f"{acc * 100:.1f} %"
    else:
      acc_text = f"{acc * 100:.1f} % ({(acc - dense_acc) * 100:+.1f})"
    target = _num(entry.get("target_sparsity"))
    sparsity = _num(entry.get("sparsity"))
    zip_bytes = _size(entry, "tflite_zip_bytes")
    ratio = dense_bytes / zip_bytes if dense_bytes and zip_bytes else None

    def p50_p90(threads: int) -> str:
      p50 = _latency(entry, "tflite", threads)
      p90 = _latency(entry, "tflite", threads, "p90_ms")
      return _DASH if p50 is None and p90 is None else f"{_ms(p50)} / {_ms(p90)}"

    row = [entry["name"], entry.get("method") or _DASH, entry.get("allocation") or _DASH,
           _DASH if target is None else f"{target * 100:.0f} %",
           _DASH if sparsity is None else f"{sparsity * 100:.2f} %",
           _ppl_cell(entry, "forward", reference, is_reference),
           _ppl_cell(entry, "backward", reference, is_reference),
           _ppl_cell(entry, "mean", reference, is_reference),
           acc_text, _mb(_size(entry, "saved_model_zip_bytes")), _mb(_size(entry, "tflite_bytes")),
           _mb(_size(entry, "tflite_gzip_bytes")), _mb(zip_bytes),
           _DASH if ratio is None else f"{ratio:.1f}x",
           p50_p90(1), p50_p90(2), _ms(_latency(entry, "saved_model", 1)),
           _mb(_peak_rss(entry), 0)]
    lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
  return lines


def _machine_line(machine: Any) -> str:
  if not isinstance(machine, Mapping) or not machine:
    return f"**Machine:** {_DASH}"
  parts = []
  if machine.get("cpus") is not None or machine.get("cpu_model"):
    cpus = machine.get("cpus")
    parts.append(f"{cpus if cpus is not None else '?'} CPUs"
                 + (f" ({machine['cpu_model']})" if machine.get("cpu_model") else ""))
  for key, label in (("python", "Python"), ("tensorflow", "TensorFlow"),
                     ("ai_edge_litert", "ai-edge-litert"), ("platform", "")):
    if machine.get(key):
      parts.append(f"{label} {machine[key]}".strip())
  return "**Machine:** " + (", ".join(parts) if parts else _DASH)


def markdown(report: Mapping, plots: Optional[Sequence[str]] = None) -> str:
  """Renders the benchmark report as Markdown for humans.

  Args:
    report: the ``report.json`` dict; any measurement may be None or absent. If
      it has no "targets", they are computed with ``check_targets``.
    plots: PNG file names (relative to the report) to embed; defaults to
      ``PLOT_FILES``. Pass ``[]`` to embed none.

  Returns:
    The content of ``report.md``.

  Raises:
    TypeError: ``report`` is not a dict or its entries are not dicts.
    ValueError: an entry has no name.
  """
  entries = _validate_report(report)
  dense_bytes = _num(report.get("dense_saved_model_bytes"))
  mode = report.get("mode") or "unknown mode"
  lines = [f"# PruneLM-TF compression benchmark ({mode})", ""]
  if mode == "quick":
    lines += ["> Quick mode: short retraining and few evaluation sentences; the numbers check "
              "the pipeline, they do not measure the methods.", ""]
  lines.append(_machine_line(report.get("machine")) + "  ")
  lines.append(f"**Command:** `{report.get('command') or _DASH}`  ")
  wall = _num(report.get("wall_seconds"))
  stages = report.get("stage_seconds")
  stage_text = ""
  if isinstance(stages, Mapping) and stages:
    stage_text = " (" + ", ".join(
        f"{k} {_num(v):.0f} s" if _num(v) is not None else f"{k} {_DASH}"
        for k, v in stages.items()) + ")"
  wall_text = _DASH if wall is None else f"{wall:.0f} s ({wall / 60:.1f} min)"
  lines.append(f"**Wall time:** {wall_text}{stage_text}  ")
  lines.append(f"**Dense SavedModel:** {_mb(dense_bytes)} MB")
  lines.append("")

  targets = report.get("targets")
  if targets is None:
    targets = check_targets(entries, dense_bytes)
  lines.append("## Targets")
  lines.append("")
  if not targets:
    lines.append(f"{_DASH} no targets were evaluated.")
  else:
    met = sum(1 for t in targets if isinstance(t, Mapping) and t.get("met"))
    lines += [f"{met} of {len(targets)} met.", ""]
  for t in targets or []:
    if not isinstance(t, Mapping):
      continue
    status = "MET" if t.get("met") else "MISSED"
    description = f" — {t['description']}" if t.get("description") else ""
    lines.append(f"- **{status}** `{t.get('name', '?')}`{description} "
                 f"{t.get('detail') or _DASH} (value {_value_text(t.get('value'))}, threshold "
                 f"{_value_text(t.get('threshold'))})")
  lines.append("")

  lines += ["## Results", ""]
  if entries:
    lines += _table(entries, dense_bytes)
  else:
    lines.append(f"{_DASH} no entries.")
  lines += [
      "",
      "MB = 10^6 bytes. Perplexity Δ is relative to the dense model of the same quantization "
      "(for a quantized dense model: relative to dense/none, i.e. the cost of quantization). "
      "SST-2 Δ is in accuracy points vs dense/none. ratio = dense SavedModel bytes / zipped "
      "TFLite bytes. Latencies are per call, p50 / p90 over the timed runs; peak RSS is the "
      "largest over the TFLite runs. sparsity is measured over the pruned weights. "
      f"{_DASH} = not measured.",
      ""]

  errors = [(e["name"], e.get("errors")) for e in entries
            if isinstance(e.get("errors"), Mapping) and e.get("errors")]
  if errors:
    lines += ["## Errors", ""]
    for name, errs in errors:
      for key, message in errs.items():
        lines.append(f"- `{name}` {key}: {_cell(message)}")
    lines.append("")

  plot_files = PLOT_FILES if plots is None else plots
  if plot_files:
    lines += ["## Plots", ""]
    for file_name in plot_files:
      base = os.path.basename(file_name)
      lines += [f"![{_PLOT_TITLES.get(base, base)}]({file_name})", ""]

  notes = report.get("notes") or []
  if notes:
    lines += ["## Notes", ""]
    lines += [f"- {note}" for note in notes]
    lines.append("")
  return "\n".join(lines).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- plots


def _styles(entries: Sequence[Mapping]) -> Tuple[Dict[str, str], Dict[str, str]]:
  """Colour per group and marker per quantization, stable across plots."""
  colours, markers = dict(_GROUP_COLOURS), dict(_QUANT_MARKERS)
  for entry in entries:
    group, quant = _group(entry), _quant(entry)
    if group not in colours:
      colours[group] = _EXTRA_COLOURS[(len(colours) - len(_GROUP_COLOURS)) % len(_EXTRA_COLOURS)]
    if quant not in markers:
      markers[quant] = _EXTRA_MARKERS[(len(markers) - len(_QUANT_MARKERS)) % len(_EXTRA_MARKERS)]
  return colours, markers


def _finite_positive(*values: Optional[float]) -> bool:
  return all(v is not None and math.isfinite(v) and v > 0 for v in values)


def _new_figure():
  # The Agg canvas is attached to this figure only: no pyplot, no global backend switch,
  # and nothing registered that would need closing.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(7.5, 5.0), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  ax.margins(x=0.1, y=0.08)  # room for the point labels
  ax.grid(True, which="major", alpha=0.4)
  ax.grid(True, which="minor", alpha=0.15)
  return fig, ax


def _no_data(ax, what: str) -> None:
  ax.text(0.5, 0.5, f"no data: {what}", transform=ax.transAxes, ha="center", va="center",
          color="gray")


def _legend(ax, colours: Dict[str, str], markers: Dict[str, str], groups: Sequence[str],
            quants: Sequence[str]) -> None:
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  handles, labels = ax.get_legend_handles_labels()
  for group in groups:
    handles.append(Line2D([], [], color=colours[group], marker="o", linestyle="None"))
    labels.append(f"group: {group}")
  for quant in quants:
    handles.append(Line2D([], [], color="gray", marker=markers[quant], linestyle="None"))
    labels.append(f"quantization: {quant}")
  if handles:
    ax.legend(handles, labels, fontsize=8, loc="best", framealpha=0.85)


def _ordered(values, order) -> List[str]:
  present = list(dict.fromkeys(values))
  return [v for v in order if v in present] + [v for v in present if v not in order]


def _scatter_by_size(ax, entries: Sequence[Mapping], y_of, colours, markers) -> List[Mapping]:
  """Scatter of ``y_of(entry)`` vs zipped TFLite MB, dense highlighted, each point labelled."""
  plotted = []
  for entry in entries:
    x, y = _size(entry, "tflite_zip_bytes"), y_of(entry)
    if not _finite_positive(x, y):
      continue
    dense = _is_dense(entry)
    ax.scatter([x / MB], [y], color=colours[_group(entry)], marker=markers[_quant(entry)],
               s=110 if dense else 45, edgecolors="gold" if dense else "none",
               linewidths=2.0 if dense else 0.0, zorder=4 if dense else 3)
    # Alternate above / below so neighbouring labels overlap less.
    offset = (5, 5) if len(plotted) % 2 == 0 else (5, -11)
    ax.annotate(entry["name"], (x / MB, y), xytext=offset, textcoords="offset points",
                fontsize=7, fontweight="bold" if dense else "normal")
    plotted.append(entry)
  return plotted


def _log_scale(ax, axis: str) -> None:
  """Log scale with ticks at 1, 2, 5 x 10^k labelled as plain numbers (not 2x10^0)."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
  target = ax.yaxis if axis == "y" else ax.xaxis
  target.set_major_locator(ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
  target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  target.set_minor_formatter(ticker.NullFormatter())


def _log_if_spread(ax, values: Sequence[float], axis: str = "y", factor: float = 10.0) -> None:
  values = [v for v in values if _finite_positive(v)]
  if values and max(values) / min(values) >= factor:
    _log_scale(ax, axis)


def _plot_ppl_vs_size(entries, colours, markers):
  fig, ax = _new_figure()
  plotted = _scatter_by_size(ax, entries, lambda e: _ppl(e, "mean"), colours, markers)
  dense_mean = _ppl(_dense(entries, "none"), "mean")
  if plotted:
    _log_scale(ax, "x")
    ys = [_ppl(e, "mean") for e in plotted]
    if _finite_positive(dense_mean):
      ax.axhline(dense_mean, color="black", linestyle="--", linewidth=1, label="dense (none)")
      ax.axhline(dense_mean * (1 + PPL_WITHIN), color="gray", linestyle=":", linewidth=1,
                 label="dense +5 %")
      ys.append(dense_mean)
    _log_if_spread(ax, ys)
  else:
    _no_data(ax, "no entry has both a mean perplexity and a zipped TFLite size")
  ax.set_xlabel("zipped TFLite model size (MB = 10^6 bytes, log scale)")
  ax.set_ylabel("mean perplexity (fwd & bwd, PTB test)")
  ax.set_title(_PLOT_TITLES["ppl_vs_size.png"])
  _legend(ax, colours, markers, _ordered([_group(e) for e in plotted], _GROUP_COLOURS),
          _ordered([_quant(e) for e in plotted], _QUANT_MARKERS))
  return fig


def _plot_vs_sparsity(entries, colours, markers, y_of, *, what: str, ylabel: str, title: str,
                      band: Optional[float], band_label: str, log_y: bool):
  """One line per pruned group (quantization none) of ``y_of`` vs measured sparsity (%)."""
  fig, ax = _new_figure()
  groups = _ordered([_group(e) for e in entries if not _is_dense(e)], _GROUP_COLOURS)
  plotted_groups, ys = [], []
  for group in groups:
    points = sorted(
        (_num(e.get("sparsity")) * 100, y_of(e)) for e in entries
        if _group(e) == group and not _is_dense(e) and _quant(e) == "none"
        and _num(e.get("sparsity")) is not None and y_of(e) is not None
        and math.isfinite(y_of(e)))
    if not points:
      continue
    ax.plot([p[0] for p in points], [p[1] for p in points], color=colours[group],
            marker=markers["none"], label=group)
    plotted_groups.append(group)
    ys += [p[1] for p in points]
  reference = y_of(_dense(entries, "none"))
  if reference is not None and math.isfinite(reference):
    ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="dense (none)")
    if band is not None:
      ax.axhline(band(reference), color="gray", linestyle=":", linewidth=1, label=band_label)
    ys.append(reference)
  if not plotted_groups:
    _no_data(ax, f"no pruned, unquantized entry has a measured sparsity and {what}")
  elif log_y and all(_finite_positive(y) for y in ys):
    _log_scale(ax, "y")
  ax.set_xlabel("measured sparsity of the pruned weights (%)")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
  return fig


def _plot_latency_vs_size(entries, colours, markers):
  fig, ax = _new_figure()
  plotted = _scatter_by_size(ax, entries, lambda e: _latency(e, "tflite", 1), colours, markers)
  dense_p50 = _latency(_dense(entries, "none"), "tflite", 1)
  if plotted:
    _log_scale(ax, "x")
    if _finite_positive(dense_p50):
      ax.axhline(dense_p50, color="black", linestyle="--", linewidth=1, label="dense (none)")
      ax.axhline(dense_p50 / 2, color="gray", linestyle=":", linewidth=1,
                 label="2x faster than dense")
  else:
    _no_data(ax, "no entry has both a TFLite p50 and a zipped TFLite size")
  ax.set_xlabel("zipped TFLite model size (MB = 10^6 bytes, log scale)")
  ax.set_ylabel("TFLite latency p50, 1 thread (ms per call)")
  ax.set_title(_PLOT_TITLES["latency_vs_size.png"])
  _legend(ax, colours, markers, _ordered([_group(e) for e in plotted], _GROUP_COLOURS),
          _ordered([_quant(e) for e in plotted], _QUANT_MARKERS))
  return fig


def plot(report: Mapping, out_dir: str) -> List[str]:
  """Writes the four benchmark figures as PNG files (dpi 120, 900 px wide).

  ppl_vs_size.png: mean perplexity vs zipped TFLite size, colour = group,
    marker = quantization, dense highlighted, every point labelled.
  ppl_vs_sparsity.png: mean perplexity (log) vs measured sparsity, one line per
    pruned group, unquantized; dense and dense +5 % as horizontal lines.
  sst2_vs_sparsity.png: SST-2 accuracy vs measured sparsity, as above.
  latency_vs_size.png: TFLite p50 (1 thread) vs zipped TFLite size.

  Points whose values are missing or not finite are skipped; a plot without any
  point says so. Each file is written under a temporary name and renamed.

  Args:
    report: the ``report.json`` dict.
    out_dir: directory for the PNGs; created if missing.

  Returns:
    The file names written (relative to ``out_dir``), in ``PLOT_FILES`` order.

  Raises:
    TypeError: ``report`` is not a dict or its entries are not dicts.
    ValueError: an entry has no name.
  """
  entries = _validate_report(report)
  colours, markers = _styles(entries)
  figures = {
      "ppl_vs_size.png": lambda: _plot_ppl_vs_size(entries, colours, markers),
      "ppl_vs_sparsity.png": lambda: _plot_vs_sparsity(
          entries, colours, markers, lambda e: _ppl(e, "mean"), what="a mean perplexity",
          ylabel="mean perplexity (fwd & bwd, PTB test, log scale)",
          title=_PLOT_TITLES["ppl_vs_sparsity.png"], band=lambda r: r * (1 + PPL_WITHIN),
          band_label="dense +5 %", log_y=True),
      "sst2_vs_sparsity.png": lambda: _plot_vs_sparsity(
          entries, colours, markers,
          lambda e: None if _acc(e) is None else _acc(e) * 100, what="an SST-2 accuracy",
          ylabel="SST-2 accuracy (%)", title=_PLOT_TITLES["sst2_vs_sparsity.png"],
          band=lambda r: r - 1.0, band_label="dense -1 pt", log_y=False),
      "latency_vs_size.png": lambda: _plot_latency_vs_size(entries, colours, markers),
  }
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for file_name in PLOT_FILES:
    fig = figures[file_name]()
    fig.tight_layout()
    with files.atomic_path(os.path.join(out_dir, file_name)) as tmp:
      # The temporary name has no .png suffix, so the format is given explicitly.
      fig.savefig(tmp, format="png", dpi=120)
    fig.clear()
    written.append(file_name)
  return written


# ----------------------------------------------------------------------------- all files


def write_report(report: Mapping, out_dir: str) -> List[str]:
  """Writes report.json, the PNG figures and report.md into ``out_dir``, each atomically.

  report.json is written first, so the measurements survive a failure in
  plotting. Without matplotlib the figures are skipped (with a warning) and
  report.md embeds none.

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
  files.write_text(os.path.join(out_dir, "report.md"), markdown(report, plots=plots))
  written.append("report.md")
  logging.info("Wrote %s to %s", ", ".join(written), out_dir)
  return written
