"""Turns tokenized sentences into batched model inputs (`tf.data`).

Conventions the models rely on:

* Model token ids are vocabulary index + 1, so that 0 means batch padding.
* Every sentence is wrapped as `<S> tokens </S>`, so a sentence of n tokens
  takes n + 2 positions and gives n + 1 language-model predictions per
  direction.
* Character ids follow `prunelm_tf.data.characters` (already shifted by +1);
  padding positions are all-zero rows.

Sentences are encoded once into flat numpy arrays (a dict lookup per token);
the `tf.data` pipeline then only slices, shuffles, buckets and pads, with no
Python in the loop.
"""

import dataclasses
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf.data import characters
from prunelm_tf.data import vocabulary as vocabulary_lib

Vocabulary = vocabulary_lib.Vocabulary

# Type index 0 is the all-zero padding row of `EncodedCorpus.char_table`;
# BOS and EOS get the first two real rows.
_BOS_TYPE = 1
_EOS_TYPE = 2


def encode_sentence(tokens: Sequence[str], vocab: Vocabulary) -> np.ndarray:
  """Encodes one sentence as model token ids.

  Args:
    tokens: The n tokens of the sentence (without `<S>` / `</S>`).
    vocab: The vocabulary; unknown tokens map to `<UNK>`.

  Returns:
    int32 [n + 2]: `[bos_id, ids..., eos_id] + 1` (vocabulary index + 1).
  """
  ids = np.empty([len(tokens) + 2], dtype=np.int32)
  ids[0] = vocab.bos_id
  ids[1:-1] = vocab.encode(tokens)
  ids[-1] = vocab.eos_id
  return ids + 1


@dataclasses.dataclass(frozen=True)
class EncodedCorpus:
  """Sentences encoded once, as flat arrays.

  With `total = sum(row_lengths)` positions (BOS and EOS included):

  Attributes:
    token_ids: int32 [total], model token ids (vocabulary index + 1) of all
      sentences, concatenated.
    row_lengths: int64 [num_sentences], positions per sentence (n + 2).
    type_ids: int32 [total] index into `char_table` of each position, or None
      without character inputs.
    char_table: int32 [num_types + 1, max_characters_per_token], the character
      ids of every distinct word type of the corpus; row 0 is all zeros (batch
      padding), rows 1 and 2 are BOS and EOS. None without character inputs.
  """

  token_ids: np.ndarray
  row_lengths: np.ndarray
  type_ids: np.ndarray | None = None
  char_table: np.ndarray | None = None

  @property
  def num_sentences(self) -> int:
    return int(self.row_lengths.shape[0])

  @property
  def num_positions(self) -> int:
    """Positions including BOS and EOS (= non-padding entries per epoch)."""
    return int(self.token_ids.shape[0])


