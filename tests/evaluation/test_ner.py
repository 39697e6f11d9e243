"""CoNLL-2003 NER on frozen features: token-feature cache, tagger, evaluate_ner, seed spread."""

import dataclasses
import os
import zlib

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.elmo.embedder import ElmoEmbedder, Embedder
from prunelm_tf.evaluation import ner
from prunelm_tf.evaluation.feature_cache import fingerprint_weights
from prunelm_tf.evaluation.ner import (NerConfig, TokenFeatures, evaluate_ner, ner_f1_spread,
                                       token_features, train_sentence_subset, train_tagger)
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm

CONLL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                         "conll2003")
N_LAYERS, DIM = 2, 6
# Tiny and fast; the fake task is learnable in a few epochs.
FAST = NerConfig(hidden_units=8, epochs=12, patience=0, batch_size=4, learning_rate=0.05,
                 dropout=0.0)
ENTITIES = {"paris": "LOC", "rome": "LOC", "john": "PER", "mary": "PER", "acme": "ORG"}
FILLER = ["the", "in", "said", "met", "visited", "today", "and"]


class TokenEmbedder(Embedder):
  """A fixed pseudo-random vector per (token, layer): the token's identity, nothing more."""

  def __init__(self, scale: float = 1.0):
    self.calls = 0
    self.embedded = 0
    self.scale = scale

  def embed_batch(self, sentences):
    self.calls += 1
    self.embedded += len(sentences)
    return [self.scale * np.stack(
        [np.random.default_rng(zlib.crc32(t.encode())).normal(size=(N_LAYERS, DIM))
         for t in s], axis=1).astype(np.float32) for s in sentences]


def _synthetic_sentences(n, seed):
  """IOB1 sentences whose tags follow from the token alone.

  No two entities of one type are adjacent: that needs a B- tag, which a
  tagger cannot learn from the few examples a fast test affords (the scorer
  tests cover B- tags).
  """
  rng = np.random.default_rng(seed)
  sentences = []
  for _ in range(n):
    tokens = [str(t) for t in rng.choice(FILLER + list(ENTITIES), size=int(rng.integers(2, 7)))]
    for i in range(1, len(tokens)):
      if ENTITIES.get(tokens[i]) and ENTITIES.get(tokens[i]) == ENTITIES.get(tokens[i - 1]):
        tokens[i] = "and"
    tags = [f"I-{ENTITIES[t]}" if t in ENTITIES else "O" for t in tokens]
    sentences.append((tokens, tags))
  return sentences


def _write_conll(path, sentences):
  with open(path, "w", encoding="utf-8") as f:
    f.write("-DOCSTART- -X- O O\n\n")
    for tokens, tags in sentences:
      f.writelines(f"{t} NN I-NP {g}\n" for t, g in zip(tokens, tags))
      f.write("\n")


@pytest.fixture
def synthetic_dir(tmp_path):
  data_dir = tmp_path / "conll"
  data_dir.mkdir()
  for name, n, seed in (("eng.train", 40, 0), ("eng.testa", 12, 1), ("eng.testb", 12, 2)):
    _write_conll(data_dir / name, _synthetic_sentences(n, seed))
  return data_dir


def _features(sentences, embedder=None):
  return token_features(embedder or TokenEmbedder(), [s for s, _ in sentences])


# --- NerConfig ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field, bad, good", [
    ("hidden_units", 0, 1),
    ("epochs", 0, 1),
    ("patience", -1, 0),
    ("batch_size", 0, 1),
    ("learning_rate", 0.0, 1e-6),
    ("clip_norm", -1.0, 0.0),
    ("dropout", 1.0, 0.0),
    ("dropout", -0.1, 0.99),
    ("seed", -1, 0),
    ("max_train_sentences", -1, 0),
    ("embed_batch_size", 0, 1),
    ("epochs", 2.5, 2),
    ("hidden_units", True, 3),
])
def test_ner_config_validation(field, bad, good):
  with pytest.raises(ValueError, match=f"NerConfig.{field}"):
    NerConfig(**{field: bad})
  assert getattr(NerConfig(**{field: good}), field) == good


