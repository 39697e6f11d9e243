"""Tests for prunelm_tf.data.pipeline."""

import collections
import logging

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf import data
from prunelm_tf.data import pipeline

VOCAB = data.Vocabulary(["<S>", "</S>", "<UNK>", "the", "cat", "sat"])
# Model ids (index + 1).
BOS, EOS, UNK, THE, CAT, SAT = 1, 2, 3, 4, 5, 6


def _sentences(num, seed=0):
  """`num` sentences of 1-30 tokens, some of them out of vocabulary."""
  rng = np.random.default_rng(seed)
  words = ["the", "cat", "sat", "dog", "ému"]
  return [[str(w) for w in rng.choice(words, size=rng.integers(1, 31))]
          for _ in range(num)]


def _rows(dataset, key="token_ids"):
  """All non-padding rows of an epoch, in order, as tuples."""
  rows = []
  for batch in dataset:
    for row in batch[key].numpy():
      rows.append(tuple(int(i) for i in row[row > 0]))
  return rows


def _expected_rows(sentences, vocab=VOCAB):
  return [tuple(pipeline.encode_sentence(s, vocab).tolist())
          for s in sentences]


def test_encode_sentence_wraps_and_shifts():
  ids = data.encode_sentence(["the", "dog", "sat"], VOCAB)
  assert ids.dtype == np.int32
  np.testing.assert_array_equal(ids, [BOS, THE, UNK, SAT, EOS])
  np.testing.assert_array_equal(data.encode_sentence([], VOCAB), [BOS, EOS])


def test_encode_sentence_uses_the_specials_ids_of_the_file():
  vocab = data.Vocabulary(["x", "</S>", "<UNK>", "<S>"])
  np.testing.assert_array_equal(data.encode_sentence(["x", "y"], vocab),
                                [4, 1, 3, 2])


def test_encode_corpus_flat_arrays_and_char_table():
  encoded = data.encode_corpus([["the", "émus"], ["émus", "<S>"]], VOCAB,
                               char_inputs=True, max_characters_per_token=8)
  np.testing.assert_array_equal(encoded.token_ids,
                                [BOS, THE, UNK, EOS, BOS, UNK, BOS, EOS])
  assert encoded.token_ids.dtype == np.int32
  np.testing.assert_array_equal(encoded.row_lengths, [4, 4])
  assert (encoded.num_sentences, encoded.num_positions) == (2, 8)
  # Types: 0 padding, 1 <S>, 2 </S>, 3 "the", 4 "émus"; a literal <S> is BOS.
  np.testing.assert_array_equal(encoded.type_ids, [1, 3, 4, 2, 1, 4, 1, 2])
  table = encoded.char_table
  assert table.dtype == np.int32 and table.shape == (5, 8)
  np.testing.assert_array_equal(table[0], np.zeros(8))
  np.testing.assert_array_equal(table[1], data.bos_char_ids(8))
  np.testing.assert_array_equal(table[2], data.eos_char_ids(8))
  np.testing.assert_array_equal(table[4], data.word_to_char_ids("émus", 8))


def test_encode_corpus_without_chars():
  encoded = data.encode_corpus([["cat"]], VOCAB, char_inputs=False)
  assert encoded.type_ids is None and encoded.char_table is None


def test_encode_empty_corpus_raises():
  with pytest.raises(ValueError, match="empty list of sentences"):
    data.encode_corpus([], VOCAB, char_inputs=False)


def test_encoding_is_fast_enough_for_ptb_sized_corpora():
  sentences = _sentences(2000) * 10  # ~300k tokens, a third of PTB train
  encoded = data.encode_corpus(sentences, VOCAB, char_inputs=True)
  assert encoded.num_positions == sum(len(s) + 2 for s in sentences)


def test_count_tokens():
  assert data.count_tokens([["a", "b"], [], ["c"]]) == 3 + 1 + 2
  assert data.count_tokens([]) == 0


