"""Tests for prunelm_tf.data.vocabulary."""

import hashlib

import numpy as np
import pytest

from prunelm_tf.data.vocabulary import Vocabulary

SPECIALS = ["<S>", "</S>", "<UNK>"]


def _vocab(*words):
  return Vocabulary(SPECIALS + list(words))


def test_class_attributes():
  assert (Vocabulary.BOS, Vocabulary.EOS, Vocabulary.UNK) == tuple(SPECIALS)


def test_ids_are_positions():
  vocab = Vocabulary(["a", "</S>", "<UNK>", "b", "<S>"])
  assert len(vocab) == 5
  assert vocab.tokens == ("a", "</S>", "<UNK>", "b", "<S>")
  assert (vocab.bos_id, vocab.eos_id, vocab.unk_id) == (4, 1, 2)
  assert vocab.token_to_id("b") == 3
  assert vocab.token_to_id("never seen") == 2


def test_encode_and_decode():
  vocab = _vocab("the", "cat")
  ids = vocab.encode(["the", "dog", "cat"])
  assert ids.dtype == np.int32
  np.testing.assert_array_equal(ids, [3, 2, 4])
  assert vocab.encode([]).shape == (0,)
  assert vocab.decode(ids) == ["the", "<UNK>", "cat"]
  assert vocab.decode([0, len(vocab) - 1]) == ["<S>", "cat"]


@pytest.mark.parametrize("bad_id", [-1, 5])
def test_decode_out_of_range_raises(bad_id):
  with pytest.raises(ValueError, match=r"must be in \[0, 5\)"):
    _vocab("the", "cat").decode([0, bad_id])


def test_equality_and_hash():
  assert _vocab("a") == _vocab("a")
  assert hash(_vocab("a")) == hash(_vocab("a"))
  assert _vocab("a") != _vocab("b")
  assert _vocab("a") != ("<S>", "</S>", "<UNK>", "a")


def test_fingerprint_depends_on_tokens_and_order():
  assert _vocab("a", "b").fingerprint() == _vocab("a", "b").fingerprint()
  assert _vocab("a", "b").fingerprint() != _vocab("b", "a").fingerprint()
  assert len(_vocab("a").fingerprint()) == 64


@pytest.mark.parametrize("tokens, message", [
    (SPECIALS + ["a", "b", "a"], "unique.*'a' at ids 3 and 5"),
    (SPECIALS + ["a", ""], "non-empty.*ids 4"),
    (SPECIALS + ["a b"], "whitespace.*'a b'"),
    (SPECIALS + ["a\tb"], "whitespace"),
    (SPECIALS + [" a"], "whitespace"),
    (SPECIALS + ["a\u00a0b"], "whitespace"),
    (["</S>", "<UNK>", "a"], "<S> is missing.*add them"),
    (["a", "b"], "<S>, </S>, <UNK> are missing"),
])
def test_invalid_tokens_raise(tokens, message):
  with pytest.raises(ValueError, match=message):
    Vocabulary(tokens)


def test_non_string_token_raises():
  with pytest.raises(TypeError, match="must be str"):
    Vocabulary(SPECIALS + [b"a"])


def test_minimal_vocabulary_is_valid():
  assert len(Vocabulary(SPECIALS)) == 3