def test_train_sentence_subset_is_fixed_and_in_file_order():
  subset = train_sentence_subset(100, 10)
  assert subset.shape == (10,) and np.all(np.diff(subset) > 0)
  np.testing.assert_array_equal(subset, train_sentence_subset(100, 10))
  np.testing.assert_array_equal(train_sentence_subset(5, 10), np.arange(5))
  np.testing.assert_array_equal(train_sentence_subset(5, 0), np.arange(5))


# --- token_features ----------------------------------------------------------------------------


def test_token_features_concatenate_every_layer_in_float16():
  sentences = [["a", "b", "c"], ["d"], ["e", "f"]]
  got = token_features(TokenEmbedder(), sentences, batch_size=2)
  assert got.features.dtype == np.float16 and got.features.shape == (6, N_LAYERS, DIM)
  np.testing.assert_array_equal(got.offsets, [0, 3, 4, 6])
  for i, reference in enumerate(TokenEmbedder().embed_sentences(sentences)):
    np.testing.assert_allclose(got.sentence(i).astype(np.float32),
                               reference.transpose(1, 0, 2), rtol=1e-3, atol=1e-3)


def test_token_features_fall_back_to_float32_beyond_float16(caplog):
  with caplog.at_level("WARNING"):
    got = token_features(TokenEmbedder(scale=1e6), [["a", "b"], ["c"]], batch_size=1)
  assert got.features.dtype == np.float32 and np.isfinite(got.features).all()
  assert "float16 range" in caplog.text
  reference = TokenEmbedder(scale=1e6).embed_sentences([["a", "b"], ["c"]])
  np.testing.assert_array_equal(got.sentence(0), reference[0].transpose(1, 0, 2))


def test_token_cache_hit_and_invalidation_by_model_fingerprint(tmp_path):
  sentences = [["a", "b"], ["c"]]
  cache = tmp_path / "sub" / "conll_dev.npz"
  first = token_features(TokenEmbedder(), sentences, cache_path=cache, model_fingerprint="m1")
  assert os.listdir(tmp_path / "sub") == ["conll_dev.npz"]  # no temp file left
  same = TokenEmbedder()
  second = token_features(same, sentences, cache_path=cache, model_fingerprint="m1")
  assert same.calls == 0
  np.testing.assert_array_equal(first.features, second.features)
  np.testing.assert_array_equal(first.offsets, second.offsets)
  other_model = TokenEmbedder(scale=2.0)
  third = token_features(other_model, sentences, cache_path=cache, model_fingerprint="m2")
  assert other_model.calls > 0  # another model: recomputed, not the stale features
  np.testing.assert_allclose(third.features.astype(np.float32),
                             2 * first.features.astype(np.float32), rtol=1e-3)
  again = TokenEmbedder()
  token_features(again, [["a", "b"], ["d"]], cache_path=cache, model_fingerprint="m2")
  assert again.calls > 0  # other sentences: recomputed too


def test_stateful_embedder_cache_depends_on_batch_size(tmp_path):
  class Stateful(TokenEmbedder):
    stateful = True

  cache = tmp_path / "c.npz"
  token_features(Stateful(), [["a"], ["b"]], cache_path=cache, model_fingerprint="m",
                 batch_size=1)
  same = Stateful()
  token_features(same, [["a"], ["b"]], cache_path=cache, model_fingerprint="m", batch_size=1)
  assert same.calls == 0
  other = Stateful()
  token_features(other, [["a"], ["b"]], cache_path=cache, model_fingerprint="m", batch_size=2)
  assert other.calls == 1


def test_token_features_reject_bad_input(tmp_path):
  with pytest.raises(ValueError, match="at least one sentence"):
    token_features(TokenEmbedder(), [])
  with pytest.raises(ValueError, match="sentence 1 is empty"):
    token_features(TokenEmbedder(), [["a"], []])
  with pytest.raises(ValueError, match="needs a model_fingerprint"):
    token_features(TokenEmbedder(), [["a"]], cache_path=tmp_path / "c.npz")

  class NaNEmbedder(TokenEmbedder):
    def embed_batch(self, sentences):
      return [np.full_like(e, np.nan) for e in super().embed_batch(sentences)]

  with pytest.raises(ValueError, match="NaN or Inf for sentence 0"):
    token_features(NaNEmbedder(), [["a"]])


