"""Report rows: one dict per finished variant (and the dense ELMo), read from the runs.

A row holds what the report shows of a variant: what made it (group, family, recipe,
overrides, stages, amount), how much it removed (sparsity of its matrices, the fraction of
the dense model's parameters gone, a shape-changing stage's share), its size (zipped
dynamic-range TFLite, and how many times smaller than the dense embedder's float32
SavedModel), its fidelity per layer to the dense model, whether it is drop-in (same
representation shape), its compression seconds and retraining budget;
``downstream.with_downstream`` adds its downstream entry.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from prunelm_tf.compression.run_folder import CompressionRunFolder
from prunelm_tf.utils import files
from benchmarks.elmo_dropin import layout
from benchmarks.elmo_dropin.fidelity import fidelity_to_dense
from benchmarks.elmo_dropin.groups import GROUPS

# A variant's seconds that are not its compression (exports and measurements).
_NOT_COMPRESSION = ("export", "evaluate")


def compression_seconds(seconds: Optional[Dict[str, float]]) -> float:
  """The seconds a variant's method took (prune, curves, fine-tuning), exports left out."""
  return sum(v for k, v in (seconds or {}).items() if not k.startswith(_NOT_COMPRESSION))


def top_cosine(fidelity: Dict[str, Any]) -> Optional[float]:
  """Mean cosine of the top layer (``top`` when layers were dropped), or None."""
  layers = fidelity.get("layers") or {}
  if "top" in layers:
    return layers["top"]["cosine_mean"]
  numbered = sorted((int(k.split("_")[1]), v) for k, v in layers.items()
                    if k.startswith("layer_"))
  return numbered[-1][1]["cosine_mean"] if numbered else None


def representation_shape(folder) -> List[int]:
  """[layers + 1, width] of a variant folder's representations."""
  config = folder.read_description()[0]
  return [config.n_layers + 1, 2 * config.projection_dim]


def _chain(run: layout.Run) -> List[dict]:
  """The variant each stage before the last made (one each), from their metrics."""
  out = []
  for stage in run.stages[:-1]:
    (variant,) = CompressionRunFolder(stage).variants()
    out.append(files.read_json(variant.metrics_json))
  return out


def dense_row(run: layout.Run) -> Dict[str, Any]:
  """The dense ELMo's row (the size reference is its float32 SavedModel)."""
  metrics = files.read_json(run.first.dense.metrics_json)
  return {"group": "dense", "family": "dense", "variant": "dense", "recipe": None,
          "overrides": [], "stages": [], "amount": 0.0, "sparsity": 0.0,
          "params_removed": 0.0, "removed_fraction": None,
          "num_parameters": metrics["num_parameters"],
          "saved_model_bytes": metrics["sizes"]["saved_model_bytes"],
          "tflite_gzip_bytes": {m: s["gzip_bytes"] for m, s in metrics["sizes"]["tflite"].items()},
          "size_ratio": None, "fidelity": metrics.get("representation_fidelity") or {},
          "top_cosine": 1.0, "dropin": True, "shape": representation_shape(run.first.dense),
          "compression_seconds": 0.0, "retraining": None, "run": None,
          "variant_dir": run.first.dense.path}


def run_rows(out_dir: str, run: layout.Run, dense: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Rows of the finished variants of one run's final stage, against ``dense``."""
  spec = GROUPS.get(run.group)
  chain = _chain(run)
  methods = [files.read_config_json(CompressionRunFolder(d).config_json)["method"]
             for d in run.stages]
  rows = []
  for folder in run.final.variants():
    if not folder.is_complete():
      continue
    v = files.read_json(folder.metrics_json)
    kept, shaped = 1.0, False
    for m in chain + [v]:
      if m.get("removed_fraction") is not None:
        kept, shaped = kept * (1 - m["removed_fraction"]), True
    dynamic = (v["sizes"]["tflite"].get("dynamic") or {}).get("gzip_bytes")
    fidelity = fidelity_to_dense(out_dir, run, folder)
    shape = representation_shape(folder)
    retraining = next((m.get("finetuning") or m.get("retraining") for m in reversed(chain + [v])
                       if m.get("finetuning") or m.get("retraining")), None)
    amounts = [m.get("target_sparsity") for m in chain + [v] if m.get("target_sparsity")]
    rows.append({
        "group": run.group, "family": spec.family if spec else "?",
        "variant": run.label(folder.name), "recipe": spec.recipe if spec else None,
        "overrides": list(spec.overrides) if spec else [], "stages": methods,
        # The sweep value of the run: its amount tag, or the variant's own target.
        "amount": float(run.tag) / 100 if run.tag else (amounts[-1] if amounts else 0.0),
        "sparsity": v["sparsity"]["overall"],
        "params_removed": 1 - v["num_parameters"] / dense["num_parameters"],
        "removed_fraction": 1 - kept if shaped else None,
        "num_parameters": v["num_parameters"],
        "saved_model_bytes": v["sizes"].get("saved_model_bytes"),
        "tflite_gzip_bytes": {m: s["gzip_bytes"] for m, s in v["sizes"]["tflite"].items()},
        "size_ratio": dense["saved_model_bytes"] / dynamic if dynamic else None,
        "fidelity": fidelity, "top_cosine": top_cosine(fidelity),
        "dropin": shape == dense["shape"], "shape": shape,
        "compression_seconds": sum(compression_seconds(m.get("seconds")) for m in chain + [v]),
        "retraining": retraining, "tflite_errors": v.get("tflite_errors"),
        "run": {"path": run.path, "tag": run.tag, "name": folder.name},
        "variant_dir": folder.path})
  return rows


def finished_rows(out_dir: str, groups: Sequence[str] = ()) -> List[Dict[str, Any]]:
  """The dense row and the rows of every finished variant of ``groups`` (default all), in the
  order of the group table."""
  found = layout.runs(out_dir)
  if not found:
    return []
  dense = dense_row(found[0])
  order = {g: k for k, g in enumerate(GROUPS)}
  rows = [dense]
  for run in sorted(found, key=lambda r: (order.get(r.group, len(order)), r.group,
                                          float(r.tag or 0))):
    if not groups or run.group in groups:
      rows += run_rows(out_dir, run, dense)
  return rows
