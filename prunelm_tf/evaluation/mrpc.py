"""MRPC paraphrase detection on frozen biLM features (GLUE dev accuracy and F1).

The same frozen-feature protocol as SST-2 (``downstream``), for sentence
pairs: each sentence is the mean over its tokens of every biLM layer
(``pooled_features``, cached on disk), standardized per (layer, dim) with
training statistics; one learned ScalarMix, shared by both sentences, turns
them into vectors u and v; the probe is a logistic regression (``ProbeConfig``;
``hidden_units > 0`` adds a ReLU layer) on the pair features
``[u, v, |u - v|, u * v]`` (InferSent/SentEval), trained with a fixed seed on
train.tsv and scored on dev.tsv (GLUE's test labels are not public).
``ProbeConfig.max_train_sentences`` counts pairs here.

The strings are split by ``tokenize``: the GLUE copy is already tokenized
(PTB style), on which it changes almost nothing, but raw text gets the same
treatment as the biLM's training data had.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf.elmo.embedder import Embedder
from prunelm_tf.evaluation import feature_cache
from prunelm_tf.evaluation.downstream import (ProbeConfig, check_binary_labels, check_pooled,
                                              fit_probe, pooled_features, train_subset)
from prunelm_tf.models.layers import ScalarMix

keras = tf.keras

HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
TRAIN_CACHE = "mrpc_train.npz"
DEV_CACHE = "mrpc_dev.npz"
NUM_CLASSES = 2

# Alternatives in order of preference at each position; every non-space
# character ends up in exactly one token.
_TOKEN = re.compile(r"""
    (?:[^\W\d_]\.){2,}        # abbreviations with inner periods: U.S.  e.g.
  | \d+(?:[.,:/]\d+)+         # numbers with separators: 2.5  1,000  10:30  9/11
  | '\w+                      # clitics split off by PTB tokenization: 's  're  'll
  | \w+(?:['’-]\w+)*          # words, with inner apostrophes or hyphens: don't  n't  e-mail
  | ([^\w\s])\1*              # other characters: runs of one symbol (--  ...) or one alone
""", re.VERBOSE)


def tokenize(text: str) -> List[str]:
  """Splits raw text into tokens, deterministically.

  Whitespace separates tokens, and punctuation is split off words: ``"Hello,
  world!"`` -> ``["Hello", ",", "world", "!"]``. Kept whole: abbreviations
  with inner periods (``U.S.``), numbers with inner separators (``2.5``,
  ``1,000``), words with inner apostrophes or hyphens (``don't``,
  ``e-mail``), clitics that start with an apostrophe (``'s``) and runs of one
  punctuation character (``--``, ``...``). Already tokenized (PTB-style) text
  comes back unchanged except where a token holds punctuation these rules
  split (``$5`` -> ``$``, ``5``). No character is dropped or changed.

  Args:
    text: one sentence.

  Returns:
    Its tokens, in order (empty for blank text).
  """
  return [m.group(0) for m in _TOKEN.finditer(text)]


def read_mrpc(path: str | os.PathLike) -> Tuple[List[Tuple[List[str], List[str]]], np.ndarray]:
  """Reads a GLUE MRPC TSV: a header, then one sentence pair per line.

  The header is ``Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String``.
  Fields are split on tabs only (the strings contain quotes, so no CSV
  quoting); a UTF-8 byte-order mark before the header is allowed. Blank lines
  are skipped.

  Args:
    path: train.tsv or dev.tsv of GLUE MRPC.

  Returns:
    ``(pairs, labels)``: ``(tokens_1, tokens_2)`` per row (``tokenize`` of
    the two strings), and int64 [n] labels (1 = paraphrase).

  Raises:
    FileNotFoundError: ``path`` is not a file.
    ValueError: not UTF-8, a wrong header, a row without exactly 5 fields, a
      label other than 0/1 or a string without tokens (the message names the
      file and line), or no rows at all.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"MRPC file {path} not found; pass the GLUE MRPC train.tsv or "
                            "dev.tsv.")
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      lines = f.read().splitlines()
  except UnicodeDecodeError as e:
    raise ValueError(f"{path} is not UTF-8 text ({e}); pass the GLUE MRPC file as "
                     "distributed (UTF-8).") from None
  header = tuple(c.strip() for c in lines[0].split("\t")) if lines else ()
  if header != HEADER:
    raise ValueError(f"{path}, line 1: the header must be the tab-separated GLUE MRPC columns "
                     f"{list(HEADER)}, got {list(header)}. Pass GLUE's MRPC train.tsv or "
                     "dev.tsv.")
  pairs, labels = [], []
  for line_no, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    fields = line.split("\t")
    if len(fields) != len(HEADER):
      raise ValueError(f"{path}, line {line_no}: expected {len(HEADER)} tab-separated fields "
                       f"as in the header, got {len(fields)}. Fix or remove the row.")
    label = fields[0].strip()
    if label not in ("0", "1"):
      raise ValueError(f"{path}, line {line_no}: the Quality label must be 0 or 1, got "
                       f"{label!r}. Fix or remove the row.")
    tokens = (tokenize(fields[3]), tokenize(fields[4]))
    for column, sentence in zip(("#1 String", "#2 String"), tokens):
      if not sentence:
        raise ValueError(f"{path}, line {line_no}: {column} is empty; every pair needs two "
                         "sentences. Remove the row.")
    pairs.append(tokens)
    labels.append(int(label))
  if not pairs:
    raise ValueError(f"{path} has a header but no rows; MRPC evaluation needs at least one "
                     "pair in train.tsv and dev.tsv.")
  return pairs, np.asarray(labels, np.int64)


class PairFeatures(keras.layers.Layer):
  """``[u, v]``, float32 [batch, dim] each -> ``[u, v, |u - v|, u * v]`` [batch, 4 * dim]."""

  def call(self, inputs):
    u, v = inputs
    return tf.concat([u, v, tf.abs(u - v), u * v], axis=-1)


def build_pair_probe(n_layers: int, dim: int, config: ProbeConfig) -> keras.Model:
  """Both sentences' pooled features, float32 [batch, n_layers, dim] each -> logits [batch, 2]."""
  regularizer = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
  first = keras.Input((n_layers, dim), dtype=tf.float32, name="first")
  second = keras.Input((n_layers, dim), dtype=tf.float32, name="second")
  # One mix for both sentences; the reshapes let ScalarMix ([batch, layers,
  # time, dim]) mix a pooled vector as a one-step sequence.
  mix = ScalarMix(name="scalar_mix")
  to_sequence = keras.layers.Reshape((n_layers, 1, dim))
  to_vector = keras.layers.Reshape((dim,))
  u, v = (to_vector(mix(to_sequence(x))) for x in (first, second))
  x = PairFeatures(name="pair_features")([u, v])
  if config.dropout > 0:
    x = keras.layers.Dropout(config.dropout)(x)
  if config.hidden_units > 0:
    x = keras.layers.Dense(config.hidden_units, activation="relu", kernel_regularizer=regularizer,
                           name="hidden")(x)
    if config.dropout > 0:
      x = keras.layers.Dropout(config.dropout)(x)
  logits = keras.layers.Dense(NUM_CLASSES, kernel_regularizer=regularizer, name="logits")(x)
  return keras.Model([first, second], logits, name="mrpc_probe")


def binary_scores(labels: np.ndarray, predictions: np.ndarray) -> Dict[str, float]:
  """Accuracy, and precision, recall and F1 of the positive class (0/0 = 0.0).

  Args:
    labels, predictions: int [n], 0 or 1.
  """
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  true_positive = float(np.sum((predictions == 1) & (labels == 1)))
  predicted, actual = float(np.sum(predictions == 1)), float(np.sum(labels == 1))
  precision = true_positive / predicted if predicted else 0.0
  recall = true_positive / actual if actual else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"accuracy": float(np.mean(predictions == labels)) if labels.size else 0.0,
          "precision": precision, "recall": recall, "f1": f1}


def train_pair_probe(train_first: np.ndarray, train_second: np.ndarray,
                     train_labels: np.ndarray, dev_first: np.ndarray, dev_second: np.ndarray,
                     dev_labels: np.ndarray, config: ProbeConfig = ProbeConfig(),
                     save_frozen: Optional[str] = None) -> Dict[str, Any]:
  """Trains the ScalarMix + pair-feature probe; scores dev.

  With ``save_frozen`` (an ``.npz`` path) the trained probe and its input
  standardization are written there, for ``score_frozen_pair_probe`` (drop-in).

  Deterministic for a fixed seed on CPU.

  Args:
    train_first, train_second: float32 [n_train, n_layers, dim], the pooled
      features of the first and second sentence of each pair.
    train_labels: int [n_train], 1 = paraphrase.
    dev_first, dev_second: float32 [n_dev, n_layers, dim].
    dev_labels: int [n_dev].
    config: the probe; ``max_train_sentences`` selects pairs via ``train_subset``.

  Returns:
    ``accuracy``, ``f1``, ``precision``, ``recall`` (dev; F1 etc. of the
    paraphrase class), ``train_accuracy``, ``train_f1``, ``scalar_mix_weights``
    (softmax-normalised), ``gamma``, ``num_train``, ``num_dev``, ``seconds``.

  Raises:
    ValueError: features not [n, n_layers, dim] or non-finite, first and
      second of different shapes, [layers, dim] differing between train and
      dev, or wrong labels.
  """
  arrays = {}
  for name, value in (("train_first", train_first), ("train_second", train_second),
                      ("dev_first", dev_first), ("dev_second", dev_second)):
    arrays[name] = check_pooled(name, value)
  for split in ("train", "dev"):
    if arrays[f"{split}_first"].shape != arrays[f"{split}_second"].shape:
      raise ValueError(f"{split}_first and {split}_second must have the same shape (one row per "
                       f"pair); got {arrays[f'{split}_first'].shape} and "
                       f"{arrays[f'{split}_second'].shape}.")
  if arrays["train_first"].shape[1:] != arrays["dev_first"].shape[1:]:
    raise ValueError(f"train and dev features must have the same [n_layers, dim]; got "
                     f"{list(arrays['train_first'].shape[1:])} and "
                     f"{list(arrays['dev_first'].shape[1:])}. Embed both with the same model.")
  train_labels = check_binary_labels("train_labels", train_labels,
                                     arrays["train_first"].shape[0])
  dev_labels = check_binary_labels("dev_labels", dev_labels, arrays["dev_first"].shape[0])
  subset = train_subset(train_labels.shape[0], config)
  train_first, train_second = arrays["train_first"][subset], arrays["train_second"][subset]
  train_labels = train_labels[subset]
  dev_first, dev_second = arrays["dev_first"], arrays["dev_second"]
  mean = np.zeros(train_first.shape[1:], np.float32)
  inv_std = np.ones(train_first.shape[1:], np.float32)
  if config.standardize:  # one statistic for both sentences, so |u - v| compares like with like
    both = np.concatenate([train_first, train_second])
    mean, inv_std = both.mean(axis=0), 1.0 / (both.std(axis=0) + 1e-6)
    train_first, train_second = (train_first - mean) * inv_std, (train_second - mean) * inv_std
    dev_first, dev_second = (dev_first - mean) * inv_std, (dev_second - mean) * inv_std

  start = time.perf_counter()
  tf.keras.utils.set_random_seed(config.seed)
  _, n_layers, dim = train_first.shape
  model = build_pair_probe(n_layers, dim, config)
  fit_probe(model, [train_first, train_second], train_labels, config, "MRPC probe")
  if save_frozen:
    feature_cache.save_frozen_model(save_frozen, model.get_weights(), mean, inv_std)

  def predict(first, second):
    return np.argmax(model.predict([first, second], batch_size=1024, verbose=0), axis=-1)

  result: Dict[str, Any] = binary_scores(dev_labels, predict(dev_first, dev_second))
  train_scores = binary_scores(train_labels, predict(train_first, train_second))
  mix = model.get_layer("scalar_mix")
  result.update({
      "train_accuracy": train_scores["accuracy"],
      "train_f1": train_scores["f1"],
      "scalar_mix_weights": [float(w) for w in tf.nn.softmax(mix.scalar_parameters).numpy()],
      "gamma": float(mix.gamma.numpy()),
      "num_train": int(train_labels.shape[0]),
      "num_dev": int(dev_labels.shape[0]),
      "seconds": time.perf_counter() - start,
  })
  logging.info("MRPC probe: dev accuracy %.4f, F1 %.4f, train accuracy %.4f, mix %s, %.1f s.",
               result["accuracy"], result["f1"], result["train_accuracy"],
               result["scalar_mix_weights"], result["seconds"])
  return result


def score_frozen_pair_probe(path: str, first: np.ndarray, second: np.ndarray,
                            labels: np.ndarray, config: ProbeConfig = ProbeConfig()
                            ) -> Dict[str, float]:
  """Accuracy and F1 of a pair probe saved by ``train_pair_probe(save_frozen=...)``.

  The pooled features go through the saved standardization and mix unchanged (drop-in).

  Raises:
    ValueError: features of another [n_layers, dim] than the probe's.
  """
  weights, mean, inv_std = feature_cache.load_frozen_model(path)
  first, second = check_pooled("first", first), check_pooled("second", second)
  if first.shape[1:] != mean.shape:
    raise ValueError(f"features of [n_layers, dim] = {list(first.shape[1:])} cannot feed the "
                     f"probe of {path}, trained on {list(mean.shape)}.")
  model = build_pair_probe(mean.shape[0], mean.shape[1], config)
  model.set_weights(weights)
  logits = model.predict([(first - mean) * inv_std, (second - mean) * inv_std],
                         batch_size=1024, verbose=0)
  return binary_scores(np.asarray(labels), np.argmax(logits, axis=-1))


def pair_features(embedder: Embedder, pairs: Sequence[Tuple[List[str], List[str]]], *,
                  cache_path: Optional[str] = None, model_fingerprint: str = "",
                  batch_size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
  """Pooled features of the first and of the second sentence of each pair (one cache file)."""
  # One list, first sentences then second ones: one cache file per split.
  pooled = pooled_features(embedder, [p[0] for p in pairs] + [p[1] for p in pairs],
                           cache_path=cache_path, batch_size=batch_size,
                           model_fingerprint=model_fingerprint)
  return pooled[:len(pairs)], pooled[len(pairs):]


def evaluate_mrpc(embedder: Embedder, train_path: str | os.PathLike,
                  dev_path: str | os.PathLike, *, cache_dir: Optional[str | os.PathLike] = None,
                  model_fingerprint: str = "", probe: ProbeConfig = ProbeConfig(),
                  batch_size: int = 64, save_frozen: Optional[str] = None) -> Dict[str, Any]:
  """MRPC dev accuracy and F1 of a pair probe on the frozen ``embedder``.

  Only the training pairs the probe uses (``max_train_sentences``) are
  embedded. Both files are read and checked before any embedding.

  Args:
    embedder: the biLM variant.
    train_path: GLUE MRPC train.tsv.
    dev_path: GLUE MRPC dev.tsv.
    cache_dir: folder of this variant's pooled features (``mrpc_train.npz``,
      ``mrpc_dev.npz``: first sentences, then second sentences); None = no
      cache.
    model_fingerprint: identifies the model and quantization mode (see
      ``pooled_features``); "" = the cache does not identify the model, so
      use one cache_dir per variant.
    probe: the classifier and its training.
    batch_size: sentences per embedder batch.
    save_frozen: see ``train_pair_probe`` (the probe kept for drop-in scoring).

  Returns:
    The ``train_pair_probe`` result with ``seconds`` = ``{"features": s,
    "probe": s}``, plus ``majority_baseline``: dev accuracy and F1 of always
    predicting the majority class of the whole train file.

  Raises:
    FileNotFoundError, ValueError: see ``read_mrpc``, ``pooled_features`` and
      ``train_pair_probe``.
  """
  train_pairs, train_labels = read_mrpc(train_path)
  dev_pairs, dev_labels = read_mrpc(dev_path)
  majority = int(np.argmax(np.bincount(train_labels, minlength=NUM_CLASSES)))
  subset = train_subset(len(train_pairs), probe)
  logging.info("MRPC: %d of %d training pairs, %d dev pairs.", subset.size, len(train_pairs),
               len(dev_pairs))
  train_pairs = [train_pairs[i] for i in subset]

  def features(pairs: Sequence[Tuple[List[str], List[str]]], name: str):
    cache_path = None if cache_dir is None else os.path.join(os.fspath(cache_dir), name)
    return pair_features(embedder, pairs, cache_path=cache_path,
                         model_fingerprint=model_fingerprint, batch_size=batch_size)

  start = time.perf_counter()
  train_first, train_second = features(train_pairs, TRAIN_CACHE)
  dev_first, dev_second = features(dev_pairs, DEV_CACHE)
  feature_seconds = time.perf_counter() - start
  # The rows are already the subset, so train_pair_probe's own selection keeps them all.
  result = train_pair_probe(train_first, train_second, train_labels[subset], dev_first,
                            dev_second, dev_labels, probe, save_frozen=save_frozen)
  result["seconds"] = {"features": feature_seconds, "probe": result["seconds"]}
  baseline = binary_scores(dev_labels, np.full_like(dev_labels, majority))
  result["majority_baseline"] = {"accuracy": baseline["accuracy"], "f1": baseline["f1"]}
  return result
