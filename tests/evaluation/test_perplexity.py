"""LM TFLite perplexity: parity with Keras, quantized variants, every error path."""

import math
import os

import numpy as np
import pytest

from prunelm_tf import data as data_lib
from prunelm_tf.evaluation.perplexity import (convert_lm_to_tflite, export_lm_tflite,
                                              lm_serving_function, tflite_perplexity)
from prunelm_tf.export.tflite import export_tflite
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm
from prunelm_tf.training.loop import evaluate_perplexity
from prunelm_tf.training.run_folder import load_run

_TINY_CHAR_CNN = CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)), n_highway=1)


def _keras_perplexity(model, sentences, vocab, char_inputs=False):
  dataset = data_lib.make_dataset(sentences, vocab, batch_size=2, char_inputs=char_inputs,
                                  shuffle=False)
  return evaluate_perplexity(model, dataset)


def _check_close(got, expected, rel):
  assert got["num_predictions"] == expected["num_predictions"]
  for key in ("forward", "backward", "mean"):
    assert math.isfinite(got[key])
    assert got[key] == pytest.approx(expected[key], rel=rel), key


@pytest.fixture(scope="module")
def tiny_lm(tiny_run_dir, tiny_text, tmp_path_factory):
  """The tiny trained run: model, vocab, sentences, Keras perplexity, LM TFLite per mode."""
  model, _, vocab = load_run(tiny_run_dir)
  sentences = data_lib.read_sentences(data_lib.open_corpus(tiny_text))
  folder = tmp_path_factory.mktemp("lm_tflite")
  paths = {}
  for mode in ("none", "dynamic", "float16"):
    paths[mode] = str(folder / f"lm_{mode}.tflite")
    size = export_lm_tflite(model, paths[mode], mode)
    assert size == os.path.getsize(paths[mode]) > 0
  assert sorted(os.listdir(folder)) == [f"lm_{m}.tflite" for m in ("dynamic", "float16", "none")]
  return model, vocab, sentences, _keras_perplexity(model, sentences, vocab), paths


def test_float_tflite_perplexity_equals_keras(tiny_lm):
  _, vocab, sentences, keras_ppl, paths = tiny_lm
  got = tflite_perplexity(paths["none"], sentences, vocab, progress=False)
  assert set(got) == {"forward", "backward", "mean", "num_predictions"}
  assert got["num_predictions"] == data_lib.count_tokens(sentences)
  _check_close(got, keras_ppl, rel=1e-4)


@pytest.mark.parametrize("mode", ["dynamic", "float16"])
def test_quantized_tflite_perplexity_is_close_to_keras(tiny_lm, mode):
  _, vocab, sentences, keras_ppl, paths = tiny_lm
  _check_close(tflite_perplexity(paths[mode], sentences, vocab, num_threads=1, progress=False),
               keras_ppl, rel=0.1)


def test_max_sentences_takes_the_first_sentences(tiny_lm):
  model, vocab, sentences, _, paths = tiny_lm
  got = tflite_perplexity(paths["none"], sentences, vocab, max_sentences=2, progress=False)
  _check_close(got, _keras_perplexity(model, sentences[:2], vocab), rel=1e-4)
  assert tflite_perplexity(paths["none"], sentences, vocab, max_sentences=len(sentences) + 5,
                           progress=False)["num_predictions"] == data_lib.count_tokens(sentences)


def test_char_input_model_takes_token_ids_for_the_targets(tiny_text, tmp_path):
  sentences = data_lib.read_sentences(data_lib.open_corpus(tiny_text))
  vocab = data_lib.Vocabulary.build(sentences[:2])  # the other sentences have <UNK> words
  model = build_bilm(BiLMConfig(vocab_size=len(vocab), token_encoder="char", lstm_dim=8,
                                projection_dim=4, n_layers=1, char_cnn=_TINY_CHAR_CNN))
  fn = lm_serving_function(model)
  assert [s.name for s in fn.structured_input_signature[0]] == ["char_ids", "token_ids"]
  path = str(tmp_path / "lm_char.tflite")
  export_lm_tflite(model, path)
  got = tflite_perplexity(path, sentences, vocab, progress=False)
  _check_close(got, _keras_perplexity(model, sentences, vocab, char_inputs=True), rel=1e-4)