def test_dataset_shapes_dtypes_and_padding():
  sentences = [["the", "cat"], ["sat"], ["the", "cat", "sat", "cat"]]
  dataset = data.make_dataset(sentences, VOCAB, batch_size=2,
                              char_inputs=True, shuffle=False, bucket_width=0)
  spec = dataset.element_spec
  assert set(spec) == {"token_ids", "char_ids"}
  assert spec["token_ids"].dtype == tf.int32
  assert spec["token_ids"].shape.as_list() == [None, None]
  assert spec["char_ids"].dtype == tf.int32
  assert spec["char_ids"].shape.as_list() == [None, None, 50]
  batches = list(dataset)
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[0]["token_ids"],
                                [[BOS, THE, CAT, EOS], [BOS, SAT, EOS, 0]])
  np.testing.assert_array_equal(batches[1]["token_ids"],
                                [[BOS, THE, CAT, SAT, CAT, EOS]])
  chars = batches[0]["char_ids"].numpy()
  assert chars.shape == (2, 4, 50)
  np.testing.assert_array_equal(chars[1, 3], np.zeros(50))  # padding
  np.testing.assert_array_equal(chars[0], data.sentence_to_char_ids(
      ["the", "cat"]))


def test_dataset_without_chars_has_only_token_ids():
  dataset = data.make_dataset([["cat"]], VOCAB, batch_size=4,
                              char_inputs=False, shuffle=False)
  assert set(dataset.element_spec) == {"token_ids"}
  np.testing.assert_array_equal(next(iter(dataset))["token_ids"],
                                [[BOS, CAT, EOS]])


def test_char_ids_of_oov_words_are_exact():
  sentences = [["the", "Zyzzyva", "émeu"], ["sat", "x" * 60]]
  dataset = data.make_dataset(sentences, VOCAB, batch_size=2,
                              char_inputs=True, shuffle=False, bucket_width=0)
  batch = next(iter(dataset))
  np.testing.assert_array_equal(batch["token_ids"][0], [BOS, THE, UNK, UNK,
                                                        EOS])
  chars = batch["char_ids"].numpy()
  for i, word in enumerate(sentences[0]):
    np.testing.assert_array_equal(chars[0, i + 1], data.word_to_char_ids(word))
  np.testing.assert_array_equal(chars[1, 2], data.word_to_char_ids("x" * 60))
  np.testing.assert_array_equal(chars[1, 4], np.zeros(50))


def test_max_characters_per_token_sets_the_last_dimension():
  dataset = data.make_dataset([["cat"]], VOCAB, batch_size=1,
                              char_inputs=True, max_characters_per_token=3,
                              shuffle=False)
  np.testing.assert_array_equal(next(iter(dataset))["char_ids"][0],
                                [[259, 257, 260], [259, 100, 260],
                                 [259, 258, 260]])
  with pytest.raises(ValueError, match="max_characters_per_token"):
    data.make_dataset([["cat"]], VOCAB, batch_size=1, char_inputs=True,
                      max_characters_per_token=2, shuffle=False)


@pytest.mark.parametrize("char_inputs", [False, True])
def test_every_sentence_exactly_once_without_shuffle(char_inputs):
  sentences = _sentences(53)
  dataset = data.make_dataset(sentences, VOCAB, batch_size=4,
                              char_inputs=char_inputs, shuffle=False,
                              bucket_width=5)
  rows = _rows(dataset)
  assert collections.Counter(rows) == collections.Counter(
      _expected_rows(sentences))
  num_positions = sum(len(r) for r in rows)
  assert num_positions == data.count_tokens(sentences) + len(sentences)
  # Deterministic: a second epoch and a second dataset give the same order.
  assert _rows(dataset) == rows
  assert _rows(data.make_dataset(sentences, VOCAB, batch_size=4,
                                 char_inputs=char_inputs, shuffle=False,
                                 bucket_width=5)) == rows


