"""Word vocabulary in ELMo's file format.

A vocabulary file holds one token per line; the id of a token is its 0-based
line number. bilm-tf and the released ELMo vocabularies contain the three
special tokens `<S>`, `</S>` and `<UNK>` somewhere in the file (not necessarily
first), so they are looked up by name, never assumed at fixed ids.
"""

import codecs
import collections
import hashlib
import os
from typing import Iterable, Sequence

from absl import logging
import numpy as np

# How many offending tokens an error message lists before "...".
_MAX_LISTED = 5


def _listing(items: Sequence[object]) -> str:
  shown = ", ".join(repr(x) for x in items[:_MAX_LISTED])
  if len(items) > _MAX_LISTED:
    shown += f", ... ({len(items)} in total)"
  return shown


class Vocabulary:
  """An immutable token <-> id mapping with the ELMo special tokens.

  Ids are vocabulary indices (0-based line numbers of the vocabulary file).
  The model-side convention (index + 1, with 0 for padding) is applied in
  `prunelm_tf.data.pipeline`, not here.
  """

  BOS = "<S>"
  EOS = "</S>"
  UNK = "<UNK>"
  SPECIAL_TOKENS = (BOS, EOS, UNK)

  def __init__(self, tokens: Sequence[str]):
    """Creates a vocabulary from its tokens in id order.

    Args:
      tokens: The tokens; `tokens[i]` gets id i. Must be unique, non-empty,
        without whitespace, and include `<S>`, `</S>` and `<UNK>`.

    Raises:
      TypeError: If a token is not a `str`.
      ValueError: If a token is empty, contains whitespace or is repeated, or
        a special token is missing.
    """
    tokens = tuple(tokens)
    not_str = [t for t in tokens if not isinstance(t, str)]
    if not_str:
      raise TypeError(
          f"vocabulary tokens must be str, got {_listing(not_str)}; decode "
          f"bytes with .decode('utf-8') first.")
    empty = [i for i, t in enumerate(tokens) if not t]
    if empty:
      raise ValueError(
          f"vocabulary tokens must be non-empty, but the tokens at ids "
          f"{_listing(empty)} are empty (an empty line in a vocabulary "
          f"file); remove the empty lines.")
    # str.split() is how corpora are tokenized, so a token containing any
    # character it splits on could never be looked up.
    spaced = [t for t in tokens if t.split() != [t]]
    if spaced:
      raise ValueError(
          f"vocabulary tokens must not contain whitespace (corpora are split "
          f"on whitespace, so such a token can never occur), got "
          f"{_listing(spaced)}; remove or re-tokenize these tokens.")
    token_to_id = {}
    duplicates = []
    for i, t in enumerate(tokens):
      if t in token_to_id:
        duplicates.append(f"{t!r} at ids {token_to_id[t]} and {i}")
      else:
        token_to_id[t] = i
    if duplicates:
      raise ValueError(
          f"vocabulary tokens must be unique, got duplicates: "
          f"{'; '.join(duplicates[:_MAX_LISTED])}"
          f"{' ...' if len(duplicates) > _MAX_LISTED else ''}; remove the "
          f"repeated lines.")
    missing = [t for t in self.SPECIAL_TOKENS if t not in token_to_id]
    if missing:
      raise ValueError(
          f"the vocabulary must contain the special tokens "
          f"{', '.join(self.SPECIAL_TOKENS)}, but {', '.join(missing)} "
          f"{'is' if len(missing) == 1 else 'are'} missing ({len(tokens)} "
          f"tokens given); add them (Vocabulary.build puts them first).")
    self._tokens = tokens
    self._token_to_id = token_to_id
    self._bos_id = token_to_id[self.BOS]
    self._eos_id = token_to_id[self.EOS]
    self._unk_id = token_to_id[self.UNK]

  @classmethod
  def build(cls,
            sentences: Iterable[Sequence[str]],
            max_size: int | None = None,
            min_count: int = 1) -> "Vocabulary":
    """Builds a vocabulary from tokenized sentences.

    The specials come first (`<S>`, `</S>`, `<UNK>` = ids 0, 1, 2), then the
    corpus tokens by descending count, ties broken by code-point order, so the
    result depends only on the counts. Special tokens occurring in the corpus
    are not added twice.

    Args:
      sentences: Tokenized sentences, e.g. a corpus from `open_corpus`.
      max_size: Largest vocabulary size including the three specials (>= 4),
        or None for no limit.
      min_count: Minimum number of occurrences for a token to be kept (>= 1).

    Returns:
      The vocabulary.

    Raises:
      ValueError: If `max_size` < 4, `min_count` < 1, or no corpus token
        reaches `min_count` (e.g. the corpus is empty).
    """
    num_special = len(cls.SPECIAL_TOKENS)
    if max_size is not None and (isinstance(max_size, bool)
                                 or not isinstance(max_size, int)
                                 or max_size < num_special + 1):
      raise ValueError(
          f"max_size counts the {num_special} special tokens and must leave "
          f"room for at least one corpus token, so it must be an integer >= "
          f"{num_special + 1} or None, got {max_size!r}.")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or (
        min_count < 1):
      raise ValueError(
          f"min_count must be an integer >= 1 (1 keeps every token), got "
          f"{min_count!r}.")
    counts = collections.Counter()
    num_sentences = 0
    for sentence in sentences:
      counts.update(sentence)
      num_sentences += 1
    for special in cls.SPECIAL_TOKENS:
      counts.pop(special, None)
    kept = [(t, c) for t, c in counts.items() if c >= min_count]
    if not kept:
      raise ValueError(
          f"cannot build a vocabulary: no token occurs at least min_count="
          f"{min_count} times in the {num_sentences} sentences given "
          f"({len(counts)} distinct tokens); check that the corpus is not "
          f"empty or lower min_count.")
    kept.sort(key=lambda tc: (-tc[1], tc[0]))
    if max_size is not None:
      kept = kept[:max_size - num_special]
    logging.info(
        "Built a vocabulary of %d tokens from %d sentences (%d distinct "
        "tokens, min_count=%d, max_size=%s).", len(kept) + num_special,
        num_sentences, len(counts), min_count, max_size)
    return cls(cls.SPECIAL_TOKENS + tuple(t for t, _ in kept))

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Vocabulary":
    """Reads a vocabulary file (one UTF-8 token per line).

    The last line may lack its newline (ELMo's files do); a trailing `\\r`
    is removed from each line; nothing else is stripped or skipped.

    Args:
      path: The vocabulary file.

    Returns:
      The vocabulary.

    Raises:
      FileNotFoundError: If `path` does not exist.
      ValueError: If the file is empty, not valid UTF-8, or its tokens break
        a rule of the constructor.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
      raise ValueError(
          f"vocabulary file {path!r} is a directory; pass the vocab.txt file "
          f"inside it.")
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"vocabulary file {path!r} does not exist; pass the vocab.txt of "
          f"the run folder or of the pre-trained model.")
    with open(path, "rb") as f:
      data = f.read()
    if not data:
      raise ValueError(
          f"vocabulary file {path!r} is empty; it must hold one token per "
          f"line, including <S>, </S> and <UNK>.")
    if data.startswith(codecs.BOM_UTF8):
      # Stripping it silently would be a guess: the mark could belong to the
      # first token, and ids are line numbers.
      first = data[len(codecs.BOM_UTF8):].split(b"\n")[0]
      raise ValueError(
          f"vocabulary file {path!r} starts with a UTF-8 byte-order mark "
          f"(bytes EF BB BF, as some editors write), which would become part "
          f"of the first token {first!r}; remove it, e.g. "
          f"sed -i '1s/^\\xEF\\xBB\\xBF//' {path}.")
    nul = data.find(b"\x00")
    if nul >= 0:
      nul_line = data.count(b"\n", 0, nul) + 1
      raise ValueError(
          f"vocabulary file {path!r} holds a NUL byte at line "
          f"{nul_line} (byte offset {nul}): it is UTF-16/"
          f"UTF-32 or binary, not UTF-8 text, and no corpus token can contain "
          f"NUL; convert it (e.g. iconv -f UTF-16 -t UTF-8) or pass the right "
          f"file.")
    # Split on b"\n" only (not str.splitlines(), which also breaks at \x85,
    # \u2028, ...), so that line numbers in errors match other tools.
    lines = data.split(b"\n")
    if lines[-1] == b"":
      lines.pop()
    tokens = []
    offset = 0
    for line_number, line in enumerate(lines, start=1):
      try:
        tokens.append(line.decode("utf-8").rstrip("\r"))
      except UnicodeDecodeError as e:
        raise ValueError(
            f"vocabulary file {path!r} must be UTF-8, but line {line_number} "
            f"is not (byte offset {offset + e.start}: {e}); re-encode the "
            f"file as UTF-8 (e.g. iconv -f latin1 -t UTF-8).") from e
      offset += len(line) + 1
    try:
      return cls(tokens)
    except (TypeError, ValueError) as e:
      raise ValueError(f"invalid vocabulary file {path!r} (a token's id is "
                       f"its line number - 1): {e}") from e

  def save(self, path: str | os.PathLike) -> None:
    """Writes the vocabulary atomically, one token per line.

    The file is written to `path + ".tmp"` and renamed, so an interrupted
    save never leaves a truncated vocabulary under `path`.

    Args:
      path: Destination file; its directory must exist.

    Raises:
      FileNotFoundError: If the directory of `path` does not exist.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
      raise FileNotFoundError(
          f"cannot save the vocabulary to {path!r}: directory {directory!r} "
          f"does not exist; create it first.")
    tmp_path = path + ".tmp"
    try:
      with open(tmp_path, "wb") as f:
        f.write(self._file_bytes())
      os.replace(tmp_path, path)
    except BaseException:
      if os.path.exists(tmp_path):
        os.remove(tmp_path)
      raise
    logging.info("Saved a vocabulary of %d tokens to %s.", len(self), path)

  def _file_bytes(self) -> bytes:
    return ("\n".join(self._tokens) + "\n").encode("utf-8")

  def __len__(self) -> int:
    return len(self._tokens)

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, Vocabulary):
      return NotImplemented
    return self._tokens == other._tokens

  def __hash__(self) -> int:
    return hash(self._tokens)

  def __repr__(self) -> str:
    return (f"Vocabulary({len(self)} tokens, bos_id={self._bos_id}, "
            f"eos_id={self._eos_id}, unk_id={self._unk_id})")

  def __contains__(self, token: object) -> bool:
    return token in self._token_to_id

  @property
  def tokens(self) -> tuple[str, ...]:
    """All tokens in id order."""
    return self._tokens

  @property
  def bos_id(self) -> int:
    """Vocabulary index of `<S>`."""
    return self._bos_id

  @property
  def eos_id(self) -> int:
    """Vocabulary index of `</S>`."""
    return self._eos_id

  @property
  def unk_id(self) -> int:
    """Vocabulary index of `<UNK>`, used for every unknown token."""
    return self._unk_id

  def token_to_id(self, token: str) -> int:
    """Returns the vocabulary index of `token`, or `unk_id` if unknown."""
    return self._token_to_id.get(token, self._unk_id)

  def encode(self, tokens: Sequence[str]) -> np.ndarray:
    """Maps tokens to vocabulary indices (no BOS/EOS added, no +1 shift).

    Args:
      tokens: n tokens.

    Returns:
      int32 [n]; unknown tokens get `unk_id`.
    """
    get = self._token_to_id.get
    unk = self._unk_id
    return np.array([get(t, unk) for t in tokens], dtype=np.int32)

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Maps vocabulary indices back to tokens.

    Args:
      ids: Integer indices in [0, len(self)), e.g. int32 [n].

    Returns:
      The n tokens.

    Raises:
      ValueError: If an id is outside [0, len(self)).
    """
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < len(self._tokens)]
    if bad:
      raise ValueError(
          f"vocabulary ids must be in [0, {len(self._tokens)}), got "
          f"{_listing(bad)}; model token ids are vocabulary index + 1 "
          f"(0 = padding), subtract 1 and drop the padding before decoding.")
    return [self._tokens[i] for i in ids]

  def fingerprint(self) -> str:
    """Returns a hex SHA-256 that identifies the tokens and their order.

    It equals the SHA-256 of the file written by `save`, so it can also be
    checked with `sha256sum vocab.txt`.
    """
    return hashlib.sha256(self._file_bytes()).hexdigest()