def encode_corpus(
    sentences: Sequence[Sequence[str]],
    vocab: Vocabulary,
    *,
    char_inputs: bool,
    max_characters_per_token: int = characters.MAX_CHARACTERS_PER_TOKEN
) -> EncodedCorpus:
  """Encodes sentences into flat arrays (see `EncodedCorpus`).

  Character ids are computed once per distinct word type, so they are exact
  for out-of-vocabulary words too.

  Args:
    sentences: Tokenized sentences.
    vocab: The vocabulary.
    char_inputs: Whether to build `type_ids` and `char_table`.
    max_characters_per_token: Row length of `char_table` (>= 3).

  Returns:
    The encoded corpus.

  Raises:
    ValueError: If `sentences` is empty or `max_characters_per_token` < 3.
  """
  if len(sentences) == 0:  # pylint: disable=g-explicit-length-test
    raise ValueError(
        "cannot encode an empty list of sentences; read the corpus with "
        "read_sentences(), which checks that it is not empty.")
  if char_inputs:
    # Validates max_characters_per_token before the long loop.
    characters.bos_char_ids(max_characters_per_token)
  id_of = {t: i + 1 for i, t in enumerate(vocab.tokens)}
  unk, bos, eos = vocab.unk_id + 1, vocab.bos_id + 1, vocab.eos_id + 1
  # Literal <S> / </S> words have exactly the BOS / EOS character rows.
  type_of = {characters.BOS_TOKEN: _BOS_TYPE, characters.EOS_TOKEN: _EOS_TYPE}
  token_ids = []
  type_ids = []
  row_lengths = np.empty([len(sentences)], dtype=np.int64)
  for i, sentence in enumerate(sentences):
    token_ids.append(bos)
    token_ids.extend([id_of.get(t, unk) for t in sentence])
    token_ids.append(eos)
    if char_inputs:
      type_ids.append(_BOS_TYPE)
      type_ids.extend(
          [type_of.setdefault(t, len(type_of) + 1) for t in sentence])
      type_ids.append(_EOS_TYPE)
    row_lengths[i] = len(sentence) + 2
  encoded = EncodedCorpus(
      token_ids=np.array(token_ids, dtype=np.int32), row_lengths=row_lengths)
  if not char_inputs:
    return encoded
  char_table = np.zeros([len(type_of) + 1, max_characters_per_token],
                        dtype=np.int32)
  for word, row in type_of.items():
    char_table[row] = characters.word_to_char_ids(word,
                                                  max_characters_per_token)
  return dataclasses.replace(
      encoded, type_ids=np.array(type_ids, dtype=np.int32),
      char_table=char_table)


def count_tokens(sentences: Sequence[Sequence[str]]) -> int:
  """Returns the number of LM predictions per direction: sum(n + 1)."""
  return sum(len(s) + 1 for s in sentences)


def _check_int_at_least(name: str, value: object, minimum: int,
                        meaning: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
      value < minimum):
    raise ValueError(f"{name} must be an integer >= {minimum} ({meaning}), "
                     f"got {value!r}.")


