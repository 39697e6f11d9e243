"""SST-2 sentence classification on frozen biLM representations.

Used to compare compressed variants of one biLM: every variant gets the same
probe (a learned ScalarMix over the biLM layers and a small classifier),
trained on the same sentences with the same seed, so accuracy differences
come from the embedder alone.

The probe sees each sentence as the mean over its tokens of every layer's
representation. Mean pooling commutes with a ScalarMix without layer norm
(``mean_t sum_j w_j h_jt = sum_j w_j mean_t h_jt``), so pooling each layer
first gives exactly the mean-pooled mix while the cache holds one vector per
(sentence, layer) instead of one per token, which makes it small and the probe
fast. (With ``do_layer_norm`` this no longer holds; the probe does not use it.)
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tqdm

from prunelm_tf.elmo.embedder import Embedder
from prunelm_tf.evaluation import feature_cache
from prunelm_tf.evaluation.feature_cache import feature_fingerprint
from prunelm_tf.models.layers import ScalarMix
from prunelm_tf.utils import progress as progress_lib

keras = tf.keras

TRAIN_CACHE = "sst2_train.npz"
DEV_CACHE = "sst2_dev.npz"
NUM_CLASSES = 2


def read_sentence_labels(path: str | os.PathLike) -> Tuple[List[List[str]], np.ndarray]:
  """Reads an SST-2 style TSV: a ``sentence``/``label`` header, then one row per line.

  Sentences are already tokenized; each is stripped and split on whitespace.

  Args:
    path: the TSV file (columns in any order; others are ignored).

  Returns:
    ``(sentences, labels)``: token lists, and int64 [n] labels (0 or 1).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: missing columns, a short row, a label other than 0/1, or an
      empty sentence (the message names the file and line).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"SST-2 file {path} not found; pass the path of train.tsv or "
                            "dev.tsv (tab-separated, header 'sentence<TAB>label').")
  with open(path, encoding="utf-8") as f:
    header = f.readline().rstrip("\r\n").split("\t")
    columns = [c.strip() for c in header]
    missing = [c for c in ("sentence", "label") if c not in columns]
    if missing:
      raise ValueError(
          f"{path}: the header must name the tab-separated columns 'sentence' and 'label'; "
          f"missing {missing}, got header {columns!r}. Use the GLUE SST-2 TSV format.")
    text_col, label_col = columns.index("sentence"), columns.index("label")
    sentences, labels = [], []
    for line_no, line in enumerate(f, start=2):
      line = line.rstrip("\r\n")
      if not line.strip():
        continue  # a trailing blank line is not a row
      fields = line.split("\t")
      if len(fields) <= max(text_col, label_col):
        raise ValueError(f"{path}, line {line_no}: expected {len(columns)} tab-separated "
                         f"fields as in the header, got {len(fields)}. Fix or remove the row.")
      label = fields[label_col].strip()
      if label not in ("0", "1"):
        raise ValueError(f"{path}, line {line_no}: the label must be 0 or 1, got {label!r}. "
                         "Fix or remove the row.")
      tokens = fields[text_col].split()
      if not tokens:
        raise ValueError(f"{path}, line {line_no}: the sentence is empty; every row needs at "
                         "least one token. Remove the row.")
      sentences.append(tokens)
      labels.append(int(label))
  return sentences, np.asarray(labels, np.int64)


def _load_cache(cache_path: str, sentences: Sequence[Sequence[str]],
                model_fingerprint: str) -> Optional[np.ndarray]:
  """The cached features if the file matches ``sentences`` (and the model), else None."""

  def expected(arrays):
    features = arrays["features"]
    if features.ndim != 3 or features.shape[0] != len(sentences):
      raise ValueError(f"{features.shape[0] if features.ndim else -1} sentences stored, "
                       f"{len(sentences)} given")
    return feature_fingerprint(sentences, features.shape, model_fingerprint)

  arrays = feature_cache.load_arrays(cache_path, expected, ("features",))
  if arrays is None:
    return None
  features = arrays["features"]
  logging.info("Loaded pooled features %s from %s.", features.shape, cache_path)
  return features.astype(np.float32, copy=False)