def test_batches_are_bucketed_by_length():
  sentences = _sentences(200)
  dataset = data.make_dataset(sentences, VOCAB, batch_size=8,
                              char_inputs=False, shuffle=True, bucket_width=10)
  for batch in dataset:
    lengths = (batch["token_ids"].numpy() > 0).sum(axis=1)
    buckets = set((lengths - 1) // 10)  # lengths 1-10, 11-20, ...
    assert len(buckets) == 1, lengths


def test_no_bucketing_keeps_corpus_order():
  sentences = _sentences(11)
  dataset = data.make_dataset(sentences, VOCAB, batch_size=3,
                              char_inputs=False, shuffle=False, bucket_width=0)
  assert _rows(dataset) == _expected_rows(sentences)


def test_shuffle_is_seeded_and_differs_between_epochs():
  sentences = _sentences(60)

  def make(seed):
    return data.make_dataset(sentences, VOCAB, batch_size=4,
                             char_inputs=True, shuffle=True, seed=seed)

  first = make(seed=7)
  epoch_1, epoch_2 = _rows(first), _rows(first)
  second = make(seed=7)
  assert _rows(second) == epoch_1
  assert _rows(second) == epoch_2
  assert epoch_1 != epoch_2
  assert _rows(make(seed=8)) != epoch_1
  # Shuffling reorders but neither drops nor repeats sentences.
  expected = collections.Counter(_expected_rows(sentences))
  assert collections.Counter(epoch_1) == expected
  assert collections.Counter(epoch_2) == expected


def test_drop_remainder():
  sentences = [["cat"]] * 5
  for bucket_width in (0, 10):
    dataset = data.make_dataset(sentences, VOCAB, batch_size=2,
                                char_inputs=False, shuffle=False,
                                bucket_width=bucket_width,
                                drop_remainder=True)
    assert [b["token_ids"].shape[0] for b in dataset] == [2, 2]


def test_max_length_truncates_and_warns(caplog):
  sentences = [["the", "cat", "sat", "the", "cat"], ["cat"]]
  dataset = data.make_dataset(sentences, VOCAB, batch_size=2,
                              char_inputs=True, shuffle=False, bucket_width=0,
                              max_length=4)
  batch = next(iter(dataset))
  np.testing.assert_array_equal(batch["token_ids"],
                                [[BOS, THE, CAT, SAT], [BOS, CAT, EOS, 0]])
  assert batch["char_ids"].shape == (2, 4, 50)
  warnings = [r for r in caplog.records
              if r.module == "pipeline" and r.levelno == logging.WARNING]
  assert len(warnings) == 1
  assert warnings[0].args[:3] == (1, 2, 4)


def test_max_length_boundaries(caplog):
  sentences = [["the", "cat"]]
  kwargs = dict(batch_size=1, char_inputs=False, shuffle=False)
  # A sentence of exactly max_length positions is kept whole, silently.
  exact = data.make_dataset(sentences, VOCAB, max_length=4, **kwargs)
  assert _rows(exact) == [(BOS, THE, CAT, EOS)]
  assert not [r for r in caplog.records if r.module == "pipeline"]
  shortest = data.make_dataset(sentences, VOCAB, max_length=2, **kwargs)
  assert _rows(shortest) == [(BOS, THE)]
  with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
    data.make_dataset(sentences, VOCAB, max_length=1, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(batch_size=2.0), "batch_size must be an integer >= 1"),
    (dict(batch_size=1, bucket_width=-1), "bucket_width must be .* >= 0"),
])
def test_bad_arguments_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    data.make_dataset([["cat"]], VOCAB, char_inputs=False, shuffle=False,
                      **kwargs)


def test_smallest_valid_arguments():
  dataset = data.make_dataset([["cat"], ["sat"]], VOCAB, batch_size=1,
                              char_inputs=False, shuffle=False, bucket_width=1)
  assert _rows(dataset) == [(BOS, CAT, EOS), (BOS, SAT, EOS)]


def test_make_dataset_of_no_sentences_raises():
  with pytest.raises(ValueError, match="empty list of sentences"):
    data.make_dataset([], VOCAB, batch_size=1, char_inputs=False,
                      shuffle=False)


def test_real_fixture_corpus_end_to_end(shared_data):
  root = shared_data / "bilm_tf_fixture" / "train"
  vocab = data.Vocabulary.load(root / "vocab.txt")
  sentences = data.read_sentences(data.TextFileCorpus(str(root / "data.txt")))
  dataset = data.make_dataset(sentences, vocab, batch_size=2,
                              char_inputs=True, shuffle=False)
  rows = _rows(dataset)
  assert sorted(rows) == sorted(_expected_rows(sentences, vocab))
  assert sum(len(r) - 1 for r in rows) == data.count_tokens(sentences) == 139
  assert max(b["token_ids"].shape[1] for b in dataset) == 76


def test_check_vocabulary_matches():
  data.check_vocabulary_matches(VOCAB, 6)
  data.check_vocabulary_matches(VOCAB, 6, VOCAB.fingerprint(), where="run x")
  with pytest.raises(ValueError,
                     match=r"has 6 tokens but the model's softmax expects 7 "
                     r"\(run folder /r\); use .*vocab.txt"):
    data.check_vocabulary_matches(VOCAB, 7, where="run folder /r")
  other = data.Vocabulary(["<S>", "</S>", "<UNK>", "the", "sat", "cat"])
  with pytest.raises(ValueError, match="different tokens or order"):
    data.check_vocabulary_matches(other, 6, VOCAB.fingerprint())
