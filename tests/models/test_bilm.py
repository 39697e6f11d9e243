"""The functional biLM: outputs, masking, directions, config validation."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.models import (BiLMConfig, CharCNNConfig, ScalarMix, build_bilm,
                               lm_token_losses)
from tests.tolerance import assert_float32_close

TINY_CHAR = CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)), n_highway=1)


def tiny_config(**kw):
  base = dict(vocab_size=12, token_encoder="word", lstm_dim=8, projection_dim=4, n_layers=2,
              dropout=0.0, char_cnn=TINY_CHAR)
  base.update(kw)
  return BiLMConfig(**base)


@pytest.mark.parametrize("encoder", ["word", "char"])
def test_output_shapes_and_padding_zero(encoder):
  tf.keras.utils.set_random_seed(0)
  model = build_bilm(tiny_config(token_encoder=encoder))
  if encoder == "word":
    ids = np.array([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]], np.int32)
  else:
    ids = np.random.default_rng(0).integers(1, 262, size=(2, 5, 50)).astype(np.int32)
    ids[1, 3:] = 0
  out = model(ids)
  assert out["representations"].shape == (2, 3, 3, 8)
  assert out["forward_logits"].shape == (2, 5, 12)
  # Sentence 2 has one word: positions 1 and 2 of its representations are padding.
  np.testing.assert_array_equal(out["representations"][1, :, 1:].numpy(), 0.0)
  assert np.abs(out["representations"][1, :, 0].numpy()).sum() > 0


@pytest.mark.parametrize("skip", [True, False])
def test_sentence_alone_equals_sentence_in_padded_batch(skip):
  model = build_bilm(tiny_config(use_skip_connections=skip))
  alone = model(np.array([[1, 8, 9, 2]], np.int32))["representations"].numpy()
  batched = model(np.array([[1, 8, 9, 2, 0, 0], [1, 3, 4, 5, 6, 2]], np.int32))
  assert_float32_close(batched["representations"][0, :, :2].numpy(), alone[0])


def test_forward_does_not_see_future_and_backward_does_not_see_past():
  model = build_bilm(tiny_config())
  a = model(np.array([[1, 3, 4, 5, 2]], np.int32))
  b = model(np.array([[1, 3, 9, 5, 2]], np.int32))  # word 2 (position 2) changed
  fa, fb = a["representations"][0, 1:, :, :4].numpy(), b["representations"][0, 1:, :, :4].numpy()
  ba, bb = a["representations"][0, 1:, :, 4:].numpy(), b["representations"][0, 1:, :, 4:].numpy()
  # Word index 0 (position 1) precedes the change: forward equal, backward differs.
  np.testing.assert_allclose(fa[:, 0], fb[:, 0], atol=1e-7)
  assert np.abs(ba[:, 0] - bb[:, 0]).max() > 1e-6
  # Word index 2 (position 3) follows the change: backward equal, forward differs.
  np.testing.assert_allclose(ba[:, 2], bb[:, 2], atol=1e-7)
  assert np.abs(fa[:, 2] - fb[:, 2]).max() > 1e-6


def test_lm_losses_count_every_next_and_previous_word():
  model = build_bilm(tiny_config())
  ids = tf.constant([[1, 5, 6, 2], [1, 7, 2, 0]], tf.int32)
  fwd, bwd, n = lm_token_losses(model(ids), ids)
  assert float(n) == 3 + 2  # n words + </S> (forward) == n words + <S> (backward)
  logits = model(ids)["forward_logits"].numpy()
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -(logp[0, 0, 4] + logp[0, 1, 5] + logp[0, 2, 1] + logp[1, 0, 6] + logp[1, 1, 1])
  np.testing.assert_allclose(float(fwd), expected, rtol=1e-5)


def test_no_softmax_when_vocab_size_zero():
  model = build_bilm(tiny_config(token_encoder="char", vocab_size=0))
  assert "forward_logits" not in model.output


def test_scalar_mix_is_weighted_average():
  mix = ScalarMix()
  layers = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4, 5)), tf.float32)
  out = mix(layers)
  assert_float32_close(out.numpy(), layers.numpy().mean(axis=1))
  mix.scalar_parameters.assign([0.0, 100.0, 0.0])
  np.testing.assert_allclose(mix(layers).numpy(), layers.numpy()[:, 1], atol=1e-5)
  normed = ScalarMix(do_layer_norm=True)([layers, tf.ones((2, 4))])
  assert normed.shape == (2, 4, 5)


@pytest.mark.parametrize("field,value", [
    ("token_encoder", "bytes"), ("vocab_size", -1), ("lstm_dim", 0), ("projection_dim", 0),
    ("n_layers", 0), ("cell_clip", 0.0), ("proj_clip", -1.0), ("dropout", 1.0), ("dropout", -0.1),
    ("vocab_size", 3)])
def test_invalid_config_raises(field, value):
  with pytest.raises(ValueError, match=field.split("_")[0]):
    tiny_config(**{field: value})


@pytest.mark.parametrize("field,value", [("dropout", 0.0), ("vocab_size", 4), ("n_layers", 1),
                                         ("cell_clip", None)])
def test_config_boundary_values_pass(field, value):
  tiny_config(**{field: value})


@pytest.mark.parametrize("kw", [dict(filters=((0, 4),)), dict(filters=()), dict(n_characters=263),
                                dict(activation="gelu"), dict(filters=((51, 2),)),
                                dict(n_highway=-1)])
def test_invalid_char_cnn_config_raises(kw):
  with pytest.raises(ValueError, match="char_cnn"):
    dataclasses.replace(TINY_CHAR, **kw)


def test_config_dict_round_trip():
  config = tiny_config(token_encoder="char")
  assert BiLMConfig.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError, match="unknown"):
    BiLMConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_unique_tokens_gives_per_position_values_and_gradients():
  """The char path run once per distinct token = run at every position."""
  config = tiny_config(token_encoder="char")
  tf.keras.utils.set_random_seed(0)
  fast = build_bilm(config)
  slow = build_bilm(config, unique_tokens=False)
  slow.set_weights(fast.get_weights())
  rng = np.random.default_rng(0)
  types = rng.integers(1, 262, size=(3, 50)).astype(np.int32)  # three distinct tokens
  ids = types[rng.integers(0, 3, size=(2, 6))]  # repeated across the batch
  ids[1, 4:] = 0
  assert {l.name for l in fast.layers} >= {"unique_tokens", "gather_tokens"}

  def loss_and_grads(model):
    with tf.GradientTape() as tape:
      out = model(ids, training=False)
      loss = tf.reduce_sum(out["representations"] ** 2) + tf.reduce_sum(out["forward_logits"])
    return loss, tape.gradient(loss, model.trainable_variables)

  (loss_f, grads_f), (loss_s, grads_s) = loss_and_grads(fast), loss_and_grads(slow)
  np.testing.assert_allclose(loss_f.numpy(), loss_s.numpy(), rtol=1e-5)
  for var, g_f, g_s in zip(fast.trainable_variables, grads_f, grads_s):
    np.testing.assert_allclose(tf.convert_to_tensor(g_f).numpy(), tf.convert_to_tensor(g_s).numpy(),
                               rtol=1e-4, atol=1e-5, err_msg=var.name)


def test_unique_tokens_static_batch_one_keeps_every_position():
  """TFLite traces batch 1: no UniqueV2 (TFLite's UNIQUE is 1-D only)."""
  config = tiny_config(token_encoder="char")
  model = build_bilm(config, batch_size=1)
  ids = np.random.default_rng(1).integers(1, 262, size=(1, 5, 50)).astype(np.int32)
  ids[0, 3] = ids[0, 1]
  reference = build_bilm(config, unique_tokens=False)
  reference.set_weights(model.get_weights())
  np.testing.assert_allclose(model(ids)["representations"].numpy(),
                             reference(ids)["representations"].numpy(), rtol=1e-5, atol=1e-6)
