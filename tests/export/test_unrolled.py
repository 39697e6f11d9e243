"""The fixed-length unrolled export and the full-integer (int8) TFLite built from it."""

import functools

import numpy as np
import pytest

from prunelm_tf.export.tflite import (SentenceTooLong, TFLiteBiLM, convert_to_tflite,
                                      pad_to_time, representation_parity)
from prunelm_tf.export.unrolled import unrolled_function
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm

MAX_TOKENS = 6
# Two layers with skip connections and clipping; and a smaller, different shape.
CONFIGS = {
    "word": BiLMConfig(vocab_size=20, token_encoder="word", lstm_dim=16, projection_dim=8,
                       n_layers=2),
    "char": BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=16, projection_dim=8,
                       n_layers=2, char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)),
                                                          n_highway=1)),
    # Low-rank factors (two matmuls) in both LSTM halves and a projection.
    "lowrank": BiLMConfig(vocab_size=20, token_encoder="word", lstm_dim=16, projection_dim=8,
                          n_layers=2, ranks=(("forward_lstm_0/input_kernel", 3),
                                             ("backward_lstm_1/recurrent_kernel", 2),
                                             ("forward_lstm_1/projection", 4))),
    "small": BiLMConfig(vocab_size=12, token_encoder="word", lstm_dim=8, projection_dim=4,
                        n_layers=1, cell_clip=None, proj_clip=None, use_skip_connections=False),
}


def _ids(config, words, rng):
  if config.token_encoder == "word":
    return rng.integers(1, config.vocab_size + 1, size=(1, words + 2)).astype(np.int32)
  return rng.integers(1, 262, size=(1, words + 2, 50)).astype(np.int32)


def _reference(model, ids):
  return model(ids, training=False)["representations"].numpy()


@functools.lru_cache(maxsize=None)
def _bilm(name):
  import tensorflow as tf
  tf.random.set_seed(0)
  config = CONFIGS[name]
  model = build_bilm(config)
  if config.token_encoder == "word":
    # Glorot-sized embeddings instead of Keras' +-0.05, so the states are not all near 0.
    table = model.get_layer("word_embedding").embeddings
    table.assign(np.random.default_rng(1).normal(0, 1, table.shape).astype(np.float32))
  return name, config, model


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_unrolled_graph_equals_the_keras_model(name):
  import tensorflow as tf
  _, config, model = _bilm(name)
  fn = unrolled_function(model, MAX_TOKENS)
  rng = np.random.default_rng(0)
  for words in (1, 3, MAX_TOKENS):  # padded at the end to the fixed length
    ids = _ids(config, words, rng)
    got = fn(tf.constant(pad_to_time(ids, MAX_TOKENS + 2)))["representations"].numpy()
    assert got.shape == (1, config.n_layers + 1, MAX_TOKENS, config.output_dim)
    np.testing.assert_allclose(got[:, :, :words], _reference(model, ids), atol=1e-5)
    assert not got[:, :, words:].any()  # padding positions are zero, as in Keras


# Word input is covered by "small", of another shape (one layer, no skip, no clipping).
@pytest.mark.parametrize("name", ["char", "small"])
def test_int8_tflite_is_full_integer_and_close_to_float(name, tmp_path):
  _, config, model = _bilm(name)
  rng = np.random.default_rng(0)
  # Word models: enough sentences to meet every word of the tiny vocabulary (a word never
  # seen in calibration can fall outside its tensor's int8 range and be clipped).
  count = 32 if config.token_encoder == "word" else 8
  calibration = [_ids(config, int(rng.integers(1, MAX_TOKENS + 1)), rng) for _ in range(count)]
  path = tmp_path / "int8.tflite"
  path.write_bytes(convert_to_tflite(model, "int8", representative_inputs=lambda: calibration,
                                     max_tokens=MAX_TOKENS))
  runner = TFLiteBiLM(str(path))
  assert runner.max_tokens == MAX_TOKENS
  assert runner.input_shape_signature[:2] == (1, MAX_TOKENS + 2)
  # Full integer: every matmul weight is int8 (no float FULLY_CONNECTED left).
  details = runner.interpreter.get_tensor_details()
  weights = [d for d in details if len(d["shape"]) == 2 and d["shape"][0] == 4 * config.lstm_dim]
  assert weights and all(d["dtype"] == np.int8 for d in weights)
  sentences = [_ids(config, words, rng) for words in (1, 2, 4, MAX_TOKENS)]
  got = [runner(ids) for ids in sentences]
  expected = [_reference(model, ids) for ids in sentences]
  assert [g.shape for g in got] == [e.shape for e in expected]
  parity = representation_parity(got, expected)
  # int8 activations take 256 levels of each tensor's calibrated range (~0.4 %
  # of it per op); about ten quantized ops per step, chained over the steps
  # and layers, add up to a few % of the range. Measured on these models:
  # cosine >= 0.993, max error <= 15 % of the largest value.
  assert parity["min_cosine"] >= 0.98, (name, parity)
  scale = max(float(np.abs(e).max()) for e in expected)
  assert parity["max_abs_diff"] <= 0.25 * scale, (name, parity, scale)


@pytest.mark.parametrize("kwargs,message", [
    (dict(representative_inputs=None), "int8 .* needs representative_inputs"),
    (dict(representative_inputs=lambda: iter([])), "empty representative dataset"),
    (dict(representative_inputs=lambda: [np.ones([1, 9], np.int32)]),
     r"representative input 0 hold 7 words but .* at most 6 .*--tflite_int8_max_tokens"),
    (dict(representative_inputs=lambda: [np.ones([1, 4], np.int64)]),
     "representative input 0 must be int32"),
    (dict(representative_inputs=lambda: [np.ones([1, 4], np.int32)], max_tokens=0),
     r"tflite_int8_max_tokens must be an integer in \[1, 512\]"),
])
def test_int8_bad_inputs_are_refused_before_conversion(kwargs, message):
  model = build_bilm(CONFIGS["small"])
  kwargs = {"max_tokens": MAX_TOKENS, **kwargs}
  with pytest.raises(ValueError, match=message):
    convert_to_tflite(model, "int8", **kwargs)


def test_fixed_length_runner_refuses_longer_sentences(tmp_path):
  model = build_bilm(CONFIGS["small"])
  path = tmp_path / "int8.tflite"
  path.write_bytes(convert_to_tflite(
      model, "int8", representative_inputs=lambda: [np.ones([1, 4], np.int32)], max_tokens=3))
  runner = TFLiteBiLM(str(path))
  assert runner(np.ones([1, 5], np.int32)).shape == (1, 2, 3, 8)
  assert runner(np.ones([1, 3], np.int32)).shape == (1, 2, 1, 8)
  # SentenceTooLong (a ValueError): evaluate() records it per task instead of failing.
  with pytest.raises(SentenceTooLong, match=r"hold 4 words but .* at most 3"):
    runner(np.ones([1, 6], np.int32))


def test_unrolled_export_refuses_a_bad_length():
  with pytest.raises(ValueError, match=r"max_tokens must be an integer in \[1, 512\] .*got 513"):
    unrolled_function(build_bilm(CONFIGS["small"]), 513)
