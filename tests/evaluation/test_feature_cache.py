"""Feature-cache fingerprints, atomic save and checked load; the model fingerprint of SST-2 caches."""

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.evaluation import feature_cache
from prunelm_tf.evaluation.downstream import pooled_features
from prunelm_tf.evaluation.feature_cache import (feature_fingerprint, fingerprint_file,
                                                 fingerprint_weights, load_arrays, save_arrays)
from tests.evaluation.test_downstream import FakeEmbedder

keras = tf.keras
SENTENCES = [["a", "good", "film"], ["bad"]]


def test_feature_fingerprint_depends_on_sentences_shape_and_model():
  base = feature_fingerprint(SENTENCES, (2, 3, 4))
  assert base == feature_fingerprint([list(s) for s in SENTENCES], [2, 3, 4])
  assert base != feature_fingerprint([["a", "good", "film"], ["worse"]], (2, 3, 4))
  assert base != feature_fingerprint(SENTENCES, (2, 3, 8))
  with_model = feature_fingerprint(SENTENCES, (2, 3, 4), "model-a")
  assert with_model not in (base, feature_fingerprint(SENTENCES, (2, 3, 4), "model-b"))


def test_fingerprint_weights_changes_with_one_weight():
  tf.keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.layers.Dense(3, input_shape=(2,))])
  first = fingerprint_weights(model)
  assert first == fingerprint_weights(model) and first.startswith("sha256:")
  kernel = model.layers[0].kernel
  kernel.assign(tf.tensor_scatter_nd_update(kernel, [[0, 0]], [0.0]))
  assert fingerprint_weights(model) != first


def test_fingerprint_file(tmp_path):
  a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
  a.write_bytes(b"model one")
  b.write_bytes(b"model two")
  assert fingerprint_file(a) != fingerprint_file(b)
  assert fingerprint_file(a) == fingerprint_file(str(a))
  with pytest.raises(FileNotFoundError, match="missing.tflite"):
    fingerprint_file(tmp_path / "missing.tflite")


def test_save_and_load_arrays_round_trip(tmp_path):
  path = str(tmp_path / "sub" / "cache.npz")
  arrays = {"features": np.arange(6, dtype=np.float16).reshape(2, 3)}
  save_arrays(path, "fp", arrays)
  assert os.listdir(tmp_path / "sub") == ["cache.npz"]  # no temp file left
  loaded = load_arrays(path, lambda a: "fp", ("features",))
  np.testing.assert_array_equal(loaded["features"], arrays["features"])
  assert loaded["features"].dtype == np.float16


def test_load_arrays_refuses_mismatch_missing_array_and_garbage(tmp_path, caplog):
  path = str(tmp_path / "cache.npz")
  save_arrays(path, "fp", {"features": np.zeros(2)})
  with caplog.at_level("WARNING"):
    assert load_arrays(path, lambda a: "other", ("features",)) is None
    assert "computed for other inputs" in caplog.text

    def too_short(arrays):
      raise ValueError("2 stored, 3 given")

    assert load_arrays(path, too_short, ("features",)) is None
    assert "2 stored, 3 given" in caplog.text
    assert load_arrays(path, lambda a: "fp", ("offsets",)) is None
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    assert load_arrays(str(tmp_path / "bad.npz"), lambda a: "fp", ("features",)) is None
    assert "unreadable" in caplog.text


def test_pooled_cache_of_another_model_is_recomputed(tmp_path):
  cache = tmp_path / "feats.npz"
  pooled_features(FakeEmbedder(), SENTENCES, cache_path=cache, model_fingerprint="model-a")
  same = FakeEmbedder()
  pooled_features(same, SENTENCES, cache_path=cache, model_fingerprint="model-a")
  assert same.calls == 0
  other = FakeEmbedder()
  pooled_features(other, SENTENCES, cache_path=cache, model_fingerprint="model-b")
  assert other.calls == 1


def test_pooled_cache_without_model_fingerprint_keeps_its_old_identity(tmp_path):
  # Caches written before model fingerprints existed stay valid.
  cache = str(tmp_path / "feats.npz")
  features = pooled_features(FakeEmbedder(), SENTENCES)
  old = hashlib.sha1(json.dumps(SENTENCES).encode("utf-8"))  # the pre-fingerprint recipe
  old.update(json.dumps(list(features.shape)).encode("utf-8"))
  feature_cache.save_arrays(cache, old.hexdigest(), {"features": features})
  embedder = FakeEmbedder()
  pooled_features(embedder, SENTENCES, cache_path=cache)
  assert embedder.calls == 0
