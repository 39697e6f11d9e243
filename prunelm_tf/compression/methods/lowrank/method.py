"""``lowrank``: every chosen matrix replaced by two factors of rank r (a smaller, faster biLM).

Chosen matrices (`prunelm_tf.models.config.factorizable_matrices`): both
halves of every LSTM kernel (input and recurrent, factorized separately: the
input half runs once per sentence, the recurrent half inside the loop), the
LSTM projections, the highway kernels, the token projection and the softmax;
a matrix is left out when its ``--layer_sparsity`` target is 0 (e.g.
``softmax=0``; a pattern naming ``forward_lstm_0`` or its ``kernel`` covers both
halves). Character convolutions and the word embedding stay dense.

The amount (``params_removed``, ``--params_removed_sweep``) is the fraction of the chosen
matrices' parameters removed:
0.5 leaves factors holding half of them. Ranks come from that budget
(`factorization.allocate_ranks`): by spectrum energy across matrices, or the
same fraction per matrix ("uniform"); a matrix with its own ``--layer_sparsity``
value gets that fraction alone. The factors come from a truncated SVD
(``--lowrank_criterion=svd``) or from the SVD weighted by the input Gram matrix
on ``--calibration`` text (``data``: minimises ‖XW − XAB‖, with every H collected
from the dense model in one pass; each LSTM kernel half is weighted by its own
block of the H of ``[x_t; h_{t-1}]``, the cross term between the halves is
ignored). The result's `BiLMConfig` records the ranks,
so SavedModel and TFLite run two smaller matmuls per matrix; its ELMo HDF5
export multiplies the factors back (`prunelm_tf.elmo.export_elmo`). Fine-tuning
afterwards is a ``finetune`` stage (the recipe ``lowrank_70_ft``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, Tuple

from absl import logging

from prunelm_tf.compression.amounts import PARAMS_REMOVED
from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.methods.lowrank import factorization
from prunelm_tf.compression.options import check_choice, option
from prunelm_tf.compression.shared.calibration import CALIBRATION_BATCH, collect_grams
from prunelm_tf.compression.shared.targets import (overridden_names, prunable_weights,
                                                   resolve_targets)
from prunelm_tf.models.config import factorizable_matrices
from prunelm_tf.models.surgery import matrix_values, rebuild

CRITERIA = ("svd", "data")


@dataclasses.dataclass(frozen=True)
class LowRankOptions:
  """Low-rank factorization of the biLM's matrices."""

  # "svd": truncated SVD of W; "data": SVD of LᵀW with H = XᵀX = LLᵀ from --calibration.
  criterion: str = option("svd", "How the factors of rank r are found: svd (truncated SVD, "
                          "min ||W - AB||) or data (weighted by the input covariance on "
                          "--calibration, min ||XW - XAB||).", flag="lowrank_criterion",
                          choices=CRITERIA)
  # "energy": greedy on spectrum energy per parameter across matrices; "uniform":
  # every matrix removes the sweep fraction of its own parameters.
  allocation: str = option("energy", "How the parameters removed are spread over the matrices "
                           "(their ranks): energy (keep the singular values with the largest "
                           "share of their matrix's energy per parameter) or uniform (the same "
                           "fraction of every matrix).", flag="allocation",
                           choices=factorization.ALLOCATIONS)
  # Dampening λ of H for the data criterion (fraction of its mean diagonal).
  damp: float = option(0.01, "Dampening of the calibration Gram matrix H for "
                       "--lowrank_criterion=data (fraction of its mean diagonal).",
                       flag="lowrank_damp", lower=0.0)

  def __post_init__(self):
    if self.criterion not in CRITERIA:
      raise ValueError(f"--lowrank_criterion must be one of {CRITERIA}, got {self.criterion!r}.")
    check_choice("allocation", self.allocation, factorization.ALLOCATIONS, "lowrank")
    if not self.damp >= 0:
      raise ValueError(f"--lowrank_damp must be >= 0, got {self.damp}.")


def _prunable_name(matrix: str) -> str:
  """The prunable weight (``--layer_sparsity`` target) a matrix belongs to."""
  layer, weight = matrix.split("/")
  return f"{layer}/kernel" if weight in ("input_kernel", "recurrent_kernel") else matrix


def chosen_matrices(config, targets: Dict[str, float], free: List[str]
                    ) -> Tuple[Dict[str, Tuple[int, int]], Dict[str, float]]:
  """The matrices to factorize: ``(pooled {name: shape}, fixed {name: own fraction})``.

  Pooled matrices share the sweep value's budget; a matrix whose weight has
  its own ``--layer_sparsity`` value > 0 removes that fraction alone; target 0
  and matrices no factorization makes smaller stay dense.
  """
  pooled, fixed = {}, {}
  for name, shape in factorizable_matrices(config).items():
    target = targets.get(_prunable_name(name), 0.0)
    if target <= 0 or factorization.max_saving_rank(shape) < 1:
      continue
    if _prunable_name(name) in free:
      pooled[name] = shape
    else:
      fixed[name] = target
  return pooled, fixed