def pooled_features(embedder: Embedder, sentences: Sequence[Sequence[str]], *,
                    cache_path: Optional[str | os.PathLike] = None,
                    batch_size: int = 64, model_fingerprint: str = "") -> np.ndarray:
  """Per sentence and layer, the mean over tokens of the biLM representation.

  Args:
    embedder: the (frozen) biLM. A stateful one sees the sentences in input
      order, so its features depend on that order.
    sentences: non-empty token lists.
    cache_path: an ``.npz`` file. Loaded if it holds these sentences (same
      fingerprint: sha1 of the sentences, the shape and ``model_fingerprint``),
      else computed and written atomically.
    batch_size: sentences per embedder batch.
    model_fingerprint: identifies the model (``feature_cache.fingerprint_weights``
      or ``fingerprint_file``); a cache written for another model is then
      recomputed. "" = the cache does not identify the model: use one cache
      file (or cache_dir) per model variant.

  Returns:
    float32 [n, n_layers + 1, dim].

  Raises:
    ValueError: no sentences, an empty sentence, or embeddings whose shape is
      not [n_layers + 1, n_tokens, dim] with the same layers and dim throughout.
  """
  if not sentences:
    raise ValueError("pooled_features needs at least one sentence, got none.")
  for i, s in enumerate(sentences):
    if len(s) == 0:
      raise ValueError(f"sentence {i} is empty; mean pooling needs at least one token. "
                       "Remove empty sentences first.")
  if cache_path is not None:
    cache_path = os.fspath(cache_path)
    if os.path.exists(cache_path):
      cached = _load_cache(cache_path, sentences, model_fingerprint)
      if cached is not None:
        return cached

  features: Optional[np.ndarray] = None
  start = time.perf_counter()
  # iter_embeddings rather than embed_sentences per chunk: a stateless embedder
  # then sorts all sentences by length, which cuts padding; a stateful one keeps
  # input order. Pooling as the embeddings arrive keeps memory at [n, layers, dim].
  with tqdm.tqdm(total=len(sentences), unit="sentence", desc="pooling",
                 disable=progress_lib.bar_disabled(len(sentences) <= batch_size)) as progress:
    for index, embedding in embedder.iter_embeddings(sentences, batch_size):
      embedding = np.asarray(embedding)
      if embedding.ndim != 3 or embedding.shape[1] != len(sentences[index]):
        raise ValueError(
            f"the embedder returned shape {embedding.shape} for sentence {index} of "
            f"{len(sentences[index])} tokens; expected [n_layers + 1, "
            f"{len(sentences[index])}, dim].")
      if features is None:
        features = np.empty((len(sentences),) + (embedding.shape[0], embedding.shape[2]),
                            np.float32)
      elif (embedding.shape[0], embedding.shape[2]) != features.shape[1:]:
        raise ValueError(
            f"the embedder returned [layers, dim] = {[embedding.shape[0], embedding.shape[2]]} "
            f"for sentence {index} but {list(features.shape[1:])} before; every sentence "
            "must have the same layers and dim.")
      features[index] = embedding.mean(axis=1, dtype=np.float64)
      progress.update(1)
  logging.info("Pooled %d sentences to %s in %.1f s.", len(sentences), features.shape,
               time.perf_counter() - start)

  if cache_path is not None:
    feature_cache.save_arrays(
        cache_path, feature_fingerprint(sentences, features.shape, model_fingerprint),
        {"features": features})
    logging.info("Wrote pooled features to %s.", cache_path)
  return features


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """The classifier trained on pooled features (the same for every variant)."""

  # Width of one ReLU hidden layer after the mix; 0 = logistic regression on
  # the mixed vector.
  hidden_units: int = 0
  # Passes over the training sentences.
  epochs: int = 10
  # Sentences per Adam step.
  batch_size: int = 64
  # Adam learning rate (1e-2 suits standardized features: a 1e-3 logistic probe
  # stayed below the majority baseline after 10 epochs on 2,000 PTB-model features).
  learning_rate: float = 1e-2
  # Standardize every (layer, dimension) of the pooled features with the
  # training set's mean and standard deviation before the mix. Mean-pooled
  # biLM states vary little between sentences (std ~0.1 around means ~0.6),
  # which a linear probe cannot use without rescaling.
  standardize: bool = True
  # Dropout rate on the mixed vector and on the hidden layer (training only); 0 = none.
  dropout: float = 0.0
  # L2 penalty on the classifier kernels (not on the mix weights); 0 = none.
  l2: float = 0.0
  # Seed of weight init, shuffling, dropout and of the training subset.
  seed: int = 0
  # Train on this many sentences: the first N of a seeded shuffle of the
  # training set (kept in file order); 0 = all.
  max_train_sentences: int = 0

  def __post_init__(self):
    for name, minimum in (("hidden_units", 0), ("epochs", 1), ("batch_size", 1), ("seed", 0),
                          ("max_train_sentences", 0)):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"ProbeConfig.{name} must be an integer >= {minimum}, got {value!r}.")
    if not self.learning_rate > 0:
      raise ValueError(f"ProbeConfig.learning_rate must be > 0, got {self.learning_rate!r}.")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"ProbeConfig.dropout must be in [0, 1) (0 = no dropout), got "
                       f"{self.dropout!r}.")
    if not self.l2 >= 0.0:
      raise ValueError(f"ProbeConfig.l2 must be >= 0 (0 = no penalty), got {self.l2!r}.")

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def train_subset(num_sentences: int, config: ProbeConfig) -> np.ndarray:
  """Indices of the training sentences the probe uses, in file order.

  All of them, or with ``max_train_sentences = N < num_sentences`` the first N
  of a permutation seeded by ``config.seed``: int64 [min(N, num_sentences)].
  """
  if config.max_train_sentences == 0 or config.max_train_sentences >= num_sentences:
    return np.arange(num_sentences, dtype=np.int64)
  order = np.random.default_rng(config.seed).permutation(num_sentences)
  return np.sort(order[:config.max_train_sentences]).astype(np.int64)


