"""Can SparseGPT (obs) prune the full-size ELMo (93.6M parameters) in 10 minutes and 8 GB?

  python -m benchmarks.obs_scale --out=DIR/obs_scale.json [--end_to_end_sentences=N]

Part 1 times `layerwise.prune_obs` (and `prune_wanda`) at 50 % once per distinct
matrix shape of ELMo "Original" (2 x 4096 cells / 512 projection, 7 char filter
banks, 2 highway layers of 2048) with a random positive-definite H, and
multiplies by the number of matrices of each shape.

Part 2 (``--end_to_end_sentences``) runs `calibration.prune_model_layerwise` on
the full-size model with random weights (``benchmarks.elmo_scale``) on N PTB
validation sentences, so that the calibration passes (model runs + float64
Gram accumulation, linear in the tokens) can be extrapolated to the
recommended token count (min_tokens_factor 4 x 4,096 inputs = 16,384 tokens).
Wall seconds depend on what else runs on the machine: state it with the figures.
"""

import argparse
import json
import os
import platform
import resource
import tempfile
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from benchmarks.elmo_scale import ORIGINAL_OPTIONS, write_random_elmo
from prunelm_tf import data as data_lib
from prunelm_tf.compression import prunable_weights
from prunelm_tf.compression.shared.calibration import prune_model_layerwise
from prunelm_tf.compression.shared.layerwise import prune_obs, prune_wanda
from prunelm_tf.elmo import load_elmo
from benchmarks.paths import PTB_VALID


def peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def full_size_shapes():
  """``{(in, out): count}`` of the prunable matrices of ELMo "Original" (Keras layout)."""
  lstm, cnn = ORIGINAL_OPTIONS["lstm"], ORIGINAL_OPTIONS["char_cnn"]
  dim, proj, char_dim = lstm["dim"], lstm["projection_dim"], cnn["embedding"]["dim"]
  n_filters = sum(n for _, n in cnn["filters"])
  shapes = {}

  def add(shape, count):
    shapes[shape] = shapes.get(shape, 0) + count

  for width, count in cnn["filters"]:
    add((width * char_dim, count), 1)
  add((n_filters, n_filters), 2 * cnn["n_highway"])
  add((n_filters, proj), 1)
  add((2 * proj, 4 * dim), 2 * lstm["n_layers"])
  add((dim, proj), 2 * lstm["n_layers"])
  return shapes


def random_gram(in_dim, rng):
  g = rng.standard_normal((in_dim, in_dim))
  return g @ g.T / in_dim + 0.01 * np.eye(in_dim)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--sparsity", type=float, default=0.5)
  parser.add_argument("--block_size", type=int, default=128)
  parser.add_argument("--end_to_end_sentences", type=int, default=0)
  parser.add_argument("--ptb_valid", default=PTB_VALID, help="Calibration text (part 2).")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  shapes = full_size_shapes()
  per_shape = []
  for (in_dim, out_dim), count in sorted(shapes.items()):
    weight = (rng.standard_normal((in_dim, out_dim)) / np.sqrt(in_dim)).astype(np.float32)
    gram = random_gram(in_dim, rng)
    t = time.time()
    pruned = prune_obs(weight, gram, args.sparsity, block_size=args.block_size)
    obs_seconds = time.time() - t
    t = time.time()
    prune_wanda(weight, gram, args.sparsity)
    wanda_seconds = time.time() - t
    assert pruned.size - np.count_nonzero(pruned) == round(args.sparsity * pruned.size)
    per_shape.append({"shape": [in_dim, out_dim], "count": count, "obs_seconds": obs_seconds,
                      "wanda_seconds": wanda_seconds, "peak_rss_gb": peak_rss_gb()})
    print(f"[{in_dim:5d}, {out_dim:5d}] x{count}: obs {obs_seconds:7.2f} s, "
          f"wanda {wanda_seconds:6.2f} s, peak RSS {peak_rss_gb():.2f} GB", flush=True)
  result = {
      "sparsity": args.sparsity, "block_size": args.block_size, "per_shape": per_shape,
      "parameters_pruned": sum(i * o * c for (i, o), c in shapes.items()),
      "obs_seconds_total": sum(r["obs_seconds"] * r["count"] for r in per_shape),
      "wanda_seconds_total": sum(r["wanda_seconds"] * r["count"] for r in per_shape),
      "peak_rss_gb_math": peak_rss_gb(),
  }
  print(f"pruning math for the whole model: obs {result['obs_seconds_total']:.0f} s, "
        f"wanda {result['wanda_seconds_total']:.0f} s", flush=True)

  if args.end_to_end_sentences:
    with tempfile.TemporaryDirectory() as tmp:
      options, weights = os.path.join(tmp, "options.json"), os.path.join(tmp, "weights.hdf5")
      write_random_elmo(options, weights)
      model, config = load_elmo(options, weights)
    sentences = data_lib.read_sentences(
        data_lib.open_corpus(args.ptb_valid, max_sentences=args.end_to_end_sentences))
    batches = [b["char_ids"].numpy() for b in data_lib.make_dataset(
        sentences, data_lib.Vocabulary(["<S>", "</S>", "<UNK>"]), batch_size=32,
        char_inputs=True, shuffle=False)]
    tokens = sum(int((b > 0).any(-1).sum()) for b in batches)
    targets = {n: args.sparsity for n in prunable_weights(model)}
    t = time.time()
    records = prune_model_layerwise(model, targets, batches, block_size=args.block_size,
                                    min_tokens_factor=0.0)
    total = time.time() - t
    stage_seconds = {r["stage"]: r["calibration_seconds"] for r in records.values()
                     if r["stage"] is not None}
    calibration_seconds = sum(stage_seconds.values())
    math_seconds = sum(r["seconds"] for r in records.values())
    scale = 16384 / tokens
    result["end_to_end"] = {
        "sentences": len(sentences), "tokens": tokens, "seconds": total,
        "calibration_seconds": calibration_seconds, "math_seconds": math_seconds,
        "calibration_seconds_at_16384_tokens": calibration_seconds * scale,
        "estimated_seconds_at_16384_tokens": calibration_seconds * scale + math_seconds,
        "peak_rss_gb": peak_rss_gb(),
        "records": records,
    }
    print(f"end to end on {tokens} tokens: {total:.0f} s (calibration {calibration_seconds:.0f} s,"
          f" math {math_seconds:.0f} s); at 16,384 tokens ~"
          f"{result['end_to_end']['estimated_seconds_at_16384_tokens']:.0f} s; peak RSS "
          f"{peak_rss_gb():.2f} GB", flush=True)
  result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "tensorflow": tf.__version__, "load_average": os.getloadavg()}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
