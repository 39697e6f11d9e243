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

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from benchmarks import ptb_sweep
from prunelm_tf.compression import compress
from prunelm_tf.compression.run_folder import CompressionRunFolder
from prunelm_tf.export.sizes import zip_file_bytes
from prunelm_tf.reporting import entries, text
from prunelm_tf.reporting.hparams import options_text
from prunelm_tf.utils.files import write_json, write_text

def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model_dir", required=True, help="A pipelines.train run folder (PTB).")
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--groups", default=",".join(ptb_sweep.GROUPS),
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
  # Every group compressed the same dense model; its exports are in each run folder.
  first = groups[0]
  dense = results[first]["dense"]
  # (record, its variant folder) of every variant, each with the group it was made in.
  made = [(dict(v, group=g),
           CompressionRunFolder(os.path.join(args.out_dir, g)).variant(v["name"]))
          for g in groups for v in results[g]["variants"]]
  # Zip of the dynamic-range TFLite file of each variant (the size target).
  for v, folder in [(dense, CompressionRunFolder(os.path.join(args.out_dir, first)).dense)] + made:
    path = folder.tflite("dynamic")
    if os.path.exists(path):
      v["sizes"]["tflite"]["dynamic"]["zip_bytes"] = zip_file_bytes(path)
  variants = [v for v, _ in made]

  def rel(v, key):
    return v["perplexity"][key] / dense["perplexity"][key] - 1.0

  def made_for(group, target):
    """The variant of ``group`` made for ``target`` (by its recorded target sparsity)."""
    found = [v for v in variants if v["group"] == group and entries.has_target(v, target)]
    if not found:
      raise ValueError(f"{args.out_dir}/{group} has no variant of target sparsity {target}; "
                       "run the whole sweep of benchmarks/ptb_sweep.py.")
    return found[0]

  checks = {}
  for group, target, limit in ((ptb_sweep.RETRAINED, 0.9, 0.03), (ptb_sweep.UNIFORM, 0.5, 0.05),
                               (ptb_sweep.ALLOCATED, 0.5, 0.05)):
    v = made_for(group, target)
    checks[f"{group}_{round(target * 100)}_perplexity_within_{round(limit * 100)}pct"] = {
        "variant": v["name"], "forward_increase": rel(v, "forward"),
        "backward_increase": rel(v, "backward"),
        "met": max(rel(v, "forward"), rel(v, "backward")) <= limit}
  for group in (ptb_sweep.UNIFORM, ptb_sweep.ALLOCATED, ptb_sweep.RETRAINED):
    v = made_for(group, 0.9)
    ratio = dense["sizes"]["saved_model_bytes"] / v["sizes"]["tflite"]["dynamic"]["zip_bytes"]
    checks[f"{group}_90_zipped_dynamic_tflite_30x_smaller"] = {
        "variant": v["name"], "ratio": ratio, "met": ratio >= 30}
  report = {"dense": dense, "variants": variants, "checks": checks,
            "wall_seconds": time.time() - start,
            "command": f"python -m benchmarks.compress_ptb --model_dir={args.model_dir} "
                       f"--out_dir={args.out_dir} --retrain_steps={args.retrain_steps}",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "tensorflow": tf.__version__}}
  write_json(os.path.join(args.out_dir, "report.json"), report)
  lines = ["| group | variant | method options | target | sparsity | test ppl fwd | test ppl bwd | "
           "Δ fwd | Δ bwd | SavedModel zip MB | tflite none MB | tflite dynamic MB (zip) | "
           "tflite int8 MB | failures |", "|" + "---|" * 14]
  for v in [dense] + variants:
    tfl = v["sizes"]["tflite"]
    dyn = tfl.get("dynamic", {})
    lines.append(
        f"| {v.get('group', entries.DENSE)} | {v['name']} | {options_text(v)} | "
        f"{v.get('target_sparsity', 0.0):.2f} | {v['sparsity']['overall']:.3f} | "
        f"{v['perplexity']['forward']:.2f} | {v['perplexity']['backward']:.2f} | "
        f"{rel(v, 'forward'):+.1%} | {rel(v, 'backward'):+.1%} | "
        f"{text.mb(v['sizes']['saved_model_zip_bytes'])} | "
        f"{text.mb(tfl.get('none', {}).get('bytes'))} | "
        f"{text.mb(dyn.get('bytes'))} ({text.mb(dyn.get('zip_bytes'))}) | "
        f"{text.mb(tfl.get('int8', {}).get('bytes'))} | "
        f"{text.cell(text.failures(entries.failures(v)))} |")
  lines.append("")
  lines.append(f"Dense float32 SavedModel: {dense['sizes']['saved_model_bytes'] / 1e6:.2f} MB. "
               "failures: TFLite modes that failed to convert (full messages in report.json).")
  for name, c in checks.items():
    values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in c.items() if k != "met")
    lines.append(f"- {name}: {'MET' if c['met'] else 'MISSED'} ({values})")
  lines.append(f"\nCommand: `{report['command']}`; wall {report['wall_seconds']:.0f} s on "
               f"{os.cpu_count()} CPUs, TF {tf.__version__}.")
  write_text(os.path.join(args.out_dir, "report.md"), "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