def test_load_bilm_tf_fixture_vocab(shared_data):
  path = shared_data / "bilm_tf_fixture" / "train" / "vocab.txt"
  vocab = Vocabulary.load(path)
  lines = path.read_text(encoding="utf-8").splitlines()
  assert vocab.tokens == tuple(lines)
  assert (vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  assert vocab.token_to_id("neural") == 5


def test_load_elmo_fixture_vocab_without_trailing_newline(shared_data):
  path = shared_data / "elmo_fixture" / "vocab_test.txt"
  assert not path.read_bytes().endswith(b"\n")
  vocab = Vocabulary.load(str(path))
  assert len(vocab) == path.read_bytes().count(b"\n") + 1
  assert vocab.tokens[0] == "good" and vocab.tokens[-1] == "function"
  assert (vocab.bos_id, vocab.unk_id, vocab.eos_id) == (20, 117, 224)
  assert vocab.token_to_id("•") == 141


def test_save_load_roundtrip(tmp_path):
  vocab = _vocab("héllo", "•", "<unk>")
  path = tmp_path / "vocab.txt"
  vocab.save(path)
  data = path.read_bytes()
  assert data.endswith(b"\n") and data.count(b"\n") == len(vocab)
  assert Vocabulary.load(path) == vocab
  assert vocab.fingerprint() == hashlib.sha256(data).hexdigest()
  assert [p.name for p in tmp_path.iterdir()] == ["vocab.txt"]


def test_save_replaces_existing_file(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("old\n")
  _vocab("new").save(str(path))
  assert Vocabulary.load(path) == _vocab("new")
  assert not (tmp_path / "vocab.txt.tmp").exists()


def test_save_into_missing_directory_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    _vocab("a").save(tmp_path / "missing" / "vocab.txt")


def test_load_strips_carriage_returns(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"<S>\r\n</S>\r\n<UNK>\r\nword\r\n")
  assert Vocabulary.load(path) == _vocab("word")


def test_load_missing_file_raises(tmp_path):
  path = tmp_path / "nope.txt"
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    Vocabulary.load(path)


def test_load_empty_file_raises(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"")
  with pytest.raises(ValueError, match="is empty"):
    Vocabulary.load(path)


def test_load_does_not_skip_blank_lines(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"<S>\n</S>\n\n<UNK>\n")
  with pytest.raises(ValueError, match="vocab.txt.*non-empty.*ids 2"):
    Vocabulary.load(path)


def test_load_file_without_specials_names_them(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"<S>\nthe\n")
  with pytest.raises(ValueError, match="</S>, <UNK> are missing"):
    Vocabulary.load(path)


def test_load_non_utf8_raises(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"<S>\n</S>\n<UNK>\n\xff\n")
  with pytest.raises(ValueError, match="line 4 is not"):
    Vocabulary.load(path)


def test_build_orders_by_count_then_alphabetically():
  sentences = [["b", "a", "c", "b"], ["c", "b", "d"], ["a"]]
  vocab = Vocabulary.build(sentences)
  assert vocab.tokens == ("<S>", "</S>", "<UNK>", "b", "a", "c", "d")
  assert Vocabulary.build(iter(sentences)) == vocab  # any iterable


def test_build_does_not_repeat_specials():
  vocab = Vocabulary.build([["<S>", "x", "<UNK>", "</S>"]])
  assert vocab.tokens == ("<S>", "</S>", "<UNK>", "x")


def test_build_max_size_counts_specials():
  sentences = [["a", "a", "b"]]
  assert Vocabulary.build(sentences, max_size=4).tokens[3:] == ("a",)
  assert len(Vocabulary.build(sentences, max_size=100)) == 5
  assert len(Vocabulary.build(sentences, max_size=None)) == 5


@pytest.mark.parametrize("max_size", [3, 0, -1, 4.0, True])
def test_build_bad_max_size_raises(max_size):
  with pytest.raises(ValueError, match="max_size .* >= 4"):
    Vocabulary.build([["a"]], max_size=max_size)


def test_build_min_count():
  sentences = [["a", "a", "b"]]
  assert Vocabulary.build(sentences, min_count=1).tokens[3:] == ("a", "b")
  assert Vocabulary.build(sentences, min_count=2).tokens[3:] == ("a",)
  with pytest.raises(ValueError, match="no token occurs at least min_count=3"):
    Vocabulary.build(sentences, min_count=3)


@pytest.mark.parametrize("min_count", [0, -2, 1.5])
def test_build_bad_min_count_raises(min_count):
  with pytest.raises(ValueError, match="min_count must be an integer >= 1"):
    Vocabulary.build([["a"]], min_count=min_count)


@pytest.mark.parametrize("sentences", [[], [[]], [["<S>", "</S>"]]])
def test_build_from_empty_corpus_raises(sentences):
  with pytest.raises(ValueError, match="check that the corpus is not empty"):
    Vocabulary.build(sentences)


# --- vocabulary files from elsewhere -------------------------------------------

_VALID_LINES = [b"the", b"</S>", b"<S>", b"<UNK>", b"cat"]  # specials need not come first


def _mutations():
  for i, token in enumerate(_VALID_LINES):
    if token.startswith(b"<"):
      yield f"drop-{token.decode()}", _VALID_LINES[:i] + _VALID_LINES[i + 1:], "missing"
    yield f"repeat-{i}", _VALID_LINES + [token], f"at ids {i} and 5"
    yield f"blank-before-{i}", _VALID_LINES[:i] + [b""] + _VALID_LINES[i:], "non-empty"
    yield f"space-in-{i}", _VALID_LINES[:i] + [token + b" x"] + _VALID_LINES[i + 1:], "whitespace"
    yield f"latin1-in-{i}", _VALID_LINES[:i] + [token + b"\xe9"] + _VALID_LINES[i + 1:], (
        f"line {i + 1} is not")
    yield f"nul-in-{i}", _VALID_LINES[:i] + [b"\x00" + token] + _VALID_LINES[i + 1:], (
        f"NUL byte at line {i + 1}")


_VOCAB_CASES = list(_mutations())


def test_vocabulary_fuzz_case_count():
  assert len(_VOCAB_CASES) == 3 + 5 * 5 == 28


@pytest.mark.parametrize("name,lines,message", _VOCAB_CASES, ids=[c[0] for c in _VOCAB_CASES])
def test_mutated_vocabulary_file_is_refused_naming_it(tmp_path, name, lines, message):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"\n".join(lines) + b"\n")
  with pytest.raises(ValueError, match=message) as e:
    Vocabulary.load(path)
  assert str(path) in str(e.value)


def test_valid_vocabulary_file_with_specials_anywhere_loads(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"\n".join(_VALID_LINES))
  vocab = Vocabulary.load(path)
  assert (vocab.bos_id, vocab.eos_id, vocab.unk_id) == (2, 1, 3)


def test_duplicate_in_file_names_file_and_ids(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"<S>\n</S>\n<UNK>\nthe\nthe\n")
  with pytest.raises(ValueError, match=r"vocab.txt' \(a token's id is its line number - 1\): "
                     r"vocabulary tokens must be unique, got duplicates: 'the' at ids 3 and 4"):
    Vocabulary.load(path)


def test_byte_order_mark_is_refused(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"\xef\xbb\xbf<S>\n</S>\n<UNK>\n")
  with pytest.raises(ValueError, match=r"starts with a UTF-8 byte-order mark .*first token "
                     r"b'<S>'; remove it"):
    Vocabulary.load(path)


def test_non_utf8_gives_the_byte_offset(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"<S>\n</S>\n<UNK>\ncaf\xe9\n")
  with pytest.raises(ValueError, match=r"line 4 is not \(byte offset 18"):
    Vocabulary.load(path)


def test_directory_is_refused(tmp_path):
  with pytest.raises(ValueError, match="is a directory; pass the vocab.txt file"):
    Vocabulary.load(tmp_path)
