"""Sensitivity-based allocation: exact budgets, cheapest weights first, curves restore weights."""

import numpy as np
import pytest

from prunelm_tf.compression.shared.allocation import (allocate_sparsity, predicted_cost,
                                                      sensitivity_curves)
from prunelm_tf.compression.shared.targets import prunable_weights
from prunelm_tf.models import BiLMConfig, build_bilm

CURVES = {
    # "cheap" tolerates pruning, "costly" does not.
    "cheap/kernel": {"0.5": 0.0, "0.9": 0.01},
    "costly/kernel": {"0.5": 1.0, "0.9": 5.0},
}


def test_allocation_spends_the_budget_on_the_cheapest_weight_exactly():
  sizes = {"cheap/kernel": 100, "costly/kernel": 100}
  levels = allocate_sparsity(CURVES, sizes, 0.4)
  assert levels["costly/kernel"] == 0.0
  assert levels["cheap/kernel"] == pytest.approx(0.8)
  zeros = sum(levels[n] * sizes[n] for n in sizes)
  assert zeros == pytest.approx(0.4 * 200)
  # Past what the cheap weight can give, the costly one takes the rest.
  levels = allocate_sparsity(CURVES, sizes, 0.6)
  assert levels["cheap/kernel"] == pytest.approx(0.9)
  assert levels["costly/kernel"] == pytest.approx(0.3)
  assert predicted_cost(CURVES, levels) == pytest.approx(0.01 + 0.3 / 0.5 * 1.0)


def test_allocation_weighs_cost_per_pruned_entry():
  # The costly weight is so large that pruning it a little gives many zeros cheaply per entry.
  curves = {"a/kernel": {"0.5": 1.0}, "b/kernel": {"0.5": 1.0}}
  levels = allocate_sparsity(curves, {"a/kernel": 10, "b/kernel": 1000}, 0.25)
  assert levels["a/kernel"] == 0.0 and levels["b/kernel"] == pytest.approx(0.2525)


def test_allocation_boundaries_and_errors():
  sizes = {"cheap/kernel": 100, "costly/kernel": 100}
  assert allocate_sparsity(CURVES, sizes, 0.0) == {"cheap/kernel": 0.0, "costly/kernel": 0.0}
  top = allocate_sparsity(CURVES, sizes, 0.9)
  assert top == pytest.approx({"cheap/kernel": 0.9, "costly/kernel": 0.9})
  with pytest.raises(ValueError, match="measure higher levels"):
    allocate_sparsity(CURVES, sizes, 0.95)
  with pytest.raises(ValueError, match="different weights"):
    allocate_sparsity(CURVES, {"cheap/kernel": 100}, 0.1)


def test_sensitivity_curves_are_monotone_and_restore_the_weights():
  model = build_bilm(BiLMConfig(vocab_size=20, token_encoder="word", lstm_dim=8,
                                projection_dim=4, n_layers=1))
  weights = prunable_weights(model)
  before = {n: w.numpy().copy() for n, w in weights.items()}
  target = "forward_lstm_0/kernel"
  calls = []

  def loss_fn(m):
    # Distance of the model's weights from the dense ones: grows with pruning.
    calls.append(1)
    return float(sum(np.abs(prunable_weights(m)[n].numpy() - before[n]).sum() for n in before))

  result = sensitivity_curves(model, [target, "softmax/kernel"], loss_fn, levels=(0.5, 0.9))
  assert result["loss"] == 0.0
  curve = result["curves"][target]
  assert list(curve) == ["0.5", "0.9"] and 0 < curve["0.5"] <= curve["0.9"]
  assert len(calls) == 1 + 2 * 2
  for n, w in prunable_weights(model).items():
    np.testing.assert_array_equal(w.numpy(), before[n])
  with pytest.raises(ValueError, match=r"\(0, 1\)"):
    sensitivity_curves(model, [target], loss_fn, levels=(0.5, 1.0))
  with pytest.raises(ValueError, match="not prunable"):
    sensitivity_curves(model, ["nope/kernel"], loss_fn)