def make_dataset(
    sentences: Sequence[Sequence[str]],
    vocab: Vocabulary,
    *,
    batch_size: int,
    char_inputs: bool,
    max_characters_per_token: int = characters.MAX_CHARACTERS_PER_TOKEN,
    shuffle: bool,
    seed: int = 0,
    bucket_width: int = 10,
    max_length: int | None = None,
    drop_remainder: bool = False) -> tf.data.Dataset:
  """Builds the batched input pipeline of a biLM.

  Sentences are grouped into buckets of similar length (boundaries every
  `bucket_width` positions) and padded with 0 to the longest sentence of each
  batch. Without shuffling the order is deterministic and, unless
  `drop_remainder`, every sentence appears exactly once per epoch, as
  evaluation needs. With shuffling, sentences are shuffled over the whole
  corpus before bucketing, in a different order each epoch; the sequence of
  epochs is determined by `seed` (and TensorFlow's global seed, if set).

  Args:
    sentences: Tokenized sentences (without `<S>` / `</S>`).
    vocab: The vocabulary; unknown tokens map to `<UNK>`.
    batch_size: Sentences per batch (>= 1).
    char_inputs: Whether to add `char_ids` (for char-CNN token embedders).
    max_characters_per_token: Length of each `char_ids` row (>= 3).
    shuffle: Whether to shuffle (training) or keep a fixed order (evaluation).
    seed: Shuffle seed.
    bucket_width: Width of the length buckets in positions (>= 1), or 0 to
      disable bucketing and keep the corpus order.
    max_length: If set (>= 2), sentences with more positions (BOS/EOS
      included) are cut to their first `max_length` positions (so they lose
      their EOS, but every remaining prediction target is a true next/previous
      token); a warning reports how many. None keeps every sentence whole.
    drop_remainder: Whether to drop the last, smaller batch of each bucket.

  Returns:
    A dataset of dicts with `token_ids`: int32 [batch, time] and, if
    `char_inputs`, `char_ids`: int32 [batch, time, max_characters_per_token],
    where `time` (BOS and EOS included) is the longest sentence of the batch.

  Raises:
    ValueError: If `sentences` is empty or an argument is out of range.
  """
  _check_int_at_least("batch_size", batch_size, 1, "sentences per batch")
  _check_int_at_least("bucket_width", bucket_width, 0,
                      "positions per length bucket, 0 disables bucketing")
  if max_length is not None:
    _check_int_at_least("max_length", max_length, 2,
                        "positions per sentence including <S> and </S>, or "
                        "None for no limit")
  encoded = encode_corpus(sentences, vocab, char_inputs=char_inputs,
                          max_characters_per_token=max_characters_per_token)
  longest = int(encoded.row_lengths.max())
  if max_length is not None:
    too_long = encoded.row_lengths > max_length
    if too_long.any():
      logging.warning(
          "Truncated %d of %d sentences to max_length=%d positions (%d of %d "
          "positions dropped; the longest sentence has %d).",
          int(too_long.sum()), encoded.num_sentences, max_length,
          int((encoded.row_lengths[too_long] - max_length).sum()),
          encoded.num_positions, longest)
    longest = min(longest, max_length)

  features = {
      "token_ids": tf.RaggedTensor.from_row_lengths(
          encoded.token_ids, encoded.row_lengths, validate=False)
  }
  if char_inputs:
    features["type_ids"] = tf.RaggedTensor.from_row_lengths(
        encoded.type_ids, encoded.row_lengths, validate=False)
  dataset = tf.data.Dataset.from_tensor_slices(features)
  if shuffle:
    dataset = dataset.shuffle(
        encoded.num_sentences, seed=seed, reshuffle_each_iteration=True)

  def to_dense(example):
    # Slices of a ragged tensor are ragged-typed; padded_batch needs Tensors.
    dense = {}
    for key, value in example.items():
      if isinstance(value, tf.RaggedTensor):
        value = value.to_tensor()
      if max_length is not None:
        value = value[:max_length]
      dense[key] = value
    return dense

  dataset = dataset.map(to_dense, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  if bucket_width:
    boundaries = list(range(bucket_width + 1, longest + 1, bucket_width))
    dataset = dataset.bucket_by_sequence_length(
        lambda example: tf.shape(example["token_ids"])[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        drop_remainder=drop_remainder)
  else:
    dataset = dataset.padded_batch(batch_size, drop_remainder=drop_remainder)

  if char_inputs:
    char_table = tf.constant(encoded.char_table)

    def add_char_ids(batch):
      return {
          "token_ids": batch["token_ids"],
          # Padding positions have type 0, the all-zero row.
          "char_ids": tf.gather(char_table, batch["type_ids"]),
      }

    dataset = dataset.map(add_char_ids, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def check_vocabulary_matches(vocab: Vocabulary,
                             expected_size: int,
                             expected_fingerprint: str | None = None,
                             where: str = "") -> None:
  """Checks that `vocab` is the vocabulary a model was trained with.

  Args:
    vocab: The vocabulary about to be used.
    expected_size: Number of vocabulary tokens the model was built for
      (`len(vocab)` at training time; the padding id 0 is not counted).
    expected_fingerprint: `Vocabulary.fingerprint()` recorded at training
      time, or None to check only the size.
    where: Names the model or run folder in the message, e.g.
      "run folder /runs/ptb".

  Raises:
    ValueError: If the size or the fingerprint differs.
  """
  context = f" ({where})" if where else ""
  if len(vocab) != expected_size:
    raise ValueError(
        f"the vocabulary has {len(vocab)} tokens but the model's softmax "
        f"expects {expected_size}{context}; use the vocabulary saved in the "
        f"run folder (vocab.txt) that the model was trained with.")
  if (expected_fingerprint is not None
      and vocab.fingerprint() != expected_fingerprint):
    raise ValueError(
        f"the vocabulary has the expected {expected_size} tokens but "
        f"different tokens or order than the model's (fingerprint "
        f"{vocab.fingerprint()[:12]}... instead of "
        f"{expected_fingerprint[:12]}...){context}; use the vocabulary saved "
        f"in the run folder (vocab.txt) that the model was trained with.")
