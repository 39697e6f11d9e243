"""The compression report: one-line logs, the markdown table, TensorBoard HParams."""

from __future__ import annotations

import os
from typing import Dict, List

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.export.tflite import QUANTIZATION_MODES

NOT_APPLICABLE = "n/a"


def hparam_domains() -> Dict[str, List[str]]:
  """Every HParams key of every registered method, with its values (and "n/a").

  The same keys on every run, so all variants of all runs compare side by
  side; a key of another method reads "n/a".
  """
  domains: Dict[str, List[str]] = {"method": ["dense"] + sorted(REGISTRY)}
  for method in REGISTRY.values():
    for key, values in method.hparam_domains.items():
      domains.setdefault(key, [NOT_APPLICABLE])
      domains[key] += [v for v in values if v not in domains[key]]
  return domains


def hparams_of(variant: Dict) -> Dict[str, object]:
  """The HParams values of one variant record (dense: method "dense", the rest "n/a")."""
  domains = hparam_domains()
  values = {key: NOT_APPLICABLE for key in domains}
  values["method"] = variant.get("method", "dense")
  method = REGISTRY.get(values["method"])
  if method is not None:
    values.update(method.hparams(method.options_from_dict(variant.get("method_options"))))
  values["target_sparsity"] = float(variant.get("target_sparsity", 0.0))
  return values


def hparams_list() -> List[hp.HParam]:
  """The HParam definitions: method keys, target sparsity, quantization."""
  out = [hp.HParam(key, hp.Discrete(values)) for key, values in hparam_domains().items()]
  return out + [hp.HParam("target_sparsity", hp.RealInterval(0.0, 1.0)),
                hp.HParam("quantization", hp.Discrete(list(QUANTIZATION_MODES)))]
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


def _errors(v: Dict) -> str:
  errors = v.get("tflite_errors") or {}
  return "; ".join(f"{mode}: {msg.splitlines()[0][:80]}" for mode, msg in sorted(errors.items()))


def markdown_table(result: Dict) -> str:
  """One row per variant (dense first): sparsity, perplexity, sizes, similarity, failures."""
  modes = sorted({m for v in [result["dense"]] + result["variants"] for m in v["sizes"]["tflite"]},
                 key=QUANTIZATION_MODES.index)
  head = (["variant", "method", "target", "sparsity", "ppl fwd", "ppl bwd", "ppl mean",
           "SavedModel MB", "zip MB"] + [f"tflite {m} MB (gzip)" for m in modes] +
          ["cos sim (mean)", "zip ratio vs dense SavedModel", "failed exports"])
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
                 f"{dense_sm / v['sizes']['saved_model_zip_bytes']:.1f}x",
                 _errors(v) or "—"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  notes = ("\nPerplexity is of the Keras model of each variant (the TFLite files export the "
           "representations only, without the softmax). Sparsity is measured on the exported "
           "weights. Sizes in MB = 10^6 bytes.\n")
  return "\n".join(lines) + "\n" + notes


def write_hparams(log_dir: str, result: Dict) -> None:
  """One HParams session per (variant, quantization mode), with fixed keys."""
  hparams = hparams_list()
  with tf.summary.create_file_writer(log_dir).as_default():
    hp.hparams_config(hparams=hparams, metrics=[hp.Metric(m) for m in METRICS])
  for v in [result["dense"]] + result["variants"]:
    for mode, size in v["sizes"]["tflite"].items():
      values_of = {**hparams_of(v), "quantization": mode}
      with tf.summary.create_file_writer(os.path.join(log_dir, f"{v['name']}-{mode}")).as_default():
        hp.hparams({h: values_of[h.name] for h in hparams}, trial_id=f"{v['name']}-{mode}")
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
