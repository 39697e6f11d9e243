r"""Full-integer int8 TFLite of every variant of the ELMo-shaped benchmark (issue #11).

  python -m benchmarks.elmo_int8 --bench_dir=DIR [--groups=a,b] [--max_tokens=64] \
      [--calibration_sentences=100] [--parity_sentences=200]

DIR is a `benchmarks.elmo_ptb` output folder. Its groups export the float32 and
dynamic-range TFLite files only; this converts every finished variant (a recipe group's:
its final stage's, named "<amount x 100>/<variant>"; and the dense model once) to the int8
file `pipelines.compress --tflite_quantization=int8` writes: the fixed-length unrolled graph of ``--max_tokens`` words (TF 2.21's
converter crashes calibrating the LSTM WHILE loops, tensorflow/tensorflow#41305),
calibrated on the first ``--calibration_sentences`` PTB valid sentences that fit
it. For each it records the gzip size and its ratio to the dense float32
embedder SavedModel (the issue's reference), the parity of the representations
with the variant's float Keras model on the first ``--parity_sentences`` PTB
test sentences that fit (mean / worst cosine, max |difference|; the dynamic
file's parity from the variant's metrics beside it), or the converter's error.
Each variant is cached in DIR/int8/<group>/<variant>/result.json (a second call
resumes); DIR/int8_report.md gathers them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)

from benchmarks.elmo_ptb import layout
from benchmarks.elmo_ptb.run import embedder_saved_model_bytes
from benchmarks.paths import PTB_TEST, PTB_VALID
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.evaluation.evaluate import encode_sentences
from prunelm_tf.evaluation.variants import find_variants
from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.export.sizes import gzip_bytes
from prunelm_tf.export.tflite import ConverterCrashed, TFLiteBiLM, export_tflite, \
    representation_parity
from prunelm_tf.utils import files


def benchmark_variants(bench_dir: str, groups=()) -> list:
  """[(group, Variant)] of every finished variant of ``bench_dir``, the dense model first,
  each named as the benchmark's report names it (a recipe group's "<amount x 100>/<variant>";
  `layout.finished_variants`). ``groups``: only these (default all)."""
  out = []
  for group, name, folder in layout.finished_variants(bench_dir, groups):
    (variant,) = find_variants(folder.path)
    out.append((group, dataclasses.replace(variant, name=name)))
  return out


def convert_variant(variant, out_dir: str, calibration, parity, max_tokens: int) -> dict:
  """int8 file, size and parity of one variant (cached in out_dir/result.json)."""
  done = os.path.join(out_dir, "result.json")
  if os.path.exists(done):
    return files.read_json(done)
  os.makedirs(out_dir, exist_ok=True)
  model = load_saved_model(variant.saved_model)
  cfg = variant.config
  fit = max_tokens + 2  # with the sentence boundaries
  cal = [x for x in encode_sentences(calibration, cfg, variant.vocab) if x.shape[1] <= fit]
  test = [x for x in encode_sentences(parity, cfg, variant.vocab) if x.shape[1] <= fit]
  metrics = variant.metrics
  result = {"variant": variant.name, "max_tokens": max_tokens,
            "calibration_sentences": len(cal), "parity_sentences": len(test),
            "ppl_mean": (metrics.get("perplexity") or {}).get("mean"),
            "dynamic_parity": (metrics.get("tflite_parity") or {}).get("dynamic"),
            "dynamic_gzip_bytes": (metrics.get("sizes", {}).get("tflite", {})
                                   .get("dynamic", {}).get("gzip_bytes"))}
  path = os.path.join(out_dir, "bilm_int8.tflite")
  t = time.time()
  try:
    export_tflite(model, path, "int8", saved_model_dir=variant.saved_model,
                  representative_inputs=lambda: iter(cal), max_tokens=max_tokens)
  except (ConverterCrashed, ValueError) as e:
    result["error"] = str(e)
  result["convert_seconds"] = time.time() - t
  if "error" not in result:
    result["bytes"], result["gzip_bytes"] = os.path.getsize(path), gzip_bytes(path)
    runner = TFLiteBiLM(path)
    expected = [model(x, training=False)["representations"].numpy() for x in test]
    result["parity"] = representation_parity([runner(x) for x in test], expected)
  files.write_json(done, result)
  return result


def report(results, embedder_bytes: int, out_dir: str, command: str) -> str:
  lines = ["# int8 TFLite of every variant (fixed-length unrolled graph)\n",
           f"Command: `{command}`\n",
           "Ratio = dense float32 embedder SavedModel "
           f"({embedder_bytes:,} bytes) / the gzip of the file. Parity: cosine similarity of "
           "the representations to the variant's float Keras model (mean / worst sentence) on "
           "PTB test sentences that fit the fixed length; the dynamic-range file's mean cosine "
           "beside it.\n",
           "| group | variant | ppl mean (float) | int8 gzip MB | ratio | dynamic gzip MB | "
           "int8 cos mean / min | dynamic cos mean | convert s | error |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for group, r in results:
    ppl = "—" if r.get("ppl_mean") is None else f"{r['ppl_mean']:.1f}"
    dyn = r.get("dynamic_gzip_bytes")
    dyn_cos = (r.get("dynamic_parity") or {}).get("mean_cosine")
    if "error" in r:
      cells = "— | — "
      cos = "—"
    else:
      cells = f"{r['gzip_bytes'] / 1e6:.2f} | {embedder_bytes / r['gzip_bytes']:.1f}x "
      cos = f"{r['parity']['mean_cosine']:.4f} / {r['parity']['min_cosine']:.4f}"
    lines.append(f"| {group} | {r['variant']} | {ppl} | {cells}| "
                 f"{'—' if dyn is None else format(dyn / 1e6, '.2f')} | {cos} | "
                 f"{'—' if dyn_cos is None else format(dyn_cos, '.4f')} | "
                 f"{r['convert_seconds']:.0f} | {r.get('error', '').splitlines()[0][:120] if r.get('error') else ''} |")
  ok = sum("error" not in r for _, r in results)
  lines.append(f"\n{ok} of {len(results)} variants have an int8 TFLite.")
  text = "\n".join(lines) + "\n"
  files.write_text(os.path.join(out_dir, "int8_report.md"), text)
  return text


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--bench_dir", required=True, help="A benchmarks.elmo_ptb --out_dir.")
  parser.add_argument("--dense_dir", required=True,
                      help="The pipelines.train run of the benchmark (for the size reference).")
  parser.add_argument("--groups", default="", help="Groups to convert (default: all).")
  parser.add_argument("--max_tokens", type=int, default=64,
                      help="Fixed length (words) of the int8 files.")
  parser.add_argument("--calibration_sentences", type=int, default=100)
  parser.add_argument("--parity_sentences", type=int, default=200)
  args = parser.parse_args()
  if args.max_tokens < 1 or args.calibration_sentences < 1 or args.parity_sentences < 1:
    parser.error("--max_tokens, --calibration_sentences and --parity_sentences must be >= 1.")
  valid = load_corpus(PTB_VALID, 0, what="PTB valid")
  test = load_corpus(PTB_TEST, 0, what="PTB test")
  fit = lambda s: len(s) <= args.max_tokens  # noqa: E731
  calibration = [s for s in valid if fit(s)][:args.calibration_sentences]
  parity = [s for s in test if fit(s)][:args.parity_sentences]
  results = []
  for group, variant in benchmark_variants(args.bench_dir, set(filter(None,
                                                                   args.groups.split(",")))):
    t = time.time()
    r = convert_variant(variant, os.path.join(args.bench_dir, "int8", group, variant.name),
                        calibration, parity, args.max_tokens)
    results.append((group, r))
    print(f"{group}/{variant.name}: {'error' if 'error' in r else 'ok'} "
          f"({time.time() - t:.0f} s)", flush=True)
  embedder_bytes = embedder_saved_model_bytes(args.dense_dir, args.bench_dir)
  print(report(results, embedder_bytes, args.bench_dir,
               "python -m benchmarks.elmo_int8 " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
  main()
