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
