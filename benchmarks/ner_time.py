"""Wall time of the CoNLL-2003 NER evaluation for one biLM of the benchmark shape (random weights).

  python -m benchmarks.ner_time --work_dir=DIR [--data_dir=shared/data/conll2003]
      [--max_train_sentences=0] [--epochs=N]

Builds a randomly initialised char-input biLM of the shape the PTB benchmark
trains (2 x 1024 cells, 128 projection, char CNN; ~5.1M parameters), then runs
``evaluate_ner`` on shared/data/conll2003 with the default ``NerConfig``:
token features of eng.train/testa/testb (written to DIR/features), tagger
training with dev early stopping, dev and test scoring. A second call then
times the cache hit. Only the seconds matter: the F1 of random weights says
nothing about any trained model. Target: features + tagger <= 10 minutes on
2 cores. Writes DIR/ner_time.json.
"""

import argparse
import dataclasses
import json
import os
import platform
import resource
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from prunelm_tf.elmo import ElmoEmbedder
from prunelm_tf.evaluation.feature_cache import fingerprint_weights
from prunelm_tf.evaluation.ner import NerConfig, evaluate_ner
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm
from benchmarks.paths import CONLL2003 as CONLL_DIR

BENCHMARK_BILM = BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=1024,
                            projection_dim=128, n_layers=2,
                            char_cnn=CharCNNConfig(filters=((1, 32), (2, 32), (3, 64), (4, 128),
                                                            (5, 128))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--work_dir", required=True,
                      help="Folder for the feature cache (~0.46 GB) and ner_time.json.")
  parser.add_argument("--data_dir", default=CONLL_DIR,
                      help="Folder with eng.train, eng.testa and eng.testb.")
  parser.add_argument("--max_train_sentences", type=int, default=0,
                      help="Train the tagger on this many eng.train sentences; 0 = all.")
  parser.add_argument("--epochs", type=int, default=NerConfig().epochs,
                      help="Maximum tagger epochs (early stopping may end sooner).")
  parser.add_argument("--skip_cache_hit", action="store_true",
                      help="Do not time the second, cached run.")
  args = parser.parse_args()
  os.makedirs(args.work_dir, exist_ok=True)
  config = NerConfig(max_train_sentences=args.max_train_sentences, epochs=args.epochs)
  tf.keras.utils.set_random_seed(0)
  t = time.time()
  model = build_bilm(BENCHMARK_BILM)
  embedder = ElmoEmbedder(model, BENCHMARK_BILM)
  fingerprint = fingerprint_weights(model)
  build_seconds = time.time() - t
  cache_dir = os.path.join(args.work_dir, "features")
  result = evaluate_ner(embedder, args.data_dir, cache_dir, fingerprint, config)
  out = {
      "parameters": model.count_params(),
      "build_seconds": build_seconds,
      "seconds": result["seconds"],
      "total_seconds": result["seconds"]["features"] + result["seconds"]["tagger"],
      "epochs_run": result["epochs_run"], "best_epoch": result["best_epoch"],
      "seconds_per_epoch": [h["seconds"] for h in result["history"]],
      "random_weights_dev_f1": result["dev_f1"], "random_weights_test_f1": result["test_f1"],
      "scalar_mix_weights": result["scalar_mix_weights"],
      "num_train": result["num_train"], "num_dev": result["num_dev"],
      "num_test": result["num_test"],
      "cache_bytes": {name: os.path.getsize(os.path.join(cache_dir, name))
                      for name in sorted(os.listdir(cache_dir))},
      "config": dataclasses.asdict(config),
      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
      "machine": {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
                  "python": platform.python_version(), "tensorflow": tf.__version__},
      "command": f"python -m benchmarks.ner_time --work_dir={args.work_dir} "
                 f"--max_train_sentences={args.max_train_sentences} --epochs={args.epochs}",
  }
  if not args.skip_cache_hit:
    t = time.time()
    cached = evaluate_ner(embedder, args.data_dir, cache_dir, fingerprint,
                          dataclasses.replace(config, epochs=1))
    out["cache_hit_feature_seconds"] = cached["seconds"]["features"]
    out["one_epoch_run_seconds"] = time.time() - t
  out["machine"]["load_average_1min_end"] = os.getloadavg()[0]
  with open(os.path.join(args.work_dir, "ner_time.json"), "w") as f:
    json.dump(out, f, indent=2)
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
