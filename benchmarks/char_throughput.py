"""Character-path throughput: the token encoder per distinct token vs per position, one process.

  python -m benchmarks.char_throughput [--model_dir=RUN] [--sentences=1000] [--steps=10]

Training tokens/s (forward + backward + Adam, sampled softmax 2048, batch 32 of PTB
train) and embedding tokens/s (the stateless embedder behind pipelines.embed, PTB test
sentences) for build_bilm(..., unique_tokens=True) vs False with the same weights, and the
word-input model of the same LSTM shape as the reference. Ratios are taken in one run.
"""

import argparse
import dataclasses
import json
import os
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.elmo.embedder import ElmoEmbedder
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.training.loop import LossSpec, Trainer
from prunelm_tf.training.run_folder import load_run
from benchmarks.paths import PTB


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model_dir", default="", help="A trained char model (ptb_elmo.flags); "
                      "default: random weights of that shape.")
  parser.add_argument("--sentences", type=int, default=1000)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  train = load_corpus(os.path.join(PTB, "ptb.train.txt"), 3000, what="ptb train")
  test = load_corpus(os.path.join(PTB, "ptb.test.txt"), args.sentences, what="ptb test")
  if args.model_dir:
    dense, config, vocab = load_run(args.model_dir)
  else:
    from prunelm_tf.models.config import BiLMConfig, CharCNNConfig  # pylint: disable=import-outside-toplevel
    vocab = data_lib.Vocabulary.build(train)
    config = BiLMConfig(vocab_size=len(vocab), token_encoder="char", lstm_dim=1024,
                        projection_dim=128, char_cnn=CharCNNConfig(
                            filters=((1, 32), (2, 32), (3, 64), (4, 128), (5, 128))))
    dense = build_bilm(config)
  batches = list(data_lib.make_dataset(train, vocab, batch_size=32, char_inputs=True,
                                       shuffle=True, seed=0).take(args.steps + 2))
  results = {}
  variants = [("char, per distinct token", config, True), ("char, every position", config, False),
              ("word, same LSTMs", dataclasses.replace(config, token_encoder="word"), True)]
  for name, cfg, unique in variants:
    model = build_bilm(cfg, unique_tokens=unique)
    if cfg.token_encoder == "char":
      model.set_weights(dense.get_weights())
    trainer = Trainer(model, tf.keras.optimizers.Adam(1e-4), LossSpec(num_sampled=2048))
    for b in batches[:2]:
      trainer.step(b)
    start, tokens = time.perf_counter(), 0
    for b in batches[2:]:
      trainer.step(b)["loss"].numpy()
      tokens += int(tf.math.count_nonzero(b["token_ids"]))
    result = {"train_tokens_per_second": tokens / (time.perf_counter() - start)}
    if cfg.token_encoder == "char":
      embedder = ElmoEmbedder(model, cfg)
      embedder.embed_sentences(test[:64], batch_size=64)  # trace
      start = time.perf_counter()
      embedder.embed_sentences(test, batch_size=64)
      result["embed_tokens_per_second"] = sum(len(s) for s in test) / (
          time.perf_counter() - start)
    results[name] = result
    print(name, {k: round(v) for k, v in result.items()}, flush=True)
  fast, slow = results["char, per distinct token"], results["char, every position"]
  results["ratios"] = {
      "train_unique_over_every_position": fast["train_tokens_per_second"] /
                                          slow["train_tokens_per_second"],
      "embed_unique_over_every_position": fast["embed_tokens_per_second"] /
                                          slow["embed_tokens_per_second"],
      "train_char_over_word": fast["train_tokens_per_second"] /
                              results["word, same LSTMs"]["train_tokens_per_second"]}
  print(json.dumps(results["ratios"], indent=2))
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