# --- train_tagger ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def separable():
  """Token features and tags of the synthetic train, dev and test sentences."""
  out = []
  for n, seed in ((40, 0), (12, 1), (12, 2)):
    sentences = _synthetic_sentences(n, seed)
    out += [_features(sentences), [tags for _, tags in sentences]]
  return out


def test_tagger_learns_the_token_identity_task_and_stops_early(separable):
  config = dataclasses.replace(FAST, epochs=30, patience=3)
  result = train_tagger(*separable, config=config)
  assert result["dev_f1"] >= 0.9 and result["test_f1"] >= 0.9
  assert result["dev"]["overall"]["f1"] == result["dev_f1"]
  assert set(result["test"]["per_type"]) <= {"PER", "LOC", "ORG"}
  assert len(result["scalar_mix_weights"]) == N_LAYERS
  assert abs(sum(result["scalar_mix_weights"]) - 1.0) < 1e-5
  assert result["dev_f1"] == max(h["dev_f1"] for h in result["history"])
  assert result["dev_f1"] > result["history"][0]["dev_f1"]
  # Dev F1 saturates long before 30 epochs; training stops `patience` epochs
  # after the best one.
  assert result["epochs_run"] == result["best_epoch"] + config.patience < config.epochs
  assert (result["num_train"], result["num_dev"], result["num_test"]) == (40, 12, 12)


def test_tagger_is_deterministic_for_a_seed_and_test_is_optional(separable):
  config = dataclasses.replace(FAST, epochs=2, dropout=0.3, seed=5)
  first = train_tagger(*separable[:4], config=config)
  second = train_tagger(*separable[:4], config=config)
  for key in ("dev", "scalar_mix_weights", "gamma", "best_epoch"):
    assert first[key] == second[key], key
  assert [h["loss"] for h in first["history"]] == [h["loss"] for h in second["history"]]
  assert first["test"] is None and first["test_f1"] is None and first["num_test"] == 0


def test_tagger_rejects_mismatched_tags(separable):
  train_x, train_y, dev_x, dev_y = separable[:4]
  with pytest.raises(ValueError, match="train_tags: 39 tag sequences for 40 sentences"):
    train_tagger(train_x, train_y[:-1], dev_x, dev_y, config=FAST)
  with pytest.raises(ValueError, match="dev_tags, sentence 0: 1 tags for"):
    train_tagger(train_x, train_y, dev_x, [["O"]] + dev_y[1:], config=FAST)
  bad_tag = [list(t) for t in dev_y]
  bad_tag[0][0] = "I-DATE"
  with pytest.raises(ValueError, match="unknown tag 'I-DATE'"):
    train_tagger(train_x, train_y, dev_x, bad_tag, config=FAST)
  narrow = TokenFeatures(dev_x.features[:, :1], dev_x.offsets)
  with pytest.raises(ValueError, match="dev features have"):
    train_tagger(train_x, train_y, narrow, dev_y, config=FAST)
  with pytest.raises(ValueError, match="go together"):
    train_tagger(train_x, train_y, dev_x, dev_y, dev_x, None, config=FAST)


# --- evaluate_ner / ner_f1_spread --------------------------------------------------------------


def test_evaluate_ner_caches_every_split(synthetic_dir, tmp_path):
  cache_dir = tmp_path / "features"
  embedder = TokenEmbedder()
  config = dataclasses.replace(FAST, epochs=3)
  result = evaluate_ner(embedder, synthetic_dir, cache_dir, "fake-model", config)
  assert 0.0 <= result["dev_f1"] <= 1.0 and 0.0 <= result["test_f1"] <= 1.0
  assert result["epochs_run"] == 3 and result["num_train"] == 40
  assert sorted(os.listdir(cache_dir)) == sorted(ner.CACHE_FILES.values())
  assert embedder.embedded == 40 + 12 + 12
  assert set(result["seconds"]) == {"features", "tagger"}
  assert result["config"] == config.to_dict() and result["model_fingerprint"] == "fake-model"
  # The files are the token_features caches of the three splits.
  for split, n, seed in (("train", 40, 0), ("dev", 12, 1), ("test", 12, 2)):
    again = TokenEmbedder()
    token_features(again, [s for s, _ in _synthetic_sentences(n, seed)],
                   cache_path=cache_dir / ner.CACHE_FILES[split], model_fingerprint="fake-model")
    assert again.calls == 0, split


