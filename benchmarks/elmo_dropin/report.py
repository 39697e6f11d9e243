"""The track's report: report.md (one row per variant, the target lines, the distillation
objectives compared), report.json and the figure."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from prunelm_tf.utils import files
from benchmarks.elmo_dropin.downstream import NER_SEEDS
from benchmarks.elmo_dropin.plots import plot_dropin
from benchmarks.elmo_dropin.targets import target_lines

_DASH = "—"


def _pct(value, digits: int = 2) -> str:
  return _DASH if value is None else f"{value * 100:.{digits}f}"


def _pair(dropin, retrained, std=None) -> str:
  text = _pct(dropin) + ("" if std is None or dropin is None else f" ± {std * 100:.2f}")
  return f"{text} / {_pct(retrained)}"


def _cosines(row) -> str:
  layers = (row["fidelity"] or {}).get("layers") or {}
  if not layers:
    return "not comparable" if not row["dropin"] else _DASH
  return " / ".join(f"{layers[k]['cosine_mean']:.4f}" for k in sorted(layers, key=_layer_order))


def _layer_order(key: str):
  return (1, 0) if key in ("mix", "top") else (0, int(key.split("_")[1]))


def _downstream_cells(row) -> str:
  e = row.get("downstream") or {}
  if not e:
    return " | ".join([_DASH] * 4)
  if not row["dropin"] and row["group"] != "dense":
    dropin_note = "not drop-in"
    ner = f"{dropin_note} / {_pct(e.get('ner_test_f1'))}"
    return (f"{ner} | {dropin_note} / {_pct(e.get('sst2_accuracy'))} | "
            f"{dropin_note} / {_pct(e.get('mrpc_accuracy'))} | "
            f"{dropin_note} / {_pct(e.get('cola_mcc'))}")
  if row["group"] == "dense":  # drop-in = retrained: the same downstream models
    return (f"{_pct(e.get('ner_test_f1'))} ± {_pct(e.get('ner_test_f1_std'))} | "
            f"{_pct(e.get('sst2_accuracy'))} | {_pct(e.get('mrpc_accuracy'))} | "
            f"{_pct(e.get('cola_mcc'))}")
  return " | ".join([_pair(e.get("ner_dropin_test_f1"), e.get("ner_test_f1"),
                           e.get("ner_dropin_test_f1_std")),
                     _pair(e.get("sst2_dropin_accuracy"), e.get("sst2_accuracy")),
                     _pair(e.get("mrpc_dropin_accuracy"), e.get("mrpc_accuracy")),
                     _pair(e.get("cola_dropin_mcc"), e.get("cola_mcc"))])


def _retraining(row) -> str:
  r = row.get("retraining")
  if not r:
    return _DASH
  return f"{r.get('num_train_steps', '?')} steps ({r.get('num_train_epochs', 0):.2f} ep)"


def table_lines(rows) -> List[str]:
  lines = ["| group | variant | stages | sparsity | params removed | TFLite dynamic gzip KB | "
           "x smaller | cosine layer 0 / 1 / ... / mix | NER F1 drop-in / retrained | "
           "SST-2 | MRPC acc | CoLA MCC | compression s | retraining |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    dyn = r["tflite_gzip_bytes"].get("dynamic")
    removed = f"{r['params_removed']:.3f}" + (
        "" if r["removed_fraction"] is None else f" (shape {r['removed_fraction']:.2f})")
    lines.append(
        f"| {r['group']} | {r['variant']} | {' → '.join(r['stages']) or 'dense'} | "
        f"{r['sparsity']:.3f} | {removed} | {_DASH if dyn is None else f'{dyn / 1e3:.0f}'} | "
        f"{_DASH if r['size_ratio'] is None else format(r['size_ratio'], '.1f') + 'x'} | "
        f"{_cosines(r)} | {_downstream_cells(r)} | {r['compression_seconds']:.0f} | "
        f"{_retraining(r)} |")
  return lines


def objective_lines(rows) -> List[str]:
  """The distillation objectives compared at each sparsity: fidelity and drop-in NER."""
  retrained = [r for r in rows if r["family"] == "retrained" and "finetune" in r["stages"]
               and "obs" in r["stages"]]
  if not retrained:
    return []
  lines = ["\n## Distillation objectives (obs, then fine-tuning with fixed masks)\n",
           "| sparsity | group | loss | layer weights | top cosine | mix cosine | mix rel L2 | "
           "drop-in NER F1 |", "|---|---|---|---|---|---|---|---|"]
  for amount in sorted({r["amount"] for r in retrained}):
    at = [r for r in retrained if r["amount"] == amount]
    for r in sorted(at, key=lambda r: -(r["top_cosine"] or 0)):
      mix = ((r["fidelity"] or {}).get("layers") or {}).get("mix") or {}
      loss = next((o.split("=", 1)[1] for o in r["overrides"] if "distill_loss=" in o), "mse")
      weights = next((o.split("=", 1)[1] for o in r["overrides"]
                      if "distill_layer_weights=" in o), "equal")
      lines.append(
          f"| {amount:.0%} | {r['group']} | {loss} | {weights} | "
          f"{_DASH if r['top_cosine'] is None else format(r['top_cosine'], '.4f')} | "
          f"{_DASH if not mix else format(mix['cosine_mean'], '.4f')} | "
          f"{_DASH if not mix else format(mix['rel_l2_mean'], '.4f')} | "
          f"{_pct((r.get('downstream') or {}).get('ner_dropin_test_f1'))} |")
  return lines


def report(rows, out_dir: str, command: str, mode: str = "dynamic",
           extra: Dict[str, Any] = None) -> str:
  """Writes DIR/report.md, DIR/report.json and the figure; returns the report's text."""
  dense = rows[0] if rows else None
  targets = target_lines(rows) if rows else []
  lines = ["# Drop-in embedders: the softmax-less track (issue #33)\n",
           f"Command: `{command}`\n",
           "Every variant is a recipe run on the ELMo options.json + HDF5 (no softmax), as a "
           "released model is compressed. Fidelity: cosine of each word's vectors to the dense "
           "model's, mean over the eval text (PTB test), per layer (0 = token layer) and of the "
           "uniform mix. Size: the dense float32 embedder SavedModel "
           + (f"({dense['saved_model_bytes']:,} bytes) " if dense else "")
           + "over the variant's gzipped dynamic-range TFLite file. Downstream ("
           + ("the variant's dynamic-range TFLite file" if mode == "dynamic" else
              f"the variant's {mode} artifact")
           + "): drop-in = the dense model's downstream models fed the variant's features "
           "unchanged (same ScalarMix, same standardization); retrained = trained on the "
           f"variant's own. NER: CoNLL-2003 test F1, mean over tagger seeds "
           f"{', '.join(map(str, NER_SEEDS))}; SST-2 and MRPC dev accuracy, CoLA dev Matthews "
           "correlation (drop-in / retrained). Compression seconds: the methods' own (curves, "
           "pruning, fine-tuning; exports left out). — = not measured.\n",
           "## Targets\n"]
  for t in targets:
    state = {True: "met", False: "not met", None: "not measured"}[t["met"]]
    lines.append(f"- {t['label']}: **{state}** — {t['text']}.")
  lines += ["\n## Every variant\n"] + table_lines(rows) + objective_lines(rows)
  plot = plot_dropin(rows, out_dir)
  if plot:
    lines.append(f"\n![drop-in NER F1 against size]({os.path.basename(plot)})")
  text = "\n".join(lines) + "\n"
  files.write_text(os.path.join(out_dir, "report.md"), text)
  files.write_json(os.path.join(out_dir, "report.json"),
                   dict(extra or {}, command=command, downstream_mode=mode, targets=targets,
                        rows=rows))
  return text
