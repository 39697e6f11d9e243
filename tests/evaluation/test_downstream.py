"""SST-2 probe: TSV reading, pooled-feature cache, probe config, training, evaluation."""

import dataclasses
import os
import zlib

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.elmo.embedder import ElmoEmbedder, Embedder
from prunelm_tf.evaluation import downstream
from prunelm_tf.evaluation.downstream import (ProbeConfig, evaluate_sst2, pooled_features,
                                              read_sentence_labels, train_probe, train_subset)
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm
from tests.tolerance import assert_float32_close

SST2_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "sst2")
N_LAYERS, DIM = 3, 4
# Fast settings for the separable fake task.
FAST = ProbeConfig(epochs=20, batch_size=8, learning_rate=0.05)


class FakeEmbedder(Embedder):
  """Deterministic representations in which layer 1 says whether "good" occurs.

  Every token gets a fixed pseudo-random vector per layer; layer 1 also has
  +2 (sentence contains "good") or -2 on dimension 0 at every token.
  """

  def __init__(self):
    self.calls = 0
    self.embedded = 0

  def embed_batch(self, sentences):
    self.calls += 1
    self.embedded += len(sentences)
    out = []
    for s in sentences:
      rows = np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(
          size=(N_LAYERS, DIM)) for t in s], axis=1).astype(np.float32)
      rows[1, :, 0] += 2.0 if "good" in s else -2.0
      out.append(rows)
    return out


def _synthetic_rows(n, seed):
  rng = np.random.default_rng(seed)
  words = ["the", "film", "plot", "acting", "is", "was", "quite", "very", "a", "movie"]
  rows = []
  for i in range(n):
    tokens = list(rng.choice(words, size=rng.integers(2, 6)))
    label = i % 2
    tokens.insert(int(rng.integers(0, len(tokens) + 1)), "good" if label else "bad")
    rows.append((" ".join(tokens), label))
  return rows


def _write_tsv(path, rows, header="sentence\tlabel"):
  with open(path, "w", encoding="utf-8") as f:
    f.write(header + "\n")
    for text, label in rows:
      f.write(f"{text} \t{label}\n")
  return str(path)


@pytest.fixture
def sst2_files(tmp_path):
  return (_write_tsv(tmp_path / "train.tsv", _synthetic_rows(40, 0)),
          _write_tsv(tmp_path / "dev.tsv", _synthetic_rows(12, 1)))


@pytest.fixture(scope="module")
def separable():
  """Pooled fake features ``(train_x, train_y, dev_x, dev_y)``."""
  embedder = FakeEmbedder()
  train, dev = _synthetic_rows(40, 0), _synthetic_rows(12, 1)
  return (pooled_features(embedder, [t.split() for t, _ in train]),
          np.array([y for _, y in train]),
          pooled_features(embedder, [t.split() for t, _ in dev]),
          np.array([y for _, y in dev]))


# --- read_sentence_labels ----------------------------------------------------------------------


def test_read_sentence_labels_strips_and_splits(tmp_path):
  path = tmp_path / "any.tsv"
  path.write_text("label\tsentence\n1\t a  good film \n0\tbad\n\n", encoding="utf-8")
  sentences, labels = read_sentence_labels(path)
  assert sentences == [["a", "good", "film"], ["bad"]]
  assert labels.dtype == np.int64 and labels.tolist() == [1, 0]


def test_read_sentence_labels_real_dev_file():
  path = os.path.join(SST2_DIR, "dev.tsv")
  if not os.path.isfile(path):
    pytest.skip(f"SST-2 not found at {path}")
  sentences, labels = read_sentence_labels(path)
  assert len(sentences) == len(labels) == 872
  assert set(labels.tolist()) == {0, 1} and all(sentences)


@pytest.mark.parametrize("content, match", [
    ("text\tlabel\nfine\t1\n", r"bad\.tsv.*'sentence' and 'label'"),
    ("sentence\tlabel\nfine\t1\nnot fine\t2\n", r"bad\.tsv, line 3: the label must be 0 or 1"),
    ("sentence\tlabel\nfine\tpositive\n", r"bad\.tsv, line 2: the label"),
    ("sentence\tlabel\nfine\t1\n  \t0\n", r"bad\.tsv, line 3: the sentence is empty"),
    ("sentence\tlabel\nno label field\n", r"bad\.tsv, line 2: expected 2"),
])
def test_read_sentence_labels_rejects_bad_rows(tmp_path, content, match):
  path = tmp_path / "bad.tsv"
  path.write_text(content, encoding="utf-8")
  with pytest.raises(ValueError, match=match):
    read_sentence_labels(path)


