"""ELMo character ids: every token becomes a fixed-length row of byte ids.

The mapping is the one of bilm-tf's ``UnicodeCharsVocabulary`` and AllenNLP's
``ELMoCharacterMapper`` (see docs/elmo_format.md, "Character ids"): the UTF-8 bytes of
the token (0-255) framed by begin-of-word and end-of-word markers and padded,
with sentence markers for ``<S>`` and ``</S>``. Every id returned by this module
is already shifted by +1, so that 0 never appears in a real token and can mean
"no token" (batch padding).
"""

from typing import Sequence

import numpy as np

# Longest row; ELMo's released models all use 50.
MAX_CHARACTERS_PER_TOKEN = 50

# Raw special ids (before the +1 shift), as stored in ELMo's `char_embed` rows.
BOS_CHAR = 256  # begin of sentence
EOS_CHAR = 257  # end of sentence
BOW_CHAR = 258  # begin of word
EOW_CHAR = 259  # end of word
PAD_CHAR = 260  # padding inside a token row

# Literal tokens that map to the sentence-marker rows.
BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"

# A row needs room for the begin-of-word marker, one id and the end-of-word
# marker (the BOS/EOS rows are exactly that).
_MIN_CHARACTERS_PER_TOKEN = 3


def _check_max_characters(max_characters_per_token: int) -> None:
  if (isinstance(max_characters_per_token, bool)
      or not isinstance(max_characters_per_token, (int, np.integer))
      or max_characters_per_token < _MIN_CHARACTERS_PER_TOKEN):
    raise ValueError(
        f"max_characters_per_token must be an integer >= "
        f"{_MIN_CHARACTERS_PER_TOKEN} (begin-of-word, one character, "
        f"end-of-word), got {max_characters_per_token!r}; ELMo models use "
        f"{MAX_CHARACTERS_PER_TOKEN}, as in their options.json "
        f"char_cnn.max_characters_per_token.")


def _framed_row(ids: bytes | Sequence[int],
                max_characters_per_token: int) -> np.ndarray:
  """Builds `[BOW, ids..., EOW, PAD, ...]` and applies the +1 shift."""
  row = np.full([max_characters_per_token], PAD_CHAR, dtype=np.int32)
  row[0] = BOW_CHAR
  n = len(ids)
  row[1:n + 1] = np.frombuffer(bytes(ids), dtype=np.uint8)
  row[n + 1] = EOW_CHAR
  row += 1
  return row


def bos_char_ids(
    max_characters_per_token: int = MAX_CHARACTERS_PER_TOKEN) -> np.ndarray:
  """Returns the row of the begin-of-sentence marker.

  Args:
    max_characters_per_token: Length of the row (>= 3).

  Returns:
    int32 [max_characters_per_token], shifted: `[259, 257, 260, 261, ...]`.

  Raises:
    ValueError: If `max_characters_per_token` < 3.
  """
  _check_max_characters(max_characters_per_token)
  row = np.full([max_characters_per_token], PAD_CHAR + 1, dtype=np.int32)
  row[:3] = [BOW_CHAR + 1, BOS_CHAR + 1, EOW_CHAR + 1]
  return row


def eos_char_ids(
    max_characters_per_token: int = MAX_CHARACTERS_PER_TOKEN) -> np.ndarray:
  """Returns the row of the end-of-sentence marker.

  Args:
    max_characters_per_token: Length of the row (>= 3).

  Returns:
    int32 [max_characters_per_token], shifted: `[259, 258, 260, 261, ...]`.

  Raises:
    ValueError: If `max_characters_per_token` < 3.
  """
  _check_max_characters(max_characters_per_token)
  row = np.full([max_characters_per_token], PAD_CHAR + 1, dtype=np.int32)
  row[:3] = [BOW_CHAR + 1, EOS_CHAR + 1, EOW_CHAR + 1]
  return row


def word_to_char_ids(
    word: str,
    max_characters_per_token: int = MAX_CHARACTERS_PER_TOKEN) -> np.ndarray:
  """Maps one token to its ELMo character ids.

  The token is UTF-8 encoded (unencodable characters such as lone surrogates
  are dropped) and truncated to `max_characters_per_token - 2` bytes, which may
  cut a multi-byte character in half exactly as the reference does. The
  literal tokens `<S>` and `</S>` map to the sentence-marker rows.

  Args:
    word: The token, as a Python string.
    max_characters_per_token: Length of the row (>= 3).

  Returns:
    int32 [max_characters_per_token], shifted by +1:
    `[259, byte_0 + 1, ..., 260, 261, 261, ...]`.

  Raises:
    ValueError: If `max_characters_per_token` < 3.
  """
  if word == BOS_TOKEN:
    return bos_char_ids(max_characters_per_token)
  if word == EOS_TOKEN:
    return eos_char_ids(max_characters_per_token)
  _check_max_characters(max_characters_per_token)
  encoded = word.encode("utf-8", "ignore")[:max_characters_per_token - 2]
  return _framed_row(encoded, max_characters_per_token)


def sentence_to_char_ids(
    tokens: Sequence[str],
    max_characters_per_token: int = MAX_CHARACTERS_PER_TOKEN) -> np.ndarray:
  """Maps a tokenized sentence to character ids, adding BOS and EOS.

  Args:
    tokens: The n tokens of the sentence (without `<S>` / `</S>`).
    max_characters_per_token: Length of each row (>= 3).

  Returns:
    int32 [n + 2, max_characters_per_token], shifted by +1; row 0 is the BOS
    row and row n + 1 the EOS row.

  Raises:
    ValueError: If `max_characters_per_token` < 3.
  """
  rows = [bos_char_ids(max_characters_per_token)]
  rows.extend(word_to_char_ids(t, max_characters_per_token) for t in tokens)
  rows.append(eos_char_ids(max_characters_per_token))
  return np.stack(rows).astype(np.int32, copy=False)
