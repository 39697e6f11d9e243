"""``retrain``: tfmot ``prune_low_magnitude`` with a schedule, while retraining.

Retraining may start from the dense model (the schedule ramps sparsity up) or
from a one-shot method's result (``--init``, e.g. ``obs``): its masks and
updated weights are the starting point and the masks stay fixed while the
surviving weights retrain (``KeepMasks``), so each matrix keeps the sparsity
the one-shot method (and its ``--init_allocation``) chose; the schedule flags
do not apply.

With ``--init_stages=K`` (K > 1) the one-shot method and the retraining
alternate K times (gradual one-shot pruning, as gradual OBS pruning does for
transformers): stage k prunes the model as retrained so far to
``target · (1 − (1 − k/K)³)`` (tfmot's cubic ramp), on calibration inputs
collected through that model, and retrains it with fixed masks for its share
of ``--num_steps``. The per-matrix allocation of every stage comes from the
dense model's sensitivity curves. Each stage keeps its checkpoints in
``stage_<k>/`` of the variant folder; a resumed run recomputes the one-shot
step of the stages it has already done (deterministic) and restores their
retrained weights.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import tensorflow_model_optimization as tfmot

from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.methods.retrain.pruning import (SCHEDULES, ScheduleConfig, strip,
                                                            wrap_for_pruning,
                                                            wrap_keeping_masks)
from prunelm_tf.compression.options import option
from prunelm_tf.compression.shared.finetune import (OBJECTIVES, RetrainConfig, budget_record,
                                                    check_warmup, retrain, steps_per_epoch,
                                                    with_steps)

# --init values that are not a registered method.
DENSE_INIT = "dense"
# tfmot's and the word for magnitude thresholding.
INIT_ALIASES = {"magnitude": "threshold"}
INIT_ALLOCATIONS = ("uniform", "sensitivity", "obs_sensitivity")


@dataclasses.dataclass(frozen=True)
class RetrainOptions:
  """tfmot pruning schedule + the retraining that goes with it."""
  # How sparsity ramps up (the target is the variant's sweep value).
  schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
  # Optimisation: steps, learning rate, objective.
  retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
  # "dense", or a registered one-shot method ("magnitude" = "threshold") whose
  # result (with its default options) is the starting point.
  init: str = option(DENSE_INIT, "Where retraining starts: dense (the schedule ramps sparsity "
                     "up), or a one-shot method's result at the target (magnitude/threshold, "
                     "wanda, obs; its masks and weights are kept and the masks stay fixed while "
                     "the rest retrains; the schedule flags do not apply).", flag="init")
  # How the --init method spreads the target over matrices (its `allocation`).
  init_allocation: str = option("uniform", "Per-matrix targets of the --init method: uniform, or "
                                "sensitivity (from each matrix's measured cost on "
                                "--calibration; same overall sparsity), obs_sensitivity (obs "
                                "only: the cost when OBS-pruned alone).",
                                flag="init_allocation", choices=INIT_ALLOCATIONS)
  # The --init method's highest sensitivity level (obs_sensitivity only).
  init_sensitivity_max_level: float = option(
      0.95, "--init=obs with --init_allocation=obs_sensitivity: the highest level its "
      "curves measure (above 0.95: 0.97, 0.98, 0.99 up to it; see --sensitivity_max_level).",
      flag="init_sensitivity_max_level", recorded_when_set=True)
  # One-shot pruning + fixed-mask retraining, alternated this many times on a
  # cubic ramp to the target (1 = prune once to the target, then retrain).
  init_stages: int = option(1, "Gradual one-shot pruning: the --init method and fixed-mask "
                            "retraining alternate this many times, the sparsity rising on a "
                            "cubic ramp to the target, each stage retraining for its share of "
                            "--num_steps (1 = prune once to the target, then retrain).",
                            flag="init_stages", lower=1)

  def __post_init__(self):
    object.__setattr__(self, "init", INIT_ALIASES.get(self.init, self.init))
    if (self.init == DENSE_INIT and self.schedule.kind == "polynomial"
        and not self.retrain.num_epochs and self.retrain.num_steps < self.schedule.end_step):
      raise ValueError(f"--num_steps ({self.retrain.num_steps}) must be >= --end_step "
                       f"({self.schedule.end_step}) or the target sparsity is never reached.")
    if self.init_allocation not in INIT_ALLOCATIONS:
      raise ValueError(f"--init_allocation must be one of {INIT_ALLOCATIONS}, "
                       f"got {self.init_allocation!r}.")
    if self.init == DENSE_INIT and self.init_allocation != "uniform":
      raise ValueError("--init_allocation applies to a one-shot starting point; with "
                       "--init=dense the schedule's magnitude pruning chooses the masks.")
    if self.init_stages < 1:
      raise ValueError(f"--init_stages must be >= 1, got {self.init_stages}.")
    if self.init_stages > 1 and self.init == DENSE_INIT:
      raise ValueError("--init_stages applies to a one-shot starting point; with --init=dense "
                       "the schedule flags (--begin_step, --end_step, --frequency) make the ramp.")
    if not self.retrain.num_epochs and self.init_stages > self.retrain.num_steps:
      raise ValueError(f"--init_stages ({self.init_stages}) must not exceed --num_steps "
                       f"({self.retrain.num_steps}): every stage retrains for at least one step.")
    if not self.retrain.num_epochs and self.init_stages > 1:
      check_warmup(self.retrain, min(stage_steps(self.retrain.num_steps, self.init_stages)),
                   "the steps of one --init_stages stage")
    if self.retrain.num_sampled:
      raise ValueError("sampled softmax is not available when retraining with pruning: the "
                       "pruned softmax must be called every step. Use num_sampled=0.")


class RetrainMethod(CompressionMethod):
  """tfmot pruning with retraining on --train."""

  name = "retrain"
  summary = "tfmot prune_low_magnitude while training on --train"
  Options = RetrainOptions

  def __init__(self, starts: Sequence[CompressionMethod] = ()):
    """``starts``: the one-shot methods ``--init`` may name, given by the registry.

    Retraining composes them; it never looks a method up in the registry itself.
    """
    self._starts = {m.name: m for m in starts if getattr(m, "one_shot", False)}

  def start_method(self, options) -> CompressionMethod:
    """The one-shot method ``options.init`` names.

    Raises:
      ValueError: it is not one of the starts this method was given.
    """
    if options.init not in self._starts:
      choices = [DENSE_INIT, "magnitude"] + sorted(self._starts)
      raise ValueError(f"--init={options.init!r} is not a starting point for retraining; choose "
                       f"from {', '.join(choices)}.")
    return self._starts[options.init]

  def start_options(self, options):
    """The --init method's options: its defaults, with --init_allocation."""
    method = self.start_method(options)
    fields = {f.name for f in dataclasses.fields(method.Options)}
    if "allocation" not in fields:
      if options.init_allocation != "uniform":
        raise ValueError(f"--init={options.init} has no per-matrix allocation; "
                         "use --init_allocation=uniform.")
      return method.Options()
    extra = {}
    if options.init_sensitivity_max_level != 0.95:
      if ("sensitivity_max_level" not in fields or options.init_allocation !=
          getattr(method.Options, "max_level_allocation", None)):
        raise ValueError("--init_sensitivity_max_level applies to --init=obs with "
                         "--init_allocation=obs_sensitivity and to --init=magnitude with "
                         "--init_allocation=sensitivity only.")
      extra["sensitivity_max_level"] = options.init_sensitivity_max_level
    try:
      return method.Options(allocation=options.init_allocation, **extra)
    except ValueError as e:
      raise ValueError(f"--init_allocation={options.init_allocation} is not an allocation of "
                       f"--init={options.init}: {e}") from None

  @property
  def hparam_domains(self):
    inits = (DENSE_INIT,) + tuple(sorted(self._starts))
    return {"schedule": SCHEDULES + ("fixed_masks", "staged_masks"),
            "retrain_objective": OBJECTIVES, "retrain_init": inits,
            "init_allocation": INIT_ALLOCATIONS}

  def needs(self, options):
    init = (self.start_method(options).needs(self.start_options(options))
            if options.init != DENSE_INIT else Needs())
    return Needs(train=True, calibration=init.calibration,
                 softmax=options.retrain.needs_softmax or init.softmax)

  def check(self, options, config, source):
    if options.init != DENSE_INIT:
      self.start_method(options).check(self.start_options(options), config, source)

  def variant_name(self, options, target_sparsity):
    start = "" if options.init == DENSE_INIT else f"_{options.init}"
    if options.init_allocation != "uniform":
      start += f"_{options.init_allocation}"
    if options.init_sensitivity_max_level != 0.95:
      start += f"_to{round(options.init_sensitivity_max_level * 100)}"
    if options.init_stages > 1:
      start += f"_{options.init_stages}stages"
    return f"{self.name}{start}_{round(target_sparsity * 100):02d}"

  def compress(self, options, context):
    if options.retrain.num_epochs:  # the budget in steps, before the schedule needs it
      steps = with_steps(options.retrain, steps_per_epoch(options.retrain, context)).num_steps
      if (options.init == DENSE_INIT and options.schedule.kind == "polynomial"
          and steps < options.schedule.end_step):
        raise ValueError(f"--num_epochs={options.retrain.num_epochs:g} gives {steps} steps, "
                         f"fewer than --end_step ({options.schedule.end_step}): the target "
                         "sparsity would never be reached.")
      if options.init_stages > steps:
        raise ValueError(f"--num_epochs={options.retrain.num_epochs:g} gives {steps} steps, "
                         f"fewer than --init_stages ({options.init_stages}).")
      check_warmup(options.retrain, min(stage_steps(steps, options.init_stages)),
                   f"the steps that --num_epochs={options.retrain.num_epochs:g} gives"
                   + (" to one stage" if options.init_stages > 1 else ""))
    if options.init_stages > 1:
      return self._compress_in_stages(options, context)
    t = time.time()
    start, metrics = context.source.model, {}
    if options.init != DENSE_INIT:
      init = self.start_method(options)
      done = init.compress(self.start_options(options), context)
      start = done.model
      metrics["init"] = {"method": init.name, **done.metrics, "seconds": done.seconds}
      # The one-shot masks (and its per-matrix allocation) are kept as they are.
    with context.training_scope():  # mirrored variables under a multi-worker strategy
      pruned = (wrap_keeping_masks(start) if options.init != DENSE_INIT
                else wrap_for_pruning(start, options.schedule, context.targets))
    budget = retrain(pruned, context.teacher_model, options.retrain, context,
                     callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    metrics["retraining"] = budget_record(budget, (
        "num_train_steps", "steps_per_epoch", "num_train_epochs", "budget_given_in",
        "num_replicas"))
    return CompressedModel(strip(pruned), context.source.config, metrics=metrics,
                           seconds={"retrain": time.time() - t})

  def _compress_in_stages(self, options, context):
    """``--init_stages`` > 1: one-shot pruning and fixed-mask retraining, alternated."""
    t = time.time()
    init, init_options = self.start_method(options), self.start_options(options)
    free = set(context.free_weights)
    sparsities = stage_sparsities(context.target_sparsity, options.init_stages)
    total = with_steps(options.retrain, steps_per_epoch(options.retrain, context)).num_steps
    steps = stage_steps(total, options.init_stages)
    current, stages, budget = context.source, [], {}
    for k, (sparsity, num_steps) in enumerate(zip(sparsities, steps), start=1):
      name = f"stage_{k}"
      stage = dataclasses.replace(
          context, source=current, target_sparsity=sparsity,
          targets={n: (sparsity if n in free else v) for n, v in context.targets.items()},
          variant_dir=os.path.join(context.variant_dir, name),
          tensorboard_dir=os.path.join(context.tensorboard_dir, name),
          # Each stage reads its own shuffle of the corpus.
          seed=context.seed + 1000 * (k - 1))
      done = init.compress(init_options, stage)
      with context.training_scope():
        pruned = wrap_keeping_masks(done.model)
      budget = retrain(pruned, context.teacher_model,
                       dataclasses.replace(options.retrain, num_steps=num_steps, num_epochs=0.0),
                       stage,
                       callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
      current = dataclasses.replace(context.source, model=strip(pruned),
                                    description=f"{context.source.description}, {name}")
      stages.append({"target_sparsity": sparsity, "num_train_steps": num_steps,
                     **budget_record(budget, ()),
                     "init": {"method": init.name, **done.metrics, "seconds": done.seconds}})
    metrics = {"stages": stages, "init": stages[-1]["init"], "retraining": {
        "num_train_steps": total, "steps_per_epoch": budget["steps_per_epoch"],
        "num_train_epochs": total / budget["steps_per_epoch"],
        "budget_given_in": "epochs" if options.retrain.num_epochs else "steps",
        "num_replicas": budget["num_replicas"]}}
    return CompressedModel(current.model, context.source.config, metrics=metrics,
                           seconds={"retrain": time.time() - t})

  def hparams(self, options):
    schedule = options.schedule.kind if options.init == DENSE_INIT else (
        "staged_masks" if options.init_stages > 1 else "fixed_masks")
    return {"schedule": schedule, "retrain_objective": options.retrain.objective,
            "retrain_init": options.init, "init_allocation": options.init_allocation}


def stage_sparsities(target: float, stages: int):
  """The sparsity after each of ``stages`` prune-and-retrain stages: tfmot's cubic ramp."""
  return [target * (1.0 - (1.0 - k / stages) ** 3) for k in range(1, stages + 1)]


def stage_steps(num_steps: int, stages: int):
  """``num_steps`` split into ``stages`` near-equal shares (the first ones a step longer)."""
  base, extra = divmod(num_steps, stages)
  return [base + (1 if k < extra else 0) for k in range(stages)]
