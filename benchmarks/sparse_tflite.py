"""Does TFLite's sparsity encoding make a pruned biLM faster? One run, every ratio comparable.

  python -m benchmarks.sparse_tflite --out=DIR/sparse.json [--model_dir=RUN] \
      [--sparsities=0.5,0.8,0.9] [--runs=50]

The biLM (a pipelines.train run folder, or without ``--model_dir`` a random
biLM of the benchmark shape: char input, 2 x 1024-cell LSTMs with 128-dim
projections) has every prunable matrix (LSTM kernels and projections,
highway, token projection, char CNN filters; not the softmax, which the
representation TFLite does not hold) pruned by magnitude in one of two
patterns:

* ``unstructured``: the smallest |w| of each matrix;
* ``block1x4``: the 1 x 4 blocks (4 consecutive inputs of one output, the
  block TFLite's sparse FULLY_CONNECTED kernel reads) with the smallest L1
  norm of each matrix.

Each is converted as float32 ("none") and dynamic-range TFLite, with and
without ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY`` (the converter's sparse
weight encoding), and timed with the LiteRT interpreter (one child process per
measurement, batch 1, 20 words, 1 and 2 threads, p50/p90), all in this one
run after all conversions, so that the ratios to the dense file compare like
with like. Sizes are raw and gzip. What it found is in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from prunelm_tf.compression.shared.targets import prunable_weights
from prunelm_tf.evaluation.latency import latency_input, measure_latency
from prunelm_tf.export.saved_model import serving_function
from prunelm_tf.export.sizes import gzip_bytes
from prunelm_tf.export.tflite import TFLiteBiLM, make_converter
from prunelm_tf.models import BiLMConfig, build_bilm

PATTERNS = ("unstructured", "block1x4")


def prune_matrix(w: np.ndarray, sparsity: float, pattern: str) -> np.ndarray:
  """``w`` with its smallest weights (or 1 x 4 blocks along the input axis 0) set to zero.

  Args:
    w: float32 [..., inputs, outputs] (Keras layout: the matmul is x @ w; the
      converter transposes it to TFLite's [outputs, inputs], where a block of
      4 consecutive inputs of one output is TFLite's 1 x 4 block).
    sparsity: fraction of the weights removed.
    pattern: "unstructured" or "block1x4" (inputs not a multiple of 4 keep
      their last rows dense).
  """
  if pattern == "unstructured" or w.ndim < 2:
    k = int(round(sparsity * w.size))
    if k == 0:
      return w
    threshold = np.partition(np.abs(w).ravel(), k - 1)[k - 1]
    return np.where(np.abs(w) > threshold, w, 0.0).astype(w.dtype)
  flat = w.reshape(-1, w.shape[-2], w.shape[-1])
  rows = (flat.shape[1] // 4) * 4
  blocks = flat[:, :rows].reshape(flat.shape[0], rows // 4, 4, flat.shape[2])
  norms = np.abs(blocks).sum(axis=2)  # [lead, rows / 4, outputs]
  k = int(round(sparsity * norms.size))
  out = flat.copy()
  if k:
    threshold = np.partition(norms.ravel(), k - 1)[k - 1]
    keep = (norms > threshold)[:, :, np.newaxis, :]
    out[:, :rows] = (blocks * keep).reshape(flat.shape[0], rows, flat.shape[2])
  return out.reshape(w.shape)


def convert(model, mode: str, sparse_encoding: bool) -> bytes:
  converter = make_converter(serving_function(model, batch_size=1), model, mode)
  if sparse_encoding:
    converter.optimizations = list(converter.optimizations) + [
        tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  return converter.convert()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--out", required=True, help="Where the JSON results go.")
  parser.add_argument("--model_dir", default="",
                      help="A pipelines.train run folder; default: random weights of the "
                           "benchmark shape.")
  parser.add_argument("--sparsities", default="0.5,0.8,0.9")
  parser.add_argument("--modes", default="none,dynamic")
  parser.add_argument("--runs", type=int, default=50)
  parser.add_argument("--work_dir", default="", help="Keep the TFLite files here.")
  args = parser.parse_args()
  if args.model_dir:
    from prunelm_tf.training.run_folder import load_run
    model, config, _ = load_run(args.model_dir)
  else:
    config = BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=1024, projection_dim=128,
                        n_layers=2)
    model = build_bilm(config)
  targets = {name: w for name, w in prunable_weights(model).items()
             if not name.startswith("softmax")}
  dense = {name: w.numpy() for name, w in targets.items()}
  work = args.work_dir or tempfile.mkdtemp(prefix="sparse_tflite_")
  modes = args.modes.split(",")
  variants = [("dense", 0.0)] + [(p, float(s)) for p in PATTERNS
                                 for s in args.sparsities.split(",")]
  ids = latency_input(config.token_encoder == "char", num_tokens=20,
                      max_characters_per_token=config.char_cnn.max_characters_per_token,
                      vocab_size=config.vocab_size or None)
  reference = None
  files = {}
  for pattern, sparsity in variants:
    for name, w in targets.items():
      w.assign(dense[name] if pattern == "dense" else prune_matrix(dense[name], sparsity, pattern))
    expected = model(ids, training=False)["representations"].numpy()
    for mode in modes:
      for encoded in ((False,) if pattern == "dense" else (False, True)):
        key = f"{pattern}_{int(round(sparsity * 100))}/{mode}{'/sparse_encoding' if encoded else ''}"
        path = os.path.join(work, key.replace("/", "__") + ".tflite")
        t = time.time()
        with open(path, "wb") as f:
          f.write(convert(model, mode, encoded))
        files[key] = {"path": path, "pattern": pattern, "sparsity": sparsity, "mode": mode,
                      "sparse_encoding": encoded, "bytes": os.path.getsize(path),
                      "gzip_bytes": gzip_bytes(path), "convert_seconds": time.time() - t}
        try:  # e.g. XNNPACK cannot prepare the sparse-encoded dynamic-range kernels
          files[key]["max_abs_diff_vs_keras"] = float(np.abs(TFLiteBiLM(path)(ids) - expected)
                                                      .max())
        except ValueError as e:
          files[key]["error"] = str(e)
        print(f"converted {key}: {files[key]['bytes'] / 1e6:.2f} MB, "
              f"max|d| {files[key].get('max_abs_diff_vs_keras')} {files[key].get('error', '')}",
              flush=True)
    reference = reference or expected
  for key, entry in files.items():  # every timing after every conversion, one at a time
    entry["latency"] = {}
    for threads in (1, 2) if "error" not in entry else ():
      r = measure_latency("tflite", entry["path"], ids, threads=threads, warmup=10,
                          runs=args.runs)
      entry["latency"][str(threads)] = {"p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"]}
  for key, entry in files.items():
    base = files[f"dense_0/{entry['mode']}"]["latency"]
    entry["speedup_vs_dense_same_mode"] = {t: base[t]["p50_ms"] / entry["latency"][t]["p50_ms"]
                                          for t in ("1", "2") if t in entry["latency"]}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump({"model_dir": args.model_dir, "config": config.to_dict(), "files": files}, f,
              indent=2)
  print(f"{'variant':44s} {'MB':>6s} {'gzMB':>6s} {'p50@1':>7s} {'p90@1':>7s} {'p50@2':>7s} "
        f"{'p90@2':>7s} {'x@1':>5s} {'x@2':>5s}")
  for key, e in files.items():
    lat = e["latency"]
    if "error" in e:
      print(f"{key:44s} {e['bytes'] / 1e6:6.2f} {e['gzip_bytes'] / 1e6:6.2f}  does not run: "
            f"{e['error'][:120]}")
      continue
    print(f"{key:44s} {e['bytes'] / 1e6:6.2f} {e['gzip_bytes'] / 1e6:6.2f} "
          f"{lat['1']['p50_ms']:7.2f} {lat['1']['p90_ms']:7.2f} {lat['2']['p50_ms']:7.2f} "
          f"{lat['2']['p90_ms']:7.2f} {e['speedup_vs_dense_same_mode']['1']:5.2f} "
          f"{e['speedup_vs_dense_same_mode']['2']:5.2f}")


if __name__ == "__main__":
  main()
