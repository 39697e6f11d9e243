"""The dense input model of a compression run, and what is measured against it."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.training.loop import model_input, representations_fn

keras = tf.keras

# The minimal vocabulary of a model without one (an imported ELMo): the data
# pipeline needs the special tokens to frame sentences; char ids do the rest.
_FRAMING_VOCAB = ("<S>", "</S>", "<UNK>")


@dataclasses.dataclass
class Source:
  """The dense input model and what is needed to feed it text."""
  model: keras.Model
  config: BiLMConfig
  vocab: Optional[data_lib.Vocabulary]  # None for ELMo imports (char input, no softmax)
  description: str

  def copy_model(self) -> keras.Model:
    """A fresh model with the same architecture and weights."""
    model = build_bilm(self.config)
    model.set_weights(self.model.get_weights())
    return model

  def dataset(self, sentences, batch_size: int, *, shuffle: bool, seed: int = 0):
    """Batches of ``sentences`` as this model reads them (see `data.make_dataset`)."""
    return model_dataset(self.config, self.vocab, sentences, batch_size, shuffle=shuffle,
                         seed=seed)


# The batch size of every perplexity a compression run measures (--eval, --valid).
EVAL_BATCH_SIZE = 64


def model_dataset(config: BiLMConfig, vocab: Optional[data_lib.Vocabulary], sentences,
                  batch_size: int, *, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
  """Batches for a biLM of architecture ``config`` (``vocab`` None: framing tokens only)."""
  return data_lib.make_dataset(
      sentences, vocab or data_lib.Vocabulary(list(_FRAMING_VOCAB)), batch_size=batch_size,
      char_inputs=config.token_encoder == "char",
      max_characters_per_token=config.char_cnn.max_characters_per_token,
      shuffle=shuffle, seed=seed)


def check_corpus_fits(sentences, vocab: data_lib.Vocabulary, flag: str,
                      max_oov_rate: float = 0.2) -> float:
  """Rejects a corpus most of whose tokens the model's vocabulary does not know."""
  tokens = [t for s in sentences for t in s]
  known = sum(1 for t in tokens if t in vocab)
  oov = 1.0 - known / max(len(tokens), 1)
  if oov > max_oov_rate:
    raise ValueError(
        f"{flag}: {oov:.1%} of the corpus tokens are not in the model's vocabulary "
        f"({len(vocab)} tokens; more than {max_oov_rate:.0%} allowed), so this corpus does not "
        "fit the model (another tokenization, casing or language?). Use text tokenized like the "
        "model's training corpus.")
  return oov


def representation_fidelity(model, reference, dataset) -> Dict[str, Any]:
  """How close ``model``'s representations are to ``reference``'s, per layer and mixed.

  The drop-in view of a compressed embedder: a downstream model trained on the
  reference's layers reads these instead. Per layer (``layer_0`` the token layer,
  ``layer_k`` the k-th LSTM layer) and for ``mix``, the uniform average of the layers
  (a ScalarMix at its initial weights):

  * ``cosine_mean``: cosine of each word's vectors, averaged over every word;
  * ``cosine_worst_sentence``: the lowest per-sentence mean cosine;
  * ``rel_l2_mean`` / ``rel_l2_worst_sentence``: ``||a - b|| / ||b||`` over a sentence's
    words (Frobenius), averaged over sentences / the highest.

  With fewer layers than the reference (layers dropped) only ``layer_0`` and ``top`` are
  compared, and there is no ``mix``; with another width (projection dimensions removed)
  nothing is comparable: ``{}``, the variant is not a drop-in replacement.

  Returns:
    ``{"layers": {name: {...}}, "sentences": n}``, or ``{}``.
  """
  model_fn, reference_fn = representations_fn(model), representations_fn(reference)
  cos_sums, words, keys = None, 0.0, None
  per_sentence = {"cos": [], "rel": []}  # [sentences, layers (+ mix)] each
  for batch in dataset:
    a = model_fn(model_input(model, batch)).numpy()
    b = a if reference is model else reference_fn(model_input(reference, batch)).numpy()
    if a.shape[-1] != b.shape[-1]:
      return {}
    if a.shape[1] != b.shape[1]:
      a, b, keys = a[:, [0, -1]], b[:, [0, -1]], ["layer_0", "top"]
    else:  # the uniform mix as one more "layer"
      a = np.concatenate([a, a.mean(axis=1, keepdims=True)], axis=1)
      b = np.concatenate([b, b.mean(axis=1, keepdims=True)], axis=1)
    mask = (batch["token_ids"].numpy()[:, 2:] > 0)  # word positions
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) *
                                       np.linalg.norm(b, axis=-1), 1e-12)  # [batch, L, words]
    sums = (cos * mask[:, None, :]).sum(axis=(0, 2))  # as representation_similarity sums
    cos_sums = sums if cos_sums is None else cos_sums + sums
    words += mask.sum()
    mask = mask.astype(np.float64)
    n = np.maximum(mask.sum(axis=1), 1.0)[:, None]  # words per sentence
    per_sentence["cos"].append((cos * mask[:, None, :]).sum(axis=2) / n)
    err = (((a - b) ** 2).sum(-1) * mask[:, None, :]).sum(axis=2)
    ref = ((b ** 2).sum(-1) * mask[:, None, :]).sum(axis=2)
    per_sentence["rel"].append(np.sqrt(err / np.maximum(ref, 1e-24)))
  if cos_sums is None:
    return {}
  cos_s, rel_s = (np.concatenate(per_sentence[k]) for k in ("cos", "rel"))
  keys = keys or [f"layer_{k}" for k in range(len(cos_sums) - 1)] + ["mix"]
  return {"sentences": int(cos_s.shape[0]),
          "layers": {key: {"cosine_mean": float(cos_sums[i] / max(words, 1.0)),
                           "cosine_worst_sentence": float(cos_s[:, i].min()),
                           "rel_l2_mean": float(rel_s[:, i].mean()),
                           "rel_l2_worst_sentence": float(rel_s[:, i].max())}
                     for i, key in enumerate(keys)}}


def similarity_of(fidelity: Dict[str, Any]) -> Dict[str, float]:
  """The mean cosine per layer (``representation_similarity``'s record) of a fidelity record."""
  return {k: v["cosine_mean"] for k, v in (fidelity.get("layers") or {}).items() if k != "mix"}


def representation_similarity(model, reference, dataset) -> Dict[str, float]:
  """Mean cosine similarity per layer between two models' representations.

  The models may differ in architecture (a structurally pruned variant): both
  read the same input batches and give [batch, layers, words, dim] outputs.
  Averaged over every real word position. With fewer layers (a variant that
  dropped layers) only the token embedding ("layer_0") and the top layer
  ("top") are compared; with another width (projection dimensions removed)
  nothing is comparable and the result is empty. (``representation_fidelity``'s
  ``cosine_mean`` per layer.)
  """
  return similarity_of(representation_fidelity(model, reference, dataset))
