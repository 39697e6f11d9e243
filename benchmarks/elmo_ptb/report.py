"""The benchmark's report: report.md (one table of every row, the issue's target lines).

``report(rows, ...)`` writes DIR/report.md and the figures (``plots``); the rows come from
``rows`` (with their downstream entries from ``downstream.with_downstream``).
"""

from __future__ import annotations

import os

from benchmarks.elmo_ptb.downstream import DENSE_NER_SEEDS
from benchmarks.elmo_ptb.groups import ONE_SHOT
from benchmarks.elmo_ptb.plots import write_plots
from benchmarks.elmo_ptb.rows import embedder_removed, pruned_and_retrained, retraining_of
from prunelm_tf.utils import files


def _removed_cell(row, rows) -> str:
  removed = embedder_removed(row, rows)
  if removed is None:
    return f"{row['sparsity']:.3f} (all matrices)"
  shape = row.get("removed_fraction")
  return f"{removed:.3f}" + ("" if shape is None else f" (shape {shape:.2f})")


def report(rows, embedder_bytes: int, out_dir: str, command: str,
           downstream_mode: str = "none") -> str:
  """Writes DIR/report.md (and the figures) of ``rows`` and returns its text.

  ``embedder_bytes``: the size reference (the dense embedder SavedModel); ``command``: the
  command line shown; ``downstream_mode``: what the downstream columns evaluated.
  """
  lines = ["# ELMo-shaped PTB biLM: compression of the embedder\n",
           f"Command: `{command}`\n",
           "PTB test (all 3,761 sentences); Δ = relative to the dense model; valid Δ = the same "
           "on all of PTB valid (groups that measured it), which the target lines choose by; "
           "calibration and sensitivity on 300 PTB valid sentences. Sizes: gzip of the TFLite file (dynamic = "
           "int8 weights) and the ratio of the dense float32 **embedder** SavedModel "
           f"({embedder_bytes:,} bytes) to it.\n",
           "Downstream (issue #12; "
           + ("the float Keras model" if downstream_mode == "none" else
              f"the variant's {downstream_mode} TFLite file")
           + ", frozen features, ELMo ScalarMix): CoNLL-2003 "
           "NER test F1 (BiLSTM tagger, seed 0; dense: mean ± std over seeds "
           f"{', '.join(map(str, DENSE_NER_SEEDS))}), SST-2 dev accuracy, MRPC dev accuracy / F1; "
           "— = not evaluated.\n",
           "Removed = the fraction of the embedder's matrix parameters (softmax left out) that "
           "are zero or were taken out by a shape-changing method (shape = its share; in a "
           "combination both); \"all matrices\" marks an older record without the sizes, whose "
           "sparsity counts the dense softmax.\n",
           "| group | variant | removed | ppl fwd / bwd / mean | Δ mean | valid Δ mean | cos sim | "
           "TFLite none / dynamic gzip MB | ratio (dynamic) | retraining | seconds | "
           "NER F1 | SST-2 | MRPC acc / F1 |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  seen = set()
  for r in rows:
    if r["variant"] == "dense" and "dense" in seen:
      continue
    seen.add(r["variant"])
    ppl = r["ppl"]
    tfl = r["tflite_zip_bytes"]
    ratio = embedder_bytes / tfl["dynamic"] if "dynamic" in tfl else None
    budget = retraining_of(r, rows)
    budget_text = ("—" if not budget else
                   f"{budget['num_train_steps']} steps ({budget['num_train_epochs']:.2f} ep)")
    lines.append(
        f"| {r['group']} | {r['variant']} | {_removed_cell(r, rows)} | "
        f"{ppl['forward']:.1f} / {ppl['backward']:.1f} / {ppl['mean']:.1f} | "
        f"{r['ppl_delta'].get('mean', 0) * 100:+.1f} % | "
        f"{format(r['valid_delta']['mean'] * 100, '+.1f') + ' %' if r.get('valid_delta') else '—'} | "
        f"{'—' if r['cosine_similarity'] is None else format(r['cosine_similarity'], '.4f')} | "
        f"{tfl.get('none', 0) / 1e6:.2f} / {tfl.get('dynamic', 0) / 1e6:.2f} | "
        f"{'—' if ratio is None else format(ratio, '.1f') + 'x'} | "
        f"{budget_text} | "
        f"{sum((r['seconds'] or {}).values()):.0f} | {_downstream_cells(r.get('downstream'))} |")
  lines.append("\n## One-shot targets (mean test perplexity)\n")
  for target, limit in ((0.5, 0.02), (0.7, 0.08)):
    best = [r for r in rows if r["group"] in ONE_SHOT and abs(r["target_sparsity"] - target) < 1e-9]
    if best:
      lines.append(_target_line(f"one-shot {target:.0%} within +{limit:.0%}:", limit, best))
  lines.append("\n## Retraining targets (at most one epoch, mean test perplexity)\n")
  for target, limit in ((0.9, 0.05), (0.95, 0.15)):
    best = [r for r in rows if pruned_and_retrained(r) and r["retraining"]
            and r["retraining"]["num_train_epochs"] <= 1.0 + 1e-6
            and abs(r["target_sparsity"] - target) < 1e-9]
    label = f"retrained {target:.0%} within +{limit:.0%}:"
    lines.append(_target_line(label, limit, best) if best else f"- {label} not run.")
  lines += dense_control_lines(rows)
  lines += averaging_lines(rows)
  lines.append("\n## Size\n")
  within = [r for r in rows if r["ppl_delta"] and r["ppl_delta"]["mean"] <= 0.05
            and "dynamic" in r["tflite_zip_bytes"]]
  if within:
    best = max(within, key=lambda r: embedder_bytes / r["tflite_zip_bytes"]["dynamic"])
    ratio = embedder_bytes / best["tflite_zip_bytes"]["dynamic"]
    lines.append(f"- smallest variant within +5 %: {best['variant']} ({best['group']}), zipped "
                 f"dynamic TFLite {ratio:.1f}x smaller than the dense embedder SavedModel "
                 f"(target 30x: **{'met' if ratio >= 30 else 'missed'}**).")
  lines += downstream_target_lines(rows)
  text = "\n".join(lines) + "\n"
  files.write_text(os.path.join(out_dir, "report.md"), text)
  write_plots(rows, embedder_bytes, out_dir)
  return text


def averaging_lines(rows) -> list:
  """Each variant whose weights average its last steps (--retrain_average_last) and that
  recorded the valid perplexity of its last step: valid Δ mean of the last step against
  that of the average, both against the row's dense valid (one run, the same steps)."""
  lines = []
  for r in rows:
    budget = r.get("retraining") or {}
    last = (r.get("valid_delta_before_average") or {}).get("mean")
    if last is None or not r.get("valid_delta"):
      continue
    lines.append(f"- {r['variant']} ({r['group']}): valid Δ mean {last:+.2%} with the last "
                 f"step's weights, {r['valid_delta']['mean']:+.2%} with the "
                 f"average of the last {budget.get('averaged_steps', '?')} steps.")
  return (["\n## Weight averaging (PTB valid: the last step against the average)\n"] + lines
          if lines else [])


def dense_control_lines(rows) -> list:
  """Each dense control (sweep 0 of a retraining group) against the dense model and the
  pruned variants of its recipe: what pruning cost apart from the extra training.

  A control is compared with the variants retrained with exactly its optimisation (the
  recorded RetrainConfig: objective, rate, warm-up, dropout, batch, steps), or, when its
  record lacks the options, with those of the same number of steps.
  """
  controls = [r for r in rows if pruned_and_retrained(r) and r["target_sparsity"] == 0.0
              and r["ppl"]]
  if not controls:
    return []
  lines = ["\n## Dense control (the dense model retrained with the same budget and objective)\n"]

  def recipe(r):
    return (r.get("method_options") or {}).get("retrain")

  for c in controls:
    budget = c["retraining"] or {}
    lines.append(f"- {c['group']}: {budget.get('num_train_steps', '?')} steps "
                 f"({budget.get('num_train_epochs', 0):.2f} ep), mean test perplexity "
                 f"{c['ppl']['mean']:.1f} ({c['ppl_delta']['mean'] * 100:+.1f} % against the "
                 "dense model).")
    if recipe(c) is not None:
      kind, alike = "recipe", lambda r, c=c: recipe(r) == recipe(c)
    else:
      kind, alike = "budget", lambda r, b=budget: (r["retraining"]["num_train_steps"]
                                                   == b.get("num_train_steps"))
    for target in (0.8, 0.9, 0.95):
      same = [r for r in rows if pruned_and_retrained(r) and r["ppl"] and r["retraining"]
              and alike(r) and abs(r["target_sparsity"] - target) < 1e-9]
      if same:
        best = min(same, key=lambda r: r["ppl"]["mean"])
        lines.append(f"  - best {target:.0%} variant of the same {kind} ({best['group']}): "
                     f"{best['ppl']['mean'] / c['ppl']['mean'] * 100 - 100:+.1f} % against the "
                     f"control, {best['ppl_delta']['mean'] * 100:+.1f} % against the dense "
                     "model.")
  return lines


def _downstream_cells(entry) -> str:
  if not entry:
    return "— | — | —"
  f1 = entry.get("ner_test_f1")
  ner_text = "—" if f1 is None else f"{f1 * 100:.2f}"
  if f1 is not None and entry.get("ner_test_f1_std") is not None:
    ner_text += f" ± {entry['ner_test_f1_std'] * 100:.2f}"
  sst2 = entry.get("sst2_accuracy")
  acc, f1m = entry.get("mrpc_accuracy"), entry.get("mrpc_f1")
  return (f"{ner_text} | {'—' if sst2 is None else format(sst2 * 100, '.2f')} | "
          + ("—" if acc is None else f"{acc * 100:.2f} / {f1m * 100:.2f}"))


def downstream_target_lines(rows) -> list:
  """The issue #12 targets, on the variants the perplexity targets single out.

  The 90 % retrained variant is the best (mean test perplexity) one retrained
  for at most one epoch; the smallest variant within +5 % is the one of the
  size line. Both are compared with the dense model's mean NER test F1 over
  its tagger seeds: a variant's NER is its mean over seeds too when it was
  evaluated so (--downstream_ner_seeds), else its seed-0 F1.
  """
  lines = ["\n## Downstream targets (NER test F1, SST-2 dev accuracy)\n"]
  dense = next((r.get("downstream") for r in rows if r["variant"] == "dense"), None)
  if not dense or dense.get("ner_test_f1") is None:
    return lines + ["- the dense model's downstream evaluation has not run (--downstream)."]
  spread = dense.get("ner_test_f1_std")
  majority = (dense.get("mrpc") or {}).get("majority_baseline")
  lines.append(f"- dense: NER test F1 {dense['ner_test_f1'] * 100:.2f}"
               + ("" if spread is None else f" ± {spread * 100:.2f}")
               + f", SST-2 {dense['sst2_accuracy'] * 100:.2f}"
               + ("" if not majority else
                  f"; MRPC {dense['mrpc_accuracy'] * 100:.2f} / {dense['mrpc_f1'] * 100:.2f} "
                  f"against the majority class's {majority['accuracy'] * 100:.2f} / "
                  f"{majority['f1'] * 100:.2f} (at or below it, MRPC does not tell variants "
                  "apart)") + ".")
  retrained = sorted((r for r in rows if pruned_and_retrained(r) and r["retraining"]
                      and r["retraining"]["num_train_epochs"] <= 1.0 + 1e-6
                      and abs(r["target_sparsity"] - 0.9) < 1e-9),
                     key=lambda r: r["ppl_delta"]["mean"])
  within = [r for r in rows if r["ppl_delta"] and r["ppl_delta"]["mean"] <= 0.05
            and "dynamic" in r["tflite_zip_bytes"] and r["variant"] != "dense"]
  smallest = min(within, key=lambda r: r["tflite_zip_bytes"]["dynamic"]) if within else None
  checks = [("retrained 90 % (best perplexity)", retrained[0] if retrained else None,
             (("NER", "ner_test_f1", 0.005), ("SST-2", "sst2_accuracy", 0.01))),
            ("smallest within +5 % perplexity", smallest, (("NER", "ner_test_f1", 0.01),))]
  for label, row, limits in checks:
    if row is None:
      lines.append(f"- {label}: no such variant.")
      continue
    entry = row.get("downstream") or {}
    seeded = row.get("downstream_seeds") or {}
    parts = []
    for task, key, limit in limits:
      value, note = entry.get(key), ""
      if key == "ner_test_f1" and seeded.get(key) is not None:
        # Mean over tagger seeds against the dense mean: like with like.
        seeds = ", ".join(str(x) for x in seeded["ner"]["seeds"])
        note = (f" mean ± {seeded['ner_test_f1_std'] * 100:.2f} over seeds {seeds}"
                + ("" if value is None else f"; seed 0 alone {value * 100:.2f}, "
                   f"{(value - dense[key]) * 100:+.2f}"))
        value = seeded[key]
      if value is None:
        parts.append(f"{task} not evaluated")
        continue
      diff = value - dense[key]
      met = diff >= -limit - 1e-12
      parts.append(f"{task} {value * 100:.2f}{note} ({diff * 100:+.2f}; within "
                   f"{limit * 100:g}: **{'met' if met else 'missed'}**)")
    lines.append(f"- {label}: {row['variant']} ({row['group']}) — " + "; ".join(parts) + ".")
  return lines


def _target_line(label: str, limit: float, candidates) -> str:
  """``- <label> **met|missed** — best ...; all: ...``: the test Δ of the candidate that is best
  on PTB valid when every candidate measured valid (the choice is made there, the test split
  only reports it), else of the one best on test (older records, said so)."""
  on_valid = all(r.get("valid_delta") for r in candidates)
  key = "valid_delta" if on_valid else "ppl_delta"
  ranked = sorted(candidates, key=lambda r: r[key]["mean"])
  b = ranked[0]
  met = b["ppl_delta"]["mean"] <= limit
  chosen = (f"chosen on valid ({b['valid_delta']['mean'] * 100:+.1f} % there)" if on_valid
            else "chosen on test: not every candidate measured valid")
  return (f"- {label} **{'met' if met else 'missed'}** — "
          f"best {b['variant']} ({b['group']}) {b['ppl_delta']['mean'] * 100:+.1f} %"
          + ("" if met else f", missed by {(b['ppl_delta']['mean'] - limit) * 100:.1f} points")
          + f", {chosen}; all (test): "
          + ", ".join(f"{r['group']} {r['ppl_delta']['mean'] * 100:+.1f} %" for r in ranked)
          + ".")
