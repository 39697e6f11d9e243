"""``obs``: layer-wise reconstruction (Optimal Brain Compression / SparseGPT), no retraining.

Every prunable matrix is pruned, in forward order, to minimise ‖XW − XŴ‖ on
the inputs X it really sees on --calibration text, collected through the
model as pruned so far (`prunelm_tf.compression.shared.calibration`); the remaining
weights (and the bias) get the OBS update. Exact sparsity per matrix.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar, Optional

import numpy as np

from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.options import check_choice, option
from prunelm_tf.compression.shared.allocation import cached_sensitivity_curves, levels_up_to, \
    targets_for
from prunelm_tf.compression.shared.calibration import (CALIBRATION_BATCH, CHAR_WINDOWS, obs_pruner,
                                                      prune_model_layerwise)
from prunelm_tf.compression.shared.targets import prunable_weights, resolve_targets
from prunelm_tf.data.corpus import load_corpus

# Each matrix's cost measured OBS-pruned alone: an allocation of obs only.
OBS_SENSITIVITY = "obs_sensitivity"
ALLOCATIONS = ("uniform", "sensitivity", OBS_SENSITIVITY)
# The help of --allocation's values for obs and wanda (one flag with threshold's and lowrank's).
ALLOCATION_HELP = ("How the sweep's sparsity is spread over the matrices: uniform (every matrix "
                   "the sweep value), sensitivity (from each matrix's measured cost on "
                   "--calibration when magnitude-pruned alone; same overall sparsity) or "
                   "obs_sensitivity (--method=obs only: the cost when OBS-pruned alone, what obs "
                   "will do to it).")


@dataclasses.dataclass(frozen=True)
class ObsOptions:
  """SparseGPT-style layer-wise pruning."""

  # "uniform": every matrix gets the sweep value; "sensitivity": per-matrix
  # targets from each matrix's measured cost (magnitude-pruned alone on
  # --calibration), the overall sparsity still the sweep value;
  # "obs_sensitivity": the same with each matrix OBS-pruned alone.
  allocation: str = option("uniform", ALLOCATION_HELP, flag="allocation", choices=ALLOCATIONS)
  # Input rows per SparseGPT block (the mask of a block is chosen at once).
  block_size: int = option(128, "SparseGPT block of input rows.", flag="obs_block_size",
                           lower=1)
  # Dampening λ of H (λ · mean diag H added to the diagonal).
  damp: float = option(0.01, "Dampening of the Gram matrix H (fraction of its mean diagonal).",
                       flag="obs_damp", lower=0.0)
  # Also update the bias (a never-pruned constant input).
  update_bias: bool = option(True, "Also update each pruned matrix's bias from the calibration "
                             "inputs (obs: as a constant input; wanda: mean-preserving).",
                             flag="layerwise_update_bias")
  # Character-CNN windows that make H: "all" or "max" (those max-pooling selects).
  char_windows: str = option("all", "Character-convolution windows that make H: all, or max "
                             "(the windows max-pooling selects).", flag="char_windows",
                             choices=CHAR_WINDOWS)
  # Sentences of --calibration the obs_sensitivity curves are measured on (0 = all).
  sensitivity_sentences: int = option(0, "obs_sensitivity: measure the per-matrix curves on the "
                                      "first this many --calibration sentences (0 = all); the "
                                      "pruning itself uses all --calibration_sentences.",
                                      flag="sensitivity_sentences", lower=0)
  # Highest level of the obs_sensitivity curves: above 0.95 the levels 0.97,
  # 0.98, 0.99 up to it are measured too.
  sensitivity_max_level: float = option(
      0.95, "obs_sensitivity: the highest level the curves measure; above 0.95 the levels "
      "0.97, 0.98, 0.99 up to it are added, so that a 0.95 target can prune insensitive "
      "matrices harder than sensitive ones (at 0.95 it is spent uniformly).",
      flag="sensitivity_max_level", recorded_when_set=True)
  # The allocation the highest level applies to (see RetrainOptions).
  max_level_allocation: ClassVar[Optional[str]] = OBS_SENSITIVITY
  # The method these options belong to (wanda's options are these, its allocation narrowed).
  method_name: ClassVar[str] = "obs"
  # Refuse calibration text with fewer real tokens than this × the widest input.
  min_tokens_factor: float = option(4.0, "Calibration text must hold at least this many times "
                                    "as many tokens as the widest pruned matrix has inputs.",
                                    flag="min_tokens_factor", lower=0.0)

  def __post_init__(self):
    allocations = next(f for f in dataclasses.fields(self)
                       if f.name == "allocation").metadata["choices"]
    check_choice("allocation", self.allocation, allocations, self.method_name,
                 f"; {OBS_SENSITIVITY} needs --method=obs (it measures each matrix's cost when "
                 "OBS-pruned alone)" if self.allocation == OBS_SENSITIVITY else "")
    if self.block_size < 1:
      raise ValueError(f"--obs_block_size must be >= 1, got {self.block_size}.")
    if not self.damp >= 0:
      raise ValueError(f"--obs_damp must be >= 0, got {self.damp}.")
    if self.sensitivity_sentences < 0:
      raise ValueError(f"--sensitivity_sentences must be >= 0, got {self.sensitivity_sentences}.")
    if not 0.95 <= self.sensitivity_max_level < 1:
      raise ValueError(f"--sensitivity_max_level must lie in [0.95, 1), got "
                       f"{self.sensitivity_max_level}.")
    if self.char_windows not in CHAR_WINDOWS:
      raise ValueError(f"--char_windows must be one of {CHAR_WINDOWS}, got "
                       f"{self.char_windows!r}.")


class ObsMethod(CompressionMethod):
  """Layer-wise OBS reconstruction from calibration text."""

  name = "obs"
  one_shot = True
  summary = ("layer-wise OBS/SparseGPT reconstruction of every matrix from the inputs it sees "
             "on --calibration, no training")
  Options = ObsOptions
  hparam_domains = {"allocation": ALLOCATIONS, "char_windows": CHAR_WINDOWS}
  # The criterion passed to prune_model_layerwise.
  criterion = "obs"

  def needs(self, options):
    return Needs(calibration=True)

  def variant_name(self, options, target_sparsity):
    sens = {"uniform": "", "sensitivity": "_sens", "obs_sensitivity": "_osens"}[
        options.allocation]
    return f"{self.name}{sens}_{round(target_sparsity * 100):02d}"

  def check(self, options, config, source):
    """A model it can reconstruct, and enough calibration tokens for the widest matrix."""
    if source.config.ranks:
      factored = ", ".join(n for n, _ in source.config.ranks[:3])
      raise ValueError(
          f"--method={self.name} reconstructs the full matrices of a biLM from their inputs, "
          f"and {source.description} holds low-rank factors ({factored}"
          f"{', ...' if len(source.config.ranks) > 3 else ''}), whose inputs it does not "
          "collect. Prune the factors by magnitude instead (--method=threshold, then "
          "--method=finetune to retrain them).")
    sentences = load_corpus(config.calibration, config.calibration_sentences,
                            what="--calibration")
    tokens = sum(len(s) + 2 for s in sentences)
    weights = prunable_weights(source.model)
    # Matrices pruned from their inputs (a lookup table is pruned by magnitude),
    # with a non-zero target for some sweep value.
    pruned = {n for s in config.sparsity_sweep
              for n, t in resolve_targets(list(weights), s, config.layer_sparsity).items()
              if t > 0 and not n.startswith("word_embedding/")}
    if not pruned:
      return
    widest = max(int(np.prod(weights[n].shape[:-1])) for n in pruned)
    needed = int(math.ceil(options.min_tokens_factor * widest))
    if tokens < needed:
      raise ValueError(
          f"--calibration: {len(sentences)} sentences give {tokens} tokens, but --method="
          f"{self.name} needs at least {needed} ({options.min_tokens_factor:g} x the {widest} "
          "inputs of the widest matrix) for a well-conditioned H. Raise "
          "--calibration_sentences or give a larger held-out corpus.")

  def compress(self, options, context):
    t = time.time()
    batches = context.dataset(context.calibration_sentences, CALIBRATION_BATCH, shuffle=False)
    curves = None
    if options.allocation == OBS_SENSITIVITY:
      curves = cached_sensitivity_curves(
          context, cache_name=f"sensitivity_obs_{options.char_windows}.json",
          max_sentences=options.sensitivity_sentences,
          levels=levels_up_to(options.sensitivity_max_level),
          pruner=lambda model, sentences: obs_pruner(
              model, context.free_weights,
              context.dataset(sentences, CALIBRATION_BATCH, shuffle=False),
              block_size=options.block_size, damp=options.damp,
              char_windows=options.char_windows))
    targets, record = targets_for(context, options.allocation, curves)
    model = context.copy_source()
    records = prune_model_layerwise(
        model, targets, batches, method=self.criterion, block_size=options.block_size,
        damp=options.damp, min_tokens_factor=options.min_tokens_factor,
        update_bias=options.update_bias, char_windows=options.char_windows)
    record["layerwise"] = {name: {k: r[k] for k in ("method", "sparsity", "calibration_error",
                                                   "num_tokens", "seconds") if k in r}
                           for name, r in records.items()}
    return CompressedModel(model, context.source.config, metrics=record,
                           seconds={"prune": time.time() - t})

  def hparams(self, options):
    return {"allocation": options.allocation, "char_windows": options.char_windows}
