"""Public API of the data package: vocabulary, corpora, character ids, tf.data.

Import from here (`from prunelm_tf import data`); the submodules are
implementation details.
"""

from prunelm_tf.data.characters import BOS_CHAR
from prunelm_tf.data.characters import bos_char_ids
from prunelm_tf.data.characters import BOW_CHAR
from prunelm_tf.data.characters import EOS_CHAR
from prunelm_tf.data.characters import eos_char_ids
from prunelm_tf.data.characters import EOW_CHAR
from prunelm_tf.data.characters import MAX_CHARACTERS_PER_TOKEN
from prunelm_tf.data.characters import PAD_CHAR
from prunelm_tf.data.characters import sentence_to_char_ids
from prunelm_tf.data.characters import word_to_char_ids
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.data.corpus import open_corpus
from prunelm_tf.data.corpus import read_sentences
from prunelm_tf.data.corpus import TextFileCorpus
from prunelm_tf.data.corpus import TfdsCorpus
from prunelm_tf.data.pipeline import check_vocabulary_matches
from prunelm_tf.data.pipeline import count_tokens
from prunelm_tf.data.pipeline import encode_corpus
from prunelm_tf.data.pipeline import encode_sentence
from prunelm_tf.data.pipeline import EncodedCorpus
from prunelm_tf.data.pipeline import make_dataset
from prunelm_tf.data.vocabulary import Vocabulary

__all__ = [
    "BOS_CHAR",
    "BOW_CHAR",
    "EOS_CHAR",
    "EOW_CHAR",
    "MAX_CHARACTERS_PER_TOKEN",
    "PAD_CHAR",
    "EncodedCorpus",
    "TextFileCorpus",
    "TfdsCorpus",
    "Vocabulary",
    "bos_char_ids",
    "check_vocabulary_matches",
    "count_tokens",
    "encode_corpus",
    "encode_sentence",
    "eos_char_ids",
    "load_corpus",
    "make_dataset",
    "open_corpus",
    "read_sentences",
    "sentence_to_char_ids",
    "word_to_char_ids",
]
