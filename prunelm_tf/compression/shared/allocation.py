"""Sensitivity-based allocation of per-weight sparsity for pruning without retraining.

Uniform magnitude thresholding gives every matrix the same target, but matrices
differ greatly in how much pruning they tolerate (in a word-input biLM the
first LSTM layer and the projections are far more sensitive than the word
embedding or the second layer's kernels). As in the sensitivity analysis of
Han et al. (2015) and the class-based pruning of See et al. (2016), each
matrix is pruned *alone* to a grid of levels on held-out calibration data, and
the budget of zeros is then spent where it costs least: the overall sparsity
stays exactly the requested value, only its distribution changes.

The cost of a combination is approximated by the sum of the single-matrix
costs (an additive model; the real joint cost is measured afterwards, on the
evaluation corpus, like every other variant).
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence

from absl import logging
import numpy as np

from prunelm_tf.compression.shared.targets import prunable_weights
from prunelm_tf.compression.shared.threshold import prune_by_threshold

# Levels at which each matrix's sensitivity is measured (0 is implicit, cost 0).
DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# Levels above 0.95 that `levels_up_to` adds: with the default grid a 0.95
# target can only be spent uniformly (every matrix at its highest level).
HIGH_LEVELS = (0.97, 0.98, 0.99)


def levels_up_to(max_level: float) -> tuple:
  """DEFAULT_LEVELS and the HIGH_LEVELS up to ``max_level`` (in [0.95, 1))."""
  if not 0.95 <= max_level < 1:
    raise ValueError(f"the highest sensitivity level must lie in [0.95, 1), got {max_level}.")
  return DEFAULT_LEVELS + tuple(l for l in HIGH_LEVELS if l <= max_level + 1e-9)


def sensitivity_curves(model, names: Sequence[str], loss_fn: Callable[[object], float], *,
                       levels: Sequence[float] = DEFAULT_LEVELS,
                       prune: Optional[Callable[[str, float], None]] = None
                       ) -> Dict[str, Dict[str, float]]:
  """Loss increase when each weight alone is pruned to each level.

  Args:
    model: the dense biLM; its weights are restored before returning.
    names: prunable weight names (``layer/weight``) to measure.
    loss_fn: ``model -> float``, lower is better (e.g. the mean LM NLL of
      both directions on calibration sentences).
    levels: sparsity levels in (0, 1), increasing.
    prune: ``(name, level) -> None`` prunes weight ``name`` of ``model`` in
      place to ``level``; default magnitude thresholding. A data-aware pruner
      (`calibration.obs_pruner`) measures what each matrix costs under the
      method that will prune it.

  Returns:
    ``{"loss": dense_loss, "curves": {name: {str(level): loss - dense_loss}}}``
    where each curve is made non-decreasing in the level (measurement noise
    can make a slightly pruned matrix look better than the dense one).
  """
  levels = sorted(float(s) for s in levels)
  if not levels or levels[0] <= 0 or levels[-1] >= 1:
    raise ValueError(f"sensitivity levels must lie in (0, 1), got {levels}.")
  weights = prunable_weights(model)
  missing = [n for n in names if n not in weights]
  if missing:
    raise ValueError(f"not prunable weights of this model: {missing}.")
  base = float(loss_fn(model))
  curves = {}
  for name in names:
    original = weights[name].numpy()
    increases, worst = {}, 0.0
    try:
      for level in levels:
        weights[name].assign(original)
        if prune is None:
          prune_by_threshold(model, {name: level})
        else:
          prune(name, level)
        worst = max(worst, float(loss_fn(model)) - base)
        increases[repr(level)] = worst
    finally:
      weights[name].assign(original)
    curves[name] = increases
    logging.info("sensitivity %s: %s", name,
                 ", ".join(f"{k}: {v:+.4f}" for k, v in increases.items()))
  return {"loss": base, "curves": curves}


def _cost(curve: Mapping[str, float], level: float) -> float:
  """Cost at ``level`` by linear interpolation of the curve (0 at level 0)."""
  xs = [0.0] + [float(k) for k in curve]
  ys = [0.0] + list(curve.values())
  return float(np.interp(level, xs, ys))


def allocate_sparsity(curves: Mapping[str, Mapping[str, float]], sizes: Mapping[str, int],
                      target: float) -> Dict[str, float]:
  """Per-weight sparsity with exactly ``target`` zeros overall, at least predicted cost.

  Greedy on the marginal cost per pruned entry: starting from all-dense, the
  move (one weight to one of its higher measured levels) with the smallest
  cost increase per extra zero is taken until the budget is reached; the last
  move is stopped part-way so that the number of zeros is exact.

  Args:
    curves: ``{name: {str(level): cost}}`` from ``sensitivity_curves``.
    sizes: number of entries per weight (same names).
    target: overall sparsity in [0, max level].

  Raises:
    ValueError: the target exceeds what the measured levels can reach.
  """
  if set(curves) != set(sizes):
    raise ValueError(f"curves and sizes name different weights: {sorted(curves)} vs "
                     f"{sorted(sizes)}.")
  total = sum(sizes.values())
  budget = target * total
  reachable = sum(max(float(k) for k in curves[n]) * sizes[n] for n in curves)
  if budget > reachable + 1e-9:
    raise ValueError(f"overall sparsity {target} needs more zeros than the measured levels allow "
                     f"(at most {reachable / total:.3f}); measure higher levels.")
  level = {n: 0.0 for n in curves}
  zeros = 0.0
  while zeros < budget - 1e-9:
    best = None
    for n, curve in curves.items():
      here = _cost(curve, level[n])
      for k in curve:
        nxt = float(k)
        if nxt <= level[n]:
          continue
        gain = (nxt - level[n]) * sizes[n]
        rate = (curve[k] - here) / gain
        if best is None or rate < best[0]:
          best = (rate, n, nxt, gain)
    _, n, nxt, gain = best
    if zeros + gain > budget:  # stop part-way: exact budget
      nxt = level[n] + (budget - zeros) / sizes[n]
      gain = budget - zeros
    level[n] = nxt
    zeros += gain
  return level


def predicted_cost(curves: Mapping[str, Mapping[str, float]], levels: Mapping[str, float]) -> float:
  """Sum of the single-weight costs at ``levels`` (the additive model)."""
  return sum(_cost(curves[n], levels[n]) for n in levels)


def calibration_loss_fn(source, sentences) -> Callable[[object], float]:
  """The loss a sensitivity curve measures, on calibration ``sentences``.

  The mean LM NLL of both directions for models with a softmax; otherwise
  1 - the mean cosine similarity of the representations to the dense model's
  (imported ELMo models have no softmax).
  """
  import math  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.source import representation_similarity  # pylint: disable=import-outside-toplevel
  from prunelm_tf.training.loop import evaluate_perplexity  # pylint: disable=import-outside-toplevel
  if source.config.has_softmax:
    return lambda m: math.log(evaluate_perplexity(
        m, source.dataset(sentences, 64, shuffle=False))["mean"])

  def similarity_loss(m):
    sims = representation_similarity(m, source.model, source.dataset(sentences, 64,
                                                                      shuffle=False))
    return 1.0 - sum(sims.values()) / len(sims)
  return similarity_loss


def cached_sensitivity_curves(context, *, pruner=None, cache_name: str = "sensitivity.json",
                              max_sentences: int = 0,
                              levels: Sequence[float] = DEFAULT_LEVELS) -> Dict:
  """Sensitivity curves of the context's free weights, measured once per run.

  Cached in ``<cache_dir>/<cache_name>`` so every sweep value (and a resumed
  run) reuses them. ``pruner``: ``(model, sentences) -> prune(name, level)``
  for a data-aware criterion calibrated on ``sentences`` (see
  `sensitivity_curves`); None = magnitude. ``max_sentences``: measure on the
  first this many calibration sentences (0 = all): the curves only rank the
  matrices, so they can cost less than the pruning itself. ``levels``: the
  grid wanted. A cache measured on the same sentences but missing some levels
  is extended by measuring only those (each level is measured independently,
  so the merged curves equal a measurement of the whole grid); the curves
  returned hold exactly ``levels``.
  """
  import os  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  from prunelm_tf.utils import files  # pylint: disable=import-outside-toplevel
  path = os.path.join(context.cache_dir, cache_name)
  sentences = context.calibration_sentences
  if max_sentences:
    sentences = sentences[:max_sentences]
  levels = sorted(float(l) for l in levels)
  cached = files.read_json(path) if os.path.exists(path) else None
  if cached is not None and cached.get("num_sentences") != len(sentences):
    cached = None
  have = _measured_levels(cached) if cached is not None else set()
  missing = [l for l in levels if l not in have]
  if missing:
    t = time.time()
    model = context.copy_source()
    measured = sensitivity_curves(model, context.free_weights,
                                  calibration_loss_fn(context.source, sentences), levels=missing,
                                  prune=pruner(model, sentences) if pruner is not None else None)
    if cached is None:
      cached = {"loss": measured["loss"], "curves": {}, "seconds": 0.0,
                "num_sentences": len(sentences)}
    for name, curve in measured["curves"].items():
      merged = {**cached["curves"].get(name, {}), **curve}
      worst, monotone = 0.0, {}
      for key in sorted(merged, key=float):  # non-decreasing over the whole grid
        worst = max(worst, merged[key])
        monotone[key] = worst
      cached["curves"][name] = monotone
    cached["seconds"] = cached.get("seconds", 0.0) + time.time() - t
    files.write_json(path, cached)
  wanted = {repr(l) for l in levels}
  return dict(cached, curves={n: {k: v for k, v in c.items() if k in wanted}
                              for n, c in cached["curves"].items()})


def _measured_levels(cached: Dict) -> set:
  """The levels every curve of a cached measurement holds."""
  curves = list(cached.get("curves", {}).values())
  if not curves:
    return set()
  return set.intersection(*({float(k) for k in c} for c in curves))


def allocated_targets(context, curves: Optional[Dict] = None):
  """Per-weight targets of the context with the free weights' budget allocated by sensitivity.

  ``curves``: measured `sensitivity_curves` (default: magnitude, cached).

  Returns:
    ``(targets, record)``: the full per-weight targets and what to record in
    the variant's metrics (allocated targets, predicted loss increase).
  """
  curves = curves if curves is not None else cached_sensitivity_curves(context)
  free = context.free_weights
  sizes = {n: int(np.prod(w.shape)) for n, w in prunable_weights(context.source.model).items()
           if n in free}
  allocated = allocate_sparsity({n: curves["curves"][n] for n in free}, sizes,
                                context.target_sparsity)
  targets = dict(context.targets)
  targets.update(allocated)
  return targets, {"allocated_targets": allocated,
                   "predicted_loss_increase": predicted_cost(curves["curves"], allocated)}


def targets_for(context, allocation: str, curves: Optional[Dict] = None):
  """The context's per-weight targets under ``allocation`` ("uniform" or "sensitivity").

  Returns:
    ``(targets, record)``: the targets, and what the variant's metrics record
    about them ({} for uniform; the allocation, allocated targets and
    predicted loss increase for sensitivity).
  """
  if allocation == "uniform":
    return context.targets, {}
  targets, record = allocated_targets(context, curves)
  return targets, {"allocation": allocation, **record}
