r"""Compresses a biLM: pruning with retraining (tfmot) or without (magnitude thresholding).

  python -m pipelines.compress --flagfile=elmo.flags

Every variant is exported (stripped SavedModel, zip, TFLite per quantization
mode, optionally ELMo HDF5), measured and compared in metrics.json, summary.md
and TensorBoard HParams under --run_dir.
"""

import os

from absl import app
from absl import flags

import pipelines  # noqa: F401  (Keras 2 before TensorFlow)
from prunelm_tf.compression import (CompressConfig, RetrainConfig, ScheduleConfig, compress,
                                    parse_layer_sparsity)

_MODEL_DIR = flags.DEFINE_string("model_dir", "", "A run folder of pipelines.train to compress. "
                                 "Give this, or --options_file with --weight_file.")
_OPTIONS = flags.DEFINE_string("options_file", "", "ELMo options.json of the model to compress.")
_WEIGHTS = flags.DEFINE_string("weight_file", "", "ELMo HDF5 weight file of the model to compress.")
_TRAIN = flags.DEFINE_string("train", "", "Text to retrain on (file glob or tfds:NAME/SPLIT); "
                             "required by --method=retrain.")
_EVAL = flags.DEFINE_string("eval", "", "Text to measure every variant on (perplexity if the model "
                            "has a softmax; similarity to the dense representations; TFLite "
                            "parity and int8 calibration sentences).")
_MAX_SENT = flags.DEFINE_integer("max_sentences", 0, "Read at most this many sentences per corpus; "
                                 "0 = all.", lower_bound=0)
_METHOD = flags.DEFINE_enum("method", "threshold", ["threshold", "retrain"], "threshold: set the "
                            "smallest weights to zero, no training. retrain: tfmot "
                            "prune_low_magnitude while training on --train.")
_SCOPE = flags.DEFINE_enum("threshold_scope", "layer", ["layer", "global"], "layer: every matrix "
                           "pruned to its target; global: one magnitude threshold across all "
                           "pruned matrices (with the same target).")
_ALLOCATION = flags.DEFINE_enum(
    "threshold_allocation", "uniform", ["uniform", "sensitivity"], "uniform: every matrix gets "
    "the sweep value. sensitivity: each matrix is first pruned alone on --calibration to measure "
    "what it costs, then per-matrix targets are chosen so the overall sparsity is still the sweep "
    "value at the least predicted loss (takes a few minutes more).")
_CALIBRATION = flags.DEFINE_string("calibration", "", "Held-out corpus (e.g. the valid split) "
                                   "for --threshold_allocation=sensitivity; never the test split.")
_CALIBRATION_SENT = flags.DEFINE_integer("calibration_sentences", 300, "Sentences of "
                                         "--calibration per sensitivity measurement.",
                                         lower_bound=1)
_SWEEP = flags.DEFINE_list("sparsity_sweep", ["0.5"], "Target sparsities, one variant each, e.g. "
                           "0.3,0.5,0.7,0.9. Each in [0, 1).")
_LAYER_SPARSITY = flags.DEFINE_string(
    "layer_sparsity", "", "Per-weight overrides PATTERN=SPARSITY, comma separated; a regex over "
    "names like softmax/kernel, forward_lstm_0/projection, char_cnn/kernel_2 (a layer name matches "
    "all its weights). 0 skips. A pattern that matches nothing is an error.")
_SCHEDULE = flags.DEFINE_enum("schedule", "polynomial", ["polynomial", "constant"],
                              "tfmot schedule: PolynomialDecay or ConstantSparsity.")
