"""A recipe run: its stages one after the other, each a compression run on the previous variant.

``run_recipe(recipe, inputs, run_dir)`` runs a one-stage recipe as one compression run in
``run_dir`` (the same folder ``compress`` writes, so ``pipelines.evaluate`` and
``--config_file=RUN/config.json`` work on it as on any run). A recipe of several stages
is a run folder of its own::

  RUN/config.json        the recipe (its stages, options and run settings) and the inputs
  RUN/stages/1_<method>/  a compression run on the input model
  RUN/stages/2_<method>/  a compression run on stage 1's variant
  ...
  RUN/metrics.json       every stage's own figures; the final stage's folder
  RUN/summary.md         one table of every stage's variants

Each stage folder is a complete, resumable compression run, so a killed recipe run picks
up where it stopped. A stage that trains learns from the original input model
(``teacher_dir``: the input folder, or for an ELMo weight file the first stage's
``dense/`` entry, its Keras form), not from the previous stage's variant.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence

from prunelm_tf.compression import report
from prunelm_tf.compression.config import CompressConfig
from prunelm_tf.compression.pipeline import compress
from prunelm_tf.compression.recipes import Recipe, check_applies, recipe_from_dict, stage_config
from prunelm_tf.compression.run_folder import (CompressionRunFolder, is_recipe_run_config,
                                               locate_variant, stage_dir)
from prunelm_tf.utils import files

# The input fields a recipe run takes from the user (CompressConfig field names).
INPUT_FIELDS = ("model_dir", "options_file", "weight_file", "train", "eval", "valid",
                "calibration", "max_sentences", "teacher_dir")


def input_has_softmax(inputs: Mapping[str, Any]) -> Optional[bool]:
  """Whether the input model has a softmax, from its config file (no weights loaded).

  None when the model folder cannot be read: ``compress`` then refuses it with its own
  message, naming the fix.
  """
  if inputs.get("options_file"):
    return False  # an ELMo weight file never holds one
  model_dir = inputs.get("model_dir", "")
  located = locate_variant(model_dir)
  if located is not None:
    return located[1].read_description()[0].has_softmax
  from prunelm_tf.models.config import BiLMConfig  # pylint: disable=import-outside-toplevel
  path = os.path.join(model_dir, "config.json")
  config = files.read_config_json(path) if os.path.isfile(path) else None
  if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
    return None
  return BiLMConfig.from_dict(config["model"]).has_softmax


def _recorded(recipe: Recipe, inputs: Mapping[str, Any]) -> Dict[str, Any]:
  return {"recipe": recipe.name, "recipe_config": recipe.to_dict(),
          "inputs": {k: inputs[k] for k in INPUT_FIELDS if inputs.get(k) not in (None, "")}}


def read_run_config(path: str) -> Dict[str, Any]:
  """The config.json of a compression run or a recipe run, for ``--config_file``.

  Raises:
    FileNotFoundError, ValueError: no such file, not JSON, or neither kind of config.
  """
  if os.path.isdir(path):
    path = os.path.join(path, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config_file={path} does not exist; pass RUN/config.json of a "
                            "pipelines.compress run.")
  config = files.read_config_json(path)
  if not isinstance(config, dict) or not (is_recipe_run_config(config) or
                                          CompressionRunFolder.holds_compression_config(config)):
    raise ValueError(f"--config_file={path} is not the config.json of a pipelines.compress run "
                     "(a compression config or a recipe run); a training run's config.json "
                     "is compressed with --model_dir=RUN instead.")
  return config


def recipe_run_from_config(config: Mapping[str, Any]):
  """(recipe, inputs) recorded in a recipe run's config.json, validated."""
  return recipe_from_dict(config["recipe"], config["recipe_config"]), dict(config["inputs"])


def rerun(config_file: str, run_dir: str, **kwargs) -> Dict:
  """Runs the recorded config.json of a compression or recipe run again into ``run_dir``."""
  recorded = read_run_config(config_file)
  if is_recipe_run_config(recorded):
    recipe, inputs = recipe_run_from_config(recorded)
    return run_recipe(recipe, inputs, run_dir, **kwargs)
  return compress(CompressConfig.from_dict(recorded), run_dir, **kwargs)


def _stage_dir(run_dir: str, k: int, recipe: Recipe) -> str:
  return stage_dir(run_dir, k, recipe.stages[k].method)


