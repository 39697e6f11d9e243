"""One-shot pruning of the ELMo fixture: magnitude vs Wanda vs SparseGPT (obs), no retraining.

  python -m benchmarks.layerwise_elmo --out=DIR/layerwise.json [--sparsities=0.5,0.8]

Every prunable matrix of the embedder (char CNN, highway, token projection,
LSTM kernels and projections; the fixture has no softmax) is pruned to the same
target. Wanda and obs calibrate on the first ``--calibration_sentences`` of
ptb.valid.txt; every variant is measured on the first ``--eval_sentences`` of
ptb.test.txt by the representation error ``1 - mean cosine similarity`` to the
dense model, averaged over the layers (``compression.pipeline.
representation_similarity``, the loss of the sensitivity allocation for models
without a softmax). Issue #10 targets: obs error <= 1/5 of magnitude's at 50 %
and <= 1/3 at 80 %; they are checked for the library defaults (``obs``).

Variants are ``(label, method, options of prune_model_layerwise)``; the default
list compares the published methods (no bias update) with the library defaults
and one change at a time. ``--variants`` replaces it with a JSON list.
"""

import argparse
import json
import os
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np

from prunelm_tf import data as data_lib
from prunelm_tf.compression import prunable_weights, prune_by_threshold
from prunelm_tf.compression.shared.calibration import prune_model_layerwise
from prunelm_tf.compression.source import representation_similarity
from prunelm_tf.elmo import load_elmo
from prunelm_tf.utils import files
from benchmarks.paths import SHARED_DATA

TARGET_RATIO = {0.5: 1 / 5, 0.8: 1 / 3}
VARIANTS = [
    ["magnitude", "magnitude", {}],
    ["wanda (published)", "wanda", {"update_bias": False}],
    ["wanda + bias correction", "wanda", {}],
    ["obs (SparseGPT as published)", "obs", {"update_bias": False}],
    ["obs", "obs", {}],
    ["obs damp=0.1", "obs", {"damp": 0.1}],
    ["obs block_size=32", "obs", {"block_size": 32}],
    ["obs upstream=dense", "obs", {"upstream": "dense"}],
    ["obs projection from dense kernel", "obs", {"projection_after_kernel": False}],
    ["obs char_windows=max", "obs", {"char_windows": "max"}],
]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="JSON file written with every figure.")
  parser.add_argument("--data_dir", default=SHARED_DATA,
                      help="The shared data folder (elmo_fixture/, ptb/).")
  parser.add_argument("--sparsities", default="0.5,0.8")
  parser.add_argument("--calibration_sentences", type=int, default=300)
  parser.add_argument("--eval_sentences", type=int, default=500)
  parser.add_argument("--variants", default=None, help="JSON list of [label, method, options].")
  parser.add_argument("--heldout", action="store_true",
                      help="Also measure each matrix's reconstruction error on the eval sentences.")
  args = parser.parse_args()
  variants = json.loads(args.variants) if args.variants else VARIANTS

  fixture, ptb = (os.path.join(args.data_dir, n) for n in ("elmo_fixture", "ptb"))
  options, weights = (os.path.join(fixture, n) for n in ("options.json", "lm_weights.hdf5"))
  reference, config = load_elmo(options, weights)
  vocab = data_lib.Vocabulary(["<S>", "</S>", "<UNK>"])

  def dataset(sentences):
    return data_lib.make_dataset(sentences, vocab, batch_size=64, char_inputs=True,
                                 max_characters_per_token=config.char_cnn.max_characters_per_token,
                                 shuffle=False)

  calibration = data_lib.read_sentences(data_lib.open_corpus(
      os.path.join(ptb, "ptb.valid.txt"), max_sentences=args.calibration_sentences))
  evaluation = data_lib.read_sentences(data_lib.open_corpus(
      os.path.join(ptb, "ptb.test.txt"), max_sentences=args.eval_sentences))
  calibration_batches = [b["char_ids"].numpy() for b in dataset(calibration)]
  eval_batches = [b["char_ids"].numpy() for b in dataset(evaluation)] if args.heldout else None
  names = list(prunable_weights(reference))

  runs = []
  for sparsity in [float(s) for s in args.sparsities.split(",")]:
    targets = {n: sparsity for n in names}
    for label, method, options_ in variants:
      model, _ = load_elmo(options, weights)
      t = time.time()
      if method == "magnitude":
        prune_by_threshold(model, targets)
        records = None
      else:
        records = prune_model_layerwise(model, targets, calibration_batches, method=method,
                                        heldout_batches=eval_batches, **options_)
      seconds = time.time() - t
      sims = representation_similarity(model, reference, dataset(evaluation))
      error = 1.0 - float(np.mean(list(sims.values())))
      runs.append({"sparsity": sparsity, "label": label, "method": method, "options": options_,
                   "representation_error": error,
                   "layer_errors": {k: 1.0 - v for k, v in sims.items()},
                   "seconds": seconds, "matrices": records})
      print(f"{sparsity:.2f} {label:34s} error {error:.5f} (per layer "
            f"{', '.join(f'{1 - v:.5f}' for v in sims.values())}) {seconds:5.1f} s", flush=True)

  lines = ["| sparsity | variant | representation error | / magnitude |", "|---|---|---|---|"]
  checks = {}
  for sparsity in sorted({r["sparsity"] for r in runs}):
    at = [r for r in runs if r["sparsity"] == sparsity]
    magnitude = next((r["representation_error"] for r in at if r["method"] == "magnitude"), None)
    for r in at:
      r["ratio_to_magnitude"] = r["representation_error"] / magnitude if magnitude else None
      ratio = "" if r["ratio_to_magnitude"] is None else f"{r['ratio_to_magnitude']:.3f}"
      lines.append(f"| {sparsity:.0%} | {r['label']} | {r['representation_error']:.5f} | "
                   f"{ratio} |")
      if r["label"] == "obs" and sparsity in TARGET_RATIO and ratio:
        checks[f"{sparsity:.0%}"] = {"ratio": r["ratio_to_magnitude"],
                                     "target": TARGET_RATIO[sparsity],
                                     "met": r["ratio_to_magnitude"] <= TARGET_RATIO[sparsity]}
  tokens = sum(int((b > 0).any(-1).sum()) for b in calibration_batches)
  result = {"calibration_sentences": len(calibration), "calibration_tokens": tokens,
            "eval_sentences": len(evaluation), "targets": checks, "table": lines, "runs": runs,
            "command": "python -m benchmarks.layerwise_elmo " + " ".join(
                f"--{k}={v}" for k, v in vars(args).items() if v is not None)}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  files.write_json(args.out, result)
  print("\n".join(lines))
  print(json.dumps(checks, indent=2))


if __name__ == "__main__":
  main()
