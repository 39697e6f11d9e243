"""The PTB compression sweep shared by ``benchmarks.compress_ptb`` and ``benchmarks.run``.

One definition of the variants, so that both benchmarks build identical
compression runs (and a run folder of one is resumed, not redone, by the other):

  threshold        magnitude thresholding, every matrix to the sweep value
  threshold_sens   magnitude thresholding, per-matrix targets allocated from
                   each matrix's sensitivity measured on PTB *valid*
  retrain          tfmot prune_low_magnitude + PolynomialDecay, LM loss on PTB
                   train, cosine-decayed learning rate

Evaluation is on PTB test; nothing is tuned on it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict

from prunelm_tf.compression import CompressConfig, RetrainConfig, ScheduleConfig
from prunelm_tf.compression.methods.retrain import RetrainOptions
from benchmarks.paths import PTB


# The sweep's groups: labels of its run folders (OUT/compress/<group>). The report's
# targets name these groups; what a group is (method and options) is in compression_configs.
UNIFORM = "threshold"
ALLOCATED = "threshold_sens"
RETRAINED = "retrain"
GROUPS = (UNIFORM, ALLOCATED, RETRAINED)


@dataclasses.dataclass(frozen=True)
class SweepSettings:
  """What differs between the full benchmark and ``--quick``."""

  threshold_sweep: tuple = (0.5, 0.7, 0.9)
  # 0.9 first: the targets are about it, and a run stopped early then has it.
  retrain_sweep: tuple = (0.9, 0.8, 0.95)
  # Optimizer steps per retrained variant (1,315 steps = one PTB epoch at batch 32).
  # 600 (~0.46 epoch) keeps the full benchmark within its 3-hour budget
  # (docs/results.md: what a variant costs), not enough to recover the dense
  # perplexity at 90 %.
  retrain_steps: int = 600
  # Fraction of the retraining over which sparsity ramps up (the rest fine-tunes).
  ramp_fraction: float = 0.5
  learning_rate: float = 1e-3
  batch_size: int = 32
  # PTB test / valid sentences (0 = all); --quick uses fewer.
  eval_sentences: int = 0
  calibration_sentences: int = 300
  tflite_quantization: tuple = ("none", "dynamic", "int8")

  def __post_init__(self):
    if self.retrain_steps < 2 or not 0 < self.ramp_fraction <= 1:
      raise ValueError("retrain_steps must be >= 2 and ramp_fraction in (0, 1].")


FULL = SweepSettings()
QUICK = SweepSettings(threshold_sweep=(0.5, 0.9), retrain_sweep=(0.9,), retrain_steps=120,
                      eval_sentences=400, calibration_sentences=100,
                      tflite_quantization=("none", "dynamic"))


def compression_configs(model_dir: str, settings: SweepSettings = FULL) -> Dict[str, CompressConfig]:
  """``{group: CompressConfig}`` for the three groups of the sweep."""
  # Every variant records PTB valid too (what a recipe is chosen on); test is reported.
  common = dict(model_dir=model_dir, eval=os.path.join(PTB, "ptb.test.txt"),
                valid=os.path.join(PTB, "ptb.valid.txt"), max_sentences=settings.eval_sentences,
                tflite_quantization=tuple(settings.tflite_quantization), num_parity_sentences=4)
  end_step = max(1, int(settings.retrain_steps * settings.ramp_fraction))
  return {
      UNIFORM: CompressConfig(**common, method="threshold",
                                  sparsity_sweep=tuple(settings.threshold_sweep)),
      ALLOCATED: CompressConfig(
          **common, method="threshold", sparsity_sweep=tuple(settings.threshold_sweep),
          method_options={"allocation": "sensitivity"},
          calibration=os.path.join(PTB, "ptb.valid.txt"),
          calibration_sentences=settings.calibration_sentences),
      # max_sentences also limits the training corpus, so the retraining reads
      # all of PTB train only in the full run.
      RETRAINED: CompressConfig(
          **common, train=os.path.join(PTB, "ptb.train.txt"), method="retrain",
          sparsity_sweep=tuple(settings.retrain_sweep),
          method_options=RetrainOptions(
              schedule=ScheduleConfig(kind="polynomial", initial_sparsity=0.0, begin_step=0,
                                      end_step=end_step, power=3.0,
                                      frequency=max(1, end_step // 25)),
              retrain=RetrainConfig(num_steps=settings.retrain_steps,
                                    learning_rate=settings.learning_rate, lr_schedule="cosine",
                                    objective="lm", batch_size=settings.batch_size,
                                    checkpoint_every_steps=200, log_every_steps=25))),
  }
