"""benchmarks.elmo_scale: the distillation-retraining measurement on the small real ELMo."""

import numpy as np

from benchmarks import elmo_scale
from prunelm_tf.compression import prunable_weights, prune_by_threshold, resolve_targets
from prunelm_tf.elmo import load_elmo


def test_distill_steps_times_steps_and_keeps_the_masks(shared_data):
  root = shared_data / "elmo_fixture"
  options, weights = str(root / "options.json"), str(root / "lm_weights.hdf5")
  model, _ = load_elmo(options, weights)
  prune_by_threshold(model, resolve_targets(list(prunable_weights(model)), 0.5, ()))
  zeros = {n: w.numpy() == 0 for n, w in prunable_weights(model).items()}
  before = {n: w.numpy().copy() for n, w in prunable_weights(model).items()}
  result, trained = elmo_scale.distill_steps(model, options, weights, steps=3, batch_size=2)
  assert result["steps"] == 3 and result["steps_per_second"] > 0
  assert result["ptb_epoch_steps"] == 21034
  assert result["ptb_epoch_hours"] == result["ptb_epoch_steps"] / result["steps_per_second"] / 3600
  after = {n: w.numpy() for n, w in prunable_weights(trained).items()}
  assert any(not np.array_equal(before[n], after[n]) for n in after)  # it trained
  for n, mask in zeros.items():
    assert (after[n][mask] == 0).all()  # fixed masks
