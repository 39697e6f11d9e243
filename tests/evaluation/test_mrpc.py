"""MRPC: tokenizer, TSV reader, pair probe, evaluate_mrpc with its feature cache."""

import dataclasses
import os
import zlib

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.elmo.embedder import ElmoEmbedder, Embedder
from prunelm_tf.evaluation import mrpc
from prunelm_tf.evaluation.downstream import ProbeConfig, pooled_features
from prunelm_tf.evaluation.mrpc import (binary_scores, evaluate_mrpc, read_mrpc, tokenize,
                                        train_pair_probe)
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm

MRPC_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "mrpc")
HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
N_LAYERS, DIM = 2, 8
FAST = ProbeConfig(epochs=40, batch_size=16, learning_rate=0.05)
TOPICS = ["bank", "court", "storm", "vote"]
FILLER = ["the", "said", "on", "a", "today", "was"]


class TokenEmbedder(Embedder):
  """A fixed pseudo-random vector per (token, layer)."""

  def __init__(self):
    self.calls = 0
    self.embedded = 0

  def embed_batch(self, sentences):
    self.calls += 1
    self.embedded += len(sentences)
    return [np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(
        size=(N_LAYERS, DIM)) for t in s], axis=1).astype(np.float32) for s in sentences]


def _synthetic_rows(n, seed):
  """Pairs that are paraphrases (1) exactly when both mention the same topic word."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    first = str(rng.choice(TOPICS))
    second = first if i % 2 else str(rng.choice([t for t in TOPICS if t != first]))
    sentences = [" ".join([topic] + list(rng.choice(FILLER, size=int(rng.integers(0, 2)))))
                 for topic in (first, second)]
    rows.append((i % 2, *sentences))
  return rows


def _write_tsv(path, rows, header=HEADER):
  with open(path, "w", encoding="utf-8") as f:
    f.write(header + "\n")
    for i, (label, s1, s2) in enumerate(rows):
      f.write(f"{label}\t{2 * i}\t{2 * i + 1}\t{s1}\t{s2}\n")
  return str(path)


@pytest.fixture
def mrpc_files(tmp_path):
  return (_write_tsv(tmp_path / "train.tsv", _synthetic_rows(160, 0)),
          _write_tsv(tmp_path / "dev.tsv", _synthetic_rows(40, 1)))


@pytest.fixture(scope="module")
def separable():
  """Pooled pair features ``(train_1, train_2, train_y, dev_1, dev_2, dev_y)``."""
  out = []
  for n, seed in ((160, 0), (40, 1)):
    rows = _synthetic_rows(n, seed)
    out += [pooled_features(TokenEmbedder(), [r[1].split() for r in rows]),
            pooled_features(TokenEmbedder(), [r[2].split() for r in rows]),
            np.array([r[0] for r in rows])]
  return out


# --- tokenize ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, tokens", [
    ("Hello, world!", ["Hello", ",", "world", "!"]),
    ('He said "no" (twice).', ["He", "said", '"', "no", '"', "(", "twice", ")", "."]),
    ("The U.S. paid $2.5 billion, or 1,000 e-mails.",
     ["The", "U.S.", "paid", "$", "2.5", "billion", ",", "or", "1,000", "e-mails", "."]),
    ("Yucaipa owned Dominick 's before ; it does n't .",
     ["Yucaipa", "owned", "Dominick", "'s", "before", ";", "it", "does", "n't", "."]),
    ("don't stop -- wait... 10:30 in the 1990s",
     ["don't", "stop", "--", "wait", "...", "10:30", "in", "the", "1990s"]),
    ("  ", []),
])
def test_tokenize(text, tokens):
  assert tokenize(text) == tokens
  assert "".join(tokenize(text)) == "".join(text.split())  # nothing dropped or changed
  assert tokenize(" ".join(tokens)) == tokens  # idempotent


def test_tokenize_leaves_the_tokenized_glue_text_almost_unchanged():
  path = os.path.join(MRPC_DIR, "dev.tsv")
  if not os.path.isfile(path):
    pytest.skip(f"MRPC not found at {path}")
  with open(path, encoding="utf-8-sig") as f:
    strings = [s for line in f.read().splitlines()[1:] for s in line.split("\t")[3:]]
  whitespace = sum(len(s.split()) for s in strings)
  ours = sum(len(tokenize(s)) for s in strings)
  assert whitespace == 17968  # README: ws tokens of both strings
  assert 0 <= ours - whitespace < 0.02 * whitespace


# --- read_mrpc ---------------------------------------------------------------------------------


def test_read_mrpc_tokenizes_both_strings(tmp_path):
  path = _write_tsv(tmp_path / "t.tsv", [(1, 'He said "yes".', "Yes, he did"), (0, "a", "b")])
  with open(path, "a", encoding="utf-8") as f:
    f.write("\n")  # a trailing blank line is not a row
  pairs, labels = read_mrpc(path)
  assert pairs == [(["He", "said", '"', "yes", '"', "."], ["Yes", ",", "he", "did"]),
                   (["a"], ["b"])]
  assert labels.dtype == np.int64 and labels.tolist() == [1, 0]


def test_read_mrpc_real_dev_file():
  path = os.path.join(MRPC_DIR, "dev.tsv")
  if not os.path.isfile(path):
    pytest.skip(f"MRPC not found at {path}")
  pairs, labels = read_mrpc(path)
  assert len(pairs) == 408 and int(labels.sum()) == 279


@pytest.mark.parametrize("content, match", [
    ("sentence\tlabel\n1\ta\n", r"bad\.tsv, line 1: the header must be"),
    ("", r"bad\.tsv, line 1: the header must be"),
    (HEADER + "\n1\t1\t2\tonly four\n", r"bad\.tsv, line 2: expected 5 .* got 4"),
    (HEADER + "\n1\t1\t2\ta\tb\n0\t3\t4\ta\tb\textra\n", r"bad\.tsv, line 3: expected 5 .* got 6"),
    (HEADER + "\nyes\t1\t2\ta\tb\n", r"bad\.tsv, line 2: the Quality label must be 0 or 1"),
    (HEADER + "\n1\t1\t2\t \tb\n", r"bad\.tsv, line 2: #1 String is empty"),
    (HEADER + "\n", r"bad\.tsv has a header but no rows"),
])
def test_read_mrpc_rejects_bad_files(tmp_path, content, match):
  path = tmp_path / "bad.tsv"
  path.write_text(content, encoding="utf-8")
  with pytest.raises(ValueError, match=match):
    read_mrpc(path)


def test_read_mrpc_names_a_non_utf8_file_and_a_missing_one(tmp_path):
  path = tmp_path / "latin.tsv"
  path.write_bytes((HEADER[1:] + "\n1\t1\t2\tZürich\tb\n").encode("latin-1"))
  with pytest.raises(ValueError, match=r"latin\.tsv is not UTF-8"):
    read_mrpc(path)
  with pytest.raises(FileNotFoundError, match="nothing.tsv"):
    read_mrpc(tmp_path / "nothing.tsv")


# --- probe -------------------------------------------------------------------------------------


def test_binary_scores():
  scores = binary_scores(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
  assert scores["accuracy"] == 0.6
  assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
  assert scores["f1"] == pytest.approx(2 / 3)
  assert binary_scores(np.array([1, 0]), np.array([0, 0])) == {
      "accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_pair_probe_learns_the_same_topic_task(separable):
  result = train_pair_probe(*separable, FAST)
  assert result["accuracy"] >= 0.9 and result["f1"] >= 0.9
  assert len(result["scalar_mix_weights"]) == N_LAYERS
  assert abs(sum(result["scalar_mix_weights"]) - 1.0) < 1e-5
  assert result["num_train"] == 160 and result["num_dev"] == 40


def test_pair_probe_is_deterministic_and_uses_the_subset(separable):
  config = ProbeConfig(hidden_units=4, epochs=2, dropout=0.3, l2=1e-3, seed=3,
                       max_train_sentences=50)
  first, second = train_pair_probe(*separable, config), train_pair_probe(*separable, config)
  for key in ("accuracy", "f1", "train_accuracy", "scalar_mix_weights", "gamma"):
    assert first[key] == second[key], key
  assert first["num_train"] == 50


def test_pair_probe_rejects_bad_input(separable):
  train_1, train_2, train_y, dev_1, dev_2, dev_y = separable
  with pytest.raises(ValueError, match="train_first and train_second must have the same shape"):
    train_pair_probe(train_1, train_2[:-1], train_y, dev_1, dev_2, dev_y)
  with pytest.raises(ValueError, match="same \\[n_layers, dim\\]"):
    train_pair_probe(train_1, train_2, train_y, dev_1[:, :1], dev_2[:, :1], dev_y)
  with pytest.raises(ValueError, match="only 0 and 1"):
    train_pair_probe(train_1, train_2, train_y, dev_1, dev_2, dev_y + 1)
  with pytest.raises(ValueError, match="NaN or Inf"):
    train_pair_probe(train_1, train_2, train_y, dev_1, np.full_like(dev_2, np.nan), dev_y)


# --- evaluate_mrpc -----------------------------------------------------------------------------


def test_evaluate_mrpc_caches_per_model(mrpc_files, tmp_path):
  cache_dir = tmp_path / "variant"
  embedder = TokenEmbedder()
  result = evaluate_mrpc(embedder, *mrpc_files, cache_dir=cache_dir, model_fingerprint="m1",
                         probe=FAST)
  assert result["accuracy"] >= 0.9 and result["f1"] >= 0.9
  assert sorted(os.listdir(cache_dir)) == [mrpc.DEV_CACHE, mrpc.TRAIN_CACHE]
  assert embedder.embedded == 2 * (160 + 40)
  # 80/80 in train: class 0 wins the tie; dev is half positive.
  assert result["majority_baseline"] == {"accuracy": 0.5, "f1": 0.0}
  assert set(result["seconds"]) == {"features", "probe"}
  again = TokenEmbedder()
  second = evaluate_mrpc(again, *mrpc_files, cache_dir=cache_dir, model_fingerprint="m1",
                         probe=FAST)
  assert again.calls == 0 and second["accuracy"] == result["accuracy"]
  other = TokenEmbedder()
  evaluate_mrpc(other, *mrpc_files, cache_dir=cache_dir, model_fingerprint="m2",
                probe=dataclasses.replace(FAST, epochs=1))
  assert other.embedded == 2 * (160 + 40)  # another model: recomputed


def test_evaluate_mrpc_with_a_tiny_char_bilm(tmp_path):
  tf.keras.utils.set_random_seed(0)
  config = BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=8, projection_dim=4,
                      n_layers=1, dropout=0.0,
                      char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)),
                                             n_highway=1))
  embedder = ElmoEmbedder(build_bilm(config), config)
  rows = [(1, "Amrozi accused his brother , whom he called \" the witness \" .",
           "Referring to him as only \" the witness \" , Amrozi accused his brother ."),
          (0, "Yucaipa owned Dominick 's before selling the chain .",
           "Yucaipa bought Dominick 's in 1995 for $ 693 million ."),
          (1, "They had published an advertisement .", "On June 10 , they published it .")]
  train = _write_tsv(tmp_path / "train.tsv", rows * 3)
  dev = _write_tsv(tmp_path / "dev.tsv", rows)
  result = evaluate_mrpc(embedder, train, dev, cache_dir=tmp_path / "cache",
                         probe=ProbeConfig(epochs=1))
  assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["f1"] <= 1.0
  assert len(result["scalar_mix_weights"]) == 2
  assert result["num_train"] == 9 and result["num_dev"] == 3
