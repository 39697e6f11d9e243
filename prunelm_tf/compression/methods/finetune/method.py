"""``finetune``: trains the input model on --train, keeping what earlier stages made.

The stage that follows a one-shot, factorizing, structured, layer-dropping or clustering
stage ("prune, then fine-tune"): the input model trains, and

* its zero weights stay zero: every layer holding a zero in a prunable matrix is wrapped
  in tfmot's pruning wrapper with the masks ``weight != 0``, never updated (`KeepMasks`),
  so each matrix keeps the sparsity (and per-matrix allocation) the pruning stage chose;
* a matrix whose nonzero weights share a few values (a clustered matrix: at most
  ``max_shared_values`` distinct values, each shared by ``MIN_SHARING`` weights or more on
  average) keeps them shared: the shared values train (`TieToClusters`, Deep
  Compression's centroid training);
* a factorized, narrower or shallower model keeps its shape.

Nothing is removed, so the stage has no amount (its sweep is ``(0,)``). The objective
is any of `OBJECTIVES`: ``kd`` and ``lm`` need the softmax, ``distill`` (the
representations of the teacher: ``--teacher_dir``, in a recipe run the original model)
is the one a softmax-less ELMo has. On a dense input it fine-tunes the dense model, the
control that says what the training alone changes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, Mapping

import numpy as np
import tensorflow_model_optimization as tfmot

from prunelm_tf.compression.methods.cluster.clustering import TieToClusters
from prunelm_tf.compression.shared.finetune import OBJECTIVES, RetrainConfig, budget_record, retrain
from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.options import option
from prunelm_tf.compression.methods.retrain.pruning import strip, wrap_keeping_masks
from prunelm_tf.compression.shared.targets import measure_sparsity, prunable_weights

# A matrix counts as clustered when its nonzero weights share their values this much on
# average (a trained dense matrix has about one weight per value).
MIN_SHARING = 4


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
  """The training, and which matrices keep their values shared."""
  # Optimisation: steps or epochs, learning rate, objective.
  retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
  # A matrix with at most this many distinct nonzero values keeps them shared.
  max_shared_values: int = option(
      256, "finetune: a matrix whose nonzero weights take at most this many distinct values "
      "(a clustered matrix) keeps them shared while it trains; 0 = never.",
      flag="max_shared_values", lower=0)


def shared_value_matrices(weights: Mapping[str, np.ndarray], max_values: int) -> Dict[str, int]:
  """``{name: distinct nonzero values}`` of the matrices that count as clustered.

  A matrix counts when it has at most ``max_values`` distinct nonzero values and at least
  ``MIN_SHARING`` nonzero weights per value on average.
  """
  out = {}
  for name, values in weights.items():
    values = np.asarray(values)
    nonzero = values[values != 0]
    distinct = int(np.unique(nonzero).size)
    if 0 < distinct <= max_values and nonzero.size >= MIN_SHARING * distinct:
      out[name] = distinct
  return out


class FinetuneMethod(CompressionMethod):
  """Training after compression, the input's zeros, shared values and shape kept."""

  name = "finetune"
  summary = "trains the input model on --train, its zeros and shared values kept"
  Options = FinetuneOptions
  hparam_domains = {"finetune_objective": OBJECTIVES}
  # Nothing is removed: the stage's sweep is (0,).
  amount = None

  def needs(self, options):
    return Needs(train=True, softmax=options.retrain.needs_softmax)

  def check(self, options, config, source):
    if tuple(config.sparsity_sweep) != (0.0,):
      raise ValueError(f"--method={self.name} removes nothing: it trains what the earlier "
                       "stages made, so it takes no amount (leave the amount flags out, and the "
                       "stage's amount out of the recipe); got "
                       f"{list(config.sparsity_sweep)}.")

  def variant_name(self, options, target_sparsity):
    return self.name

  def compress(self, options, context):
    t = time.time()
    source = context.source.model
    shared = shared_value_matrices({n: v.numpy() for n, v in prunable_weights(source).items()},
                                   options.max_shared_values)
    with context.training_scope():  # mirrored variables under a multi-worker strategy
      model = wrap_keeping_masks(source)  # a copy; its zeros stay zero
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    if shared:
      callbacks.append(TieToClusters({n: v for n, v in prunable_weights(model).items()
                                      if n in shared}))
    budget = retrain(model, context.teacher_model, options.retrain, context,
                     callbacks=callbacks)
    model = strip(model)
    kept = {}
    for name, variable in prunable_weights(model).items():
      if name in shared:
        values = variable.numpy()
        distinct = int(np.unique(values[values != 0]).size)
        if distinct > shared[name]:  # the tie is what the variant promises
          raise RuntimeError(f"{name} holds {distinct} values after fine-tuning, more than "
                             f"the {shared[name]} it shared before.")
        kept[name] = distinct
    before = measure_sparsity(source)["overall"]
    after = measure_sparsity(model)["overall"]
    if after + 1e-9 < before:
      raise RuntimeError(f"fine-tuning lost zeros: sparsity {before:.4f} -> {after:.4f}.")
    metrics = {"finetuning": budget_record(budget, (
        "num_train_steps", "steps_per_epoch", "num_train_epochs", "budget_given_in",
        "num_replicas")), "input_sparsity": before}
    if kept:
      metrics["shared_values"] = kept
    return CompressedModel(model, context.source.config, metrics=metrics,
                           seconds={"finetune": time.time() - t})

  def hparams(self, options):
    return {"finetune_objective": options.retrain.objective}
