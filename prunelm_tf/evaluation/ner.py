"""CoNLL-2003 NER on frozen biLM token representations.

Used, like the SST-2 probe (``downstream``), to compare compressed variants
of one biLM: every variant gets the same tagger, trained with the same seed
on the same sentences, so F1 differences come from the representations.

Protocol (as ELMo is used for NER, with the biLM frozen):

1. Every layer of the biLM's representation of every token of eng.train,
   eng.testa (dev) and eng.testb (test), the tokens fed as given (a
   char-input biLM has no OOV), is computed once per (model, quantization
   mode) and cached on disk (``token_features``): float16, which halves the
   file (~0.46 GB for all three files at 3 layers x 256 dims) and is far
   finer than the differences between variants; float32 if a value would
   overflow float16. The cache fingerprint includes a model fingerprint
   supplied by the caller, so a cache made by another model is recomputed.
2. A tagger is trained on the frozen features: a learned ScalarMix over the
   layers (softmax weights and gamma, as ELMo) of the features standardized
   per (layer, dim) with training-token statistics, a one-layer BiLSTM, and a
   per-token softmax over the IOB1 tags; padding is masked in the BiLSTM and
   the loss. The epoch with the best dev F1 is kept (early stopping with
   ``patience``), and dev and test are scored with it by ``conll_f1``.

No CRF: it was not tried. A greedy per-token softmax is enough to rank
variants of one biLM against each other (a CRF would add ~1 F1 to all of
them, as in the ELMo paper, and a forward-backward pass per step to the
budget). Predicted sequences may be invalid IOB1 (``B-X`` after ``O``);
``conll_f1`` reads them as conlleval does.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tqdm

from prunelm_tf.elmo.embedder import Embedder
from prunelm_tf.evaluation import feature_cache
from prunelm_tf.evaluation.conll import TAGS, conll_f1, read_conll
from prunelm_tf.models.layers import ScalarMix
from prunelm_tf.utils import progress as progress_lib

keras = tf.keras

SPLIT_FILES = {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}
CACHE_FILES = {"train": "conll_train.npz", "dev": "conll_dev.npz", "test": "conll_test.npz"}
# The fixed seed of the training-sentence subset (``max_train_sentences``),
# independent of ``NerConfig.seed``: every seed and every model variant then
# sees the same sentences and shares one feature cache.
SUBSET_SEED = 0
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_TAG_IDS = {tag: i for i, tag in enumerate(TAGS)}


class TokenFeatures(NamedTuple):
  """The representations of every token of a list of sentences, concatenated.

  Sentence i is ``features[offsets[i]:offsets[i + 1]]``.
  """

  # float16 (or float32) [n_tokens, n_layers + 1, dim].
  features: np.ndarray
  # int64 [n_sentences + 1], offsets[0] = 0, offsets[-1] = n_tokens.
  offsets: np.ndarray

  @property
  def num_sentences(self) -> int:
    return int(self.offsets.shape[0] - 1)

  def sentence(self, i: int) -> np.ndarray:
    """The features of sentence i: [n_tokens_i, n_layers + 1, dim]."""
    return self.features[self.offsets[i]:self.offsets[i + 1]]


@dataclasses.dataclass(frozen=True)
class NerConfig:
  """The tagger trained on frozen token features, and its training (the same for every variant)."""

  # LSTM units per direction of the tagger's single BiLSTM layer.
  hidden_units: int = 128
  # Maximum passes over the training sentences.
  epochs: int = 10
  # Stop after this many epochs without a better dev F1; 0 = always run all epochs.
  patience: int = 3
  # Sentences per Adam step (batches hold sentences of similar length).
  batch_size: int = 32
  # Adam learning rate.
  learning_rate: float = 1e-3
  # Clip the global gradient norm to this value; 0 = no clipping.
  clip_norm: float = 5.0
  # Dropout rate on the mixed features and on the BiLSTM outputs (training only); 0 = none.
  dropout: float = 0.3
  # Standardize every (layer, dim) of the features with the mean and standard
  # deviation over the training tokens before the mix, so the mix weights
  # compare layers on one scale whatever the biLM's output magnitudes.
  standardize: bool = True
  # Seed of weight init, dropout and batch order.
  seed: int = 0
  # Train on this many sentences of eng.train: the first N of a permutation
  # with the fixed SUBSET_SEED (kept in file order); only those are embedded;
  # 0 = all 14,041.
  max_train_sentences: int = 0
  # Sentences per biLM batch when computing features (does not change the
  # features of a stateless embedder).
  embed_batch_size: int = 64

  def __post_init__(self):
    for name, minimum in (("hidden_units", 1), ("epochs", 1), ("patience", 0),
                          ("batch_size", 1), ("seed", 0), ("max_train_sentences", 0),
                          ("embed_batch_size", 1)):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"NerConfig.{name} must be an integer >= {minimum}, got {value!r}.")
    if not self.learning_rate > 0:
      raise ValueError(f"NerConfig.learning_rate must be > 0, got {self.learning_rate!r}.")
    if not self.clip_norm >= 0:
      raise ValueError(f"NerConfig.clip_norm must be >= 0 (0 = no clipping), got "
                       f"{self.clip_norm!r}.")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"NerConfig.dropout must be in [0, 1) (0 = no dropout), got "
                       f"{self.dropout!r}.")

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


# --- token features ----------------------------------------------------------------------------


def _cache_identity(embedder: Embedder, model_fingerprint: str, batch_size: int) -> str:
  # A stateful embedder's features depend on the batching as well as the model.
  if embedder.stateful:
    return f"{model_fingerprint}|stateful,batch_size={batch_size}"
  return model_fingerprint


def _load_token_cache(cache_path: str, sentences: Sequence[Sequence[str]],
                      identity: str) -> Optional[TokenFeatures]:
  lengths = np.array([len(s) for s in sentences], np.int64)

  def expected(arrays):
    features, offsets = arrays["features"], arrays["offsets"]
    if (features.ndim != 3 or offsets.shape != (len(sentences) + 1,)
        or not np.array_equal(np.diff(offsets), lengths) or offsets[0] != 0
        or offsets[-1] != features.shape[0]):
      raise ValueError(f"{offsets.shape[0] - 1} sentences stored, {len(sentences)} given, "
                       "or other sentence lengths")
    return feature_cache.feature_fingerprint(sentences, features.shape, identity)

  arrays = feature_cache.load_arrays(cache_path, expected, ("features", "offsets"))
  if arrays is None:
    return None
  logging.info("Loaded token features %s (%s) from %s.", arrays["features"].shape,
               arrays["features"].dtype, cache_path)
  return TokenFeatures(arrays["features"], arrays["offsets"].astype(np.int64))


def token_features(embedder: Embedder, sentences: Sequence[Sequence[str]], *,
                   cache_path: Optional[str | os.PathLike] = None, model_fingerprint: str = "",
                   batch_size: int = 64) -> TokenFeatures:
  """Every layer's representation of every token, computed once and cached.

  Args:
    embedder: the (frozen) biLM variant.
    sentences: non-empty token lists, fed to the biLM as given.
    cache_path: an ``.npz`` file; loaded if its fingerprint (sentences,
      shape, model) matches, else computed and written atomically. None = no
      cache.
    model_fingerprint: identifies the model and its runtime/quantization
      (e.g. ``feature_cache.fingerprint_weights(model)`` or
      ``fingerprint_file(tflite_path)``); required with ``cache_path``.
    batch_size: sentences per embedder batch.

  Returns:
    ``TokenFeatures``: float16 [n_tokens, n_layers + 1, dim] (float32 if a
    value exceeds the float16 range), and the sentence offsets.

  Raises:
    ValueError: no sentences, an empty sentence, a cache without a model
      fingerprint, embeddings of the wrong shape, or non-finite values.
  """
  if not sentences:
    raise ValueError("token_features needs at least one sentence, got none.")
  for i, s in enumerate(sentences):
    if len(s) == 0:
      raise ValueError(f"sentence {i} is empty; every sentence needs at least one token. "
                       "Remove empty sentences first.")
  identity = _cache_identity(embedder, model_fingerprint, batch_size)
  if cache_path is not None:
    cache_path = os.fspath(cache_path)
    if not model_fingerprint:
      raise ValueError(f"cache_path={cache_path} needs a model_fingerprint: the cache must "
                       "know which model made the features. Pass e.g. "
                       "feature_cache.fingerprint_weights(model) or fingerprint_file(tflite).")
    if os.path.exists(cache_path):
      cached = _load_token_cache(cache_path, sentences, identity)
      if cached is not None:
        return cached

  offsets = np.zeros(len(sentences) + 1, np.int64)
  offsets[1:] = np.cumsum([len(s) for s in sentences])
  features: Optional[np.ndarray] = None
  start = time.perf_counter()
  with tqdm.tqdm(total=len(sentences), unit="sentence", desc="token features",
                 disable=progress_lib.bar_disabled(len(sentences) <= 10 * batch_size)) as progress:
    for index, embedding in embedder.iter_embeddings(sentences, batch_size):
      embedding = np.asarray(embedding, np.float32)
      n = len(sentences[index])
      if embedding.ndim != 3 or embedding.shape[1] != n:
        raise ValueError(f"the embedder returned shape {embedding.shape} for sentence {index} "
                         f"of {n} tokens; expected [n_layers + 1, {n}, dim].")
      if features is None:
        features = np.empty((int(offsets[-1]), embedding.shape[0], embedding.shape[2]),
                            np.float16)
      elif (embedding.shape[0], embedding.shape[2]) != features.shape[1:]:
        raise ValueError(
            f"the embedder returned [layers, dim] = {[embedding.shape[0], embedding.shape[2]]} "
            f"for sentence {index} but {list(features.shape[1:])} before; every sentence "
            "must have the same layers and dim.")
      if not np.isfinite(embedding).all():
        raise ValueError(f"the embedder returned NaN or Inf for sentence {index}; check the "
                         "model variant before evaluating it.")
      if features.dtype == np.float16 and np.abs(embedding).max() > _FLOAT16_MAX:
        logging.warning("A representation exceeds the float16 range (%.3g); keeping token "
                        "features in float32 (twice the size).", np.abs(embedding).max())
        features = features.astype(np.float32)
      features[offsets[index]:offsets[index + 1]] = embedding.transpose(1, 0, 2)
      progress.update(1)
  logging.info("Embedded %d sentences (%d tokens) to %s %s in %.1f s.", len(sentences),
               offsets[-1], features.shape, features.dtype, time.perf_counter() - start)
  result = TokenFeatures(features, offsets)
  if cache_path is not None:
    feature_cache.save_arrays(
        cache_path, feature_cache.feature_fingerprint(sentences, features.shape, identity),
        {"features": features, "offsets": offsets})
    logging.info("Wrote token features to %s (%.0f MB).", cache_path,
                 os.path.getsize(cache_path) / 2 ** 20)
  return result


# --- tagger ------------------------------------------------------------------------------------


def _tag_ids(name: str, tags: Sequence[Sequence[str]],
             features: TokenFeatures) -> List[np.ndarray]:
  if len(tags) != features.num_sentences:
    raise ValueError(f"{name}: {len(tags)} tag sequences for {features.num_sentences} "
                     "sentences of features; pass the tags of the same sentences.")
  ids = []
  for i, sentence in enumerate(tags):
    if len(sentence) != features.offsets[i + 1] - features.offsets[i]:
      raise ValueError(f"{name}, sentence {i}: {len(sentence)} tags for "
                       f"{features.offsets[i + 1] - features.offsets[i]} tokens of features.")
    try:
      ids.append(np.array([_TAG_IDS[t] for t in sentence], np.int32))
    except KeyError as e:
      raise ValueError(f"{name}, sentence {i}: unknown tag {e.args[0]!r}; the tagger predicts "
                       f"{', '.join(TAGS)}.") from None
  return ids


def _standardization(features: TokenFeatures, standardize: bool
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """Mean and 1/std per (layer, dim) over the tokens: float32 [n_layers + 1, dim] each."""
  shape = features.features.shape[1:]
  if not standardize:
    return np.zeros(shape, np.float32), np.ones(shape, np.float32)
  total = np.zeros(shape, np.float64)
  total_sq = np.zeros(shape, np.float64)
  n = features.features.shape[0]
  for start in range(0, n, 16384):  # chunks: no float64 copy of the whole array
    chunk = features.features[start:start + 16384].astype(np.float64)
    total += chunk.sum(axis=0)
    total_sq += np.square(chunk).sum(axis=0)
  mean = total / n
  std = np.sqrt(np.maximum(total_sq / n - np.square(mean), 0.0))
  return mean.astype(np.float32), (1.0 / (std + 1e-6)).astype(np.float32)


def _make_batch(features: TokenFeatures, tag_ids: Optional[List[np.ndarray]],
                indices: np.ndarray, mean: np.ndarray, inv_std: np.ndarray):
  """Padded inputs: x float32 [b, n_layers + 1, t, dim], mask bool [b, t], y int32 [b, t]."""
  lengths = np.diff(features.offsets)[indices]
  time_steps = int(lengths.max())
  x = np.zeros((len(indices), features.features.shape[1], time_steps,
                features.features.shape[2]), np.float32)
  y = np.zeros((len(indices), time_steps), np.int32)
  for row, i in enumerate(indices):
    x[row, :, :lengths[row]] = ((features.sentence(i) - mean) * inv_std).transpose(1, 0, 2)
    if tag_ids is not None:
      y[row, :lengths[row]] = tag_ids[i]
  mask = np.arange(time_steps)[np.newaxis] < lengths[:, np.newaxis]
  return x, mask, y


def _batches(lengths: np.ndarray, batch_size: int,
             rng: Optional[np.random.Generator] = None) -> List[np.ndarray]:
  """Sentence indices in batches of similar length.

  With ``rng`` the order among sentences of equal length and the order of the
  batches are random (a new draw every epoch); without, both are fixed.
  """
  if rng is None:
    order = np.argsort(lengths, kind="stable")
  else:
    order = np.lexsort((rng.random(lengths.shape[0]), lengths))
  batches = [order[i:i + batch_size] for i in range(0, order.shape[0], batch_size)]
  if rng is not None:
    batches = [batches[i] for i in rng.permutation(len(batches))]
  return batches


def build_tagger(n_layers: int, dim: int, config: NerConfig) -> keras.Model:
  """The tagger: ScalarMix -> dropout -> BiLSTM -> dropout -> per-token logits.

  Inputs: features float32 [batch, n_layers, time, dim] and mask bool
  [batch, time] (True = token). Output: logits float32 [batch, time, len(TAGS)].
  """
  features = keras.Input((n_layers, None, dim), dtype=tf.float32, name="features")
  mask = keras.Input((None,), dtype=tf.bool, name="mask")
  x = ScalarMix(name="scalar_mix")(features)
  if config.dropout > 0:
    x = keras.layers.Dropout(config.dropout)(x)
  # RNN(LSTMCell) is the same LSTM as keras.layers.LSTM, on the generic RNN
  # loop. keras.layers.LSTM traces a cuDNN and a CPU implementation into every
  # tf.function: ~3x the tracing time per tagger (10 s vs 3.7 s measured on 2
  # busy cores) for no speed gain on CPU (0.07 s per batch of 32 either way).
  lstm = keras.layers.RNN(keras.layers.LSTMCell(config.hidden_units), return_sequences=True)
  x = keras.layers.Bidirectional(lstm, name="bilstm")(x, mask=mask)
  if config.dropout > 0:
    x = keras.layers.Dropout(config.dropout)(x)
  logits = keras.layers.Dense(len(TAGS), name="logits")(x)
  return keras.Model([features, mask], logits, name="ner_tagger")


def _predict(predict_step, features: TokenFeatures, mean, inv_std,
             batch_size: int) -> List[List[str]]:
  lengths = np.diff(features.offsets)
  tags: List[Optional[List[str]]] = [None] * features.num_sentences
  for indices in _batches(lengths, batch_size):
    x, mask, _ = _make_batch(features, None, indices, mean, inv_std)
    predicted = predict_step(x, mask).numpy()
    for row, i in enumerate(indices):
      tags[i] = [TAGS[t] for t in predicted[row, :lengths[i]]]
  return tags


def train_tagger(train_features: TokenFeatures, train_tags: Sequence[Sequence[str]],
                 dev_features: TokenFeatures, dev_tags: Sequence[Sequence[str]],
                 test_features: Optional[TokenFeatures] = None,
                 test_tags: Optional[Sequence[Sequence[str]]] = None,
                 config: NerConfig = NerConfig(),
                 save_frozen: Optional[str] = None) -> Dict[str, Any]:
  """Trains the tagger on frozen features, keeps the best dev epoch, scores dev and test.

  With ``save_frozen`` (an ``.npz`` path), the kept tagger and its input
  standardization are written there (``feature_cache.save_frozen_model``), for
  ``score_frozen_tagger`` to feed other models' features to it unchanged (drop-in).

  Deterministic for a fixed ``config.seed`` on CPU. ``max_train_sentences``
  is not applied here: pass the training sentences to use.

  Args:
    train_features, dev_features, test_features: ``token_features`` of each
      split (the same [n_layers + 1, dim]); test may be None.
    train_tags, dev_tags, test_tags: per sentence, its IOB1 tags (``TAGS``).
    config: the tagger and its training.

  Returns:
    ``dev`` and ``test`` (``conll_f1`` results of the kept epoch; test None
    without test data), ``dev_f1``, ``test_f1``, ``best_epoch`` (1-based),
    ``epochs_run``, ``history`` (per epoch: mean training loss per token,
    dev F1, seconds),
    ``scalar_mix_weights`` (softmax-normalised), ``gamma``, ``num_train``,
    ``num_dev``, ``num_test``, ``seconds`` (training and scoring).

  Raises:
    ValueError: tags that do not match the features, features of different
      [layers, dim], or non-finite features.
  """
  if (test_features is None) != (test_tags is None):
    raise ValueError("test_features and test_tags go together: pass both (to score test) or "
                     "neither.")
  splits = {"train": (train_features, train_tags), "dev": (dev_features, dev_tags)}
  if test_features is not None:
    splits["test"] = (test_features, test_tags)
  ids = {name: _tag_ids(f"{name}_tags", tags, feats) for name, (feats, tags) in splits.items()}
  shape = train_features.features.shape[1:]
  for name, (feats, _) in splits.items():
    if feats.features.shape[1:] != shape:
      raise ValueError(f"{name} features have [n_layers, dim] = {list(feats.features.shape[1:])}"
                       f" but train features {list(shape)}; embed every split with the same "
                       "model.")
  mean, inv_std = _standardization(train_features, config.standardize)
  if not (np.isfinite(mean).all() and np.isfinite(inv_std).all()):
    raise ValueError("the training features contain NaN or Inf; check the model variant.")

  start = time.perf_counter()
  tf.keras.utils.set_random_seed(config.seed)
  rng = np.random.default_rng(config.seed)
  model = build_tagger(shape[0], shape[1], config)
  optimizer = keras.optimizers.Adam(config.learning_rate,
                                    global_clipnorm=config.clip_norm or None)
  x_spec = tf.TensorSpec([None, shape[0], None, shape[1]], tf.float32)
  mask_spec = tf.TensorSpec([None, None], tf.bool)

  @tf.function(input_signature=[x_spec, mask_spec, tf.TensorSpec([None, None], tf.int32)])
  def train_step(x, mask, y):
    with tf.GradientTape() as tape:
      logits = model([x, mask], training=True)
      losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
      weights = tf.cast(mask, tf.float32)
      loss = tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  @tf.function(input_signature=[x_spec, mask_spec])
  def predict_step(x, mask):
    return tf.argmax(model([x, mask], training=False), axis=-1, output_type=tf.int32)

  train_lengths = np.diff(train_features.offsets)
  eval_batch = max(config.batch_size, 128)
  history, best_f1, best_epoch, best_weights, best_dev = [], -1.0, 0, None, None
  for epoch in range(1, config.epochs + 1):
    epoch_start = time.perf_counter()
    batches = _batches(train_lengths, config.batch_size, rng)
    total_loss, total_tokens = 0.0, 0
    for indices in tqdm.tqdm(batches, desc=f"tagger epoch {epoch}", unit="batch",
                             disable=progress_lib.bar_disabled(len(batches) < 100)):
      x, mask, y = _make_batch(train_features, ids["train"], indices, mean, inv_std)
      tokens = int(mask.sum())
      total_loss += float(train_step(x, mask, y)) * tokens
      total_tokens += tokens
    dev_scores = conll_f1(dev_tags, _predict(predict_step, dev_features, mean, inv_std,
                                             eval_batch))
    dev_f1 = dev_scores["overall"]["f1"]
    history.append({"epoch": epoch, "loss": total_loss / total_tokens,
                    "dev_f1": dev_f1, "seconds": time.perf_counter() - epoch_start})
    logging.info("tagger epoch %d/%d: loss %.4f, dev F1 %.4f, %.1f s", epoch, config.epochs,
                 history[-1]["loss"], dev_f1, history[-1]["seconds"])
    if dev_f1 > best_f1:
      best_f1, best_epoch, best_dev = dev_f1, epoch, dev_scores
      best_weights = model.get_weights()
    elif config.patience and epoch - best_epoch >= config.patience:
      logging.info("Dev F1 has not improved for %d epochs; stopping (best epoch %d).",
                   config.patience, best_epoch)
      break
  model.set_weights(best_weights)
  if save_frozen:
    feature_cache.save_frozen_model(save_frozen, best_weights, mean, inv_std)

  result: Dict[str, Any] = {"dev": best_dev, "test": None}
  if test_features is not None:
    result["test"] = conll_f1(test_tags, _predict(predict_step, test_features, mean, inv_std,
                                                  eval_batch))
  mix = model.get_layer("scalar_mix")
  result.update({
      "dev_f1": result["dev"]["overall"]["f1"],
      "test_f1": result["test"]["overall"]["f1"] if result["test"] else None,
      "best_epoch": best_epoch,
      "epochs_run": len(history),
      "history": history,
      "scalar_mix_weights": [float(w) for w in tf.nn.softmax(mix.scalar_parameters).numpy()],
      "gamma": float(mix.gamma.numpy()),
      "num_train": train_features.num_sentences,
      "num_dev": dev_features.num_sentences,
      "num_test": test_features.num_sentences if test_features is not None else 0,
      "seconds": time.perf_counter() - start,
  })
  logging.info("NER tagger: dev F1 %.4f, test F1 %s, best epoch %d, mix %s, %.1f s.",
               result["dev_f1"], result["test_f1"], best_epoch, result["scalar_mix_weights"],
               result["seconds"])
  return result


def score_frozen_tagger(path: str, features: TokenFeatures, tags: Sequence[Sequence[str]],
                        config: NerConfig = NerConfig()) -> Dict[str, Any]:
  """CoNLL F1 of a tagger saved by ``train_tagger(save_frozen=...)`` on other features.

  The features go through the saved standardization and ScalarMix unchanged: what a
  user's tagger, trained on the reference model, does with a compressed model's layers.

  Raises:
    ValueError: the features' [n_layers + 1, dim] is not the tagger's.
  """
  weights, mean, inv_std = feature_cache.load_frozen_model(path)
  if tuple(features.features.shape[1:]) != tuple(mean.shape):
    raise ValueError(f"features of [n_layers + 1, dim] = {list(features.features.shape[1:])} "
                     f"cannot feed the tagger of {path}, trained on {list(mean.shape)}.")
  model = build_tagger(mean.shape[0], mean.shape[1], config)
  model.set_weights(weights)
  x_spec = tf.TensorSpec([None, mean.shape[0], None, mean.shape[1]], tf.float32)

  @tf.function(input_signature=[x_spec, tf.TensorSpec([None, None], tf.bool)])
  def predict_step(x, mask):
    return tf.argmax(model([x, mask], training=False), axis=-1, output_type=tf.int32)

  return conll_f1(tags, _predict(predict_step, features, mean, inv_std,
                                 max(config.batch_size, 128)))


def split_features(embedder: Embedder, data_dir, cache_dir, model_fingerprint: str,
                   config: NerConfig, splits: Sequence[str]) -> Dict[str, Tuple]:
  """The token features and tags of some splits ("train", "dev", "test"), cached as usual.

  All three files are read and checked before any embedding; "train" is the
  ``max_train_sentences`` subset.
  """
  if cache_dir is not None and not model_fingerprint:
    raise ValueError(f"cache_dir={cache_dir} needs a model_fingerprint naming the model (and "
                     "quantization mode) whose features it holds, e.g. "
                     "feature_cache.fingerprint_weights(model) or fingerprint_file(tflite).")
  read = _read_splits(data_dir)
  subset = train_sentence_subset(len(read["train"]), config.max_train_sentences)
  logging.info("CoNLL-2003: %d of %d training sentences, %d dev, %d test.", subset.size,
               len(read["train"]), len(read["dev"]), len(read["test"]))
  read["train"] = [read["train"][i] for i in subset]
  out = {}
  for split in splits:
    cache_path = None if cache_dir is None else os.path.join(os.fspath(cache_dir),
                                                              CACHE_FILES[split])
    out[split] = (token_features(embedder, [t for t, _ in read[split]], cache_path=cache_path,
                                 model_fingerprint=model_fingerprint,
                                 batch_size=config.embed_batch_size),
                  [tags for _, tags in read[split]])
  return out


# --- evaluation --------------------------------------------------------------------------------


def train_sentence_subset(num_sentences: int, max_train_sentences: int) -> np.ndarray:
  """Indices of the training sentences used, in file order: int64 [min(N, num_sentences)].

  All of them, or the first ``max_train_sentences`` of a permutation seeded
  by ``SUBSET_SEED``.
  """
  if max_train_sentences == 0 or max_train_sentences >= num_sentences:
    return np.arange(num_sentences, dtype=np.int64)
  order = np.random.default_rng(SUBSET_SEED).permutation(num_sentences)
  return np.sort(order[:max_train_sentences]).astype(np.int64)


def _read_splits(data_dir: str | os.PathLike) -> Dict[str, List]:
  data_dir = os.fspath(data_dir)
  missing = [f for f in SPLIT_FILES.values() if not os.path.isfile(os.path.join(data_dir, f))]
  if missing:
    raise FileNotFoundError(f"data_dir {data_dir} has no {', '.join(missing)}; it must hold the "
                            "CoNLL-2003 English files eng.train, eng.testa and eng.testb.")
  return {split: read_conll(os.path.join(data_dir, name)) for split, name in SPLIT_FILES.items()}


def _split_features(embedder: Embedder, data_dir, cache_dir, model_fingerprint: str,
                    config: NerConfig) -> Tuple[Dict[str, Tuple[TokenFeatures, List]], float]:
  """Reads the three files (all before any embedding) and embeds them: split -> (features, tags)."""
  start = time.perf_counter()
  out = split_features(embedder, data_dir, cache_dir, model_fingerprint, config,
                       ("train", "dev", "test"))
  return out, time.perf_counter() - start


def evaluate_ner(embedder: Embedder, data_dir: str | os.PathLike,
                 cache_dir: Optional[str | os.PathLike], model_fingerprint: str,
                 config: NerConfig = NerConfig()) -> Dict[str, Any]:
  """CoNLL-2003 dev and test F1 of a tagger on the frozen ``embedder``.

  Args:
    embedder: the biLM variant (Keras or TFLite).
    data_dir: folder with eng.train, eng.testa (dev) and eng.testb (test).
    cache_dir: folder of the token-feature caches (``conll_{train,dev,test}.npz``,
      ~0.46 GB for a 3 x 256 biLM); None = no cache.
    model_fingerprint: identifies the model and quantization mode whose
      features are cached (see ``token_features``); "" only without a cache.
    config: the tagger and its training.

  Returns:
    The ``train_tagger`` result (dev/test overall and per-type P/R/F1, mix
    weights, epochs; dev F1 is that of the epoch selected on dev, so
    slightly optimistic, test F1 is not) with ``seconds`` = ``{"features": s, "tagger": s}``
    (features: computing or loading all three files), ``config`` and
    ``model_fingerprint``.

  Raises:
    FileNotFoundError: a CoNLL file is missing (before any work).
    ValueError: see ``read_conll``, ``token_features`` and ``train_tagger``;
      a cache_dir without a model fingerprint.
  """
  splits, feature_seconds = _split_features(embedder, data_dir, cache_dir, model_fingerprint,
                                            config)
  result = train_tagger(*splits["train"], *splits["dev"], *splits["test"], config=config)
  result["seconds"] = {"features": feature_seconds, "tagger": result["seconds"]}
  result["config"] = config.to_dict()
  result["model_fingerprint"] = model_fingerprint
  return result


def ner_f1_spread(embedder: Embedder, data_dir: str | os.PathLike,
                  cache_dir: Optional[str | os.PathLike], model_fingerprint: str,
                  config: NerConfig = NerConfig(),
                  seeds: Sequence[int] = (0, 1, 2)) -> Dict[str, Any]:
  """Dev and test F1 over several tagger seeds (features computed once), e.g. for the dense model.

  Args:
    embedder, data_dir, cache_dir, model_fingerprint, config: as
      ``evaluate_ner``; ``config.seed`` is replaced by each of ``seeds``.
    seeds: at least two distinct tagger seeds.

  Returns:
    ``dev_f1`` and ``test_f1``, each ``{"mean", "std", "values"}`` (std with
    ddof=1, over seeds), ``seeds``, ``runs`` (each seed's ``train_tagger``
    result), ``seconds`` = ``{"features": s, "tagger": s summed over seeds}``.

  Raises:
    ValueError: fewer than two distinct seeds; see ``evaluate_ner``.
  """
  seeds = [int(s) for s in seeds]
  if len(set(seeds)) < 2 or len(set(seeds)) != len(seeds):
    raise ValueError(f"ner_f1_spread needs at least two distinct seeds for a spread, got "
                     f"{seeds}; pass e.g. seeds=(0, 1, 2).")
  runs = [dataclasses.replace(config, seed=s) for s in seeds]  # validates every seed first
  splits, feature_seconds = _split_features(embedder, data_dir, cache_dir, model_fingerprint,
                                            config)
  results = [train_tagger(*splits["train"], *splits["dev"], *splits["test"], config=c)
             for c in runs]

  def spread(key):
    values = [r[key] for r in results]
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)),
            "values": values}

  out = {"dev_f1": spread("dev_f1"), "test_f1": spread("test_f1"), "seeds": seeds,
         "runs": results,
         "seconds": {"features": feature_seconds,
                     "tagger": float(sum(r["seconds"] for r in results))},
         "config": config.to_dict(), "model_fingerprint": model_fingerprint}
  logging.info("NER over seeds %s: dev F1 %.4f +- %.4f, test F1 %.4f +- %.4f.", seeds,
               out["dev_f1"]["mean"], out["dev_f1"]["std"], out["test_f1"]["mean"],
               out["test_f1"]["std"])
  return out
