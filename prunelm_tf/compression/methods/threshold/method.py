"""``threshold``: magnitude pruning without retraining (uniform or sensitivity-allocated)."""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.options import check_choice, option
from prunelm_tf.compression.shared.allocation import cached_sensitivity_curves, levels_up_to, \
    targets_for
from prunelm_tf.compression.shared.threshold import prune_by_threshold

SCOPES = ("layer", "global")
ALLOCATIONS = ("uniform", "sensitivity")


@dataclasses.dataclass(frozen=True)
class ThresholdOptions:
  """Magnitude thresholding."""

  # "layer": every matrix to its own target; "global": one threshold across all.
  scope: str = option("layer", "layer: every matrix pruned to its target; global: one magnitude "
                      "threshold across all pruned matrices (with the same target).",
                      flag="threshold_scope", choices=SCOPES)
  # "uniform": every weight gets the sweep value; "sensitivity": per-weight
  # targets chosen from each weight's measured cost on --calibration, the
  # overall sparsity still the sweep value.
  allocation: str = option(
      "uniform", "How the sweep's sparsity is spread over the matrices: uniform (every matrix "
      "the sweep value) or sensitivity (each matrix is first pruned alone on --calibration to "
      "measure what it costs, then per-matrix targets are chosen so the overall sparsity is "
      "still the sweep value at the least predicted loss; a few minutes more).",
      flag="allocation", choices=ALLOCATIONS)
  # The highest level of the sensitivity curves (above 0.95: 0.97, 0.98, 0.99 up to it).
  sensitivity_max_level: float = option(
      0.95, "The highest level the sensitivity curves measure (--allocation=sensitivity "
      "of threshold, --allocation=obs_sensitivity of obs); above 0.95 the levels 0.97, 0.98, 0.99 up to "
      "it are added, so that a 0.95 target can prune insensitive matrices harder than "
      "sensitive ones (at 0.95 it is spent uniformly).", flag="sensitivity_max_level",
      recorded_when_set=True)
  # The allocation the highest level applies to (see RetrainOptions).
  max_level_allocation: ClassVar[str] = "sensitivity"

  def __post_init__(self):
    if self.scope not in SCOPES:
      raise ValueError(f"--threshold_scope must be one of {SCOPES}, got {self.scope!r}.")
    check_choice("allocation", self.allocation, ALLOCATIONS, "threshold")
    if not 0.95 <= self.sensitivity_max_level < 1:
      raise ValueError(f"--sensitivity_max_level must lie in [0.95, 1), got "
                       f"{self.sensitivity_max_level}.")
    if self.sensitivity_max_level != 0.95 and self.allocation != "sensitivity":
      raise ValueError("--sensitivity_max_level applies to --method=threshold with "
                       "--allocation=sensitivity.")
    if self.allocation == "sensitivity" and self.scope != "layer":
      raise ValueError("--allocation=sensitivity chooses a target per weight, so it "
                       "needs --threshold_scope=layer.")


class ThresholdMethod(CompressionMethod):
  """The smallest-magnitude weights set to zero, no training."""

  name = "threshold"
  one_shot = True
  summary = "set the smallest weights to zero, no training"
  Options = ThresholdOptions
  hparam_domains = {"threshold_scope": SCOPES, "allocation": ALLOCATIONS}

  def needs(self, options):
    return Needs(calibration=options.allocation == "sensitivity")

  def variant_name(self, options, target_sparsity):
    sens = "_sens" if options.allocation == "sensitivity" else ""
    return f"{self.name}{sens}_{round(target_sparsity * 100):02d}"

  def compress(self, options, context):
    t = time.time()
    curves = None
    if options.allocation == "sensitivity" and options.sensitivity_max_level != 0.95:
      curves = cached_sensitivity_curves(context,
                                         levels=levels_up_to(options.sensitivity_max_level))
    targets, record = targets_for(context, options.allocation, curves)
    model = context.copy_source()
    prune_by_threshold(model, targets, scope=options.scope)
    return CompressedModel(model, context.source.config, metrics=record,
                           seconds={"prune": time.time() - t})

  def hparams(self, options):
    return {"threshold_scope": options.scope, "allocation": options.allocation}