def run_recipe(recipe: Recipe, inputs: Mapping[str, Any], run_dir: str, *,
               overwrite: bool = False, flags_text: Optional[str] = None, strategy=None,
               reuse_dense: Sequence[str] = ()) -> Dict:
  """Runs ``recipe`` on ``inputs`` into ``run_dir`` (see the module docstring).

  Args:
    recipe: a validated recipe (``load_recipe``, ``apply_overrides``).
    inputs: CompressConfig input fields (``INPUT_FIELDS``): the model, the corpora.
    run_dir: the run folder.
    overwrite, flags_text, strategy, reuse_dense: as ``compress``.

  Returns:
    A one-stage recipe: ``compress``'s result. Several stages: {"stages": [...],
    "final_stage_dir", "wall_seconds"}.

  Raises:
    ValueError: the recipe does not apply to the input model, a stage needs an input
      that is missing, or the run folder is refused; before any work.
  """
  unknown = set(inputs) - set(INPUT_FIELDS)
  if unknown:
    raise ValueError(f"recipe inputs {sorted(unknown)} are not inputs; known: {INPUT_FIELDS}.")
  inputs = {k: v for k, v in inputs.items() if v not in (None, "")}
  first = stage_config(recipe, 0, **inputs)  # checks what the first stage needs, early
  description = (f"ELMo {inputs['weight_file']}" if inputs.get("options_file")
                 else f"--model_dir={inputs.get('model_dir')}")
  has_softmax = input_has_softmax(inputs)
  if has_softmax is not None:
    check_applies(recipe, has_softmax, description)
  if len(recipe.stages) == 1:
    return compress(first, run_dir, overwrite=overwrite, flags_text=flags_text,
                    strategy=strategy, reuse_dense=reuse_dense)
  later = {k: v for k, v in inputs.items() if k not in ("options_file", "weight_file")}
  if not inputs.get("teacher_dir"):  # later stages learn from the original model:
    # the input folder, or for an ELMo weight file its Keras form, the first stage's dense
    later["teacher_dir"] = (inputs["model_dir"] if inputs.get("model_dir") else
                            os.path.join(_stage_dir(run_dir, 0, recipe), "dense"))
  for k in range(1, len(recipe.stages)):  # every stage's needs, before any work
    stage_config(recipe, k, **dict(later, model_dir=os.path.join(run_dir, "stages", "previous")))
  record = json.dumps(_recorded(recipe, inputs), indent=2, sort_keys=True)
  folder_inputs = {f"--{k}": str(v) for k, v in inputs.items() if k != "max_sentences"}
  files.check_run_dir(run_dir, record, overwrite=overwrite, inputs=folder_inputs)
  with files.run_dir_lock(run_dir):
    return _run_locked(recipe, inputs, later, run_dir, record, overwrite, folder_inputs,
                       flags_text, strategy, reuse_dense)


def _run_locked(recipe, inputs, later, run_dir, record, overwrite, folder_inputs, flags_text,
                strategy, reuse_dense) -> Dict:
  start = time.time()
  files.prepare_run_dir(run_dir, record, overwrite=overwrite, inputs=folder_inputs)
  files.write_text(os.path.join(run_dir, "config.json"), record + "\n")
  if flags_text is not None:
    files.write_text(os.path.join(run_dir, "flags.txt"), flags_text)
  stages, stage_inputs = [], dict(inputs)
  for k, stage in enumerate(recipe.stages):
    stage_folder = _stage_dir(run_dir, k, recipe)
    result = compress(stage_config(recipe, k, **stage_inputs), stage_folder, flags_text=flags_text,
                      strategy=strategy, reuse_dense=reuse_dense if k == 0 else ())
    stages.append({"stage": k + 1, "method": stage.method, "amount": list(stage.amount),
                   "run_dir": os.path.relpath(stage_folder, run_dir),
                   "input": result["dense"].get("source"),
                   "variants": [_stage_figures(v, result["dense"]) for v in result["variants"]],
                   "wall_seconds": result["wall_seconds"]})
    if k + 1 < len(recipe.stages):
      (variant,) = CompressionRunFolder(stage_folder).variants()  # one amount before the last
      stage_inputs = dict(later, model_dir=variant.path)
  result = {"recipe": recipe.name, "stages": stages,
            "final_stage_dir": os.path.relpath(_stage_dir(run_dir, len(recipe.stages) - 1,
                                                          recipe), run_dir),
            "wall_seconds": time.time() - start}
  files.write_text(os.path.join(run_dir, "summary.md"), _summary(recipe, run_dir, stages))
  files.write_json(os.path.join(run_dir, "metrics.json"), result)  # last: the run is complete
  return result


def _stage_figures(variant: Mapping[str, Any], stage_input: Mapping[str, Any]) -> Dict[str, Any]:
  """A stage variant's own figures: what it removed and cost against the stage's input."""
  ppl, before = variant.get("perplexity"), stage_input.get("perplexity")
  return {"name": variant["name"], "target_sparsity": variant.get("target_sparsity"),
          "method": variant.get("method"), "amount": variant.get("amount"),
          "sparsity": (variant.get("sparsity") or {}).get("overall"),
          "num_parameters": variant.get("num_parameters"),
          "num_parameters_before": stage_input.get("num_parameters"),
          "perplexity_delta_pct": (100.0 * (ppl["mean"] / before["mean"] - 1.0)
                                   if ppl and before else None),
          "seconds": sum((variant.get("seconds") or {}).values())}


def _summary(recipe: Recipe, run_dir: str, stages) -> str:
  lines = [f"# Recipe {recipe.name}", "", recipe.purpose, "",
           "| stage | method | variant | amount | sparsity | parameters (before → after) | "
           "perplexity Δ vs stage input | seconds |", "|---|---|---|---|---|---|---|---|"]
  for s in stages:
    for v in s["variants"]:
      delta = v["perplexity_delta_pct"]
      lines.append(f"| {s['stage']} | {s['method']} | {v['name']} | "
                   f"{report.amount_text(v)} | "
                   f"{v['sparsity'] if v['sparsity'] is None else format(v['sparsity'], '.3f')} | "
                   f"{v['num_parameters_before']} → {v['num_parameters']} | "
                   f"{'—' if delta is None else format(delta, '+.2f') + ' %'} | "
                   f"{v['seconds']:.0f} |")
  final = os.path.join(run_dir, stages[-1]["run_dir"], "summary.md")
  with open(final, encoding="utf-8") as f:
    lines += ["", f"## Final stage ({stages[-1]['run_dir']}) against its input", "", f.read()]
  return "\n".join(lines) + "\n"
