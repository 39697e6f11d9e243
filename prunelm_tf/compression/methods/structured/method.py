"""``structured``: remove whole LSTM cells, character filters and (optionally) projection dimensions.

The result is a physically smaller biLM with its own `BiLMConfig` (smaller
``lstm_dim``, filter counts, ``projection_dim``): the SavedModel, TFLite and
ELMo files really hold fewer weights and do less work. What each unit owns is
in `structured` (``structured.py`` beside this module).

The amount (``params_removed``, ``--params_removed_sweep``) is the fraction of the prunable
matrices' parameters
(`targets.prunable_weights`, the set unstructured pruning counts) removed:
every enabled kind of unit keeps the same share of its units, the share
whose removed fraction is closest to the sweep value (the achieved fraction
is recorded). Which units are kept is chosen per layer (cells), per bank
(filters) or once (projection dimensions) by importance:

* ``norm``: the L2 norm of every weight the unit owns;
* ``obs``: Optimal Brain Surgeon saliency of the unit's input row in the
  matrices that read it, from the Gram matrices of their inputs on
  --calibration text; with ``compensate``, each LSTM projection's kept rows
  are then updated (least squares) to replace the removed cells.

Fine-tuning the smaller model is a ``finetune`` stage after this one (the recipe
``structured_30_ft``).
"""

from __future__ import annotations

import dataclasses
import itertools
import time

from prunelm_tf.compression.amounts import PARAMS_REMOVED
from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.methods.structured import structured as lib
from prunelm_tf.compression.options import option
from prunelm_tf.compression.shared.calibration import CALIBRATION_BATCH, collect_grams
from prunelm_tf.compression.shared.targets import prunable_weights
from prunelm_tf.compression.shared.units import matrix_parameters, most_important

IMPORTANCES = ("norm", "obs")


@dataclasses.dataclass(frozen=True)
class StructuredOptions:
  """Which units are removed and how they are ranked."""

  # Remove whole LSTM cells (the same number in every layer and direction).
  cells: bool = option(True, "structured: remove whole LSTM cells (gate columns, bias, "
                       "projection row), the same number in every layer and direction.",
                       flag="structured_cells")
  # Remove character-CNN filters (char models; ignored for word models).
  filters: bool = option(True, "structured: remove character-CNN filters (with their highway "
                         "rows/columns and token-projection rows); char models only.",
                         flag="structured_filters")
  # Remove projection dimensions everywhere (the representations shrink too).
  projection: bool = option(False, "structured: also remove projection dimensions (every "
                            "layer, both directions, token embedding, softmax): the "
                            "representations become narrower than the dense model's.",
                            flag="structured_projection")
  # "norm": L2 norm of a unit's weights; "obs": calibration-based OBS saliency.
  importance: str = option("norm", "structured: rank units by the L2 norm of their weights "
                           "(norm) or by OBS saliency on --calibration text (obs).",
                           flag="structured_importance", choices=IMPORTANCES)
  # Dampening λ of each H (λ · mean diag H added to the diagonal), obs only.
  damp: float = option(0.01, "Dampening of the Gram matrix H (fraction of its mean diagonal).",
                       flag="obs_damp", lower=0.0)
  # obs only: update the kept projection rows to replace the removed cells.
  compensate: bool = option(True, "structured with --structured_importance=obs: update each "
                            "LSTM projection's kept rows (least squares on --calibration) to "
                            "replace the removed cells.", flag="structured_compensate")

  def __post_init__(self):
    if self.importance not in IMPORTANCES:
      raise ValueError(f"--structured_importance must be one of {IMPORTANCES}, got "
                       f"{self.importance!r}.")
    if not self.damp >= 0:
      raise ValueError(f"--obs_damp must be >= 0, got {self.damp}.")
    if not (self.cells or self.filters or self.projection):
      raise ValueError("structured needs at least one kind of unit to remove: set "
                       "--structured_cells, --structured_filters or --structured_projection.")

  def groups(self, char: bool):
    """The enabled kinds of unit for a char (True) or word model."""
    return tuple(g for g, on in (("cells", self.cells), ("filters", self.filters and char),
                                 ("projection", self.projection)) if on)


