"""Full-integer (int8) TFLite of a trained biLM against float32 and dynamic-range, in one run.

  python -m benchmarks.int8_tflite --model_dir=RUN --out=DIR/int8.json \
      [--max_tokens=20,64] [--calibration_sentences=100] [--parity_sentences=200]

For the run folder's model (a pipelines.train run): the float32 ("none") and
dynamic-range TFLite files as ``pipelines.compress`` writes them, and one
int8 file (the fixed-length unrolled graph, calibrated on PTB valid) per
``--max_tokens``; then, for each file, in this one process (so that the ratios
compare like with like on the same machine state):
* parity with the Keras model on PTB test sentences that fit every file:
  max |difference| and cosine similarity of the representations (worst and
  mean over sentences), per layer too;
* latency p50/p90 at 1 and 2 threads, batch 1, 20 words (a fixed-length file
  runs its whole length, whatever the sentence);
* file size (raw and gzip).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)

from benchmarks.ptb_sweep import PTB
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.evaluation.evaluate import encode_sentences
from prunelm_tf.evaluation.latency import latency_input, measure_latency
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.export.sizes import gzip_bytes
from prunelm_tf.export.tflite import TFLiteBiLM, export_tflite, representation_parity
from prunelm_tf.training.run_folder import load_run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--model_dir", required=True, help="A pipelines.train run folder.")
  parser.add_argument("--out", required=True, help="Where the JSON results go.")
  parser.add_argument("--ptb_dir", default=PTB, help="Folder with ptb.valid.txt, ptb.test.txt.")
  parser.add_argument("--max_tokens", default="20,64",
                      help="Comma-separated fixed lengths (words) of the int8 files.")
  parser.add_argument("--calibration_sentences", type=int, default=100,
                      help="PTB valid sentences that calibrate int8.")
  parser.add_argument("--parity_sentences", type=int, default=200,
                      help="PTB test sentences (at most min(--max_tokens) words) for parity.")
  parser.add_argument("--latency_runs", type=int, default=50)
  parser.add_argument("--work_dir", default="", help="Keep the exported files here.")
  args = parser.parse_args()
  lengths = [int(x) for x in args.max_tokens.split(",")]
  model, config, vocab = load_run(args.model_dir)
  calibration = encode_sentences(load_corpus(
      os.path.join(args.ptb_dir, "ptb.valid.txt"), 0, what="--ptb_dir valid"), config, vocab)
  test = encode_sentences(load_corpus(
      os.path.join(args.ptb_dir, "ptb.test.txt"), 0, what="--ptb_dir test"), config, vocab)
  shortest = min(lengths)
  test = [x for x in test if 3 <= x.shape[1] <= shortest + 2][:args.parity_sentences]
  expected = [model(x, training=False)["representations"].numpy() for x in test]
  work = args.work_dir or tempfile.mkdtemp(prefix="int8_tflite_")
  saved_model = export_saved_model(model, os.path.join(work, "saved_model"))
  files, seconds = {}, {}
  for mode in ("none", "dynamic"):
    files[mode] = os.path.join(work, f"bilm_{mode}.tflite")
    t = time.time()
    export_tflite(model, files[mode], mode)
    seconds[mode] = time.time() - t
  for n in lengths:
    name = f"int8_{n}"
    files[name] = os.path.join(work, f"bilm_{name}.tflite")
    fit = [x for x in calibration if x.shape[1] <= n + 2][:args.calibration_sentences]
    t = time.time()
    export_tflite(model, files[name], "int8", saved_model_dir=saved_model,
                  representative_inputs=lambda fit=fit: iter(fit), max_tokens=n)
    seconds[name] = time.time() - t
  latency_ids = latency_input(config.token_encoder == "char", num_tokens=20,
                              max_characters_per_token=config.char_cnn.max_characters_per_token,
                              vocab_size=len(vocab))
  results = {}
  for name, path in files.items():
    runner = TFLiteBiLM(path)
    got = [runner(x) for x in test]
    parity = representation_parity(got, expected)
    parity["per_layer"] = [representation_parity([g[:, l] for g in got], [e[:, l] for e in expected])
                           for l in range(config.n_layers + 1)]
    results[name] = {"bytes": os.path.getsize(path), "gzip_bytes": gzip_bytes(path),
                     "convert_seconds": seconds[name], "parity": parity, "latency": {}}
  for name, path in files.items():  # all timings in one pass, one child at a time
    if name.startswith("int8") and int(name.split("_")[1]) < 20:
      continue
    for threads in (1, 2):
      r = measure_latency("tflite", path, latency_ids, threads=threads, warmup=10,
                          runs=args.latency_runs)
      results[name]["latency"][str(threads)] = {k: r[k] for k in (
          "p50_ms", "p90_ms", "model_input_shape", "model_rss_bytes")}
  base = results["none"]["latency"]["1"]["p50_ms"]
  report = {"model_dir": args.model_dir, "config": config.to_dict(),
            "parity_sentences": len(test), "calibration_sentences": args.calibration_sentences,
            "results": results,
            "speedup_vs_none_1_thread": {n: base / r["latency"]["1"]["p50_ms"]
                                         for n, r in results.items() if r["latency"]}}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  print(f"{'file':10s} {'MB':>7s} {'gzipMB':>7s} {'max|d|':>8s} {'mincos':>7s} {'meancos':>7s} "
        f"{'p50@1':>7s} {'p90@1':>7s} {'p50@2':>7s} {'p90@2':>7s} {'x none@1':>8s}")
  for name, r in results.items():
    lat = r["latency"]
    cells = [f"{lat[t][k]:7.2f}" if t in lat else "      -" for t in ("1", "2")
             for k in ("p50_ms", "p90_ms")]
    p = r["parity"]
    print(f"{name:10s} {r['bytes'] / 1e6:7.2f} {r['gzip_bytes'] / 1e6:7.2f} "
          f"{p['max_abs_diff']:8.4f} {p['min_cosine']:7.4f} {p['mean_cosine']:7.4f} "
          f"{' '.join(cells)} {report['speedup_vs_none_1_thread'].get(name, float('nan')):8.2f}")
  print(f"parity on {len(test)} PTB test sentences of <= {shortest} words; per-layer mean cosine: "
        + "; ".join(f"{n}: " + ", ".join(f"{x['mean_cosine']:.4f}" for x in r["parity"]["per_layer"])
                    for n, r in results.items()))


if __name__ == "__main__":
  main()
