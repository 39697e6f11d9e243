r"""Compresses a biLM with a recipe of the book, or a registered method and its flags.

  python -m pipelines.compress --list_recipes
  python -m pipelines.compress --recipe=obs_50 --model_dir=RUN --eval=TEST --calibration=VALID \
      [--set obs.amount=0.6,0.7] [--run_dir=DIR]
  python -m pipelines.compress --config_file=DIR/config.json --run_dir=DIR2   # rerun exactly
  python -m pipelines.compress --method=lowrank --params_removed_sweep=0.5,0.7 --model_dir=RUN \
      --eval=TEST

Every variant is exported (stripped SavedModel, zip, TFLite per quantization mode,
optionally ELMo HDF5), measured and compared in metrics.json, summary.md and TensorBoard
HParams under --run_dir. The --method choices, every method's own flags and the flag of
its amount of compression, named by its meaning (--sparsity_sweep, --params_removed_sweep,
...), come from the registry (pipelines/method_flags.py).

Retraining runs on several machines when TF_CONFIG describes a cluster (training/distribute.py):
start the same command on every worker, each with its own --run_dir.
"""

import os

from absl import app
from absl import flags

import pipelines  # noqa: F401  (Keras 2 before TensorFlow)
from pipelines import cli
from pipelines import method_flags
from prunelm_tf.compression import CompressConfig, compress, parse_layer_sparsity
from prunelm_tf.compression import recipes, staged
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.export.tflite import DEFAULT_INT8_MAX_TOKENS
from prunelm_tf.training import distribute

# The input model and corpora: CompressConfig's input fields (staged.INPUT_FIELDS), by name.
flags.DEFINE_string("model_dir", "", "A run folder of pipelines.train to compress, or a variant "
                    "folder of pipelines.compress (RUN/variants/NAME) to compress further. Give "
                    "this, or --options_file with --weight_file.")
flags.DEFINE_string("teacher_dir", "", "The model that kd / distill retraining and fine-tuning "
                    "learn from (default: the input model). With --model_dir=RUN/variants/NAME, "
                    "give the original dense run folder so that the variant is taught by the "
                    "dense model.")
flags.DEFINE_string("options_file", "", "ELMo options.json of the model to compress.")
flags.DEFINE_string("weight_file", "", "ELMo HDF5 weight file of the model to compress.")
flags.DEFINE_string("train", "", "Text to retrain on (file glob or tfds:NAME/SPLIT); required "
                    "by methods that retrain.")
flags.DEFINE_string("eval", "", "Text to measure every variant on (perplexity if the model has "
                    "a softmax; similarity to the dense representations; TFLite parity and int8 "
                    "calibration sentences).")
flags.DEFINE_string("valid", "", "Held-out text (e.g. the valid split) whose perplexity every "
                    "variant also records: what to choose settings by, so that --eval (test) is "
                    "only reported. Needs a softmax.")
flags.DEFINE_integer("max_sentences", 0, "Read at most this many sentences of --train, --eval "
                     "and --valid; 0 = all.", lower_bound=0)
flags.DEFINE_string("calibration", "", "Held-out corpus (e.g. the valid split) for data-aware "
                    "methods and sensitivity measurements; never the test split.")
_METHOD = flags.DEFINE_enum("method", "threshold", sorted(REGISTRY), " ".join(
    f"{m.name}: {m.summary}." for m in REGISTRY.values()))
_LAYER_SPARSITY = flags.DEFINE_string(
    "layer_sparsity", "", "Per-weight overrides PATTERN=SPARSITY, comma separated; a regex over "
    "names like softmax/kernel, forward_lstm_0/projection, char_cnn/kernel_2 (a layer name matches "
    "all its weights). 0 skips. A pattern that matches nothing is an error.")
# Run settings: CompressConfig's fields a recipe may set (recipes.RUN_FIELDS), by name.
flags.DEFINE_integer("calibration_sentences", 300, "Sentences of --calibration read.",
                     lower_bound=1)
flags.DEFINE_list("tflite_quantization", ["none", "dynamic"], "TFLite files per variant: none, "
                  "dynamic, float16, int8 (int8 calibrated on --eval sentences); empty "
                  "(--tflite_quantization=) writes the SavedModel only.")
flags.DEFINE_integer("num_parity_sentences", 8, "Sentences for TFLite parity and int8 "
                     "calibration.", lower_bound=1)
flags.DEFINE_integer(
    "tflite_int8_max_tokens", DEFAULT_INT8_MAX_TOKENS, "Words per sentence of the int8 "
    "(full-integer) TFLite, a fixed-length unrolled graph: longer sentences are refused by it "
    "and every sentence costs this many steps. int8 is calibrated on --calibration sentences "
    "when given, else on the parity sentences; sentences longer than this are left out of "
    "both.", lower_bound=1)
flags.DEFINE_bool("export_elmo", False, "Also write each variant as ELMo options.json + HDF5 "
                  "(char-input models).")
flags.DEFINE_integer("seed", 0, "Seed for data order.")
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


def _recipe_run(strategy) -> None:
  """--config_file or --recipe (with --set and the run flags as overrides)."""
  kwargs = dict(overwrite=_OVERWRITE.value, flags_text=flags.FLAGS.flags_into_string(),
                strategy=strategy, reuse_dense=tuple(_REUSE_DENSE.value))
  if _CONFIG_FILE.value:
    method_flags.refuse_configuring("--config_file reruns the recorded run exactly", "recipe",
                                    "set", *staged.INPUT_FIELDS)
    staged.rerun(_CONFIG_FILE.value, _RUN_DIR.value, **kwargs)
    return
  recipe = recipes.load_recipe(_RECIPE.value)
  recipe = recipes.apply_overrides(recipe, method_flags.recipe_overrides(recipe) + _SET.value)
  staged.run_recipe(recipe, _inputs(), _RUN_DIR.value, **kwargs)


def _inputs() -> dict:
  """The model and corpora flags (--model_dir, --train, ...: CompressConfig's input fields)."""
  return {n: flags.FLAGS[n].value for n in staged.INPUT_FIELDS}


def _method_run(strategy) -> str:
  """--method with its flags; returns the line that closes the summary."""
  if _SET.value:
    raise app.UsageError("--set changes the options of a --recipe; without one, use the "
                         "method's own flags.")
  config = CompressConfig(
      **_inputs(), **{n: flags.FLAGS[n].value for n in recipes.RUN_FIELDS},
      method=_METHOD.value, method_options=method_flags.method_options(_METHOD.value),
      sparsity_sweep=method_flags.sweep(_METHOD.value),
      layer_sparsity=parse_layer_sparsity(_LAYER_SPARSITY.value))
  result = compress(config, _RUN_DIR.value, overwrite=_OVERWRITE.value,
                    flags_text=flags.FLAGS.flags_into_string(), strategy=strategy,
                    reuse_dense=tuple(_REUSE_DENSE.value))
  return f"run folder {_RUN_DIR.value}  wall {result['wall_seconds']:.0f} s"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  method_flags.refuse_retired()
  if _LIST.value:
    print(recipes.listing())
    return
  # Before any TensorFlow operation: the strategy sets up this worker's collectives.
  strategy = distribute.strategy_from_environment()
  last = _recipe_run(strategy) if _RECIPE.value or _CONFIG_FILE.value else _method_run(strategy)
  with open(os.path.join(_RUN_DIR.value, "summary.md"), encoding="utf-8") as f:
    print(f.read())
  if last:
    print(last)


if __name__ == "__main__":
  cli.run(main)
