"""``retrain``: tfmot ``prune_low_magnitude`` with a schedule, while retraining.

Retraining may start from the dense model (the schedule ramps sparsity up) or
from a one-shot method's result (``--init``, e.g. ``obs``): its masks and
updated weights are the starting point and the masks stay fixed while the
surviving weights retrain (``KeepMasks``), so each matrix keeps the sparsity
the one-shot method (and its ``--init_allocation``) chose; the schedule flags
do not apply.
"""

from __future__ import annotations

import dataclasses
import time

import tensorflow_model_optimization as tfmot

from prunelm_tf.compression.finetune import OBJECTIVES, RetrainConfig, retrain
from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.options import option
from prunelm_tf.compression.retrain import (SCHEDULES, ScheduleConfig, strip, wrap_for_pruning,
                                            wrap_keeping_masks)

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

  def __post_init__(self):
    object.__setattr__(self, "init", INIT_ALIASES.get(self.init, self.init))
    if (self.init == DENSE_INIT and self.schedule.kind == "polynomial"
        and self.retrain.num_steps < self.schedule.end_step):
      raise ValueError(f"--num_steps ({self.retrain.num_steps}) must be >= --end_step "
                       f"({self.schedule.end_step}) or the target sparsity is never reached.")
    if self.init_allocation not in INIT_ALLOCATIONS:
      raise ValueError(f"--init_allocation must be one of {INIT_ALLOCATIONS}, "
                       f"got {self.init_allocation!r}.")
    if self.init == DENSE_INIT and self.init_allocation != "uniform":
      raise ValueError("--init_allocation applies to a one-shot starting point; with "
                       "--init=dense the schedule's magnitude pruning chooses the masks.")
    if self.retrain.num_sampled:
      raise ValueError("sampled softmax is not available when retraining with pruning: the "
                       "pruned softmax must be called every step. Use num_sampled=0.")


def _init_method(options):
  from prunelm_tf.compression.methods.registry import get_method  # pylint: disable=import-outside-toplevel
  try:
    method = get_method(options.init)
  except ValueError:
    method = None
  if method is None or not getattr(method, "one_shot", False):
    from prunelm_tf.compression.methods.registry import REGISTRY  # pylint: disable=import-outside-toplevel
    choices = [DENSE_INIT, "magnitude"] + sorted(
        n for n, m in REGISTRY.items() if getattr(m, "one_shot", False))
    raise ValueError(f"--init={options.init!r} is not a starting point for retraining; choose "
                     f"from {', '.join(choices)}.")
  return method


def _init_options(options):
  """The --init method's options: its defaults, with --init_allocation."""
  method = _init_method(options)
  fields = {f.name for f in dataclasses.fields(method.Options)}
  if "allocation" not in fields:
    if options.init_allocation != "uniform":
      raise ValueError(f"--init={options.init} has no per-matrix allocation; "
                       "use --init_allocation=uniform.")
    return method.Options()
  try:
    return method.Options(allocation=options.init_allocation)
  except ValueError as e:
    raise ValueError(f"--init_allocation={options.init_allocation} is not an allocation of "
                     f"--init={options.init}: {e}") from None


class RetrainMethod(CompressionMethod):
  """tfmot pruning with retraining on --train."""

  name = "retrain"
  summary = "tfmot prune_low_magnitude while training on --train"
  Options = RetrainOptions

  @property
  def hparam_domains(self):
    from prunelm_tf.compression.methods.registry import REGISTRY  # pylint: disable=import-outside-toplevel
    inits = (DENSE_INIT,) + tuple(sorted(n for n, m in REGISTRY.items()
                                         if getattr(m, "one_shot", False)))
    return {"schedule": SCHEDULES + ("fixed_masks",), "retrain_objective": OBJECTIVES, "retrain_init": inits,
            "init_allocation": INIT_ALLOCATIONS}

  def needs(self, options):
    init = (_init_method(options).needs(_init_options(options))
            if options.init != DENSE_INIT else Needs())
    return Needs(train=True, calibration=init.calibration,
                 softmax=options.retrain.needs_softmax or init.softmax)

  def check(self, options, config, source):
    if options.init != DENSE_INIT:
      _init_method(options).check(_init_options(options), config, source)

  def variant_name(self, options, target_sparsity):
    start = "" if options.init == DENSE_INIT else f"_{options.init}"
    if options.init_allocation != "uniform":
      start += f"_{options.init_allocation}"
    return f"{self.name}{start}_{round(target_sparsity * 100):02d}"

  def compress(self, options, context):
    t = time.time()
    start, metrics = context.source.model, {}
    if options.init != DENSE_INIT:
      init = _init_method(options)
      done = init.compress(_init_options(options), context)
      start = done.model
      metrics["init"] = {"method": init.name, **done.metrics, "seconds": done.seconds}
      # The one-shot masks (and its per-matrix allocation) are kept as they are.
    with context.training_scope():  # mirrored variables under a multi-worker strategy
      pruned = (wrap_keeping_masks(start) if options.init != DENSE_INIT
                else wrap_for_pruning(start, options.schedule, context.targets))
    budget = retrain(pruned, context.source.model, options.retrain, context,
                     callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    metrics["retraining"] = {k: budget[k] for k in (
        "num_train_steps", "steps_per_epoch", "num_train_epochs", "num_replicas")}
    return CompressedModel(strip(pruned), context.source.config, metrics=metrics,
                           seconds={"retrain": time.time() - t})

  def hparams(self, options):
    schedule = options.schedule.kind if options.init == DENSE_INIT else "fixed_masks"
    return {"schedule": schedule, "retrain_objective": options.retrain.objective,
            "retrain_init": options.init, "init_allocation": options.init_allocation}