class StructuredMethod(CompressionMethod):
  """Whole units removed by importance: a physically smaller biLM."""

  name = "structured"
  summary = ("remove whole LSTM cells, character filters (and optionally projection "
             "dimensions) by group norm or OBS saliency: a physically smaller biLM")
  Options = StructuredOptions
  # Of the prunable matrices' parameters (the achieved fraction is removed_fraction).
  amount = PARAMS_REMOVED
  one_shot = True
  hparam_domains = {
      "structured_groups": tuple("+".join(c) for k in range(1, 4)
                                 for c in itertools.combinations(lib.GROUPS, k)),
      "structured_importance": IMPORTANCES,
  }

  def needs(self, options):
    return Needs(calibration=options.importance == "obs")

  def check(self, options, config, source):
    if config.layer_sparsity:
      raise ValueError("--layer_sparsity sets per-matrix targets, which removing whole units "
                       f"cannot follow (--method={self.name} removes a fraction of all prunable "
                       "matrices together); drop --layer_sparsity.")
    model_config = source.config
    groups = options.groups(model_config.token_encoder == "char")
    if not groups:
      raise ValueError(f"--method={self.name}: a word-input model has no character filters, so "
                       "--structured_filters alone removes nothing; set --structured_cells or "
                       "--structured_projection.")
    names = list(prunable_weights(source.model))
    for s in config.sparsity_sweep:
      try:
        lib.choose_counts(model_config, s, groups, names)
      except ValueError as e:
        raise ValueError(f"--{self.amount.flag} value {s}: {e}") from None

  def variant_name(self, options, target_sparsity):
    imp = "_obs" if options.importance == "obs" else ""
    return f"{self.name}{imp}_{round(target_sparsity * 100):02d}"

  def compress(self, options, context):
    t = time.time()
    source = context.source
    config = source.config
    groups = options.groups(config.token_encoder == "char")
    names = list(prunable_weights(source.model))
    counts, achieved = lib.choose_counts(config, context.target_sparsity, groups, names)
    model = context.copy_source()
    grams = None
    if options.importance == "obs":
      batches = context.dataset(context.calibration_sentences, CALIBRATION_BATCH, shuffle=False)
      grams = collect_grams(model, lib.saliency_matrices(config), batches)
      scores = lib.obs_saliencies(model, config, grams, options.damp)
    else:
      scores = lib.group_norms(model, config)
    cells = {n: most_important(s, counts.cells) for n, s in scores["cells"].items()}
    if grams is not None and options.compensate and "cells" in groups:
      for n, kept in cells.items():
        projection = model.get_layer(n).projection
        values = projection.numpy()
        values[kept] = lib.compensate_rows(values, grams[f"{n}/projection"].gram(),
                                           kept, options.damp)
        projection.assign(values)
    projection_dims = most_important(scores["projection"], counts.projection)
    filters = ([most_important(s, n) for s, n in zip(scores["filters"], counts.filters)]
               if config.token_encoder == "char" else None)
    new, new_config = lib.slice_bilm(model, config, cells=cells, projection=projection_dims,
                                     filters=filters)
    seconds = {"prune": time.time() - t}
    record = {
        "groups": list(groups), "importance": options.importance,
        "matrix_parameters": {"dense": matrix_parameters(config, names),
                              "compressed": matrix_parameters(new_config, names)},
        "lstm_dim": new_config.lstm_dim, "projection_dim": new_config.projection_dim,
        "filters": [list(f) for f in new_config.char_cnn.filters]
                   if config.token_encoder == "char" else None,
    }
    # One name with lowrank and layers: the fraction of the compressed matrices' parameters.
    metrics = {"removed_fraction": achieved, "structured": record}
    return CompressedModel(new, new_config, metrics=metrics, seconds=seconds)

  def hparams(self, options):
    return {"structured_groups": "+".join(options.groups(True)),
            "structured_importance": options.importance}
