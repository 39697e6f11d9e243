"""``retrain``: tfmot ``prune_low_magnitude`` with a schedule, while retraining.

The sparsity of every prunable matrix ramps up on the schedule (tfmot's polynomial or
constant) while the model trains on --train, magnitude deciding which weights go at each
pruning step (Zhu & Gupta's gradual pruning). Retraining a model a one-shot method pruned,
its masks fixed, is the ``finetune`` stage after that method's stage (a recipe such as
``retrain_90``: ``obs`` then ``finetune``).
"""

from __future__ import annotations

import dataclasses
import time

import tensorflow_model_optimization as tfmot

from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.methods.retrain.pruning import (SCHEDULES, ScheduleConfig, strip,
                                                            wrap_for_pruning)
from prunelm_tf.compression.shared.finetune import (OBJECTIVES, RetrainConfig, budget_record,
                                                    retrain, steps_per_epoch, with_steps)


@dataclasses.dataclass(frozen=True)
class RetrainOptions:
  """tfmot pruning schedule + the retraining that goes with it."""
  # How sparsity ramps up (the target is the variant's sweep value).
  schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
  # Optimisation: steps, learning rate, objective.
  retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)

  def __post_init__(self):
    if (self.schedule.kind == "polynomial" and not self.retrain.num_epochs
        and self.retrain.num_steps < self.schedule.end_step):
      raise ValueError(f"--num_steps ({self.retrain.num_steps}) must be >= --end_step "
                       f"({self.schedule.end_step}) or the target sparsity is never reached.")


class RetrainMethod(CompressionMethod):
  """tfmot pruning with retraining on --train."""

  name = "retrain"
  summary = "tfmot prune_low_magnitude on a schedule while training on --train"
  Options = RetrainOptions
  hparam_domains = {"schedule": SCHEDULES, "retrain_objective": OBJECTIVES}

  def needs(self, options):
    return Needs(train=True, softmax=options.retrain.needs_softmax)

  def compress(self, options, context):
    if options.retrain.num_epochs:  # the budget in steps, before the schedule needs it
      steps = with_steps(options.retrain, steps_per_epoch(options.retrain, context)).num_steps
      if options.schedule.kind == "polynomial" and steps < options.schedule.end_step:
        raise ValueError(f"--num_epochs={options.retrain.num_epochs:g} gives {steps} steps, "
                         f"fewer than --end_step ({options.schedule.end_step}): the target "
                         "sparsity would never be reached.")
    t = time.time()
    with context.training_scope():  # mirrored variables under a multi-worker strategy
      pruned = wrap_for_pruning(context.source.model, options.schedule, context.targets)
    budget = retrain(pruned, context.teacher_model, options.retrain, context,
                     callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    metrics = {"retraining": budget_record(budget, (
        "num_train_steps", "steps_per_epoch", "num_train_epochs", "budget_given_in",
        "num_replicas"))}
    return CompressedModel(strip(pruned), context.source.config, metrics=metrics,
                           seconds={"retrain": time.time() - t})

  def hparams(self, options):
    return {"schedule": options.schedule.kind, "retrain_objective": options.retrain.objective}
