"""representation_fidelity: per-layer and mixed cosine / relative L2, mean and worst sentence."""

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.compression.source import (representation_fidelity, representation_similarity,
                                           similarity_of)
from prunelm_tf.models import BiLMConfig, build_bilm

SENTENCES = [["the", "cat", "sat"], ["a", "dog"], ["the", "dog", "sat", "down", "."]]


def _model(seed, **kw):
  tf.keras.utils.set_random_seed(seed)
  config = BiLMConfig(**dict(dict(vocab_size=12, token_encoder="word", lstm_dim=8,
                                  projection_dim=4, n_layers=2, dropout=0.0), **kw))
  return build_bilm(config)


def _dataset():
  vocab = data_lib.Vocabulary.build(SENTENCES)
  return data_lib.make_dataset(SENTENCES, vocab, batch_size=2, shuffle=False, char_inputs=False)


def test_a_model_against_itself_is_exact():
  model = _model(0)
  f = representation_fidelity(model, model, _dataset())
  assert f["sentences"] == 3 and set(f["layers"]) == {"layer_0", "layer_1", "layer_2", "mix"}
  for layer in f["layers"].values():
    assert layer["cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert layer["cosine_worst_sentence"] == pytest.approx(1.0, abs=1e-6)
    assert layer["rel_l2_mean"] == 0.0 and layer["rel_l2_worst_sentence"] == 0.0


def test_worst_sentence_and_relative_error_against_a_numpy_reference():
  a, b = _model(0), _model(1)
  f = representation_fidelity(a, b, _dataset())
  # The same figures from the full representations, sentence by sentence.
  from prunelm_tf.training.loop import model_input, representations_fn
  cos, rel = [], []
  for batch in _dataset():
    ra = representations_fn(a)(model_input(a, batch)).numpy()
    rb = representations_fn(b)(model_input(b, batch)).numpy()
    lengths = (batch["token_ids"].numpy()[:, 2:] > 0).sum(1)
    for k, n in enumerate(lengths):
      x = np.concatenate([ra[k], ra[k].mean(0, keepdims=True)])[:, :n]  # [L + mix, n, dim]
      y = np.concatenate([rb[k], rb[k].mean(0, keepdims=True)])[:, :n]
      c = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
      cos.append(c.mean(1))
      rel.append(np.sqrt(((x - y) ** 2).sum((1, 2)) / (y ** 2).sum((1, 2))))
  cos, rel = np.array(cos), np.array(rel)
  for i, name in enumerate(["layer_0", "layer_1", "layer_2", "mix"]):
    got = f["layers"][name]
    assert got["cosine_worst_sentence"] == pytest.approx(cos[:, i].min(), abs=1e-5)
    assert got["rel_l2_mean"] == pytest.approx(rel[:, i].mean(), rel=1e-4)
    assert got["rel_l2_worst_sentence"] == pytest.approx(rel[:, i].max(), rel=1e-4)
    assert got["cosine_worst_sentence"] <= got["cosine_mean"] < 1.0
  # The recorded mean cosine per layer is representation_similarity's.
  assert similarity_of(f) == pytest.approx(representation_similarity(a, b, _dataset()), abs=1e-6)


def test_fewer_layers_compare_token_and_top_another_width_nothing():
  f = representation_fidelity(_model(0, n_layers=1), _model(1), _dataset())
  assert set(f["layers"]) == {"layer_0", "top"}
  assert representation_fidelity(_model(0, projection_dim=6), _model(1), _dataset()) == {}
