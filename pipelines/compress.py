r"""Compresses a biLM with a recipe of the book, or a registered method and its flags.

  python -m pipelines.compress --list_recipes
  python -m pipelines.compress --recipe=obs_50 --model_dir=RUN --eval=TEST --calibration=VALID \
      [--set obs.amount=0.6,0.7] [--run_dir=DIR]
  python -m pipelines.compress --config_file=DIR/config.json --run_dir=DIR2   # rerun exactly
  python -m pipelines.compress --flagfile=elmo.flags

Every variant is exported (stripped SavedModel, zip, TFLite per quantization
mode, optionally ELMo HDF5), measured and compared in metrics.json, summary.md
and TensorBoard HParams under --run_dir. The --method choices and every
method's own flags come from the registry.

Retraining runs on several machines when TF_CONFIG describes a cluster
(prunelm_tf/training/distribute.py): start the same command on every worker,
each with its own --run_dir.
"""

import os

from absl import app
from absl import flags
from absl import logging

import pipelines  # noqa: F401  (Keras 2 before TensorFlow)
from pipelines import cli
from prunelm_tf.compression import CompressConfig, compress, parse_layer_sparsity
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.compression import recipes, staged
from prunelm_tf.compression.options import nested_dict, option_flags
from prunelm_tf.export.tflite import DEFAULT_INT8_MAX_TOKENS
from prunelm_tf.training import distribute

_MODEL_DIR = flags.DEFINE_string("model_dir", "", "A run folder of pipelines.train to compress, "
                                 "or a variant folder of pipelines.compress (RUN/variants/NAME) "
                                 "to compress further. Give this, or --options_file with "
                                 "--weight_file.")
_TEACHER = flags.DEFINE_string("teacher_dir", "", "The model that kd / distill retraining and "
                               "fine-tuning learn from (default: the input model). With "
                               "--model_dir=RUN/variants/NAME, give the original dense run "
                               "folder so that the variant is taught by the dense model.")
_OPTIONS = flags.DEFINE_string("options_file", "", "ELMo options.json of the model to compress.")
_WEIGHTS = flags.DEFINE_string("weight_file", "", "ELMo HDF5 weight file of the model to compress.")
_TRAIN = flags.DEFINE_string("train", "", "Text to retrain on (file glob or tfds:NAME/SPLIT); "
                             "required by methods that retrain.")
_EVAL = flags.DEFINE_string("eval", "", "Text to measure every variant on (perplexity if the model "
                            "has a softmax; similarity to the dense representations; TFLite "
                            "parity and int8 calibration sentences).")
_VALID = flags.DEFINE_string("valid", "", "Held-out text (e.g. the valid split) whose perplexity "
                             "every variant also records: what to choose settings by, so that "
                             "--eval (test) is only reported. Needs a softmax.")
_MAX_SENT = flags.DEFINE_integer("max_sentences", 0, "Read at most this many sentences of --train, "
                                 "--eval and --valid; 0 = all.", lower_bound=0)
_METHOD = flags.DEFINE_enum("method", "threshold", sorted(REGISTRY), " ".join(
    f"{m.name}: {m.summary}." for m in REGISTRY.values()))
_CALIBRATION = flags.DEFINE_string("calibration", "", "Held-out corpus (e.g. the valid split) for "
                                   "data-aware methods and sensitivity measurements; never the "
                                   "test split.")
_CALIBRATION_SENT = flags.DEFINE_integer("calibration_sentences", 300, "Sentences of "
                                         "--calibration read.", lower_bound=1)
_SWEEP = flags.DEFINE_list("sparsity_sweep", ["0.5"], "Target sparsities, one variant each, e.g. "
                           "0.3,0.5,0.7,0.9: the fraction of the compressed weights removed. "
                           "Each in [0, 1).")
_FINAL = flags.DEFINE_float("final_sparsity", None, "tfmot's name for a single target: the same "
                            "as --sparsity_sweep=X (one variant). Do not combine the two.")
_LAYER_SPARSITY = flags.DEFINE_string(
    "layer_sparsity", "", "Per-weight overrides PATTERN=SPARSITY, comma separated; a regex over "
    "names like softmax/kernel, forward_lstm_0/projection, char_cnn/kernel_2 (a layer name matches "
    "all its weights). 0 skips. A pattern that matches nothing is an error.")
_QUANT = flags.DEFINE_list("tflite_quantization", ["none", "dynamic"], "TFLite files per variant: "
                           "none, dynamic, float16, int8 (int8 calibrated on --eval sentences); "
                           "empty (--tflite_quantization=) writes the SavedModel only.")
_PARITY = flags.DEFINE_integer("num_parity_sentences", 8, "Sentences for TFLite parity and int8 "
                               "calibration.", lower_bound=1)
