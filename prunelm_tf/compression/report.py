"""The compression report: one-line logs, summary.md's table, the HParams sessions of a run."""

from __future__ import annotations

from typing import Dict, List

from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.export.tflite import QUANTIZATION_MODES
from prunelm_tf.reporting import entries as E
from prunelm_tf.reporting import text
from prunelm_tf.reporting.hparams import Session, options_text

# Scalars of every session, in this order (a session may lack some, e.g. perplexity).
METRICS = ["perplexity/forward", "perplexity/backward", "perplexity/mean", "sparsity/overall",
           "size/removed_fraction",
           "size/saved_model_zip_bytes", "size/tflite_bytes", "size/tflite_gzip_bytes",
           "similarity/mean", "tflite/max_abs_diff", "valid_perplexity/mean"]


def _mb(n) -> str:
  return text.mb(n, 3)


def _ppl(v: Dict, key: str) -> str:
  return text.DASH if not v.get("perplexity") else f"{v['perplexity'][key]:.2f}"


def one_line(v: Dict) -> str:
  return (f"sparsity {v['sparsity']['overall']:.3f}  ppl fwd {_ppl(v, 'forward')} bwd "
          f"{_ppl(v, 'backward')}  zip {_mb(v['sizes']['saved_model_zip_bytes'])} MB")


def amount_text(v: Dict) -> str:
  """A variant's amount by the name of its meaning, e.g. "params_removed 0.50"; "—" for none.

  Records written before variants named their amount give it from the registry's method.
  """
  amount = v.get("amount")
  if amount is None and v.get("target_sparsity") is not None:
    method = REGISTRY.get(v.get("method") or "")
    if method is not None and method.amount is not None:
      amount = {"name": method.amount.name, "value": v["target_sparsity"]}
  return text.DASH if not amount else f"{amount['name']} {amount['value']:.2f}"


def _valid(v: Dict) -> str:
  return text.DASH if not v.get("valid_perplexity") else f"{v['valid_perplexity']['mean']:.2f}"


def _mean_similarity(v: Dict):
  sims = v.get("representation_similarity") or {}
  return sum(sims.values()) / len(sims) if sims else None


def markdown_table(result: Dict) -> str:
  """One row per variant (dense first): sparsity, perplexity, sizes, similarity, failures."""
  records = [result["dense"]] + result["variants"]
  modes = sorted({m for v in records for m in v["sizes"]["tflite"]},
                 key=QUANTIZATION_MODES.index)
  with_valid = any(v.get("valid_perplexity") for v in records)
  head = (["variant", "method", "amount", "sparsity", "removed", "ppl fwd", "ppl bwd", "ppl mean"] +
          (["valid ppl mean"] if with_valid else []) + ["SavedModel MB", "zip MB"] +
          [f"tflite {m} MB (gzip)" for m in modes] +
          ["cos sim (mean)", "zip ratio vs dense SavedModel", "failed exports",
           "method options"])
  rows: List[List[str]] = []
  dense_sm = result["dense"]["sizes"]["saved_model_bytes"]
  for v in records:
    sim = _mean_similarity(v)
    tfl = v["sizes"]["tflite"]
    rows.append([v["name"], E.method(v), amount_text(v),
                 f"{v['sparsity']['overall']:.3f}",
                 text.DASH if v.get("removed_fraction") is None
                 else f"{v['removed_fraction']:.3f}",
                 _ppl(v, "forward"), _ppl(v, "backward"),
                 _ppl(v, "mean")] +
                ([_valid(v)] if with_valid else []) +
                [_mb(v["sizes"]["saved_model_bytes"]),
                 _mb(v["sizes"]["saved_model_zip_bytes"])] +
                [(f"{_mb(tfl[m]['bytes'])} ({_mb(tfl[m]['gzip_bytes'])})" if m in tfl
                  else text.DASH) for m in modes] +
                [text.DASH if sim is None else f"{sim:.4f}",
                 f"{dense_sm / v['sizes']['saved_model_zip_bytes']:.1f}x",
                 text.failures(E.failures(v)), options_text(v)])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  lines += ["| " + " | ".join(text.cell(c) for c in r) + " |" for r in rows]
  notes = ("\nPerplexity (of --eval; valid = of --valid, what to choose settings by) is of the "
           "Keras model of each variant (the TFLite files export the "
           "representations only, without the softmax). Amount = what the variant was made "
           "for, named by its method's meaning (sparsity; params_removed, layers_removed: of "
           "the compressed matrices' parameters or LSTM layers; bits_removed: of the 8 int8 "
           "bits per weight). Sparsity is measured on the exported weights; removed = the fraction of the compressed matrices' parameters a "
           "shape-changing method (lowrank, structured, layers) took out. Sizes in MB = 10^6 bytes.\n")
  return "\n".join(lines) + "\n" + notes


def fidelity_table(result: Dict) -> str:
  """Per-layer fidelity of every variant to the input model's representations (markdown).

  One row per variant and layer (``representation_fidelity``): cosine mean / worst
  sentence, relative L2 error mean / worst sentence; "" when no variant has a record.
  """
  rows = []
  for v in result["variants"]:
    layers = (v.get("representation_fidelity") or {}).get("layers")
    if v.get("representation_fidelity") == {} and "representation_fidelity" in v:
      rows.append(f"| {v['name']} | — | not comparable: another representation width, not a "
                  "drop-in replacement | | | |")
    for name, f in (layers or {}).items():
      rows.append(f"| {v['name']} | {name} | {f['cosine_mean']:.4f} | "
                  f"{f['cosine_worst_sentence']:.4f} | {f['rel_l2_mean']:.4f} | "
                  f"{f['rel_l2_worst_sentence']:.4f} |")
  if not rows:
    return ""
  return ("\nFidelity to the input model's representations, per layer (layer_0 = token layer, "
          "mix = the uniform average of the layers), on --eval:\n\n"
          "| variant | layer | cos mean | cos worst sentence | rel L2 mean | "
          "rel L2 worst sentence |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def hparam_sessions(result: Dict) -> List[Session]:
  """One HParams session per (variant, exported quantization mode), dense included."""
  sessions = []
  for v in [result["dense"]] + result["variants"]:
    sim = _mean_similarity(v)
    for mode, size in v["sizes"]["tflite"].items():
      scalars = {"sparsity/overall": v["sparsity"]["overall"],
                 "size/removed_fraction": v.get("removed_fraction") or 0.0,
                 "size/saved_model_zip_bytes": v["sizes"]["saved_model_zip_bytes"],
                 "size/tflite_bytes": size["bytes"], "size/tflite_gzip_bytes": size["gzip_bytes"],
                 "tflite/max_abs_diff": (v.get("tflite_max_abs_diff") or {}).get(mode),
                 "similarity/mean": sim}
      for k in ("forward", "backward", "mean"):
        scalars[f"perplexity/{k}"] = E.perplexity(v, k)
      scalars["valid_perplexity/mean"] = (v.get("valid_perplexity") or {}).get("mean")
      sessions.append(Session(trial_id=f"{v['name']}-{mode}", record=v, quantization=mode,
                              scalars=scalars))
  return sessions