def test_read_sentence_labels_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing.tsv"):
    read_sentence_labels(tmp_path / "nothing.tsv")


# --- pooled_features ---------------------------------------------------------------------------


def test_pooled_features_are_per_layer_token_means():
  embedder = FakeEmbedder()
  sentences = [["a", "good", "film"], ["bad"], ["x", "y"], ["good"]]
  got = pooled_features(embedder, sentences, batch_size=3)
  reference = FakeEmbedder().embed_sentences(sentences)
  assert got.dtype == np.float32 and got.shape == (4, N_LAYERS, DIM)
  for g, e in zip(got, reference):
    assert_float32_close(g, e.mean(axis=1))
  assert embedder.calls == 2  # batches of 3


def test_pooled_features_cache_hit_skips_the_embedder(tmp_path):
  sentences = [["a", "good", "film"], ["bad"]]
  cache = tmp_path / "sub" / "feats.npz"
  first = pooled_features(FakeEmbedder(), sentences, cache_path=cache)
  assert sorted(os.listdir(tmp_path / "sub")) == ["feats.npz"]  # no temp file left
  embedder = FakeEmbedder()
  second = pooled_features(embedder, sentences, cache_path=cache)
  assert embedder.calls == 0
  np.testing.assert_array_equal(first, second)


def test_stale_cache_is_recomputed_and_overwritten(tmp_path, caplog):
  cache = tmp_path / "feats.npz"
  pooled_features(FakeEmbedder(), [["a", "good", "film"], ["bad"]], cache_path=cache)
  new = [["a", "good", "film"], ["worse"]]  # same count and shape, other text
  embedder = FakeEmbedder()
  with caplog.at_level("WARNING"):
    got = pooled_features(embedder, new, cache_path=cache)
  assert embedder.calls == 1
  assert "recomputing" in caplog.text
  np.testing.assert_array_equal(got, pooled_features(FakeEmbedder(), new))
  again = FakeEmbedder()
  pooled_features(again, new, cache_path=cache)
  assert again.calls == 0  # the overwritten cache now matches


def test_unreadable_cache_is_recomputed(tmp_path):
  cache = tmp_path / "feats.npz"
  cache.write_text("not an npz", encoding="utf-8")
  embedder = FakeEmbedder()
  pooled_features(embedder, [["good"]], cache_path=cache)
  assert embedder.calls == 1


def test_pooled_features_rejects_empty_input():
  with pytest.raises(ValueError, match="at least one sentence"):
    pooled_features(FakeEmbedder(), [])
  with pytest.raises(ValueError, match="sentence 1 is empty"):
    pooled_features(FakeEmbedder(), [["a"], []])


# --- ProbeConfig -------------------------------------------------------------------------------


@pytest.mark.parametrize("field, bad, good", [
    ("hidden_units", -1, 0),
    ("epochs", 0, 1),
    ("batch_size", 0, 1),
    ("learning_rate", 0.0, 1e-6),
    ("dropout", 1.0, 0.0),
    ("dropout", -0.1, 0.99),
    ("l2", -1e-3, 0.0),
    ("seed", -1, 0),
    ("max_train_sentences", -1, 0),
    ("epochs", 2.5, 2),
    ("epochs", True, 3),
])
def test_probe_config_validation(field, bad, good):
  with pytest.raises(ValueError, match=f"ProbeConfig.{field}"):
    ProbeConfig(**{field: bad})
  assert getattr(ProbeConfig(**{field: good}), field) == good


def test_train_subset_is_seeded_and_in_file_order():
  config = ProbeConfig(max_train_sentences=5, seed=3)
  subset = train_subset(40, config)
  assert subset.shape == (5,) and np.all(np.diff(subset) > 0)
  np.testing.assert_array_equal(subset, train_subset(40, config))
  assert not np.array_equal(subset, train_subset(40, ProbeConfig(max_train_sentences=5, seed=4)))
  np.testing.assert_array_equal(train_subset(4, config), np.arange(4))


# --- train_probe -------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden_units", [0, 8])
def test_probe_learns_the_separable_task(separable, hidden_units):
  result = train_probe(*separable, dataclasses.replace(FAST, hidden_units=hidden_units))
  assert result["accuracy"] >= 0.9 and result["train_accuracy"] >= 0.9
  assert len(result["scalar_mix_weights"]) == N_LAYERS
  assert abs(sum(result["scalar_mix_weights"]) - 1.0) < 1e-5
  # Only layer 1 carries the label, so the mix moves towards it.
  assert int(np.argmax(result["scalar_mix_weights"])) == 1
  assert result["num_train"] == 40 and result["num_dev"] == 12
  assert isinstance(result["gamma"], float) and result["seconds"] > 0


