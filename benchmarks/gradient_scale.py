"""The knowledge-distillation gradient's scale per weight: what Adam's epsilon is set against.

  python -m benchmarks.gradient_scale --dense_dir=RUN [--sparsity=0.9] [--batches=12]
      [--train=../shared/data/ptb/ptb.train.txt] [--out=FILE.json]

A copy of RUN's dense model, its embedder's matrices magnitude-pruned to --sparsity (the
softmax kept dense, as in the benchmark; 0 = the dense model itself, where the dense
control starts), is distilled from RUN's model (KD, temperature 1, dropout off as the
retraining runs) on --batches shuffled batches of 32 sentences of --train. Per matrix it
prints the percentiles over the kept weights of each weight's gradient root mean square
over the batches, and the median of |mean| / rms (1: the same sign in every batch; near 0:
noise). Adam moves a weight by about its learning rate whenever that root mean square is
well above its epsilon (`--adam_epsilon`), and by lr x rms / epsilon when it is well below.
"""

from __future__ import annotations

import argparse
from typing import Dict, Iterable

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from benchmarks.elmo_ptb.rows import is_embedder_matrix
from benchmarks.paths import PTB_TRAIN
from prunelm_tf import data as data_lib
from prunelm_tf.compression.shared.targets import prunable_weights, resolve_targets
from prunelm_tf.compression.shared.threshold import prune_by_threshold
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.training.loop import kd_divergence, model_input
from prunelm_tf.training.run_folder import load_run
from prunelm_tf.utils import files

keras = tf.keras


def pruned_student(teacher: keras.Model, config, sparsity: float) -> keras.Model:
  """A copy of ``teacher`` with every matrix but the softmax magnitude-pruned to
  ``sparsity`` and its dropout off."""
  student = build_bilm(config)
  student.set_weights(teacher.get_weights())
  for layer in student.layers:
    if isinstance(layer, keras.layers.Dropout):
      layer.rate = 0.0
  names = list(prunable_weights(student))
  overrides = (("softmax", 0.0),) if not all(map(is_embedder_matrix, names)) else ()
  prune_by_threshold(student, resolve_targets(names, sparsity, overrides))
  return student


def gradient_scale(student: keras.Model, teacher: keras.Model,
                   batches: Iterable[Dict[str, tf.Tensor]]) -> Dict:
  """``{"kd_kl": mean KL, "matrices": {name: statistics of the kept weights' gradients}}``
  over ``batches``, for every prunable matrix of ``student`` but the softmax."""
  weights = {n: w for n, w in prunable_weights(student).items() if is_embedder_matrix(n)}
  names = list(weights)
  kept = {n: weights[n].numpy() != 0 for n in names}
  sums = {n: np.zeros(weights[n].shape, np.float64) for n in names}
  squares = {n: np.zeros(weights[n].shape, np.float64) for n in names}
  kls = []
  for batch in batches:
    inputs = model_input(student, batch)
    with tf.GradientTape() as tape:
      kl = kd_divergence(student(inputs, training=True), teacher(inputs, training=False),
                         batch["token_ids"], 1.0)
    for name, g in zip(names, tape.gradient(kl, [weights[n] for n in names])):
      g = tf.convert_to_tensor(g).numpy().astype(np.float64)  # embeddings: IndexedSlices
      sums[name] += g
      squares[name] += g * g
    kls.append(float(kl))
  if not kls:
    raise ValueError("gradient_scale needs at least one batch.")
  out = {}
  for name in names:
    mask = kept[name]
    mean = sums[name][mask] / len(kls)
    rms = np.sqrt(squares[name][mask] / len(kls))
    agreement = np.abs(mean) / np.where(rms > 0, rms, np.inf)
    out[name] = {"kept": int(mask.sum()), "rms_p10": float(np.percentile(rms, 10)),
                 "rms_p50": float(np.median(rms)), "rms_p90": float(np.percentile(rms, 90)),
                 "sign_agreement_p50": float(np.median(agreement))}
  return {"kd_kl": float(np.mean(kls)), "num_batches": len(kls), "matrices": out}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dense_dir", required=True, help="A pipelines.train run folder.")
  parser.add_argument("--sparsity", type=float, default=0.9)
  parser.add_argument("--batches", type=int, default=12)
  parser.add_argument("--train", default=PTB_TRAIN)
  parser.add_argument("--out", default="", help="Also write the figures here (JSON).")
  args = parser.parse_args()
  if not 0.0 <= args.sparsity < 1.0 or args.batches < 1:
    parser.error("--sparsity must be in [0, 1) and --batches >= 1.")
  teacher, config, vocab = load_run(args.dense_dir)
  student = pruned_student(teacher, config, args.sparsity)
  sentences = load_corpus(args.train, what="--train")
  dataset = data_lib.make_dataset(
      sentences, vocab, batch_size=32, char_inputs=config.token_encoder == "char",
      max_characters_per_token=config.char_cnn.max_characters_per_token, shuffle=True, seed=0)
  result = gradient_scale(student, teacher, dataset.take(args.batches))
  result.update(dense_dir=args.dense_dir, sparsity=args.sparsity)
  print(f"KD KL {result['kd_kl']:.4g} over {result['num_batches']} batches, "
        f"{args.sparsity:.0%} magnitude-pruned embedder")
  print(f"{'matrix':32s} {'kept':>8s} {'rms p10':>9s} {'p50':>9s} {'p90':>9s} {'sign agr.':>9s}")
  for name, s in result["matrices"].items():
    print(f"{name:32s} {s['kept']:8d} {s['rms_p10']:9.2e} {s['rms_p50']:9.2e} "
          f"{s['rms_p90']:9.2e} {s['sign_agreement_p50']:9.2f}")
  if args.out:
    files.write_json(args.out, result)


if __name__ == "__main__":
  main()