_INITIAL = flags.DEFINE_float("initial_sparsity", 0.0, "PolynomialDecay initial sparsity.")
_BEGIN = flags.DEFINE_integer("begin_step", 0, "First optimizer step that updates the masks.")
_END = flags.DEFINE_integer("end_step", 1000, "Step at which the target sparsity is reached.")
_POWER = flags.DEFINE_float("power", 3.0, "PolynomialDecay exponent.")
_FREQ = flags.DEFINE_integer("frequency", 100, "Masks are updated every this many steps.")
_STEPS = flags.DEFINE_integer("num_steps", 1200, "Retraining optimizer steps (>= --end_step).")
_LR = flags.DEFINE_float("learning_rate", 5e-4, "Retraining Adam learning rate.")
_LR_SCHEDULE = flags.DEFINE_enum("lr_schedule", "constant", ["constant", "linear", "cosine"],
                                 "Retraining learning rate: constant, or linear/cosine decay to "
                                 "zero at --num_steps.")
_OBJECTIVE = flags.DEFINE_enum("retrain_objective", "lm", ["lm", "distill", "lm+distill"],
                               "lm: LM loss on --train; distill: MSE to the dense model's layer "
                               "representations (no softmax needed, the only choice for an "
                               "imported ELMo); lm+distill: both.")
_DISTILL_W = flags.DEFINE_float("distill_weight", 1.0, "Weight of the distillation term.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Retraining sentences per batch.", lower_bound=1)
_CKPT = flags.DEFINE_integer("checkpoint_every_steps", 200, "Retraining checkpoint cadence.")
_QUANT = flags.DEFINE_list("tflite_quantization", ["none", "dynamic"], "TFLite files per variant: "
                           "none, dynamic, float16, int8 (int8 calibrated on --eval sentences).")
_PARITY = flags.DEFINE_integer("num_parity_sentences", 8, "Sentences for TFLite parity and int8 "
                               "calibration.", lower_bound=1)
_EXPORT_ELMO = flags.DEFINE_bool("export_elmo", False, "Also write each variant as ELMo "
                                 "options.json + HDF5 (char-input models).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for data order.")
_RUN_DIR = flags.DEFINE_string("run_dir", os.path.join("saved_models", "compress"), "Run folder; "
                               "a run folder of this same run resumes (finished variants kept).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete a --run_dir that holds a different run.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    sweep = tuple(float(s) for s in _SWEEP.value)
  except ValueError as e:
    raise app.UsageError(f"--sparsity_sweep takes numbers, got {_SWEEP.value}.") from e
  config = CompressConfig(
      model_dir=_MODEL_DIR.value, options_file=_OPTIONS.value, weight_file=_WEIGHTS.value,
      train=_TRAIN.value, eval=_EVAL.value, max_sentences=_MAX_SENT.value, method=_METHOD.value,
      threshold_scope=_SCOPE.value, threshold_allocation=_ALLOCATION.value,
      calibration=_CALIBRATION.value, calibration_sentences=_CALIBRATION_SENT.value,
      sparsity_sweep=sweep,
      layer_sparsity=parse_layer_sparsity(_LAYER_SPARSITY.value),
      schedule=ScheduleConfig(kind=_SCHEDULE.value, initial_sparsity=_INITIAL.value,
                              final_sparsity=max(sweep), begin_step=_BEGIN.value,
                              end_step=_END.value, power=_POWER.value, frequency=_FREQ.value),
      retrain=RetrainConfig(num_steps=_STEPS.value, learning_rate=_LR.value,
                            lr_schedule=_LR_SCHEDULE.value, objective=_OBJECTIVE.value,
                            distill_weight=_DISTILL_W.value,
                            batch_size=_BATCH.value, checkpoint_every_steps=_CKPT.value),
      tflite_quantization=tuple(_QUANT.value), num_parity_sentences=_PARITY.value,
      export_elmo=_EXPORT_ELMO.value, seed=_SEED.value)
  result = compress(config, _RUN_DIR.value, overwrite=_OVERWRITE.value,
                    flags_text=flags.FLAGS.flags_into_string())
  with open(os.path.join(_RUN_DIR.value, "summary.md"), encoding="utf-8") as f:
    print(f.read())
  print(f"run folder {_RUN_DIR.value}  wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
  app.run(main)
