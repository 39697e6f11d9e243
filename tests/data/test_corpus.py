"""Tests for prunelm_tf.data.corpus."""

import logging

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from prunelm_tf.data import corpus as corpus_lib


def _corpus_warnings(caplog):
  return [r for r in caplog.records
          if r.module == "corpus" and r.levelno == logging.WARNING]


def _write(path, data: bytes):
  path.write_bytes(data)
  return path


def test_reads_bilm_tf_fixture(shared_data):
  path = shared_data / "bilm_tf_fixture" / "train" / "data.txt"
  assert not path.read_bytes().endswith(b"\n")  # last line unterminated
  corpus = corpus_lib.TextFileCorpus(str(path))
  sentences = list(corpus)
  assert [len(s) for s in sentences] == [15, 8, 74, 25, 12]
  assert sentences[1] == "these models make use of neural networks .".split()
  assert sentences[4][-1] == "."
  assert corpus.num_sentences == 5 and corpus.num_undecodable_lines == 0


def test_undecodable_line_is_counted_and_skipped(tmp_path, caplog):
  path = _write(tmp_path / "c.txt", b"good one\n\xff\xfe bad\nh\xc3\xa9 two\n")
  corpus = corpus_lib.TextFileCorpus(path)
  sentences = list(corpus)
  assert sentences == [["good", "one"], ["hé", "two"]]
  assert corpus.num_undecodable_lines == 1
  assert corpus.num_sentences == 2
  warnings = _corpus_warnings(caplog)
  assert len(warnings) == 2  # the line, then the summary
  assert warnings[0].args[:3] == ("line", 2, str(path))


def test_only_the_first_undecodable_lines_are_logged_individually(
    tmp_path, caplog):
  path = _write(tmp_path / "c.txt", b"ok\n" + b"\xff\n" * 7 + b"fine\n")
  corpus = corpus_lib.TextFileCorpus(path)
  assert list(corpus) == [["ok"], ["fine"]]
  assert corpus.num_undecodable_lines == 7
  warnings = _corpus_warnings(caplog)
  assert len(warnings) == 5 + 1
  assert [w.args[1] for w in warnings[:5]] == [2, 3, 4, 5, 6]
  assert warnings[-1].args[0] == 7


def test_blank_lines_are_skipped(tmp_path):
  path = _write(tmp_path / "c.txt", b"\n  \t \r\na  b\r\n\n c \n   ")
  assert list(corpus_lib.TextFileCorpus(path)) == [["a", "b"], ["c"]]


def test_corpus_is_re_iterable_and_counters_describe_last_pass(tmp_path):
  path = _write(tmp_path / "c.txt", b"a\n\xff\nb\nc\n")
  corpus = corpus_lib.TextFileCorpus(path, max_sentences=None)
  assert len(list(corpus)) == 3
  assert len(list(corpus)) == 3
  assert (corpus.num_sentences, corpus.num_undecodable_lines) == (3, 1)
  limited = corpus_lib.TextFileCorpus(path, max_sentences=1)
  assert list(limited) == [["a"]]
  assert (limited.num_sentences, limited.num_undecodable_lines) == (1, 0)


def test_max_sentences_limits_across_files(tmp_path):
  _write(tmp_path / "a.txt", b"1\n2\n")
  _write(tmp_path / "b.txt", b"3\n4\n")
  corpus = corpus_lib.TextFileCorpus(str(tmp_path / "*.txt"), max_sentences=3)
  assert list(corpus) == [["1"], ["2"], ["3"]]


@pytest.mark.parametrize("max_sentences", [0, -1, 1.0, True])
def test_bad_max_sentences_raises(tmp_path, max_sentences):
  path = _write(tmp_path / "c.txt", b"a\n")
  with pytest.raises(ValueError, match="max_sentences must be an integer >= 1"):
    corpus_lib.TextFileCorpus(path, max_sentences=max_sentences)


def test_glob_of_two_files_is_sorted(tmp_path):
  _write(tmp_path / "part-2.txt", b"second file\n")
  _write(tmp_path / "part-1.txt", b"first file\n")
  _write(tmp_path / "other.dat", b"not matched\n")
  (tmp_path / "part-3.txt").mkdir()  # directories are not files
  corpus = corpus_lib.TextFileCorpus(str(tmp_path / "part-*.txt"))
  assert [p.rsplit("/", 1)[1] for p in corpus.files] == ["part-1.txt",
                                                         "part-2.txt"]
  assert list(corpus) == [["first", "file"], ["second", "file"]]


