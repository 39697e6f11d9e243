"""Tests for prunelm_tf.data.characters."""

import numpy as np
import pytest

from prunelm_tf.data import characters

# Shifted ids (+1) of the markers, as the model sees them.
BOW, EOW, PAD = 259, 260, 261
BOS, EOS = 257, 258


def _row(*ids, length=50):
  return np.array(list(ids) + [PAD] * (length - len(ids)), dtype=np.int32)


def _vocab_test_lines(shared_data):
  data = (shared_data / "elmo_fixture" / "vocab_test.txt").read_bytes()
  return data.decode("utf-8").split("\n")


def test_constants_are_raw_ids():
  assert characters.MAX_CHARACTERS_PER_TOKEN == 50
  assert (characters.BOS_CHAR, characters.EOS_CHAR, characters.BOW_CHAR,
          characters.EOW_CHAR, characters.PAD_CHAR) == (256, 257, 258, 259, 260)


def test_ascii_word():
  row = characters.word_to_char_ids("good")
  assert row.dtype == np.int32 and row.shape == (50,)
  # g=103, o=111, d=100, each +1.
  np.testing.assert_array_equal(row, _row(BOW, 104, 112, 112, 101, EOW))


def test_multibyte_word():
  # U+2022 BULLET is e2 80 a2 in UTF-8.
  np.testing.assert_array_equal(
      characters.word_to_char_ids("•"),
      _row(BOW, 0xE2 + 1, 0x80 + 1, 0xA2 + 1, EOW))


def test_over_long_word_is_truncated_to_48_bytes():
  word = "abcdefghij" * 6  # 60 characters
  row = characters.word_to_char_ids(word)
  expected = [BOW] + [b + 1 for b in word.encode()[:48]] + [EOW]
  np.testing.assert_array_equal(row, np.array(expected, dtype=np.int32))
  assert PAD not in row


def test_truncation_may_cut_a_multibyte_character_like_the_reference():
  word = "a" + "€" * 20  # 61 bytes; byte 48 is inside a '€'
  row = characters.word_to_char_ids(word)
  np.testing.assert_array_equal(row[1:49],
                                np.frombuffer(word.encode()[:48], np.uint8) + 1)
  assert row[49] == EOW


def test_word_of_exactly_48_bytes_is_not_truncated():
  word = "x" * 48
  row = characters.word_to_char_ids(word)
  assert list(row) == [BOW] + [ord("x") + 1] * 48 + [EOW]


def test_unencodable_characters_are_dropped():
  np.testing.assert_array_equal(
      characters.word_to_char_ids("a\udc80b"), _row(BOW, 98, 99, EOW))


def test_sentence_markers():
  np.testing.assert_array_equal(characters.word_to_char_ids("<S>"),
                                _row(BOW, BOS, EOW))
  np.testing.assert_array_equal(characters.word_to_char_ids("</S>"),
                                _row(BOW, EOS, EOW))
  np.testing.assert_array_equal(characters.bos_char_ids(), _row(BOW, BOS, EOW))
  np.testing.assert_array_equal(characters.eos_char_ids(), _row(BOW, EOS, EOW))


def test_rows_of_the_elmo_fixture_vocabulary(shared_data):
  lines = _vocab_test_lines(shared_data)
  assert lines[0] == "good" and lines[141] == "•"
  assert lines[20] == "<S>" and lines[224] == "</S>"
  rows = np.stack([characters.word_to_char_ids(w) for w in lines])
  assert rows.shape == (len(lines), 50)
  np.testing.assert_array_equal(rows[0], _row(BOW, 104, 112, 112, 101, EOW))
  np.testing.assert_array_equal(rows[141], _row(BOW, 227, 129, 163, EOW))
  np.testing.assert_array_equal(rows[20], _row(BOW, BOS, EOW))
  np.testing.assert_array_equal(rows[224], _row(BOW, EOS, EOW))
  # Every row is framed, and 0 (batch padding) never occurs.
  assert (rows[:, 0] == BOW).all()
  assert ((rows == EOW).sum(axis=1) == 1).all()
  assert rows.min() >= 1 and rows.max() <= PAD


def test_sentence_to_char_ids_adds_bos_and_eos():
  ids = characters.sentence_to_char_ids(["a", "bé"])
  assert ids.dtype == np.int32 and ids.shape == (4, 50)
  np.testing.assert_array_equal(ids[0], characters.bos_char_ids())
  np.testing.assert_array_equal(ids[1], _row(BOW, 98, EOW))
  np.testing.assert_array_equal(ids[2], _row(BOW, 99, 0xC3 + 1, 0xA9 + 1, EOW))
  np.testing.assert_array_equal(ids[3], characters.eos_char_ids())


def test_empty_sentence_is_bos_and_eos():
  ids = characters.sentence_to_char_ids([], max_characters_per_token=5)
  np.testing.assert_array_equal(
      ids, [[BOW, BOS, EOW, PAD, PAD], [BOW, EOS, EOW, PAD, PAD]])


def test_minimum_max_characters_per_token_is_accepted():
  np.testing.assert_array_equal(characters.word_to_char_ids("abc", 3),
                                [BOW, 98, EOW])
  np.testing.assert_array_equal(characters.word_to_char_ids("<S>", 3),
                                [BOW, BOS, EOW])


@pytest.mark.parametrize("value", [2, 0, -1, 2.5, True, None])
@pytest.mark.parametrize("fn", [
    characters.word_to_char_ids,
    lambda w, n: characters.sentence_to_char_ids([w], n),
])
def test_too_small_max_characters_per_token_raises(fn, value):
  with pytest.raises(ValueError, match="max_characters_per_token must be"):
    fn("abc", value)


@pytest.mark.parametrize("fn", [characters.bos_char_ids,
                                characters.eos_char_ids])
def test_marker_rows_validate_length(fn):
  assert fn(3).shape == (3,)
  with pytest.raises(ValueError, match=">= 3"):
    fn(2)
