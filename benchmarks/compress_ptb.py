"""Compression benchmark on the PTB biLM: dense vs threshold vs retrain, one invocation.

  python -m benchmarks.compress_ptb --model_dir=saved_models/ptb_small --out_dir=DIR

Runs ``compress`` twice under DIR (threshold sweep 0.5/0.7/0.9, then tfmot
retraining 0.8/0.9/0.95 on PTB train), evaluates every variant on PTB test and
writes DIR/report.json and DIR/report.md with the issue's targets checked:
  retrain 90 %: forward and backward test perplexity within +3 % of dense;
  threshold 50 %: within +5 % of dense;
  zipped dynamic-int8 TFLite of the retrain 90 % variant >= 30x smaller than
  the dense float32 SavedModel.
"""

import argparse
import dataclasses
import gzip
import json
import os
import platform
import time
import zipfile

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from benchmarks import ptb_sweep
from prunelm_tf.compression import compress
from prunelm_tf.utils.files import write_json, write_text

def zipped_bytes(path: str) -> int:
  """Size of ``path`` alone in a deflate zip (what a download of the file costs)."""
  tmp = path + ".bench.zip"
  with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    zf.write(path, os.path.basename(path))
  n = os.path.getsize(tmp)
  os.remove(tmp)
  return n


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model_dir", required=True, help="A pipelines.train run folder (PTB).")
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--groups", default="threshold,threshold_sens,retrain",
                      help="Comma-separated groups of benchmarks/ptb_sweep.py to run (the "
                           "report needs all; a subset only fills their run folders).")
  parser.add_argument("--retrain_steps", type=int, default=ptb_sweep.FULL.retrain_steps,
                      help="Optimizer steps of each retraining (the ramp is the first half).")
  args = parser.parse_args()
  start = time.time()
  settings = dataclasses.replace(ptb_sweep.FULL, retrain_steps=args.retrain_steps)
  configs = ptb_sweep.compression_configs(args.model_dir, settings)
  groups = [g for g in args.groups.split(",") if g]
  unknown = set(groups) - set(configs)
  if unknown:
    parser.error(f"unknown --groups {sorted(unknown)}; choose from {sorted(configs)}.")
  results = {g: compress(configs[g], os.path.join(args.out_dir, g)) for g in groups}
  if set(groups) != set(configs):
    print(f"ran {groups}; the report needs all groups, so none was written.")
    return
  threshold, retrain = results["threshold"], results["retrain"]
  dense = threshold["dense"]
  variants = [v for g in groups for v in results[g]["variants"]]
  # Zip of the dynamic-range TFLite file of each variant (the size target).
  for group, result in results.items():
    for v in result["variants"] + [result["dense"]]:
      path = os.path.join(args.out_dir, group, "variants" if v["name"] != "dense" else "",
                          v["name"] if v["name"] != "dense" else "dense", "bilm_dynamic.tflite")
      if os.path.exists(path):
        v["sizes"]["tflite"]["dynamic"]["zip_bytes"] = zipped_bytes(path)

  def rel(v, key):
    return v["perplexity"][key] / dense["perplexity"][key] - 1.0

  by_name = {v["name"]: v for v in variants}
  checks = {}
  r90, t50 = by_name["retrain_90"], by_name["threshold_50"]
  checks["retrain_90_perplexity_within_3pct"] = {
      "forward_increase": rel(r90, "forward"), "backward_increase": rel(r90, "backward"),
      "met": max(rel(r90, "forward"), rel(r90, "backward")) <= 0.03}
  checks["threshold_50_perplexity_within_5pct"] = {
      "forward_increase": rel(t50, "forward"), "backward_increase": rel(t50, "backward"),
      "met": max(rel(t50, "forward"), rel(t50, "backward")) <= 0.05}
  ratio = dense["sizes"]["saved_model_bytes"] / r90["sizes"]["tflite"]["dynamic"]["zip_bytes"]
  checks["retrain_90_zipped_dynamic_tflite_30x_smaller"] = {"ratio": ratio, "met": ratio >= 30}
  report = {"dense": dense, "variants": variants, "checks": checks,
            "wall_seconds": time.time() - start,
            "command": f"python -m benchmarks.compress_ptb --model_dir={args.model_dir} "
                       f"--out_dir={args.out_dir} --retrain_steps={args.retrain_steps}",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "tensorflow": tf.__version__}}
  write_json(os.path.join(args.out_dir, "report.json"), report)
  lines = ["| variant | sparsity | test ppl fwd | test ppl bwd | Δ fwd | Δ bwd | SavedModel zip MB |"
           " tflite none MB | tflite dynamic MB (zip) | tflite int8 MB |", "|" + "---|" * 10]
  for v in [dense] + variants:
    tfl = v["sizes"]["tflite"]
    dyn = tfl.get("dynamic", {})
    lines.append(
        f"| {v['name']} | {v['sparsity']['overall']:.3f} | {v['perplexity']['forward']:.2f} | "
        f"{v['perplexity']['backward']:.2f} | {rel(v, 'forward'):+.1%} | {rel(v, 'backward'):+.1%} | "
        f"{v['sizes']['saved_model_zip_bytes'] / 1e6:.2f} | "
        f"{tfl['none']['bytes'] / 1e6:.2f} | {dyn.get('bytes', 0) / 1e6:.2f} "
        f"({dyn.get('zip_bytes', 0) / 1e6:.2f}) | "
        f"{(tfl['int8']['bytes'] / 1e6) if 'int8' in tfl else float('nan'):.2f} |")
  lines.append("")
  lines.append(f"Dense float32 SavedModel: {dense['sizes']['saved_model_bytes'] / 1e6:.2f} MB.")
  for name, c in checks.items():
    lines.append(f"- {name}: {'MET' if c['met'] else 'MISSED'} "
                 f"({', '.join(f'{k}={v:.4g}' for k, v in c.items() if k != 'met')})")
  errors = {v["name"]: v["tflite_errors"] for v in variants if v.get("tflite_errors")}
  if errors:
    lines.append(f"- TFLite modes that failed to convert: "
                 f"{ {k: sorted(e) for k, e in errors.items()} } (see report.json).")
  lines.append(f"\nCommand: `{report['command']}`; wall {report['wall_seconds']:.0f} s on "
               f"{os.cpu_count()} CPUs, TF {tf.__version__}.")
  write_text(os.path.join(args.out_dir, "report.md"), "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
