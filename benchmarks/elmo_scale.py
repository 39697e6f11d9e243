"""Full-size ELMo ("Original": 2 x 4096/512, 93.6M parameters) with random weights, end to end.

  python -m benchmarks.elmo_scale --work_dir=DIR [--sentences=100] \
      [--method=obs --sparsity=0.5 [--calibration_sentences=800]] [--distill_steps=N]

Generates options.json + a random-weight HDF5 file in the real layout (the
released file is not downloadable here), then: load, prune (threshold to 90 % by
default; ``--method=obs``: SparseGPT calibrated through the model on the first
``--calibration_sentences`` of PTB valid, with the library's default token check
of 4 x the largest input dimension = 16,384 tokens), export SavedModel +
dynamic-range TFLite + ELMo HDF5, embed PTB sentences. Prints the wall seconds
per stage and the peak RSS of the process; writes DIR/scale.json.
Targets: threshold: whole run <= 5 minutes, peak RSS <= 6 GB on 2 cores;
obs at 50 % (issue #10): <= 10 minutes, <= 8 GB.

``--distill_steps=N`` then retrains the pruned model for N steps of representation
distillation (the softmax-less retraining of a released ELMo: MSE to the loaded dense
model's layers, fixed masks, Adam, batch ``--batch_size`` PTB train sentences) and records
the seconds of the first step (tracing) and of the others, steps per second, the peak RSS
and the hours one PTB train epoch (42,068 sentences) would take at that rate.
"""

import argparse
import json
import os
import platform
import resource
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import h5py
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf import data as data_lib
from prunelm_tf.compression import prunable_weights, prune_by_threshold, resolve_targets
from prunelm_tf.compression.shared.calibration import prune_model_layerwise
from prunelm_tf.compression.methods.retrain.pruning import strip, wrap_keeping_masks
from prunelm_tf.training.loop import LossSpec, Trainer
from prunelm_tf.data import open_corpus, read_sentences
from prunelm_tf.elmo import ElmoEmbedder, config_to_options, export_elmo, load_elmo, \
    options_to_config, weight_layout
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.export.sizes import path_bytes
from prunelm_tf.export.tflite import export_tflite
from benchmarks.paths import PTB_TEST, PTB_TRAIN, PTB_VALID

ORIGINAL_OPTIONS = {
    "lstm": {"dim": 4096, "projection_dim": 512, "n_layers": 2, "cell_clip": 3, "proj_clip": 3,
             "use_skip_connections": True},
    "char_cnn": {"embedding": {"dim": 16},
                 "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
                 "n_highway": 2, "n_characters": 262, "max_characters_per_token": 50,
                 "activation": "relu"},
}
METHODS = ("threshold", "obs")


def peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def write_random_elmo(options_path: str, weight_path: str, seed: int = 0) -> int:
  """Random float32 weights in the exact HDF5 layout; returns the parameter count."""
  config = options_to_config(ORIGINAL_OPTIONS)
  with open(options_path, "w") as f:
    json.dump(ORIGINAL_OPTIONS, f)
  rng = np.random.default_rng(seed)
  count = 0
  with h5py.File(weight_path, "w") as h5:
    for spec in weight_layout(config):
      fan_in = int(np.prod(spec.shape[:-1])) if len(spec.shape) > 1 else spec.shape[0]
      values = (rng.standard_normal(spec.shape, dtype=np.float32) /
                np.float32(np.sqrt(max(fan_in, 1))))
      assert values.dtype == np.float32  # the real files are float32 throughout
      h5.create_dataset(spec.dataset, data=values)
      count += values.size
  return count


# PTB train's sentences: one epoch of retraining at batch B is ceil(42,068 / B) steps.
PTB_TRAIN_SENTENCES = 42068


