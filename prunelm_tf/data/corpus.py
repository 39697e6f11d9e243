"""Corpora: re-iterable sources of whitespace-tokenized sentences.

A corpus yields each sentence as a `list[str]` of tokens (`str.split()` of a
line, case kept), skipping blank lines and lines that are not valid UTF-8
(each logged with its file, line and byte offset).
Text files hold one sentence per line (PTB, WikiText, 1B Word Benchmark);
TFDS datasets hold one sentence per example (lm1b).

A text file that is evidently not UTF-8 text is refused rather than skipped
line by line, naming the file, line and byte offset: one that starts like a
compressed archive or with a UTF-16/UTF-32 byte-order mark, or holds a NUL
byte (UTF-16/32 text and binary files do; UTF-8 text never does). A UTF-8
byte-order mark at the start of a file is dropped.
"""

import codecs
import glob
import os
from typing import Any, Iterable, Iterator, Sequence

from absl import logging

# Undecodable lines logged one by one per pass; the rest only as a count.
_MAX_LOGGED_UNDECODABLE = 5

_TFDS_PREFIX = "tfds:"

# File starts that mean "not UTF-8 text": (prefix, what the file is). UTF-32
# marks come first: UTF-32 LE starts with UTF-16 LE's mark.
_NOT_TEXT_STARTS = (
    (codecs.BOM_UTF32_LE, "UTF-32 text"), (codecs.BOM_UTF32_BE, "UTF-32 text"),
    (codecs.BOM_UTF16_LE, "UTF-16 text"), (codecs.BOM_UTF16_BE, "UTF-16 text"),
    (b"\x1f\x8b", "gzip-compressed"), (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"), (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"PK\x03\x04", "a zip archive"),
)


def _not_text(path: str, line_number: int, offset: int, what: str) -> ValueError:
  return ValueError(
      f"{path}, line {line_number}, byte offset {offset}: the file is {what}, not UTF-8 text; "
      "a corpus file holds one UTF-8 sentence per line. Decompress or convert it first "
      "(e.g. iconv -f UTF-16 -t UTF-8), or leave it out of the corpus pattern.")


def _check_max_sentences(max_sentences: int | None) -> None:
  if max_sentences is None:
    return
  if (isinstance(max_sentences, bool) or not isinstance(max_sentences, int)
      or max_sentences < 1):
    raise ValueError(
        f"max_sentences must be an integer >= 1, or None to read the whole "
        f"corpus, got {max_sentences!r}.")


class _Corpus:
  """Shared iteration logic: decoding, skipping, counting, limiting.

  Subclasses implement `_raw_lines()`, yielding `(raw_bytes, source, number,
  offset)` where `source`, `number` and `offset` (the byte offset of the line
  in its file, or None) locate the line for messages.
  """

  # What `number` counts in log messages ("line" or "example").
  _UNIT = "line"

  def __init__(self, max_sentences: int | None):
    _check_max_sentences(max_sentences)
    self.max_sentences = max_sentences
    # Statistics of the last (or current) pass.
    self.num_sentences = 0
    self.num_undecodable_lines = 0
    # Where the first undecodable line of the last pass is, e.g.
    # "c.txt, line 2, byte offset 9"; None if there was none.
    self.first_undecodable = None

  def _raw_lines(self) -> Iterator[tuple[Any, str, int, int | None]]:
    raise NotImplementedError

  def __iter__(self) -> Iterator[list[str]]:
    self.num_sentences = 0
    self.num_undecodable_lines = 0
    self.first_undecodable = None
    try:
      for raw, source, number, offset in self._raw_lines():
        if isinstance(raw, str):
          text = raw
        else:
          try:
            text = bytes(raw).decode("utf-8")
          except UnicodeDecodeError as e:
            self.num_undecodable_lines += 1
            where = f"{self._UNIT} {number}" + (
                "" if offset is None else f", byte offset {offset + e.start}")
            if self.first_undecodable is None:
              self.first_undecodable = f"{source}, {where}"
            if self.num_undecodable_lines <= _MAX_LOGGED_UNDECODABLE:
              logging.warning("Skipping %s %d of %s: not valid UTF-8 (%s; at %s).",
                              self._UNIT, number, source, e, where)
            continue
        tokens = text.split()
        if not tokens:
          continue
        self.num_sentences += 1
        yield tokens
        if (self.max_sentences is not None
            and self.num_sentences >= self.max_sentences):
          return
    finally:
      if self.num_undecodable_lines:
        logging.warning(
            "Skipped %d %ss of %r that are not valid UTF-8 (at most the "
            "first %d are listed above).", self.num_undecodable_lines,
            self._UNIT, self, _MAX_LOGGED_UNDECODABLE)


class TextFileCorpus(_Corpus):
  """Sentences from text files, one sentence per line.

  Files are read in binary; each line is decoded as strict UTF-8 and split on
  whitespace. Blank lines are skipped; lines that are not valid UTF-8 are
  skipped, counted in `num_undecodable_lines` and logged. A file that is not
  UTF-8 text at all (module docstring) raises ValueError when reached. The
  corpus can be iterated any number of times; the counters describe the last
  pass.
  """

  def __init__(self,
               pattern: str | os.PathLike | Sequence[str | os.PathLike],
               max_sentences: int | None = None):
    """Resolves the files.

    Args:
      pattern: A path or glob (`~` is expanded), or a sequence of them. Each
        glob is expanded in sorted order; sequences keep their order.
      max_sentences: Stop after this many sentences (>= 1), or None to read
        everything. For quick runs.

    Raises:
      FileNotFoundError: If a pattern matches no file.
      ValueError: If `pattern` is an empty sequence or `max_sentences` < 1.
    """
    super().__init__(max_sentences)
    if isinstance(pattern, (str, os.PathLike)):
      patterns = [os.fspath(pattern)]
    else:
      patterns = [os.fspath(p) for p in pattern]
      if not patterns:
        raise ValueError(
            "pattern must name at least one file or glob, got an empty "
            "sequence; pass e.g. 'data/ptb/ptb.train.txt'.")
    files = []
    for p in patterns:
      expanded = os.path.expanduser(p)
      matches = sorted(m for m in glob.glob(expanded) if os.path.isfile(m))
      if not matches:
        raise FileNotFoundError(
            f"no file matches the corpus pattern {p!r} (expanded to "
            f"{expanded!r}); check the path, or quote the glob so that the "
            f"shell does not expand it.")
      files.extend(matches)
    self.pattern = patterns[0] if len(patterns) == 1 else tuple(patterns)
    self.files = tuple(files)

  def __repr__(self) -> str:
    return f"TextFileCorpus({self.pattern!r}, {len(self.files)} file(s))"

  def _raw_lines(self) -> Iterator[tuple[bytes, str, int, int]]:
    for path in self.files:
      # Binary iteration splits on b"\n" only, as the corpora are defined.
      with open(path, "rb") as f:
        offset = 0
        for line_number, line in enumerate(f, start=1):
          start = offset
          offset += len(line)
          if line_number == 1:
            for prefix, what in _NOT_TEXT_STARTS:
              if line.startswith(prefix):
                raise _not_text(path, 1, 0, what)
            if line.startswith(codecs.BOM_UTF8):
              line, start = line[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
          nul = line.find(b"\x00")
          if nul >= 0:
            raise _not_text(path, line_number, start + nul,
                            "binary or UTF-16/UTF-32 (it holds a NUL byte)")
          yield line, path, line_number, start


class TfdsCorpus(_Corpus):
  """Sentences from a TensorFlow Datasets text dataset (e.g. lm1b).

  The dataset is loaded on each iteration (`tfds.load` is lazy and cheap once
  the data is prepared). Each example's `text_key` feature is decoded as
  strict UTF-8 and split on whitespace; blank and undecodable examples are
  skipped as in `TextFileCorpus`.
  """

  _UNIT = "example"

  def __init__(self,
               name: str,
               split: str,
               text_key: str = "text",
               data_dir: str | None = None,
               max_sentences: int | None = None):
    """Stores the dataset coordinates; nothing is loaded yet.

    Args:
      name: TFDS name, optionally with config and version (`lm1b`,
        `lm1b:1.1.0`).
      split: TFDS split, slicing allowed (`test`, `train[:1%]`).
      text_key: Feature holding the sentence (`text` for lm1b).
      data_dir: TFDS data directory, or None for TFDS' default.
      max_sentences: Stop after this many sentences (>= 1), or None.

    Raises:
      ValueError: If `name`, `split` or `text_key` is empty, or
        `max_sentences` < 1.
    """
    super().__init__(max_sentences)
    for arg, value in (("name", name), ("split", split),
                       ("text_key", text_key)):
      if not isinstance(value, str) or not value:
        raise ValueError(
            f"TfdsCorpus {arg} must be a non-empty string, got {value!r}; "
            f"e.g. TfdsCorpus('lm1b', 'test', text_key='text').")
    self.name = name
    self.split = split
    self.text_key = text_key
    self.data_dir = data_dir

  def __repr__(self) -> str:
    return f"TfdsCorpus({self.name!r}, split={self.split!r})"

  def _raw_lines(self) -> Iterator[tuple[bytes, str, int, None]]:
    # Imported here: tensorflow_datasets takes seconds to import and is only
    # needed for this corpus.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    dataset = tfds.load(self.name, split=self.split, data_dir=self.data_dir)
    source = f"{self.name}/{self.split}"
    if self.text_key not in dataset.element_spec:
      raise ValueError(
          f"TFDS dataset {source!r} has no feature {self.text_key!r}; its "
          f"features are {sorted(dataset.element_spec)}; pass one of them as "
          f"text_key (or as the ':KEY' suffix of the corpus spec).")
    for index, example in enumerate(tfds.as_numpy(dataset)):
      yield example[self.text_key], source, index, None


def _split_text_key(split_and_key: str) -> tuple[str, str | None]:
  """Splits `SPLIT[:KEY]`, ignoring colons inside slices like `train[:10]`."""
  depth = 0
  for i in range(len(split_and_key) - 1, -1, -1):
    c = split_and_key[i]
    if c == "]":
      depth += 1
    elif c == "[":
      depth -= 1
    elif c == ":" and depth == 0:
      return split_and_key[:i], split_and_key[i + 1:]
  return split_and_key, None


def open_corpus(spec: str,
                *,
                max_sentences: int | None = None,
                data_dir: str | None = None) -> TextFileCorpus | TfdsCorpus:
  """Opens a corpus from a command-line style spec.

  Args:
    spec: `tfds:NAME/SPLIT` or `tfds:NAME/SPLIT:TEXT_KEY` for a TFDS dataset
      (`tfds:lm1b/test`, `tfds:lm1b/train[:1%]`; the text key defaults to
      `text`); anything else is a path or glob of text files.
    max_sentences: Stop after this many sentences (>= 1), or None.
    data_dir: TFDS data directory (ignored for text files).

  Returns:
    The corpus.

  Raises:
    FileNotFoundError: If a file glob matches nothing.
    ValueError: If a `tfds:` spec lacks the name or the split.
  """
  if not spec.startswith(_TFDS_PREFIX):
    return TextFileCorpus(spec, max_sentences=max_sentences)
  rest = spec[len(_TFDS_PREFIX):]
  name, slash, split_and_key = rest.rpartition("/")
  split, text_key = _split_text_key(split_and_key)
  if not slash or not name or not split or text_key == "":
    raise ValueError(
        f"a TFDS corpus spec must be 'tfds:NAME/SPLIT' or "
        f"'tfds:NAME/SPLIT:TEXT_KEY', got {spec!r}; e.g. 'tfds:lm1b/test'.")
  return TfdsCorpus(name, split, text_key=text_key or "text",
                    data_dir=data_dir, max_sentences=max_sentences)


def read_sentences(corpus: Iterable[Sequence[str]]) -> list[list[str]]:
  """Reads a whole corpus into memory.

  Args:
    corpus: A corpus (or any iterable of token sequences).

  Returns:
    The sentences, each a list of tokens.

  Raises:
    ValueError: If the corpus yields no sentence.
  """
  sentences = [list(s) for s in corpus]
  if not sentences:
    undecodable = getattr(corpus, "num_undecodable_lines", 0)
    first = getattr(corpus, "first_undecodable", None)
    files = getattr(corpus, "files", ())
    raise ValueError(
        f"the corpus {corpus!r} contains no sentences (blank lines and "
        f"{undecodable} lines that are not valid UTF-8 were skipped"
        f"{f'; the first at {first}' if first else ''})"
        f"{'; files: ' + ', '.join(files[:3]) if files else ''}"
        f"{' ...' if len(files) > 3 else ''}. Check the path and that the files "
        f"hold UTF-8 text, one sentence per line (convert other encodings with "
        f"iconv -t UTF-8).")
  logging.info("Read %d sentences (%d tokens) from %r.", len(sentences),
               sum(len(s) for s in sentences), corpus)
  return sentences


def load_corpus(spec: str, max_sentences: int = 0, tfds_data_dir: str = "", *, what: str):
  """Reads a corpus into memory; errors name the config field ``what``."""
  try:
    corpus = open_corpus(spec, max_sentences=max_sentences or None,
                                  data_dir=tfds_data_dir or None)
    return read_sentences(corpus)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f"{what}: {e}") from e
