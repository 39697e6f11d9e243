"""Training throughput of LSTMWithProjection vs keras.layers.LSTM (same cell size, same batch).

  python -m benchmarks.lstm_throughput [--units 512] [--projection 128] [--batch 64] [--time 30]

One process, one run: both layers train the same number of steps on the same
random batch (forward + backward pass + Adam update, inside tf.function), after
warm-up; tokens/s and the ratio are printed and written as JSON (--out).
"""

import argparse
import json
import platform
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from prunelm_tf.models import LSTMWithProjection

keras = tf.keras


def _time_training(layer_fn, x, mask, steps: int, warmup: int) -> float:
  layer, call = layer_fn()
  head = keras.layers.Dense(1)
  opt = keras.optimizers.Adam(1e-3)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      y = call(x, mask)
      loss = tf.reduce_mean(tf.square(head(y)))
    variables = layer.trainable_variables + head.trainable_variables
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  for _ in range(warmup):
    step()
  start = time.perf_counter()
  for _ in range(steps):
    step().numpy()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--units", type=int, default=512)
  parser.add_argument("--projection", type=int, default=128)
  parser.add_argument("--input_dim", type=int, default=None,
                      help="Input width; default = projection (as in a biLM stack).")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--time", type=int, default=30)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--out", default=None, help="Write the result as JSON here.")
  args = parser.parse_args()
  input_dim = args.input_dim or args.projection
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(args.batch, args.time, input_dim)).astype(np.float32))
  mask = tf.ones((args.batch, args.time), tf.float32)

  def ours():
    lstm = LSTMWithProjection(args.units, args.projection, cell_clip=3.0, proj_clip=3.0)
    return lstm, lambda x, m: lstm([x, m])

  def ours_full():  # projection = units: same output width as keras.layers.LSTM
    lstm = LSTMWithProjection(args.units, args.units)
    return lstm, lambda x, m: lstm([x, m])

  def reference():
    lstm = keras.layers.LSTM(args.units, return_sequences=True)
    return lstm, lambda x, m: lstm(x, mask=tf.cast(m, tf.bool))

  tokens = args.batch * args.time * args.steps
  results = {}
  for name, fn in (("keras.layers.LSTM", reference),
                   (f"LSTMWithProjection(proj={args.projection})", ours),
                   (f"LSTMWithProjection(proj={args.units})", ours_full)):
    seconds = _time_training(fn, x, mask, args.steps, args.warmup)
    results[name] = {"seconds": seconds, "tokens_per_second": tokens / seconds}
  ref = results["keras.layers.LSTM"]["tokens_per_second"]
  for name, r in results.items():
    r["ratio_vs_keras_lstm"] = r["tokens_per_second"] / ref
    print(f"{name:34s} {r['tokens_per_second']:10.0f} tokens/s  ratio {r['ratio_vs_keras_lstm']:.2f}")
  report = {"args": vars(args), "results": results,
            "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                        "tensorflow": tf.__version__}}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  main()