def test_cached_curves_are_reused_only_for_the_same_number_of_sentences(tmp_path, monkeypatch):
  import types  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.shared import allocation  # pylint: disable=import-outside-toplevel
  measured = []
  monkeypatch.setattr(allocation, "calibration_loss_fn",
                      lambda source, sentences: measured.append(len(sentences)))
  monkeypatch.setattr(allocation, "sensitivity_curves",
                      lambda model, names, loss_fn, levels, prune=None: {
                          "loss": 0.0, "curves": {"w": {repr(l): 0.0 for l in levels}}})
  context = types.SimpleNamespace(
      cache_dir=str(tmp_path), calibration_sentences=[["a"]] * 5, free_weights=["w"],
      source=None, copy_source=lambda: None)
  first = allocation.cached_sensitivity_curves(context, max_sentences=2)
  assert measured == [2] and first["num_sentences"] == 2
  assert allocation.cached_sensitivity_curves(context, max_sentences=2) == first
  assert measured == [2]  # read from the cache
  again = allocation.cached_sensitivity_curves(context)  # all 5: measured anew
  assert measured == [2, 5] and again["num_sentences"] == 5


def test_cached_curves_are_extended_by_the_missing_levels_only(tmp_path, monkeypatch):
  """Higher levels are measured alone and merged; the curves returned hold the grid asked for."""
  import types  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.shared import allocation  # pylint: disable=import-outside-toplevel
  asked = []
  # A measurement whose cost at a level is 10 x the level, except a noisy dip at 0.97.
  cost = {0.5: 5.0, 0.95: 9.5, 0.97: 1.0, 0.99: 9.9}

  def curves(model, names, loss_fn, levels, prune=None):
    asked.append(list(levels))
    return {"loss": 1.0, "curves": {n: {repr(l): cost[l] for l in levels} for n in names}}

  monkeypatch.setattr(allocation, "calibration_loss_fn", lambda source, sentences: None)
  monkeypatch.setattr(allocation, "sensitivity_curves", curves)
  context = types.SimpleNamespace(
      cache_dir=str(tmp_path), calibration_sentences=[["a"]] * 3, free_weights=["w", "v"],
      source=None, copy_source=lambda: None)
  low = allocation.cached_sensitivity_curves(context, levels=(0.5, 0.95))
  assert low["curves"]["w"] == {"0.5": 5.0, "0.95": 9.5}
  high = allocation.cached_sensitivity_curves(context, levels=(0.5, 0.95, 0.97, 0.99))
  assert asked == [[0.5, 0.95], [0.97, 0.99]]  # only the missing levels measured
  # Non-decreasing over the merged grid, as one measurement of it would be.
  assert high["curves"]["w"] == {"0.5": 5.0, "0.95": 9.5, "0.97": 9.5, "0.99": 9.9}
  # The default grid again: read from the extended cache, restricted to it.
  again = allocation.cached_sensitivity_curves(context, levels=(0.5, 0.95))
  assert asked == [[0.5, 0.95], [0.97, 0.99]]
  assert again["curves"] == low["curves"]


def test_levels_up_to_adds_the_high_levels_and_refuses_out_of_range():
  from prunelm_tf.compression.shared import allocation  # pylint: disable=import-outside-toplevel
  assert allocation.levels_up_to(0.95) == allocation.DEFAULT_LEVELS
  assert allocation.levels_up_to(0.98)[-3:] == (0.95, 0.97, 0.98)
  for bad in (0.9, 1.0):
    with pytest.raises(ValueError, match=r"\[0.95, 1\)"):
      allocation.levels_up_to(bad)


def test_allocation_with_high_levels_spends_a_95_percent_target_unevenly():
  from prunelm_tf.compression.shared.allocation import allocate_sparsity  # pylint: disable=import-outside-toplevel
  levels = (0.5, 0.9, 0.95, 0.97, 0.99)
  cheap = {repr(l): l * 0.1 for l in levels}
  dear = {repr(l): l * 10.0 for l in levels}
  # Only up to 0.95: both matrices at 0.95.
  both = allocate_sparsity({"a": {k: v for k, v in cheap.items() if float(k) <= 0.95},
                            "b": {k: v for k, v in dear.items() if float(k) <= 0.95}},
                           {"a": 1000, "b": 200}, 0.95)
  assert both == pytest.approx({"a": 0.95, "b": 0.95})
  spread = allocate_sparsity({"a": cheap, "b": dear}, {"a": 1000, "b": 200}, 0.95)
  assert spread["a"] > 0.95 > spread["b"]
  assert (spread["a"] * 1000 + spread["b"] * 200) / 1200 == pytest.approx(0.95)
