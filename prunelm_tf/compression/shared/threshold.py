"""Pruning without retraining: magnitude thresholding applied to the weights.

Hand-written rather than tfmot because tfmot only prunes while training; this
sets the smallest-magnitude weights to exactly zero, once, with exact counts.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from prunelm_tf.compression.shared.targets import prunable_weights

keras = tf.keras


def _num_zeros(size: int, sparsity: float) -> int:
  return int(round(size * sparsity))


def prune_by_threshold(model: keras.Model, targets: Dict[str, float], *,
                       scope: str = "layer") -> Dict[str, float]:
  """Zeroes the smallest-magnitude entries of each target weight, in place.

  Args:
    model: the biLM (not wrapped by tfmot).
    targets: ``{"layer/weight": sparsity}`` for every weight to prune (0 = keep).
    scope: "layer": each weight gets exactly round(size * target) zeros (ties
      broken by position, so the count is exact). "global": one magnitude
      threshold over all weights that have the same target, chosen so that
      their total number of zeros is exact; individual weights end up sparser
      or denser than the target.

  Returns:
    The threshold used per weight (the largest pruned magnitude).
  """
  if scope not in ("layer", "global"):
    raise ValueError(f"threshold scope must be 'layer' or 'global', got {scope!r}.")
  weights = prunable_weights(model)
  unknown = set(targets) - set(weights)
  if unknown:
    raise ValueError(f"not prunable weights of this model: {sorted(unknown)}.")
  thresholds = {}
  if scope == "layer":
    for name, sparsity in targets.items():
      values = weights[name].numpy()
      k = _num_zeros(values.size, sparsity)
      flat = values.reshape(-1).copy()
      if k:
        order = np.argsort(np.abs(flat), kind="stable")
        thresholds[name] = float(np.abs(flat[order[k - 1]]))
        flat[order[:k]] = 0.0
      weights[name].assign(flat.reshape(values.shape))
    return thresholds
  # Global: group by target so that per-layer overrides (e.g. softmax=0) keep
  # their own targets while the rest share one threshold.
  groups: Dict[float, list] = {}
  for name, sparsity in targets.items():
    groups.setdefault(sparsity, []).append(name)
  for sparsity, names in groups.items():
    arrays = [weights[n].numpy() for n in names]
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    k = _num_zeros(flat.size, sparsity)
    mask = np.ones(flat.size, bool)
    threshold = 0.0
    if k:
      order = np.argsort(np.abs(flat), kind="stable")
      threshold = float(np.abs(flat[order[k - 1]]))
      mask[order[:k]] = False
    offset = 0
    for n, a in zip(names, arrays):
      m = mask[offset:offset + a.size].reshape(a.shape)
      weights[n].assign(np.where(m, a, 0.0).astype(a.dtype))
      thresholds[n] = threshold
      offset += a.size
  return thresholds
