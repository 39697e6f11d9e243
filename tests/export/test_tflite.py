"""TFLite conversion: builtin ops only, batch 1, dynamic time, parity with Keras."""

import numpy as np
import pytest

from prunelm_tf.export.tflite import TFLiteBiLM, check_quantization_mode, export_tflite
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm


@pytest.mark.parametrize("encoder", ["word", "char"])
def test_tflite_representations_match_keras(encoder, tmp_path):
  config = BiLMConfig(vocab_size=20, token_encoder=encoder, lstm_dim=16, projection_dim=8,
                      n_layers=2, char_cnn=CharCNNConfig(embedding_dim=4,
                                                         filters=((1, 4), (2, 4)), n_highway=1))
  model = build_bilm(config)
  path = str(tmp_path / "bilm.tflite")
  size = export_tflite(model, path)
  assert size == (tmp_path / "bilm.tflite").stat().st_size > 0
  runner = TFLiteBiLM(path)
  rng = np.random.default_rng(0)
  for time in (3, 7, 12):  # the time dimension is dynamic
    shape = (1, time) if encoder == "word" else (1, time, 50)
    ids = rng.integers(1, 20 if encoder == "word" else 262, size=shape).astype(np.int32)
    expected = model(ids, training=False)["representations"].numpy()
    got = runner(ids)
    assert got.shape == expected.shape == (1, 3, time - 2, 16)
    assert np.abs(got - expected).max() <= 1e-5


def test_unknown_quantization_mode_is_rejected():
  with pytest.raises(ValueError, match="unknown TFLite quantization mode 'int4'"):
    check_quantization_mode("int4")
  check_quantization_mode("float16")


# --- untrusted TFLite files ----------------------------------------------------

tf = pytest.importorskip("tensorflow")


def _convert(fn, path, *, signature=True):
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [fn.get_concrete_function()], *([tf.Module()] if signature else []))
  path.write_bytes(converter.convert())
  return str(path)


@pytest.fixture(scope="module")
def tiny_char_tflite(tmp_path_factory):
  config = BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=8, projection_dim=4,
                      n_layers=1, char_cnn=CharCNNConfig(embedding_dim=2, filters=((1, 4),),
                                                         n_highway=0, max_characters_per_token=5))
  path = tmp_path_factory.mktemp("tflite") / "char.tflite"
  export_tflite(build_bilm(config), str(path))
  return path.read_bytes()


def _rep(x):
  return {"representations": tf.zeros([1, 2, 1, 4]) + tf.reduce_sum(tf.cast(x, tf.float32))}


@pytest.mark.parametrize("fn,message", [
    (tf.function(lambda x: {"y": x * 2.0}, input_signature=[tf.TensorSpec([1, 3], tf.float32)]),
     r"has inputs \[.*float32.*\]; a biLM exported by this package has one int32 input"),
    (tf.function(lambda a, b: _rep(a + b),
                 input_signature=[tf.TensorSpec([1, None], tf.int32)] * 2),
     "has inputs .*; a biLM exported by this package has one int32 input"),
    (tf.function(lambda x: _rep(x), input_signature=[tf.TensorSpec([1, None, 2000], tf.int32)]),
     r"has input .*2000.*3 <= max_chars <= 1024"),
    (tf.function(lambda x: _rep(x), input_signature=[tf.TensorSpec([1, None, None], tf.int32)]),
     r"has input .*-1.*3 <= max_chars <= 1024"),
    (tf.function(lambda x: _rep(x), input_signature=[tf.TensorSpec([4, None], tf.int32)]),
     r"has input .*\(4, -1\)"),
    (tf.function(lambda x: {"y": tf.cast(x, tf.float32)},
                 input_signature=[tf.TensorSpec([1, None], tf.int32)]),
     "has 0 rank-4 outputs"),
    (tf.function(lambda x: _rep(x), input_signature=[tf.TensorSpec([1, None, 50], tf.int32,
                                                                   name="x")]),
     r"has signatures .*'x'.*a biLM export has .*char_ids"),
])
def test_foreign_tflite_models_are_refused(tmp_path, fn, message):
  path = _convert(fn, tmp_path / "foreign.tflite")
  with pytest.raises(ValueError, match=message) as e:
    TFLiteBiLM(path)
  assert path in str(e.value)


def test_tflite_without_signatures_is_refused(tmp_path):
  fn = tf.function(lambda char_ids: _rep(char_ids),
                   input_signature=[tf.TensorSpec([1, None, 50], tf.int32, name="char_ids")])
  with pytest.raises(ValueError, match="has signatures none; a biLM export has"):
    TFLiteBiLM(_convert(fn, tmp_path / "nosig.tflite", signature=False))


def test_boundary_tflite_with_our_signature_and_1024_chars_opens(tmp_path):
  fn = tf.function(lambda char_ids: _rep(char_ids),
                   input_signature=[tf.TensorSpec([1, None, 1024], tf.int32, name="char_ids")])
  assert TFLiteBiLM(_convert(fn, tmp_path / "ours.tflite")).input_shape_signature == (1, -1, 1024)


@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"TFL3" * 64, b"<html>not found</html>"])
def test_bytes_that_are_not_tflite_are_refused(tmp_path, data):
  path = tmp_path / "bad.tflite"
  path.write_bytes(data)
  with pytest.raises(ValueError, match=f"{path} is not a readable TFLite model"):
    TFLiteBiLM(str(path))


_TRUNCATIONS = (4, 8, 64, 1000, 10_000, 30_000, -1000, -4)
_FLIP_SEEDS = range(48)


def test_tflite_fuzz_case_count():
  # 8 foreign models + 4 non-TFLite byte strings + 8 truncations + 48 byte flips = 68
  assert 8 + 4 + len(_TRUNCATIONS) + len(_FLIP_SEEDS) == 68


@pytest.mark.parametrize("cut", _TRUNCATIONS)
def test_truncated_tflite_is_refused(tiny_char_tflite, tmp_path, cut):
  path = tmp_path / "cut.tflite"
  path.write_bytes(tiny_char_tflite[:cut])
  with pytest.raises(ValueError, match=f"{path}"):
    TFLiteBiLM(str(path))


@pytest.mark.parametrize("seed", _FLIP_SEEDS)
def test_flipped_byte_is_refused_cleanly_or_runs(tiny_char_tflite, tmp_path, seed):
  # Corrupt tensor indices once escaped as RuntimeError at the first sentence.
  data = bytearray(tiny_char_tflite)
  data[int(np.random.default_rng(seed).integers(0, len(data)))] ^= 0xFF
  path = tmp_path / "flip.tflite"
  path.write_bytes(bytes(data))
  try:
    runner = TFLiteBiLM(str(path))
    runner(np.ones((1, 4, 5), np.int32))
  except ValueError as e:
    assert str(path) in str(e)