def check_binary_labels(name: str, labels: np.ndarray, num_features: int) -> np.ndarray:
  """``labels`` as int64 [num_features], checked to be a vector of 0s and 1s.

  Raises:
    ValueError: wrong shape, or a value other than 0 or 1.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.shape[0] != num_features:
    raise ValueError(f"{name} must be a vector with one label per feature row "
                     f"({num_features}); got shape {labels.shape}.")
  if labels.size and not np.isin(labels, (0, 1)).all():
    bad = labels[~np.isin(labels, (0, 1))][:5]
    raise ValueError(f"{name} must contain only 0 and 1 (a binary task); got values such as "
                     f"{bad.tolist()}.")
  return labels.astype(np.int64)


def check_pooled(name: str, features: np.ndarray) -> np.ndarray:
  """``features`` as float32, checked to be [n >= 1, n_layers, dim] and finite.

  Raises:
    ValueError: wrong rank, no rows, or NaN/Inf values.
  """
  features = np.asarray(features, np.float32)
  if features.ndim != 3 or features.shape[0] == 0:
    raise ValueError(f"{name} must be float32 [n >= 1, n_layers, dim] (from pooled_features); "
                     f"got shape {features.shape}.")
  if not np.isfinite(features).all():
    raise ValueError(f"{name} contains NaN or Inf; the embedder produced non-finite "
                     "representations. Check the model variant before probing it.")
  return features


def _build_probe(n_layers: int, dim: int, config: ProbeConfig) -> keras.Model:
  """Pooled features float32 [batch, n_layers, dim] -> logits float32 [batch, 2]."""
  regularizer = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
  inputs = keras.Input((n_layers, dim), dtype=tf.float32, name="pooled")
  # ScalarMix mixes [batch, layers, time, dim]; pooled input is a one-step
  # sequence, so a reshape lets the project's layer be reused unchanged.
  x = keras.layers.Reshape((n_layers, 1, dim))(inputs)
  x = ScalarMix(name="scalar_mix")(x)
  x = keras.layers.Reshape((dim,))(x)
  if config.dropout > 0:
    x = keras.layers.Dropout(config.dropout)(x)
  if config.hidden_units > 0:
    x = keras.layers.Dense(config.hidden_units, activation="relu", kernel_regularizer=regularizer,
                           name="hidden")(x)
    if config.dropout > 0:
      x = keras.layers.Dropout(config.dropout)(x)
  logits = keras.layers.Dense(NUM_CLASSES, kernel_regularizer=regularizer, name="logits")(x)
  return keras.Model(inputs, logits, name="sst2_probe")


def matthews_corrcoef(labels: np.ndarray, predictions: np.ndarray) -> float:
  """The Matthews correlation of binary predictions, in [-1, 1]; 0 when it is undefined.

  Undefined (a zero in the denominator) when labels or predictions hold one class only,
  as scikit-learn and GLUE's scorer define it.
  """
  labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
  tp = float(np.sum((predictions == 1) & (labels == 1)))
  tn = float(np.sum((predictions == 0) & (labels == 0)))
  fp = float(np.sum((predictions == 1) & (labels == 0)))
  fn = float(np.sum((predictions == 0) & (labels == 1)))
  denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def _predict(model: keras.Model, features: np.ndarray) -> np.ndarray:
  """The probe's class per row: int64 [n]."""
  return np.argmax(model.predict(features, batch_size=1024, verbose=0), axis=-1)


