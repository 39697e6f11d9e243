"""The compression report: one-line logs, the markdown table, TensorBoard HParams."""

from __future__ import annotations

import os
from typing import Dict, List

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from prunelm_tf.compression.config import CompressConfig
from prunelm_tf.export.tflite import QUANTIZATION_MODES

# The same keys on every run, so all variants of all runs compare side by side.
HPARAMS = [
    hp.HParam("method", hp.Discrete(["dense", "threshold", "retrain"])),
    hp.HParam("target_sparsity", hp.RealInterval(0.0, 1.0)),
    hp.HParam("threshold_scope", hp.Discrete(["layer", "global", "n/a"])),
    hp.HParam("threshold_allocation", hp.Discrete(["uniform", "sensitivity", "n/a"])),
    hp.HParam("schedule", hp.Discrete(["polynomial", "constant", "n/a"])),
    hp.HParam("retrain_objective", hp.Discrete(["lm", "distill", "lm+distill", "n/a"])),
    hp.HParam("quantization", hp.Discrete(list(QUANTIZATION_MODES))),
]
METRICS = ["perplexity/forward", "perplexity/backward", "perplexity/mean", "sparsity/overall",
           "size/saved_model_zip_bytes", "size/tflite_bytes", "size/tflite_gzip_bytes",
           "similarity/mean", "tflite/max_abs_diff"]


def _mb(n) -> str:
  return "—" if n is None else f"{n / 1e6:.3f}"


def _ppl(v: Dict, key: str) -> str:
  return "—" if not v.get("perplexity") else f"{v['perplexity'][key]:.2f}"


def one_line(v: Dict) -> str:
  return (f"sparsity {v['sparsity']['overall']:.3f}  ppl fwd {_ppl(v, 'forward')} bwd "
          f"{_ppl(v, 'backward')}  zip {_mb(v['sizes']['saved_model_zip_bytes'])} MB")


def _mean_similarity(v: Dict):
  sims = v.get("representation_similarity") or {}
  return sum(sims.values()) / len(sims) if sims else None


def markdown_table(result: Dict) -> str:
  """One row per variant (dense first): sparsity, perplexity, sizes, similarity."""
  modes = sorted({m for v in [result["dense"]] + result["variants"] for m in v["sizes"]["tflite"]},
                 key=QUANTIZATION_MODES.index)
  head = (["variant", "method", "target", "sparsity", "ppl fwd", "ppl bwd", "ppl mean",
           "SavedModel MB", "zip MB"] + [f"tflite {m} MB (gzip)" for m in modes] +
          ["cos sim (mean)", "zip ratio vs dense SavedModel"])
  rows: List[List[str]] = []
  dense_sm = result["dense"]["sizes"]["saved_model_bytes"]
  for v in [result["dense"]] + result["variants"]:
    sim = _mean_similarity(v)
    rows.append([v["name"], v.get("method", "dense"),
                 "—" if "target_sparsity" not in v else f"{v['target_sparsity']:.2f}",
                 f"{v['sparsity']['overall']:.3f}", _ppl(v, "forward"), _ppl(v, "backward"),
                 _ppl(v, "mean"), _mb(v["sizes"]["saved_model_bytes"]),
                 _mb(v["sizes"]["saved_model_zip_bytes"])] +
                [(f"{_mb(v['sizes']['tflite'][m]['bytes'])} ({_mb(v['sizes']['tflite'][m]['gzip_bytes'])})"
                  if m in v["sizes"]["tflite"] else "—") for m in modes] +
                ["—" if sim is None else f"{sim:.4f}",
                 f"{dense_sm / v['sizes']['saved_model_zip_bytes']:.1f}x"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  notes = ("\nPerplexity is of the Keras model of each variant (the TFLite files export the "
           "representations only, without the softmax). Sparsity is measured on the exported "
           "weights. Sizes in MB = 10^6 bytes.\n")
  return "\n".join(lines) + "\n" + notes


def write_hparams(log_dir: str, config: CompressConfig, result: Dict) -> None:
  """One HParams session per (variant, quantization mode), with fixed keys."""
  with tf.summary.create_file_writer(log_dir).as_default():
    hp.hparams_config(hparams=HPARAMS, metrics=[hp.Metric(m) for m in METRICS])
  for v in [result["dense"]] + result["variants"]:
    is_dense = v["name"] == "dense"
    for mode, size in v["sizes"]["tflite"].items():
      hparams = {
          "method": "dense" if is_dense else v["method"],
          "target_sparsity": 0.0 if is_dense else v["target_sparsity"],
          "threshold_scope": config.threshold_scope if v.get("method") == "threshold" else "n/a",
          "threshold_allocation": (config.threshold_allocation
                                   if v.get("method") == "threshold" else "n/a"),
          "schedule": config.schedule.kind if v.get("method") == "retrain" else "n/a",
          "retrain_objective": config.retrain.objective if v.get("method") == "retrain" else "n/a",
          "quantization": mode,
      }
      with tf.summary.create_file_writer(os.path.join(log_dir, f"{v['name']}-{mode}")).as_default():
        hp.hparams({h: hparams[h.name] for h in HPARAMS}, trial_id=f"{v['name']}-{mode}")
        values = {"sparsity/overall": v["sparsity"]["overall"],
                  "size/saved_model_zip_bytes": v["sizes"]["saved_model_zip_bytes"],
                  "size/tflite_bytes": size["bytes"], "size/tflite_gzip_bytes": size["gzip_bytes"],
                  "tflite/max_abs_diff": v["tflite_max_abs_diff"][mode]}
        if v.get("perplexity"):
          for k in ("forward", "backward", "mean"):
            values[f"perplexity/{k}"] = v["perplexity"][k]
        sim = _mean_similarity(v)
        if sim is not None:
          values["similarity/mean"] = sim
        for name, value in values.items():
          tf.summary.scalar(name, value, step=0)