def test_serving_function_masks_padding_like_lm_token_losses():
  model = build_bilm(BiLMConfig(vocab_size=12, token_encoder="word", lstm_dim=8,
                                projection_dim=4, n_layers=1))
  fn = lm_serving_function(model, batch_size=None)
  ids = np.array([[2, 5, 7, 3, 0, 0], [2, 4, 3, 0, 0, 0]], np.int32)
  out = fn(ids)
  assert out["vocab_size"].numpy().tolist() == [12]
  log_probs = out["target_log_probs"].numpy()
  assert log_probs.shape == (2, 2, 5)
  assert (log_probs[0, :, 3:] == 0).all() and (log_probs[1, :, 2:] == 0).all()
  assert (log_probs[0, :, :3] < 0).all() and (log_probs[1, :, :2] < 0).all()
  logits = model(ids, training=False)
  log_softmax = logits["forward_logits"].numpy()
  log_softmax = log_softmax - np.log(np.exp(log_softmax).sum(-1, keepdims=True))
  # Forward position 1 of row 0 predicts token 7, i.e. vocabulary index 6.
  assert log_probs[0, 0, 1] == pytest.approx(log_softmax[0, 1, 6], abs=1e-5)


def test_flatbuffer_uses_builtin_ops_only():
  model = build_bilm(BiLMConfig(vocab_size=12, token_encoder="word", lstm_dim=8,
                                projection_dim=4, n_layers=1))
  # Conversion restricted to TFLITE_BUILTINS succeeding is the check; no Flex op names either.
  assert b"Flex" not in convert_lm_to_tflite(model, "dynamic")


def test_int8_unknown_mode_and_model_without_softmax_are_rejected(tmp_path):
  model = build_bilm(BiLMConfig(vocab_size=12, token_encoder="word", lstm_dim=8,
                                projection_dim=4, n_layers=1))
  with pytest.raises(ValueError, match=r"tensorflow/tensorflow#41305.*'dynamic'"):
    convert_lm_to_tflite(model, "int8")
  with pytest.raises(ValueError, match="unknown LM TFLite quantization mode 'int4'"):
    export_lm_tflite(model, str(tmp_path / "lm.tflite"), "int4")
  no_softmax = build_bilm(BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=8,
                                     projection_dim=4, n_layers=1, char_cnn=_TINY_CHAR_CNN))
  with pytest.raises(ValueError, match="perplexity needs a softmax.*vocab_size > 0"):
    export_lm_tflite(no_softmax, str(tmp_path / "lm.tflite"))
  with pytest.raises(ValueError, match="perplexity needs a softmax"):
    lm_serving_function(no_softmax)
  assert not os.listdir(tmp_path)  # nothing written on failure


def test_bad_inputs_to_tflite_perplexity_are_rejected(tiny_lm, tmp_path):
  model, vocab, sentences, _, paths = tiny_lm
  with pytest.raises(ValueError, match="at least one sentence, got 0"):
    tflite_perplexity(paths["none"], [], vocab, progress=False)
  with pytest.raises(ValueError, match="max_sentences must be an integer >= 0.*-1"):
    tflite_perplexity(paths["none"], sentences, vocab, max_sentences=-1, progress=False)
  with pytest.raises(FileNotFoundError, match="export_lm_tflite"):
    tflite_perplexity(str(tmp_path / "missing.tflite"), sentences, vocab, progress=False)
  smaller = data_lib.Vocabulary(vocab.tokens[:-1])
  with pytest.raises(ValueError, match=rf"has {len(vocab) - 1} tokens but the softmax .* has "
                                       rf"{len(vocab)}"):
    tflite_perplexity(paths["none"], sentences, smaller, progress=False)
  representations = str(tmp_path / "bilm.tflite")
  export_tflite(model, representations)
  with pytest.raises(ValueError, match="not an LM TFLite file.*export_lm_tflite"):
    tflite_perplexity(representations, sentences, vocab, progress=False)