_INT8_TOKENS = flags.DEFINE_integer(
    "tflite_int8_max_tokens", DEFAULT_INT8_MAX_TOKENS, "Words per sentence of the int8 (full-integer) TFLite, a "
    "fixed-length unrolled graph: longer sentences are refused by it and every sentence costs "
    "this many steps. int8 is calibrated on --calibration sentences when given, else on the "
    "parity sentences; sentences longer than this are left out of both.", lower_bound=1)
_EXPORT_ELMO = flags.DEFINE_bool("export_elmo", False, "Also write each variant as ELMo "
                                 "options.json + HDF5 (char-input models).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for data order.")
_RUN_DIR = flags.DEFINE_string("run_dir", os.path.join("saved_models", "compress"), "Run folder; "
                               "a run folder of this same run resumes (finished variants kept).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete a --run_dir that holds a different "
                               "run and start over. Only a run folder this project made (its "
                               ".prunelm_tf_run marker) is deleted, and never one that is, holds "
                               "or lies inside an input, holds the current directory or a git "
                               "work tree: those are refused.")
_REUSE_DENSE = flags.DEFINE_list("reuse_dense", [], "Other compression run folders of the same "
                                 "input model: the first whose finished dense entry has this "
                                 "run's dense settings (model, corpora, TFLite modes, parity "
                                 "sentences; any method) is copied instead of measured again.")

_RECIPE = flags.DEFINE_string("recipe", "", "A recipe of the book (--list_recipes): its stages, "
                              "options and settings; give the model and corpora flags. Method "
                              "flags are refused with it: change an option with --set.")
_SET = flags.DEFINE_multi_string("set", [], "With --recipe: STAGE.OPTION=VALUE (e.g. "
                                 "obs.allocation=uniform, retrain.retrain.learning_rate=0.005, "
                                 "obs.amount=0.6,0.7) or run.FIELD=VALUE; repeatable, validated, "
                                 "unknown keys refused.")
_CONFIG_FILE = flags.DEFINE_string("config_file", "", "The config.json of a finished or "
                                   "interrupted run: rerun it exactly into --run_dir (no other "
                                   "method, recipe or input flags).")
_LIST = flags.DEFINE_bool("list_recipes", False, "Print every recipe with its purpose, the "
                          "models it applies to and its measured figures, and exit.")
# Flags of earlier releases: given, they are refused with the form that replaces them.
_STAGES = ("two stages now: the one-shot method, then finetune (its zeros kept): "
           "--recipe=retrain_90 [--set obs.amount=0.8 --set obs.allocation=uniform], or "
           "--method=obs, then --method=finetune --model_dir=RUN/variants/NAME "
           "--teacher_dir=DENSE_RUN")
RETIRED = {"init": "Retraining from a one-shot result is " + _STAGES,
           "init_allocation": "The one-shot stage's allocation is its own option: "
                              "--set obs.allocation=VALUE (or --allocation with --method=obs)",
           "init_stages": "Gradual one-shot pruning is a recipe of alternating stages "
                          "(obs, finetune, obs, finetune, ...) with rising amounts",
           "init_sensitivity_max_level": "The one-shot stage's option: "
                                         "--set obs.sensitivity_max_level=VALUE",
           "finetune": "Fine-tuning is a stage of its own after the compression: "
                       "--recipe=lowrank_70_ft or structured_30_ft, or --method=finetune "
                       "--model_dir=RUN/variants/NAME --teacher_dir=DENSE_RUN"}
for _name in RETIRED:
  (flags.DEFINE_bool if _name == "finetune" else flags.DEFINE_string)(
      _name, None, f"Removed: {RETIRED[_name]}.")
# Every option of every registered method, as a flag (shared names defined once).
_METHOD_FLAGS = option_flags(list(REGISTRY.values()))
for _spec in _METHOD_FLAGS:
  _help = f"{_spec.help} [--method={','.join(sorted({m for m, _ in _spec.targets}))}]"
  if _spec.kind is bool:
    flags.DEFINE_bool(_spec.name, _spec.default, _help)
  elif _spec.choices:
    flags.DEFINE_enum(_spec.name, _spec.default, list(_spec.choices), _help)
  elif _spec.kind is int:
    flags.DEFINE_integer(_spec.name, _spec.default, _help, lower_bound=_spec.lower,
                         upper_bound=_spec.upper)
  elif _spec.kind is float:
    flags.DEFINE_float(_spec.name, _spec.default, _help, lower_bound=_spec.lower,
                       upper_bound=_spec.upper)
  else:
    flags.DEFINE_string(_spec.name, _spec.default, _help)


