"""tfmot wrapping: starts from the dense weights, one schedule per layer."""

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.compression import ScheduleConfig, prunable_weights, resolve_targets
from prunelm_tf.compression.methods.retrain.pruning import (layer_targets, make_schedule,
                                                            wrap_for_pruning)
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm


def _dense():
  tf.keras.utils.set_random_seed(1)
  return build_bilm(BiLMConfig(vocab_size=20, token_encoder="char", lstm_dim=8, projection_dim=4,
                               n_layers=2, dropout=0.0,
                               char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)),
                                                      n_highway=1)))


def test_wrapped_model_starts_from_the_dense_weights():
  dense = _dense()
  names = list(prunable_weights(dense))
  wrapped = wrap_for_pruning(dense, ScheduleConfig(end_step=10),
                             resolve_targets(names, 0.5, (("highway_0", 0.0),)))
  ids = np.random.default_rng(0).integers(1, 262, size=(2, 5, 50)).astype(np.int32)
  for key, value in dense(ids, training=False).items():
    np.testing.assert_array_equal(wrapped(ids, training=False)[key].numpy(), value.numpy())
  wrapped_names = {l.name for l in wrapped.layers}
  assert "prune_low_magnitude_forward_lstm_0" in wrapped_names
  assert "highway_0" in wrapped_names  # target 0: not wrapped at all


def test_different_targets_within_one_layer_are_refused_for_retraining():
  dense = _dense()
  names = list(prunable_weights(dense))
  targets = resolve_targets(names, 0.5, (("forward_lstm_0/projection", 0.9),))
  with pytest.raises(ValueError, match="one tfmot schedule.*forward_lstm_0"):
    layer_targets(dense, targets)


def test_schedules_round_trip_through_config():
  poly = make_schedule(ScheduleConfig(begin_step=2, end_step=20, frequency=5, power=2.0), 0.8)
  const = make_schedule(ScheduleConfig(kind="constant", begin_step=3), 0.6)
  for schedule in (poly, const):
    clone = schedule.__class__.from_config(schedule.get_config()["config"])
    assert clone.get_config() == schedule.get_config()
  assert poly.get_config()["config"]["final_sparsity"] == 0.8


def test_retraining_settings_are_restored_when_the_retraining_fails():
  """--retrain_frozen and --retrain_dropout hold inside the retraining only, also when it
  raises: the model keeps its own trainable flags and rates (they are in its config)."""
  from prunelm_tf.compression.shared import finetune  # pylint: disable=import-outside-toplevel
  model = build_bilm(BiLMConfig(vocab_size=20, token_encoder="word", lstm_dim=8,
                                projection_dim=4, n_layers=1, dropout=0.2))
  dropouts = [l for l in model.layers if isinstance(l, tf.keras.layers.Dropout)]
  softmax = model.get_layer("softmax")
  config = finetune.RetrainConfig(frozen="softmax", dropout=0.0)
  with pytest.raises(RuntimeError, match="interrupted"):
    with finetune._retraining_settings(model, config):  # pylint: disable=protected-access
      assert not softmax.trainable and dropouts
      assert [l.rate for l in dropouts] == [0.0] * len(dropouts)
      raise RuntimeError("interrupted")
  assert softmax.trainable and [l.rate for l in dropouts] == [0.2] * len(dropouts)
  # Unset: the model's own rates, nothing frozen.
  with finetune._retraining_settings(model, finetune.RetrainConfig()):  # pylint: disable=protected-access
    assert softmax.trainable and [l.rate for l in dropouts] == [0.2] * len(dropouts)