def fit_probe(model: keras.Model, inputs, labels: np.ndarray, config: ProbeConfig,
              what: str) -> None:
  """Compiles and trains a probe (Adam, sparse cross-entropy), one log line per epoch.

  Shared by the SST-2 and MRPC probes; the caller sets the seed first.
  """
  model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  log_epoch = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logging.info(
      "%s epoch %d/%d: loss %.4f, train accuracy %.4f", what, epoch + 1, config.epochs,
      logs["loss"], logs["accuracy"]))
  model.fit(inputs, labels, batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
            verbose=0, callbacks=[log_epoch])


def train_probe(train_features: np.ndarray, train_labels: np.ndarray,
                dev_features: np.ndarray, dev_labels: np.ndarray,
                config: ProbeConfig = ProbeConfig(),
                save_frozen: Optional[str] = None) -> Dict[str, Any]:
  """Trains the ScalarMix + classifier probe on pooled features; scores dev.

  With ``save_frozen`` (an ``.npz`` path) the trained probe and its input
  standardization are written there, for ``score_frozen_probe`` (drop-in).

  Deterministic for a fixed seed on CPU: the same inputs give the same
  weights and accuracy.

  Args:
    train_features: float32 [n_train, n_layers, dim] (``pooled_features``).
    train_labels: int [n_train], 0 or 1.
    dev_features: float32 [n_dev, n_layers, dim].
    dev_labels: int [n_dev], 0 or 1.
    config: the probe; ``max_train_sentences`` selects rows via ``train_subset``.

  Returns:
    ``accuracy`` (dev, in [0, 1]), ``matthews_corrcoef`` (dev, in [-1, 1]; CoLA's
    figure), ``train_accuracy``, ``scalar_mix_weights``
    (softmax-normalised, one per layer), ``gamma``, ``num_train``, ``num_dev``,
    ``seconds`` (build, training and scoring).

  Raises:
    ValueError: features not rank 3, train and dev [layers, dim] differ,
      label count or values wrong, empty sets, or non-finite features.
  """
  train_features = check_pooled("train_features", train_features)
  dev_features = check_pooled("dev_features", dev_features)
  if train_features.shape[1:] != dev_features.shape[1:]:
    raise ValueError(f"train and dev features must have the same [n_layers, dim]; got "
                     f"{list(train_features.shape[1:])} and {list(dev_features.shape[1:])}. "
                     "Embed both with the same model.")
  train_labels = check_binary_labels("train_labels", train_labels, train_features.shape[0])
  dev_labels = check_binary_labels("dev_labels", dev_labels, dev_features.shape[0])
  subset = train_subset(train_features.shape[0], config)
  if subset.size < train_features.shape[0]:
    train_features, train_labels = train_features[subset], train_labels[subset]
  mean = np.zeros(train_features.shape[1:], np.float32)
  inv_std = np.ones(train_features.shape[1:], np.float32)
  if config.standardize:  # statistics of the training subset only
    mean = train_features.mean(axis=0)
    inv_std = 1.0 / (train_features.std(axis=0) + 1e-6)
    train_features = (train_features - mean) * inv_std
    dev_features = (dev_features - mean) * inv_std

  start = time.perf_counter()
  tf.keras.utils.set_random_seed(config.seed)
  _, n_layers, dim = train_features.shape
  model = _build_probe(n_layers, dim, config)
  # Shuffling draws from the global seed set above, so it repeats too.
  fit_probe(model, train_features, train_labels, config, "probe")
  if save_frozen:
    feature_cache.save_frozen_model(save_frozen, model.get_weights(), mean, inv_std)
  mix = model.get_layer("scalar_mix")
  dev_predictions = _predict(model, dev_features)
  result = {
      "accuracy": float(np.mean(dev_predictions == dev_labels)),
      "matthews_corrcoef": matthews_corrcoef(dev_labels, dev_predictions),
      "train_accuracy": float(np.mean(_predict(model, train_features) == train_labels)),
      "scalar_mix_weights": [float(w) for w in tf.nn.softmax(mix.scalar_parameters).numpy()],
      "gamma": float(mix.gamma.numpy()),
      "num_train": int(train_features.shape[0]),
      "num_dev": int(dev_features.shape[0]),
  }
  result["seconds"] = time.perf_counter() - start
  logging.info("SST-2 probe: dev accuracy %.4f, train accuracy %.4f, mix %s, %.1f s.",
               result["accuracy"], result["train_accuracy"], result["scalar_mix_weights"],
               result["seconds"])
  return result


