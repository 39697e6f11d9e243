"""Magnitude thresholding: exact counts, global scope, overrides, sensitivity allocation."""

import json

import numpy as np
import pytest

from prunelm_tf.compression import measure_sparsity, prunable_weights, prune_by_threshold, \
    resolve_targets
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.compression.methods.threshold import ThresholdOptions
from prunelm_tf.compression.options import options_record
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm
from prunelm_tf.training.run_folder import load_run
from tests.compression.method_context import method_context, tiny_source


def _model(encoder="char"):
  return build_bilm(BiLMConfig(vocab_size=30, token_encoder=encoder, lstm_dim=16, projection_dim=8,
                               n_layers=2, char_cnn=CharCNNConfig(embedding_dim=4,
                                                                  filters=((1, 4), (2, 8)),
                                                                  n_highway=1)))


@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.9, 0.97])
def test_layer_scope_reaches_target_exactly_on_every_matrix(target):
  model = _model()
  names = list(prunable_weights(model))
  before = {n: w.numpy().copy() for n, w in prunable_weights(model).items()}
  prune_by_threshold(model, resolve_targets(names, target, ()))
  for name, w in prunable_weights(model).items():
    values = w.numpy()
    assert values.size - np.count_nonzero(values) == round(values.size * target), name
    kept = values != 0
    # The survivors are the largest magnitudes, unchanged.
    np.testing.assert_array_equal(values[kept], before[name][kept])
    if kept.any() and (~kept).any():
      assert np.abs(before[name][~kept]).max() <= np.abs(before[name][kept]).min()
  assert measure_sparsity(model)["per_weight"].keys() == set(names)


def test_global_scope_one_threshold_exact_total():
  model = _model()
  names = list(prunable_weights(model))
  thresholds = prune_by_threshold(model, resolve_targets(names, 0.6, ()), scope="global")
  assert len(set(thresholds.values())) == 1
  sizes = {n: w.numpy().size for n, w in prunable_weights(model).items()}
  zeros = sum(sizes[n] - np.count_nonzero(w.numpy()) for n, w in prunable_weights(model).items())
  assert zeros == round(sum(sizes.values()) * 0.6)
  per = measure_sparsity(model)["per_weight"]
  assert max(per.values()) - min(per.values()) > 0.05  # matrices differ, unlike layer scope


def test_overrides_skip_and_retarget_by_pattern():
  model = _model()
  names = list(prunable_weights(model))
  targets = resolve_targets(names, 0.8, (("softmax", 0.0), ("char_cnn/.*", 0.5)))
  prune_by_threshold(model, targets)
  per = measure_sparsity(model)["per_weight"]
  assert per["softmax/kernel"] == 0.0
  assert per["char_cnn/kernel_0"] == 0.5 and per["char_cnn/kernel_1"] == 0.5
  assert abs(per["forward_lstm_0/kernel"] - 0.8) < 1e-3
  assert "softmax/bias" not in per  # biases are never pruned


def test_pattern_that_matches_no_weight_is_an_error():
  names = list(prunable_weights(_model("word")))
  with pytest.raises(ValueError, match="'char_cnn/.\\*' matches no prunable weight"):
    resolve_targets(names, 0.5, (("char_cnn/.*", 0.5),))
  with pytest.raises(ValueError, match="not a valid regular expression"):
    resolve_targets(names, 0.5, (("softmax[", 0.5),))


def test_sensitivity_allocation_keeps_overall_sparsity(tiny_run_dir, tiny_text, tmp_path):
  method = REGISTRY["threshold"]
  options = ThresholdOptions(allocation="sensitivity")
  done = method.compress(options, method_context(
      tiny_source(tiny_run_dir), tmp_path, target=0.6, calibration=tiny_text, max_sentences=4,
      layer_sparsity=(("softmax", 0.0),)))
  v = done.metrics
  assert method.variant_name(options, 0.6) == "threshold_sens_60"
  assert v["allocation"] == "sensitivity"
  assert options_record(options) == {"scope": "layer", "allocation": "sensitivity"}
  per_weight = measure_sparsity(done.model)["per_weight"]
  assert per_weight["softmax/kernel"] == 0.0  # an explicit override is kept
  free = [n for n in per_weight if not n.startswith("softmax")]
  assert set(v["allocated_targets"]) == set(free)
  sizes = {n: w.shape.num_elements()
           for n, w in prunable_weights(load_run(tiny_run_dir)[0]).items()}
  zeros = sum(per_weight[n] * sizes[n] for n in free)
  assert zeros / sum(sizes[n] for n in free) == pytest.approx(0.6, abs=1e-3)
  assert len({round(per_weight[n], 2) for n in free}) > 1  # not uniform
  curves = json.load(open(tmp_path / "cache" / "sensitivity.json"))
  assert set(curves["curves"]) == set(free) and curves["num_sentences"] == 4