def test_sequence_of_patterns_keeps_order(tmp_path):
  a = _write(tmp_path / "a.txt", b"a\n")
  b = _write(tmp_path / "b.txt", b"b\n")
  assert list(corpus_lib.TextFileCorpus([b, str(a)])) == [["b"], ["a"]]


def test_home_is_expanded(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  _write(tmp_path / "c.txt", b"home sweet home\n")
  assert list(corpus_lib.TextFileCorpus("~/c.txt")) == [
      ["home", "sweet", "home"]]


@pytest.mark.parametrize("pattern", ["missing.txt", "*.nothing", "sub"])
def test_missing_path_raises(tmp_path, pattern):
  (tmp_path / "sub").mkdir()
  full = str(tmp_path / pattern)
  with pytest.raises(FileNotFoundError, match="no file matches") as info:
    corpus_lib.TextFileCorpus(full)
  assert full in str(info.value)


def test_one_missing_pattern_of_several_raises(tmp_path):
  a = _write(tmp_path / "a.txt", b"a\n")
  with pytest.raises(FileNotFoundError, match="b.txt"):
    corpus_lib.TextFileCorpus([a, tmp_path / "b.txt"])


def test_empty_pattern_list_raises():
  with pytest.raises(ValueError, match="at least one file"):
    corpus_lib.TextFileCorpus([])


def test_read_sentences(tmp_path):
  path = _write(tmp_path / "c.txt", b"a b\nc\n")
  assert corpus_lib.read_sentences(corpus_lib.TextFileCorpus(path)) == [
      ["a", "b"], ["c"]]
  assert corpus_lib.read_sentences([("x",)]) == [["x"]]


def test_read_sentences_of_empty_corpus_raises(tmp_path):
  path = _write(tmp_path / "blank.txt", b"\n   \n\t\n\xff\n")
  corpus = corpus_lib.TextFileCorpus(path)
  with pytest.raises(ValueError, match="contains no sentences") as info:
    corpus_lib.read_sentences(corpus)
  assert "blank.txt" in str(info.value)
  assert "1 lines that are not valid UTF-8" in str(info.value)


def test_open_corpus_text_files(tmp_path):
  _write(tmp_path / "c.txt", b"a\nb\n")
  corpus = corpus_lib.open_corpus(str(tmp_path / "*.txt"), max_sentences=1)
  assert isinstance(corpus, corpus_lib.TextFileCorpus)
  assert list(corpus) == [["a"]]


@pytest.mark.parametrize("spec, name, split, text_key", [
    ("tfds:lm1b/test", "lm1b", "test", "text"),
    ("tfds:lm1b:1.1.0/train[:10%]", "lm1b:1.1.0", "train[:10%]", "text"),
    ("tfds:lm1b/train[5:10]:sentence", "lm1b", "train[5:10]", "sentence"),
    ("tfds:wiki/en/validation:body", "wiki/en", "validation", "body"),
])
def test_open_corpus_tfds_spec(spec, name, split, text_key):
  corpus = corpus_lib.open_corpus(spec, max_sentences=3, data_dir="/d")
  assert isinstance(corpus, corpus_lib.TfdsCorpus)
  assert (corpus.name, corpus.split, corpus.text_key) == (name, split,
                                                          text_key)
  assert corpus.data_dir == "/d" and corpus.max_sentences == 3


@pytest.mark.parametrize(
    "spec", ["tfds:lm1b", "tfds:/test", "tfds:lm1b/", "tfds:lm1b/test:"])
def test_open_corpus_bad_tfds_spec_raises(spec):
  with pytest.raises(ValueError, match="'tfds:NAME/SPLIT'"):
    corpus_lib.open_corpus(spec)


@pytest.mark.parametrize("kwargs", [
    dict(name="", split="test"),
    dict(name="lm1b", split=""),
    dict(name="lm1b", split="test", text_key=""),
])
def test_tfds_corpus_empty_arguments_raise(kwargs):
  with pytest.raises(ValueError, match="must be a non-empty string"):
    corpus_lib.TfdsCorpus(**kwargs)


def test_tfds_corpus_with_mock_data():
  corpus = corpus_lib.TfdsCorpus("lm1b", "test")
  with tfds.testing.mock_data(num_examples=6):
    sentences = list(corpus)
  # Random mock text: every example decodes; an all-space one would be
  # skipped as blank.
  assert 1 <= len(sentences) <= 6
  assert corpus.num_sentences == len(sentences)
  assert all(isinstance(t, str) and t for s in sentences for t in s)


def _fixed_as_dataset(texts):
  def as_dataset(self, split, **kwargs):
    del self, split, kwargs
    return tf.data.Dataset.from_tensor_slices({"text": texts})
  return as_dataset


def test_tfds_corpus_skips_undecodable_and_blank_examples(caplog):
  texts = [b"the first one", b"\xff\xfe bad", b"   ", "s\u00e9cond".encode(),
           b"third"]
  corpus = corpus_lib.open_corpus("tfds:lm1b/test")
  with tfds.testing.mock_data(as_dataset_fn=_fixed_as_dataset(texts)):
    assert list(corpus) == [["the", "first", "one"], ["s\u00e9cond"],
                            ["third"]]
    assert (corpus.num_sentences, corpus.num_undecodable_lines) == (3, 1)
    assert _corpus_warnings(caplog)[0].args[:3] == ("example", 1, "lm1b/test")
    limited = corpus_lib.open_corpus("tfds:lm1b/test", max_sentences=2)
    assert len(list(limited)) == 2


def test_tfds_corpus_missing_text_key_raises():
  corpus = corpus_lib.open_corpus("tfds:lm1b/test:sentence")
  with tfds.testing.mock_data(num_examples=1):
    with pytest.raises(ValueError, match=r"no feature 'sentence'.*\['text'\]"):
      list(corpus)


# --- files that are not UTF-8 text ---------------------------------------------


@pytest.mark.parametrize("data,line,offset,what", [
    ("a b\nc\n".encode("utf-16"), 1, 0, "UTF-16 text"),
    ("a b\n".encode("utf-32"), 1, 0, "UTF-32 text"),
    ("a b\nc\n".encode("utf-16-le"), 1, 1, "holds a NUL byte"),
    (b"good line\nbad\x00line\n", 2, 13, "holds a NUL byte"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", 1, 0, "gzip-compressed"),
    (b"BZh91AY&SY", 1, 0, "bzip2-compressed"),
    (b"PK\x03\x04\x14\x00", 1, 0, "a zip archive"),
])
def test_file_that_is_not_utf8_text_is_refused_naming_line_and_offset(tmp_path, data, line,
                                                                       offset, what):
  path = _write(tmp_path / "c.txt", data)
  with pytest.raises(ValueError) as e:
    list(corpus_lib.TextFileCorpus(path))
  message = str(e.value)
  assert message.startswith(f"{path}, line {line}, byte offset {offset}: the file is ")
  assert what in message and "UTF-8" in message


def test_nul_free_text_with_multibyte_characters_passes(tmp_path):
  path = _write(tmp_path / "c.txt", "h\u00e9 \u4e2d\u6587 \U0001F600\n".encode())
  assert list(corpus_lib.TextFileCorpus(path)) == [["h\u00e9", "\u4e2d\u6587", "\U0001F600"]]


def test_utf8_byte_order_mark_is_dropped(tmp_path):
  path = _write(tmp_path / "c.txt", b"\xef\xbb\xbfa b\n\xef\xbb\xbfc\n")
  # Only at the start of a file; elsewhere U+FEFF is a character of a token.
  assert list(corpus_lib.TextFileCorpus(path)) == [["a", "b"], ["\ufeffc"]]


def test_undecodable_line_warning_gives_the_byte_offset(tmp_path, caplog):
  path = _write(tmp_path / "c.txt", b"good one\nok \xff bad\n")
  assert list(corpus_lib.TextFileCorpus(path)) == [["good", "one"]]
  assert _corpus_warnings(caplog)[0].args[4] == "line 2, byte offset 12"


def test_empty_corpus_error_names_the_first_undecodable_line(tmp_path):
  path = _write(tmp_path / "latin1.txt", "caf\u00e9\nna\u00efve\n".encode("latin-1"))
  with pytest.raises(ValueError) as e:
    corpus_lib.read_sentences(corpus_lib.TextFileCorpus(path))
  message = str(e.value)
  assert f"the first at {path}, line 1, byte offset 3" in message
  assert "2 lines that are not valid UTF-8" in message and "iconv" in message