def test_probe_is_deterministic_for_a_seed(separable):
  config = ProbeConfig(hidden_units=4, epochs=2, batch_size=4, dropout=0.3, l2=1e-3, seed=7)
  first, second = train_probe(*separable, config), train_probe(*separable, config)
  for key in ("accuracy", "train_accuracy", "scalar_mix_weights", "gamma"):
    assert first[key] == second[key], key


def test_probe_max_train_sentences_uses_the_subset(separable):
  result = train_probe(*separable, ProbeConfig(epochs=1, max_train_sentences=6))
  assert result["num_train"] == 6


def test_probe_rejects_bad_shapes_and_labels(separable):
  train_x, train_y, dev_x, dev_y = separable
  with pytest.raises(ValueError, match=r"train_features must be float32 \[n >= 1"):
    train_probe(train_x[:, 0], train_y, dev_x, dev_y)
  with pytest.raises(ValueError, match="same \\[n_layers, dim\\]"):
    train_probe(train_x, train_y, dev_x[:, :2], dev_y)
  with pytest.raises(ValueError, match="one label per feature row"):
    train_probe(train_x, train_y[:-1], dev_x, dev_y)
  with pytest.raises(ValueError, match="only 0 and 1"):
    train_probe(train_x, train_y, dev_x, dev_y + 1)
  with pytest.raises(ValueError, match="NaN or Inf"):
    train_probe(train_x, train_y, np.full_like(dev_x, np.nan), dev_y)


# --- evaluate_sst2 -----------------------------------------------------------------------------


def test_evaluate_sst2_caches_and_reports_baseline(sst2_files, tmp_path):
  cache_dir = tmp_path / "variant"
  embedder = FakeEmbedder()
  result = evaluate_sst2(embedder, *sst2_files, cache_dir=cache_dir, probe=FAST)
  assert result["accuracy"] >= 0.9
  assert result["majority_baseline"] == 0.5  # 20/20 train: class 0 wins the tie; dev 6/12
  assert sorted(os.listdir(cache_dir)) == [downstream.DEV_CACHE, downstream.TRAIN_CACHE]
  assert embedder.embedded == 52
  again = FakeEmbedder()
  second = evaluate_sst2(again, *sst2_files, cache_dir=cache_dir, probe=FAST)
  assert {k: v for k, v in second.items() if k != "seconds"} == {
      k: v for k, v in result.items() if k != "seconds"}
  assert again.calls == 0


def test_evaluate_sst2_embeds_only_the_train_subset(sst2_files):
  embedder = FakeEmbedder()
  config = ProbeConfig(epochs=1, max_train_sentences=5)
  result = evaluate_sst2(embedder, *sst2_files, probe=config)
  assert result["num_train"] == 5
  assert embedder.embedded == 5 + 12


def test_evaluate_sst2_with_a_tiny_bilm(sst2_files, tmp_path):
  tf.keras.utils.set_random_seed(0)
  config = BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=8, projection_dim=4,
                      n_layers=2, dropout=0.0,
                      char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)),
                                             n_highway=1))
  embedder = ElmoEmbedder(build_bilm(config), config)
  sentences = [["a", "good", "film"], ["bad"]]
  pooled = pooled_features(embedder, sentences)
  assert pooled.shape == (2, 3, 8)
  for p, e in zip(pooled, embedder.embed_sentences(sentences)):
    assert_float32_close(p, e.mean(axis=1))
  result = evaluate_sst2(embedder, *sst2_files, cache_dir=tmp_path / "bilm",
                         probe=ProbeConfig(epochs=1, max_train_sentences=8))
  assert 0.0 <= result["accuracy"] <= 1.0 and len(result["scalar_mix_weights"]) == 3
  assert result["num_train"] == 8 and result["num_dev"] == 12


def test_standardized_probe_uses_small_variations_around_a_large_mean():
  rng = np.random.default_rng(0)
  signal = rng.normal(size=(200, 2, 4)).astype(np.float32)
  labels = (signal[:, 0, 0] + signal[:, 1, 0] > 0).astype(np.int64)  # an equal mix separates
  features = 5.0 + 1e-3 * signal  # what mean-pooled LSTM states look like
  result = train_probe(features[:150], labels[:150], features[150:], labels[150:],
                       ProbeConfig(epochs=30, batch_size=16))
  assert result["accuracy"] >= 0.9