def score_frozen_probe(path: str, features: np.ndarray, labels: np.ndarray,
                       config: ProbeConfig = ProbeConfig()) -> Dict[str, float]:
  """Accuracy and Matthews correlation of a probe saved by ``train_probe(save_frozen=...)``.

  ``features`` (pooled, float32 [n, n_layers, dim]) go through the saved
  standardization and mix unchanged (drop-in).

  Raises:
    ValueError: features of another [n_layers, dim] than the probe's.
  """
  weights, mean, inv_std = feature_cache.load_frozen_model(path)
  features = check_pooled("features", features)
  if features.shape[1:] != mean.shape:
    raise ValueError(f"features of [n_layers, dim] = {list(features.shape[1:])} cannot feed "
                     f"the probe of {path}, trained on {list(mean.shape)}.")
  model = _build_probe(mean.shape[0], mean.shape[1], config)
  model.set_weights(weights)
  predictions = _predict(model, (features - mean) * inv_std)
  labels = np.asarray(labels)
  return {"accuracy": float(np.mean(predictions == labels)),
          "matthews_corrcoef": matthews_corrcoef(labels, predictions)}


def evaluate_sst2(embedder: Embedder, train_path: str | os.PathLike,
                  dev_path: str | os.PathLike, *, cache_dir: Optional[str | os.PathLike] = None,
                  probe: ProbeConfig = ProbeConfig(), batch_size: int = 64,
                  model_fingerprint: str = "", save_frozen: Optional[str] = None
                  ) -> Dict[str, Any]:
  """SST-2 dev accuracy of a probe on the frozen ``embedder``.

  Only the training sentences the probe uses (``max_train_sentences``) are
  embedded.

  Args:
    embedder: the biLM variant.
    train_path: train.tsv (``sentence``/``label`` header).
    dev_path: dev.tsv.
    cache_dir: folder of this variant's pooled features (``sst2_train.npz``,
      ``sst2_dev.npz``); one folder per variant unless ``model_fingerprint``
      identifies the model. None = no cache.
    probe: the classifier and its training.
    batch_size: sentences per embedder batch.
    model_fingerprint: see ``pooled_features``; "" = the cache does not
      identify the model.
    save_frozen: see ``train_probe`` (the probe kept for drop-in scoring).

  Returns:
    The ``train_probe`` result plus ``majority_baseline``: dev accuracy of
    always predicting the majority class of the whole train file.

  Raises:
    FileNotFoundError, ValueError: see ``read_sentence_labels``,
      ``pooled_features`` and ``train_probe``.
  """
  train_sentences, train_labels = read_sentence_labels(train_path)
  dev_sentences, dev_labels = read_sentence_labels(dev_path)
  if not train_sentences or not dev_sentences:
    empty = train_path if not train_sentences else dev_path
    raise ValueError(f"{empty} has a header but no rows; SST-2 evaluation needs at least one "
                     "training and one dev sentence.")
  majority = int(np.argmax(np.bincount(train_labels, minlength=NUM_CLASSES)))
  subset = train_subset(len(train_sentences), probe)
  logging.info("SST-2: %d of %d training sentences, %d dev sentences.", subset.size,
               len(train_sentences), len(dev_sentences))

  def cache(name):
    return None if cache_dir is None else os.path.join(os.fspath(cache_dir), name)

  train_features = pooled_features(embedder, [train_sentences[i] for i in subset],
                                   cache_path=cache(TRAIN_CACHE), batch_size=batch_size,
                                   model_fingerprint=model_fingerprint)
  dev_features = pooled_features(embedder, dev_sentences, cache_path=cache(DEV_CACHE),
                                 batch_size=batch_size, model_fingerprint=model_fingerprint)
  # The rows are already the subset, so train_probe's own selection keeps them all.
  result = train_probe(train_features, train_labels[subset], dev_features, dev_labels, probe,
                       save_frozen=save_frozen)
  result["majority_baseline"] = float(np.mean(dev_labels == majority))
  return result