def test_evaluate_ner_checks_inputs_before_any_work(synthetic_dir, tmp_path):
  embedder = TokenEmbedder()
  with pytest.raises(ValueError, match="needs a model_fingerprint"):
    evaluate_ner(embedder, synthetic_dir, tmp_path / "cache", "", FAST)
  os.remove(synthetic_dir / "eng.testb")
  with pytest.raises(FileNotFoundError, match="no eng.testb"):
    evaluate_ner(embedder, synthetic_dir, None, "", FAST)
  assert embedder.calls == 0


def test_ner_f1_spread_over_seeds_embeds_the_train_subset_once(synthetic_dir):
  embedder = TokenEmbedder()
  config = dataclasses.replace(FAST, epochs=2, max_train_sentences=30)
  spread = ner_f1_spread(embedder, synthetic_dir, None, "", config, seeds=(0, 1))
  assert spread["seeds"] == [0, 1] and len(spread["runs"]) == 2
  assert embedder.embedded == 30 + 12 + 12  # the subset only, once for all seeds
  assert all(run["num_train"] == 30 for run in spread["runs"])
  for key in ("dev_f1", "test_f1"):
    values = spread[key]["values"]
    assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
    assert spread[key]["mean"] == pytest.approx(np.mean(values))
    assert spread[key]["std"] == pytest.approx(np.std(values, ddof=1))
  with pytest.raises(ValueError, match="at least two distinct seeds"):
    ner_f1_spread(embedder, synthetic_dir, None, "", config, seeds=(1, 1))
  with pytest.raises(ValueError, match="at least two distinct seeds"):
    ner_f1_spread(embedder, synthetic_dir, None, "", config, seeds=(1,))


# --- a tiny char-input biLM on the first CoNLL sentences ---------------------------------------


def _head_of_conll(src, dst, num_sentences):
  """Copies the first ``num_sentences`` sentences (with their -DOCSTART- lines)."""
  seen, lines = 0, []
  with open(src, encoding="utf-8") as f:
    for line in f:
      if not line.strip() and lines and lines[-1].strip() and \
          not lines[-1].startswith("-DOCSTART-"):
        seen += 1
        if seen == num_sentences:
          break
      lines.append(line)
  dst.write_text("".join(lines) + "\n", encoding="utf-8")


def test_evaluate_ner_with_a_tiny_char_bilm_on_conll(tmp_path):
  if not os.path.isdir(CONLL_DIR):
    pytest.skip(f"CoNLL-2003 not found at {CONLL_DIR}")
  data_dir = tmp_path / "conll"
  data_dir.mkdir()
  for name in ner.SPLIT_FILES.values():
    _head_of_conll(os.path.join(CONLL_DIR, name), data_dir / name, 20)
  tf.keras.utils.set_random_seed(0)
  config = BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=8, projection_dim=4,
                      n_layers=1, dropout=0.0,
                      char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)),
                                             n_highway=1))
  model = build_bilm(config)
  embedder = ElmoEmbedder(model, config)
  ner_config = NerConfig(hidden_units=8, epochs=2, batch_size=8)
  result = evaluate_ner(embedder, data_dir, tmp_path / "cache", fingerprint_weights(model),
                        ner_config)
  assert (result["num_train"], result["num_dev"], result["num_test"]) == (20, 20, 20)
  for split in ("dev", "test"):
    overall = result[split]["overall"]
    assert set(overall) == {"precision", "recall", "f1"}
    assert all(0.0 <= v <= 1.0 for v in overall.values())
    for scores in result[split]["per_type"].values():
      assert set(scores) == {"precision", "recall", "f1", "support"}
  assert len(result["scalar_mix_weights"]) == 2  # token layer + 1 LSTM layer
  features = np.load(tmp_path / "cache" / ner.CACHE_FILES["dev"])["features"]
  assert features.dtype == np.float16 and features.shape[1:] == (2, 8)
