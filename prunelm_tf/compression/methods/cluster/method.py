"""``cluster``: weight sharing, k values per matrix (Deep Compression's second stage), no training.

Every chosen matrix keeps only k distinct nonzero values (1-D k-means of its
nonzero weights, `clustering` beside this module); zeros stay zero, so it
composes with any pruned or factorized input: ``--model_dir=RUN/variants/NAME``
clusters a finished variant (e.g. a low-rank one) further. The shape, the
weight count and the speed are unchanged; what shrinks is the zipped file: the
dynamic-range TFLite stores one int8 code per weight, and with k values those
codes carry log2(k) bits or less, which zip turns into bytes.

``--cluster_weighting=data`` weights each weight's squared error in k-means by
the mean square of the input it multiplies on ``--calibration`` text (the
diagonal of the input Gram matrix H = XᵀX that ``obs`` uses, collected from
the input model in one pass): min Σ H_ii (W_ij − Ŵ_ij)², the diagonal part of
‖XW − XŴ‖², so the values follow the weights that matter for the outputs (as
SqueezeLLM's sensitivity-weighted k-means does with Fisher information). It
needs every clustered matrix's inputs, so it refuses low-rank factors; a word
embedding (a lookup table) is clustered unweighted.

The amount (``bits_removed``, ``--bits_removed_sweep``) is the fraction of the int8
weight bits removed (the share of the matrices' storage taken out): 0.5 = 4 bits = 16
values per matrix, 0.625 = 3 bits = 8 values, 0.75 = 2 bits = 4 values; it must make
8·(1 − value) a whole number of bits from 1 to 7. A ``--layer_sparsity``
value gives one matrix its own, and 0 leaves it unclustered (e.g. the
softmax).

A ``finetune`` stage after this one trains the shared values (Deep Compression's
centroid training, "trained quantization"): every clustered matrix is tied to its
clusters before each step (`clustering.TieToClusters`: the assignment and the zeros
fixed, each value the mean of its members), so the fine-tuned model keeps at most k
values per matrix.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from prunelm_tf.compression.amounts import BITS_REMOVED
from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.methods.cluster.clustering import cluster_model
from prunelm_tf.compression.options import option
from prunelm_tf.compression.shared.calibration import CALIBRATION_BATCH, collect_grams
from prunelm_tf.compression.shared.targets import prunable_weights, resolve_targets

# Bits of the dynamic-range int8 code a clustered weight's storage is measured against.
CODE_BITS = 8
WEIGHTINGS = ("uniform", "data")


def bits_for(value: float) -> int:
  """The bits per weight a sweep (or --layer_sparsity) value leaves: 8·(1 − value).

  Raises:
    ValueError: 8·(1 − value) is not a whole number from 1 to 7.
  """
  bits = CODE_BITS * (1.0 - value)
  if abs(bits - round(bits)) > 1e-6 or not 1 <= round(bits) <= CODE_BITS - 1:
    raise ValueError(
        f"--method=cluster: a --bits_removed_sweep or --layer_sparsity value is the fraction of "
        f"the 8 int8 bits per weight removed, so 8 x (1 - value) must be a whole number of bits from 1 to 7 "
        f"(0.5 = 16 values, 0.625 = 8, 0.75 = 4, 0.875 = 2); got {value} "
        f"({bits:g} bits). 0 in --layer_sparsity leaves a matrix unclustered.")
  return int(round(bits))


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
  """Weight clustering."""

  # "uniform": plain k-means; "data": each weight's error weighted by its input's energy.
  weighting: str = option(
      "uniform", "uniform: plain k-means of each matrix's nonzero weights. data: each weight's "
      "squared error weighted by the mean square of the input it multiplies on --calibration "
      "text (the diagonal of H = X^T X), so the values follow the weights that matter for the "
      "outputs.", flag="cluster_weighting", choices=WEIGHTINGS)
  # Refuse a matrix with fewer nonzero weights than this many times its clusters.
  min_weights_per_cluster: int = option(
      4, "A matrix clustered into k values must hold at least this many times k nonzero "
      "weights (fewer: clustering saves nothing and is refused).",
      flag="cluster_min_weights_per_cluster", lower=1)

  def __post_init__(self):
    if self.weighting not in WEIGHTINGS:
      raise ValueError(f"--cluster_weighting must be one of {WEIGHTINGS}, got "
                       f"{self.weighting!r}.")
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
  amount = BITS_REMOVED
  one_shot = True
  hparam_domains = {"cluster_weighting": WEIGHTINGS}

  def needs(self, options):
    return Needs(calibration=options.weighting == "data")

  def variant_name(self, options, target_sparsity):
    tags = "_data" if options.weighting == "data" else ""
    try:
      return f"{self.name}{tags}_{2 ** bits_for(target_sparsity)}"
    except ValueError:  # refused by check(), which runs next, with the reason
      return f"{self.name}_{round(target_sparsity * 100):02d}"

  def check(self, options, config, source):
    """Every value a whole number of bits; every clustered matrix large enough; before any work."""
    if options.weighting == "data" and source.config.ranks:
      raise ValueError(
          f"--cluster_weighting=data weights each matrix by its calibration inputs, and "
          f"{source.description} holds low-rank factors, whose inputs it does not collect. "
          "Use --cluster_weighting=uniform for a factorized model.")
    nonzeros = {n: int(np.count_nonzero(w.numpy()))
                for n, w in prunable_weights(source.model).items()}
    names = list(nonzeros)
    for s in config.sparsity_sweep:
      if s == 0:
        raise ValueError(f"--method=cluster: a --{self.amount.flag} value of 0 removes no "
                         "bits (nothing to do); use e.g. 0.5 (16 values per matrix).")
      targets = resolve_targets(names, s, config.layer_sparsity)
      chosen = clusters_for(targets)
      if not chosen:
        raise ValueError("--method=cluster: --layer_sparsity sets every matrix to 0, so none "
                         "is clustered.")
      for name, k in chosen.items():
        if nonzeros[name] < options.min_weights_per_cluster * k:
          raise ValueError(
              f"--method=cluster: {name} holds {nonzeros[name]} nonzero weights, fewer than "
              f"{options.min_weights_per_cluster} x {k} clusters; give it fewer bits or 0 with "
              "--layer_sparsity.")

  def compress(self, options, context):
    t = time.time()
    model = context.copy_source()
    clusters = clusters_for(context.targets)
    importance, tokens, seconds = None, None, {}
    if options.weighting == "data":
      energy = input_energy(model, [n for n in clusters if not n.startswith(
          "word_embedding/")], context.dataset(context.calibration_sentences, CALIBRATION_BATCH,
                                               shuffle=False))
      importance = {n: e for n, (e, _) in energy.items()}
      tokens = max((c for _, c in energy.values()), default=0)
      seconds["calibration"] = time.time() - t
    records = cluster_model(model, clusters, importance)
    total = sum(r["nonzeros"] for r in records.values())
    error = (sum(r["relative_error"] ** 2 * r["nonzeros"] for r in records.values()) / total
             if total else 0.0) ** 0.5
    metrics = {"clusters": {n: k for n, k in clusters.items()},
               "clustering": records,
               # Nonzero-weighted RMS of the per-matrix relative errors.
               "clustering_relative_error": error}
    if tokens is not None:
      metrics["calibration_tokens"] = tokens
    seconds["cluster"] = time.time() - t - seconds.get("calibration", 0.0)
    return CompressedModel(model, context.source.config, metrics=metrics, seconds=seconds)

  def hparams(self, options):
    return {"cluster_weighting": options.weighting}


def input_energy(model, names, batches):
  """``{name: (importance like the weight, tokens)}``: each entry's input's mean square.

  The diagonal of each matrix's input Gram matrix (`collect_grams`, one pass
  through ``model``), broadcast over the matrix's outputs: the weight of
  entry (i, j) of a [in, out] kernel (convolutions: [width * dim, count]) is
  E[x_i²]. Zero energy (an input never active) gets the smallest positive
  energy of the matrix, so its weights still count.

  Raises:
    ValueError: the calibration inputs give a non-finite H.
  """
  accumulators = collect_grams(model, names, batches)
  weights = prunable_weights(model)
  out = {}
  for name in names:
    energy = np.diag(accumulators[name].gram()).astype(np.float64)
    if not np.all(np.isfinite(energy)):
      raise ValueError(f"--cluster_weighting=data: the calibration inputs of {name} give a "
                       "non-finite Gram matrix; check the calibration text and the model.")
    positive = energy[energy > 0]
    energy = np.where(energy > 0, energy, positive.min() if positive.size else 1.0)
    shape = tuple(weights[name].shape)
    matrix = np.broadcast_to(energy[:, None], (int(np.prod(shape[:-1])), shape[-1]))
    out[name] = (matrix.reshape(shape), int(accumulators[name].count))
  return out
