"""Compression benchmark on the PTB biLM: dense vs threshold vs retrain, one invocation.

  python -m benchmarks.compress_ptb --model_dir=saved_models/ptb_small --out_dir=DIR

Runs ``compress`` for the three groups of benchmarks/ptb_sweep.py under DIR
(uniform thresholding 0.5/0.7/0.9, sensitivity-allocated thresholding
0.5/0.7/0.9, tfmot retraining 0.9/0.8/0.95 on PTB train), evaluates every
variant on PTB test and writes DIR/report.json and DIR/report.md with the
issue's targets checked:
  retrain 90 %: forward and backward test perplexity within +3 % of dense;
  threshold 50 %: within +5 % of dense (uniform and sensitivity-allocated);
  zipped dynamic-int8 TFLite of the 90 % variants >= 30x smaller than the
  dense float32 SavedModel.
``benchmarks.run`` runs the same sweep and adds SST-2, latency and plots.
"""

import argparse
import dataclasses
import os
import platform
import time
import zipfile

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from benchmarks import ptb_sweep
from prunelm_tf.compression import compress
from prunelm_tf.export.sizes import zip_file_bytes
from prunelm_tf.utils.files import write_json, write_text

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
  dense = results["threshold"]["dense"]
  variants = [v for g in groups for v in results[g]["variants"]]
  # Zip of the dynamic-range TFLite file of each variant (the size target).
  folders = [(dense, os.path.join(args.out_dir, "threshold", "dense"))] + [
      (v, os.path.join(args.out_dir, g, "variants", v["name"]))
      for g, result in results.items() for v in result["variants"]]
  for v, folder in folders:
    path = os.path.join(folder, "bilm_dynamic.tflite")
    if os.path.exists(path):
      v["sizes"]["tflite"]["dynamic"]["zip_bytes"] = zip_file_bytes(path)

  def rel(v, key):
    return v["perplexity"][key] / dense["perplexity"][key] - 1.0

  by_name = {v["name"]: v for v in variants}
  checks = {}
  for name, limit in (("retrain_90", 0.03), ("threshold_50", 0.05), ("threshold_sens_50", 0.05)):
    v = by_name[name]
    checks[f"{name}_perplexity_within_{round(limit * 100)}pct"] = {
        "forward_increase": rel(v, "forward"), "backward_increase": rel(v, "backward"),
        "met": max(rel(v, "forward"), rel(v, "backward")) <= limit}
  for name in ("threshold_90", "threshold_sens_90", "retrain_90"):
    ratio = (dense["sizes"]["saved_model_bytes"]
             / by_name[name]["sizes"]["tflite"]["dynamic"]["zip_bytes"])
    checks[f"{name}_zipped_dynamic_tflite_30x_smaller"] = {"ratio": ratio, "met": ratio >= 30}
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