def _sweep():
  if not REGISTRY[_METHOD.value].has_amount and not flags.FLAGS["sparsity_sweep"].present:
    return (0.0,)  # a stage that removes nothing (finetune)
  if _FINAL.value is not None:
    if flags.FLAGS["sparsity_sweep"].present:
      raise app.UsageError("--final_sparsity is a one-value --sparsity_sweep; give one of them.")
    return (_FINAL.value,)
  try:
    return tuple(float(s) for s in _SWEEP.value)
  except ValueError:
    raise app.UsageError(f"--sparsity_sweep takes numbers, got {_SWEEP.value}.") from None


def _method_options(method: str) -> dict:
  """The chosen method's options from its flags (others' flags are ignored with a warning)."""
  values = {}
  for spec in _METHOD_FLAGS:
    paths = [path for m, path in spec.targets if m == method]
    value = flags.FLAGS[spec.name].value
    if not paths:
      if flags.FLAGS[spec.name].present:
        logging.warning("--%s is not an option of --method=%s; ignored.", spec.name, method)
      continue
    for path in paths:
      values[path] = value
  return nested_dict(values)


def _recipe_run(strategy) -> None:
  """--config_file or --recipe (with --set and the run flags as overrides)."""
  kwargs = dict(overwrite=_OVERWRITE.value, flags_text=flags.FLAGS.flags_into_string(),
                strategy=strategy, reuse_dense=tuple(_REUSE_DENSE.value))
  configuring = [n for n in ("recipe", "set", "method", *staged.INPUT_FIELDS,
                             *recipes.FLAG_OVERRIDES, *(s.name for s in _METHOD_FLAGS))
                 if flags.FLAGS[n].present]
  if _CONFIG_FILE.value:
    if configuring:
      raise app.UsageError(f"--config_file reruns the recorded run exactly; leave out "
                           f"{', '.join('--' + n for n in configuring)}.")
    staged.rerun(_CONFIG_FILE.value, _RUN_DIR.value, **kwargs)
    return
  given = {n: flags.FLAGS[n].value for n in configuring
           if n not in ("recipe", "set", *staged.INPUT_FIELDS)}
  if "layer_sparsity" in given:
    given["layer_sparsity"] = parse_layer_sparsity(given["layer_sparsity"])
  if "sparsity_sweep" in given or "final_sparsity" in given:
    given.pop("final_sparsity", None)
    given["sparsity_sweep"] = _sweep()
  recipe = recipes.load_recipe(_RECIPE.value)
  recipe = recipes.apply_overrides(recipe, recipes.overrides_from_flags(
      recipe, given, {s.name: s.targets for s in _METHOD_FLAGS}) + _SET.value)
  staged.run_recipe(recipe, {n: flags.FLAGS[n].value for n in staged.INPUT_FIELDS},
                    _RUN_DIR.value, **kwargs)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name, instead in RETIRED.items():
    if flags.FLAGS[name].present:
      raise app.UsageError(f"--{name} was removed. {instead}.")
  if _LIST.value:
    print("\n\n".join(recipes.describe(recipes.load_recipe(n)) for n in recipes.recipe_names()))
    return
  # Before any TensorFlow operation: the strategy sets up this worker's collectives.
  strategy = distribute.strategy_from_environment()
  if _RECIPE.value or _CONFIG_FILE.value:
    _recipe_run(strategy)
    with open(os.path.join(_RUN_DIR.value, "summary.md"), encoding="utf-8") as f:
      print(f.read())
    return
  if _SET.value:
    raise app.UsageError("--set changes the options of a --recipe; without one, use the "
                         "method's own flags.")
  config = CompressConfig(
      model_dir=_MODEL_DIR.value, options_file=_OPTIONS.value, weight_file=_WEIGHTS.value,
      train=_TRAIN.value, eval=_EVAL.value, valid=_VALID.value, max_sentences=_MAX_SENT.value,
      method=_METHOD.value,
      method_options=_method_options(_METHOD.value), calibration=_CALIBRATION.value,
      calibration_sentences=_CALIBRATION_SENT.value, sparsity_sweep=_sweep(),
      layer_sparsity=parse_layer_sparsity(_LAYER_SPARSITY.value),
      tflite_quantization=tuple(_QUANT.value), num_parity_sentences=_PARITY.value,
      tflite_int8_max_tokens=_INT8_TOKENS.value,
      export_elmo=_EXPORT_ELMO.value, seed=_SEED.value, teacher_dir=_TEACHER.value)
  result = compress(config, _RUN_DIR.value, overwrite=_OVERWRITE.value,
                    flags_text=flags.FLAGS.flags_into_string(), strategy=strategy,
                    reuse_dense=tuple(_REUSE_DENSE.value))
  with open(os.path.join(_RUN_DIR.value, "summary.md"), encoding="utf-8") as f:
    print(f.read())
  print(f"run folder {_RUN_DIR.value}  wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
  cli.run(main)
