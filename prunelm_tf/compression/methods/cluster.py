"""``cluster``: weight sharing, k values per matrix (Deep Compression's second stage), no training.

Every chosen matrix keeps only k distinct nonzero values (1-D k-means of its
nonzero weights, `prunelm_tf.compression.clustering`); zeros stay zero, so it
composes with any pruned or factorized input: ``--model_dir=RUN/variants/NAME``
clusters a finished variant (e.g. a low-rank one) further. The shape, the
weight count and the speed are unchanged; what shrinks is the zipped file: the
dynamic-range TFLite stores one int8 code per weight, and with k values those
codes carry log2(k) bits or less, which zip turns into bytes.

The sweep value is the fraction of the int8 weight bits removed (the one sweep
axis: the share of the matrices' storage taken out): 0.5 = 4 bits = 16 values
per matrix, 0.625 = 3 bits = 8 values, 0.75 = 2 bits = 4 values; it must make
8·(1 − value) a whole number of bits from 1 to 7. A ``--layer_sparsity``
value gives one matrix its own, and 0 leaves it unclustered (e.g. the
softmax).
"""

from __future__ import annotations

import dataclasses
import time

from prunelm_tf.compression.clustering import cluster_model
from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod
from prunelm_tf.compression.options import option
from prunelm_tf.compression.targets import prunable_weights, resolve_targets

# Bits of the dynamic-range int8 code a clustered weight's storage is measured against.
CODE_BITS = 8


def bits_for(value: float) -> int:
  """The bits per weight a sweep (or --layer_sparsity) value leaves: 8·(1 − value).

  Raises:
    ValueError: 8·(1 − value) is not a whole number from 1 to 7.
  """
  bits = CODE_BITS * (1.0 - value)
  if abs(bits - round(bits)) > 1e-6 or not 1 <= round(bits) <= CODE_BITS - 1:
    raise ValueError(
        f"--method=cluster: a sweep or --layer_sparsity value is the fraction of the 8 int8 bits "
        f"per weight removed, so 8 x (1 - value) must be a whole number of bits from 1 to 7 "
        f"(0.5 = 16 values, 0.625 = 8, 0.75 = 4, 0.875 = 2); got {value} "
        f"({bits:g} bits). 0 in --layer_sparsity leaves a matrix unclustered.")
  return int(round(bits))


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
  """Weight clustering."""

  # Refuse a matrix with fewer nonzero weights than this many times its clusters.
  min_weights_per_cluster: int = option(
      4, "A matrix clustered into k values must hold at least this many times k nonzero "
      "weights (fewer: clustering saves nothing and is refused).",
      flag="cluster_min_weights_per_cluster", lower=1)

  def __post_init__(self):
    if self.min_weights_per_cluster < 1:
      raise ValueError(f"--cluster_min_weights_per_cluster must be >= 1, got "
                       f"{self.min_weights_per_cluster}.")


def clusters_for(targets):
  """``{weight: k}`` for every weight with a target > 0 (k = 2^bits)."""
  return {name: 2 ** bits_for(t) for name, t in targets.items() if t > 0}


class ClusterMethod(CompressionMethod):
  """k-means weight sharing per matrix, zeros kept; the sweep value is the bits removed."""

  name = "cluster"
  summary = ("keep k distinct nonzero values per matrix (1-D k-means, zeros kept): the sweep "
             "value is the fraction of the 8 int8 bits per weight removed (0.5 = 16 values)")
  Options = ClusterOptions

  def variant_name(self, options, target_sparsity):
    try:
      return f"{self.name}_{2 ** bits_for(target_sparsity)}"
    except ValueError:  # refused by check(), which runs next, with the reason
      return f"{self.name}_{round(target_sparsity * 100):02d}"

  def check(self, options, config, source):
    """Every value a whole number of bits; every clustered matrix large enough; before any work."""
    weights = prunable_weights(source.model)
    names = list(weights)
    for s in config.sparsity_sweep:
      if s == 0:
        raise ValueError("--method=cluster: a sweep value of 0 removes no bits (nothing to do); "
                         "use e.g. 0.5 (16 values per matrix).")
      targets = resolve_targets(names, s, config.layer_sparsity)
      chosen = clusters_for(targets)
      if not chosen:
        raise ValueError("--method=cluster: --layer_sparsity sets every matrix to 0, so none "
                         "is clustered.")
      for name, k in chosen.items():
        nonzeros = int((weights[name].numpy() != 0).sum())
        if nonzeros < options.min_weights_per_cluster * k:
          raise ValueError(
              f"--method=cluster: {name} holds {nonzeros} nonzero weights, fewer than "
              f"{options.min_weights_per_cluster} x {k} clusters; give it fewer bits or 0 with "
              "--layer_sparsity.")

  def compress(self, options, context):
    t = time.time()
    model = context.copy_source()
    clusters = clusters_for(context.targets)
    records = cluster_model(model, clusters)
    total = sum(r["nonzeros"] for r in records.values())
    error = (sum(r["relative_error"] ** 2 * r["nonzeros"] for r in records.values()) / total
             if total else 0.0) ** 0.5
    metrics = {"clusters": {n: k for n, k in clusters.items()},
               "clustering": records,
               # Nonzero-weighted RMS of the per-matrix relative errors.
               "clustering_relative_error": error}
    return CompressedModel(model, context.source.config, metrics=metrics,
                           seconds={"cluster": time.time() - t})