def distill_steps(model, options: str, weights: str, steps: int, batch_size: int):
  """``steps`` optimizer steps of distillation retraining of ``model`` (fixed masks), timed.

  The teacher is the dense model loaded again from the files. Returns (figures, the
  retrained model): seconds (first step, the rest), steps per second after the first, the
  process's peak RSS and the extrapolated hours of one PTB train epoch.
  """
  teacher, _ = load_elmo(options, weights)
  student = wrap_keeping_masks(model)
  sentences = read_sentences(open_corpus(PTB_TRAIN, max_sentences=steps * batch_size))
  batches = list(data_lib.make_dataset(
      sentences, data_lib.Vocabulary(["<S>", "</S>", "<UNK>"]), batch_size=batch_size,
      char_inputs=True, shuffle=False))[:steps]
  trainer = Trainer(student, tf.keras.optimizers.Adam(1e-3),
                    LossSpec(lm_weight=0.0, distill_weight=1.0, teacher=teacher), clip_norm=5.0)
  # tfmot's wrappers count their steps through this callback (as run_training calls it).
  update_step = tfmot.sparsity.keras.UpdatePruningStep()
  update_step.set_model(student)
  update_step.on_train_begin()
  times = []
  for k, batch in enumerate(batches):
    t = time.time()
    update_step.on_train_batch_begin(k)
    float(trainer.step(batch)["loss"])  # waits for the step
    times.append(time.time() - t)
  update_step.on_epoch_end(0)
  rest = times[1:]
  rate = len(rest) / sum(rest) if rest else None
  epoch_steps = -(-PTB_TRAIN_SENTENCES // batch_size)
  return {"steps": len(times), "batch_size": batch_size, "first_step_seconds": times[0],
          "other_steps_seconds": sum(rest), "steps_per_second": rate,
          "ptb_epoch_steps": epoch_steps,
          "ptb_epoch_hours": epoch_steps / rate / 3600 if rate else None,
          "peak_rss_gb": peak_rss_gb()}, strip(student)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--work_dir", required=True)
  parser.add_argument("--sentences", type=int, default=100)
  parser.add_argument("--sparsity", type=float, default=0.9)
  parser.add_argument("--method", default="threshold", choices=METHODS)
  parser.add_argument("--calibration_sentences", type=int, default=800,
                      help="--method=obs: PTB valid sentences the Gram matrices are built from.")
  parser.add_argument("--distill_steps", type=int, default=0,
                      help="Then this many steps of distillation retraining (0 = none).")
  parser.add_argument("--batch_size", type=int, default=32,
                      help="--distill_steps: sentences per step.")
  args = parser.parse_args()
  if args.distill_steps < 0 or args.batch_size < 1:
    parser.error("--distill_steps must be >= 0 and --batch_size >= 1.")
  if not 0.0 <= args.sparsity < 1.0:
    parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}.")
  if args.calibration_sentences < 1:
    parser.error(f"--calibration_sentences must be >= 1, got {args.calibration_sentences}.")
  os.makedirs(args.work_dir, exist_ok=True)
  seconds = {}
  t0 = time.time()
  options, weights = (os.path.join(args.work_dir, n) for n in ("options.json", "weights.hdf5"))
  n_params = write_random_elmo(options, weights)
  seconds["generate_random_hdf5"] = time.time() - t0

  start = time.time()
  t = time.time()
  model, config = load_elmo(options, weights)
  seconds["load"] = time.time() - t
  t = time.time()
  names = list(prunable_weights(model))
  targets = resolve_targets(names, args.sparsity, ())
  calibration = {}
  if args.method == "obs":
    sentences = read_sentences(open_corpus(PTB_VALID, max_sentences=args.calibration_sentences))
    batches = [b["char_ids"].numpy() for b in data_lib.make_dataset(
        sentences, data_lib.Vocabulary(["<S>", "</S>", "<UNK>"]), batch_size=32,
        char_inputs=True, shuffle=False)]
    seconds["read_calibration"] = time.time() - t
    t = time.time()
    records = prune_model_layerwise(model, targets, batches)  # refuses too few tokens
    calibration = {"sentences": len(sentences),
                   "tokens": sum(int((b > 0).any(-1).sum()) for b in batches),
                   # One calibration pass per stage, shared by that stage's matrices.
                   "calibration_seconds": sum({r["stage"]: r["calibration_seconds"]
                                               for r in records.values()
                                               if r["stage"] is not None}.values()),
                   "math_seconds": sum(r["seconds"] for r in records.values())}
  else:
    prune_by_threshold(model, targets)
  seconds[args.method] = time.time() - t
  pruned = {n: float(np.mean(w.numpy() == 0)) for n, w in prunable_weights(model).items()}
  t = time.time()
  sm = export_saved_model(model, os.path.join(args.work_dir, "saved_model"))
  seconds["export_saved_model"] = time.time() - t
  t = time.time()
  tfl_bytes = export_tflite(model, os.path.join(args.work_dir, "bilm_dynamic.tflite"), "dynamic")
  seconds["export_tflite_dynamic"] = time.time() - t
  t = time.time()
  export_elmo(model, config, os.path.join(args.work_dir, "pruned_options.json"),
              os.path.join(args.work_dir, "pruned_weights.hdf5"))
  seconds["export_hdf5"] = time.time() - t
  t = time.time()
  sentences = read_sentences(open_corpus(PTB_TEST, max_sentences=args.sentences))
  embedder = ElmoEmbedder(model, config)
  embeddings = embedder.embed_sentences(sentences, batch_size=32)
  seconds["embed"] = time.time() - t
  total = time.time() - start
  distill = (distill_steps(model, options, weights, args.distill_steps, args.batch_size)[0]
             if args.distill_steps else {})
  result = {
      "parameters": n_params, "method": args.method, "sparsity": args.sparsity,
      "measured_sparsity": {"min": min(pruned.values()), "max": max(pruned.values())},
      "calibration": calibration, "sentences": len(sentences),
      "tokens": sum(len(s) for s in sentences), "seconds": seconds,
      "total_seconds_excluding_generation": total, "peak_rss_gb": peak_rss_gb(),
      "sizes": {"hdf5_bytes": os.path.getsize(weights), "saved_model_bytes": path_bytes(sm),
                "tflite_dynamic_bytes": tfl_bytes},
      "embedding_shape_first": list(np.asarray(embeddings[0]).shape),
      "distillation": distill,
      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                  "tensorflow": tf.__version__},
      "command": f"python -m benchmarks.elmo_scale --work_dir={args.work_dir} "
                 f"--sentences={args.sentences} --method={args.method} "
                 f"--sparsity={args.sparsity}"
                 + (f" --calibration_sentences={args.calibration_sentences}"
                    if args.method == "obs" else "")
                 + (f" --distill_steps={args.distill_steps} --batch_size={args.batch_size}"
                    if args.distill_steps else ""),
  }
  with open(os.path.join(args.work_dir, "scale.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