class LowRankMethod(CompressionMethod):
  """Low-rank factorization (truncated or data-aware SVD) with ranks from a budget."""

  name = "lowrank"
  summary = ("replace every chosen matrix by two rank-r factors (truncated SVD, or weighted by "
             "the --calibration input covariance); ranks from the sweep's parameter budget")
  Options = LowRankOptions
  # Of the chosen matrices' parameters (recorded as achieved in removed_fraction).
  amount = PARAMS_REMOVED
  one_shot = True
  hparam_domains = {"lowrank_criterion": CRITERIA,
                    "allocation": factorization.ALLOCATIONS}

  def needs(self, options):
    return Needs(calibration=options.criterion == "data")

  def variant_name(self, options, target_sparsity):
    parts = [self.name, options.criterion]
    if options.allocation != "energy":
      parts.append(options.allocation)
    return "_".join(parts) + f"_{round(target_sparsity * 100):02d}"

  def check(self, options, config, source):
    """Every sweep value in (0, 1) and reachable with rank 1 everywhere, before any work."""
    names = list(prunable_weights(source.model))
    overridden = overridden_names(names, config.layer_sparsity)
    free = [n for n in names if n not in overridden]  # as compress() gives context.free_weights
    for s in config.sparsity_sweep:
      if not 0.0 < s < 1.0:
        raise ValueError(f"--method={self.name}: each --{self.amount.flag} value is the "
                         f"fraction of the factorized matrices' parameters removed and must be "
                         f"in (0, 1); got {s}. Use e.g. 0.5.")
      targets = resolve_targets(names, s, config.layer_sparsity)
      pooled, fixed = chosen_matrices(source.config, targets, free)
      if not pooled and not fixed:
        raise ValueError(f"--method={self.name}: no matrix of {source.description} is left to "
                         "factorize (--layer_sparsity sets every factorizable one to 0, or none "
                         "would get smaller). Drop some of those overrides.")
      if pooled and s > 1 - factorization.min_kept_fraction(pooled):
        raise ValueError(
            f"--{self.amount.flag} value {s} removes more than rank-1 factors allow: at most "
            f"{1 - factorization.min_kept_fraction(pooled):.4f} of the chosen matrices' "
            "parameters can be removed. Use a smaller value.")
      for name, t in fixed.items():
        if t > 1 - factorization.min_kept_fraction({name: factorizable_matrices(
            source.config)[name]}):
          raise ValueError(f"--layer_sparsity gives {name} {t}, more than rank-1 factors can "
                           "remove from it. Use a smaller value.")

  def compress(self, options, context):
    t = time.time()
    source = context.source
    shapes = factorizable_matrices(source.config)
    pooled, fixed = chosen_matrices(source.config, context.targets, context.free_weights)
    chosen = list(pooled) + list(fixed)
    grams = {}
    if options.criterion == "data":
      t_cal = time.time()
      needed = sorted({_prunable_name(n) for n in chosen})
      batches = context.dataset(context.calibration_sentences, CALIBRATION_BATCH, shuffle=False)
      accumulators = collect_grams(source.model, needed, batches)
      for name in chosen:
        h = accumulators[_prunable_name(name)].gram()
        rows = shapes[name][0]
        if name.endswith("/input_kernel"):
          h = h[:rows, :rows]  # the x_t rows of [x_t; h_{t-1}]
        elif name.endswith("/recurrent_kernel"):
          h = h[-rows:, -rows:]  # the h_{t-1} rows
        grams[name] = h
      calibration_seconds = time.time() - t_cal
      logging.info("lowrank: collected the calibration H of %d matrices in %.1f s", len(chosen),
                   calibration_seconds)
    weights = {n: matrix_values(source.model, n) for n in chosen}
    spectra = {n: factorization.spectrum(weights[n], grams.get(n), damp=options.damp)
               for n in chosen}
    ranks = {}
    if pooled:
      ranks.update(factorization.allocate_ranks(
          {n: spectra[n].energy for n in pooled}, pooled, context.target_sparsity,
          options.allocation))
    for name, fraction in fixed.items():
      ranks.update(factorization.allocate_ranks(
          {name: spectra[name].energy}, {name: shapes[name]}, fraction, "uniform"))
    factors = {n: spectra[n].factors(r) for n, r in ranks.items() if r is not None}
    config = dataclasses.replace(source.config, ranks=tuple((n, r) for n, r in ranks.items()
                                                            if r is not None))
    model = rebuild(source.model, source.config, config, factors)

    per_matrix, before, after = {}, 0, 0
    for name in chosen:
      m, n = shapes[name]
      rank = ranks[name]
      kept = m * n if rank is None else rank * (m + n)
      before, after = before + m * n, after + kept
      record = {"shape": [m, n], "rank": rank, "full_rank": min(m, n), "parameters": m * n,
                "parameters_kept": kept,
                "energy_kept": 1.0 if rank is None else float(spectra[name].energy[:rank].sum())}
      if rank is not None:
        record.update(factorization.errors(weights[name], *factors[name], grams.get(name)))
      per_matrix[name] = record
      logging.info("lowrank %s %s: rank %s, %d -> %d parameters", name, (m, n), rank, m * n,
                   kept)
    metrics = {"ranks": {n: r for n, r in ranks.items() if r is not None},
               "dense_matrices": [n for n, r in ranks.items() if r is None],
               "removed_fraction": 1.0 - after / before, "lowrank": per_matrix}
    seconds = {"factorize": time.time() - t}
    if options.criterion == "data":
      metrics["calibration_tokens"] = int(next(iter(accumulators.values())).count)
      seconds["calibration"] = calibration_seconds
    return CompressedModel(model, config, metrics=metrics, seconds=seconds)

  def hparams(self, options):
    return {"lowrank_criterion": options.criterion, "allocation": options.allocation}
