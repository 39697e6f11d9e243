"""Running the benchmark's groups: each group's config or recipe, the work shared between them.

``run_groups(dense_dir, out_dir, ...)`` runs the named groups of ``groups`` into the
benchmark folder (``layout``) and returns their report rows: a method group is one
``compress`` run folder DIR/<group>; a recipe group one ``staged.run_recipe`` run per sweep
value in DIR/<group>/<amount x 100>/. A second call resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional, Sequence

# prunelm_tf (imported by the first line below) sets up Keras 2 before TensorFlow loads.
from prunelm_tf.compression import CompressConfig, RetrainConfig, ScheduleConfig, compress
from prunelm_tf.compression import recipes
from prunelm_tf.compression.methods import get_method
from prunelm_tf.compression.methods.retrain import RetrainOptions
from prunelm_tf.compression.run_folder import (CompressionRunFolder, dense_settings,
                                               reuse_dense_entry)
from prunelm_tf.compression.staged import run_recipe
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.export.sizes import path_bytes, zip_directory
from prunelm_tf.models.bilm import build_bilm, output_model
from prunelm_tf.training.run_folder import load_run
from prunelm_tf.utils import files
from benchmarks.elmo_ptb import layout
from benchmarks.elmo_ptb.groups import (COMBINED, ONE_SHOT, ONE_SHOT_SETTINGS, ONE_SHOT_SWEEP,
                                        RECIPE_GROUPS, RETRAIN_SWEEP, SHAPED)
from benchmarks.elmo_ptb.rows import recipe_rows, rows_of
from benchmarks.paths import PTB_TEST, PTB_TRAIN, PTB_VALID


def finetune_config(steps: int) -> RetrainConfig:
  """The optimisation of the schedule-pruning groups: KD, Adam 1e-3, cosine, batch 32."""
  return RetrainConfig(num_steps=steps, learning_rate=1e-3, lr_schedule="cosine", objective="kd",
                       batch_size=32, checkpoint_every_steps=100)


def method_retrain_groups(steps: int):
  """Groups of ``--method=retrain`` (tfmot magnitude pruning on a polynomial schedule from the
  dense model, ``steps`` optimizer steps each): objective lm or kd."""
  schedule = ScheduleConfig(kind="polynomial", begin_step=0, end_step=max(1, steps // 2),
                            frequency=max(1, steps // 40))
  return {f"retrain_{objective}_dense": ("retrain", RetrainOptions(
      schedule=schedule, retrain=dataclasses.replace(finetune_config(steps), objective=objective)))
          for objective in ("lm", "kd")}


# Recipes of the benchmark's own that the book has no use for: the dense control is the
# dense model fine-tuned (a one-stage `finetune` recipe) with retrain_90's optimisation.
def _dense_finetune() -> recipes.Recipe:
  book = recipes.load_recipe("retrain_90").to_dict()
  return recipes.recipe_from_dict("dense_finetune", dict(
      book, stages=book["stages"][-1:], measured=[],
      purpose="The dense control: the dense model fine-tuned as retrain_90 fine-tunes its "
              "pruned model (nothing removed), what the training alone changes."))


LOCAL_RECIPES = {"dense_finetune": _dense_finetune}


def group_recipe(group: str, amount: float, calibration_sentences: Optional[int] = None,
                 prune_softmax: bool = False, retrain_steps: Optional[int] = None
                 ) -> recipes.Recipe:
  """The validated recipe of one run of a recipe group at ``amount``.

  The benchmark's run settings become overrides applied before the group's own (so that a
  group's own value wins): ``calibration_sentences`` and 4 parity sentences,
  ``prune_softmax`` (no stage keeps the softmax dense), ``retrain_steps`` (every
  fine-tuning stage's steps). None of them: the recipe as the group sets it.

  Raises:
    ValueError: an override the recipe refuses, or an amount for a recipe without one.
  """
  name, overrides, _ = RECIPE_GROUPS[group]
  recipe = LOCAL_RECIPES[name]() if name in LOCAL_RECIPES else recipes.load_recipe(name)
  settings = []
  if calibration_sentences is not None:
    settings += [f"run.calibration_sentences={calibration_sentences}",
                 "run.num_parity_sentences=4"]
  for k, stage in enumerate(recipe.stages):
    if prune_softmax and stage.layer_sparsity:
      settings.append(f"{k + 1}.layer_sparsity=[]")
    if retrain_steps and stage.method == "finetune":
      settings.append(f"{k + 1}.retrain.num_steps={retrain_steps}")
  recipe = recipes.apply_overrides(recipe, settings + list(overrides))
  with_amount = [k for k, s in enumerate(recipe.stages) if get_method(s.method).has_amount]
  if not with_amount:
    if amount:
      raise ValueError(f"recipe group {group}: recipe {name} removes nothing; its sweep is "
                       f"(0.0,), got {amount}.")
    return recipe
  return recipes.apply_overrides(recipe, [f"{with_amount[0] + 1}.amount={amount}"])


def dense_donors(out_dir: str, exclude: str = "") -> list:
  """Compression run folders of ``out_dir`` with a finished dense entry (--reuse_dense):
  every method group's folder, and the first stage of every finished recipe run."""
  return [run.first.path for run in layout.runs(out_dir)
          if os.path.abspath(run.first.path) != os.path.abspath(exclude or "/nonexistent")
          and CompressionRunFolder.holds_compression_config(
              files.read_config_json(run.first.config_json))]


def share_finished_work(out_dir: str, group_dir: str, config: CompressConfig) -> None:
  """Seeds a new group folder with what the finished groups of this benchmark already hold.

  - Sensitivity curves: every group compresses the same dense model and
    calibrates on PTB valid, so the per-matrix curves (magnitude:
    ``sensitivity.json``; OBS: ``sensitivity_obs_<windows>.json``) are the
    same; each kind found is copied into the new group's cache.
  - The "dense" entry (its exports, sizes, perplexity): copied
    from a group whose config agrees on every field that describes it
    (`run_folder.dense_settings`), so a combination (another --model_dir) or another
    eval text describes its own.

  The new folder gets its config.json and the pipeline resumes into it; an
  existing group folder is never touched.
  """
  if os.path.exists(group_dir):
    return
  shared, dense_from = {}, None
  wanted = json.loads(config.to_json())
  for group in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else ():
    cached = CompressionRunFolder(os.path.join(out_dir, group))
    if not os.path.exists(cached.config_json):
      continue
    previous = files.read_json(cached.config_json)
    if (dense_from is None and cached.dense.is_complete()
        and dense_settings(previous) == dense_settings(wanted)):
      dense_from = group
    if not os.path.isdir(cached.cache_dir):
      continue
    # Curves measured on another number of sentences are shared too: a method
    # reuses cached curves only when their recorded num_sentences is what it
    # would measure on (`allocation.cached_sensitivity_curves`).
    if (previous.get("calibration") != config.calibration
        or previous.get("model_dir") != config.model_dir
        or previous.get("layer_sparsity") != wanted["layer_sparsity"]):
      continue
    for name in sorted(os.listdir(cached.cache_dir)):
      if name.startswith("sensitivity") and name.endswith(".json") and name not in shared:
        shared[name] = (group, os.path.join(cached.cache_dir, name))
  if not shared and dense_from is None:
    return
  folder = CompressionRunFolder(group_dir)
  os.makedirs(folder.cache_dir)
  files.write_text(folder.config_json, config.to_json() + "\n")
  for name, (group, path) in sorted(shared.items()):
    files.write_json(os.path.join(folder.cache_dir, name), files.read_json(path))
    print(f"{os.path.basename(group_dir)}: {name} shared from {group}", flush=True)
  if dense_from is not None:
    reuse_dense_entry(folder, wanted, [os.path.join(out_dir, dense_from)])
    print(f"{os.path.basename(group_dir)}: dense entry shared from {dense_from}", flush=True)


def embedder_saved_model_bytes(dense_dir: str, out_dir: str) -> int:
  """Size of the dense float32 SavedModel of the embedder (no softmax), the issue's reference."""
  path = os.path.join(out_dir, "dense_embedder", "saved_model")
  if not os.path.isdir(path):
    model, config, _ = load_run(dense_dir)
    if config.token_encoder == "word":
      # The word model's embedding table is sized by the vocabulary that also sizes
      # its softmax: its embedder is the model's representation view, the same
      # layers without the softmax.
      embedder = output_model(model, ["representations"])
    else:
      # The same biLM without its softmax (what a released ELMo file holds).
      embedder = build_bilm(dataclasses.replace(config, vocab_size=0))
      for layer in embedder.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    export_saved_model(embedder, path)
  zip_directory(path, os.path.join(out_dir, "dense_embedder", "saved_model.zip"))
  return path_bytes(path)


def _names(names: Sequence[str]) -> list:
  return [n for n in names if n]


def run_groups(dense_dir: str, out_dir: str, *, groups: Sequence[str] = (),
               shaped_groups: Sequence[str] = (), combined_groups: Sequence[str] = (),
               retrain_groups: Sequence[str] = (), finetuned_groups: Sequence[str] = (),
               recipe_groups: Sequence[str] = (), retrain_steps: Optional[int] = None,
               retrain_sweep: Sequence[float] = (), prune_softmax: bool = False,
               calibration_sentences: int = 300) -> list:
  """Runs the named groups into ``out_dir`` and returns their report rows.

  Args:
    dense_dir: the ``pipelines.train`` run of the dense model.
    out_dir: the benchmark folder (``layout``).
    groups, shaped_groups: names of ``ONE_SHOT`` and ``SHAPED``.
    combined_groups: names of ``COMBINED`` (their source variant must be finished) or of
      ``RECIPE_GROUPS``.
    retrain_groups: names of ``method_retrain_groups`` (``--method=retrain``) or
      ``RECIPE_GROUPS``.
    finetuned_groups, recipe_groups: names of ``RECIPE_GROUPS``.
    retrain_steps: steps of each ``--method=retrain`` variant (default 1,320) and of every
      fine-tuning stage of a recipe group that does not set its own (default: the recipe's).
    retrain_sweep: replaces the sweep of the ``retrain_groups`` that remove something.
    prune_softmax: prune the softmax too (default: the embedder only).
    calibration_sentences: PTB valid sentences the data-aware methods calibrate on.

  Raises:
    ValueError: a name that is no group of its kind, a combination whose source is not
      finished, or a recipe group whose recipe refuses its overrides; before any work.
  """
  for flag, names, table in (("groups", groups, ONE_SHOT), ("shaped_groups", shaped_groups, SHAPED),
                             ("combined_groups", combined_groups, {**COMBINED, **RECIPE_GROUPS})):
    unknown = [n for n in _names(names) if n not in table]
    if unknown:
      raise ValueError(f"--{flag}={','.join(unknown)}: no such group; the choices are "
                       f"{', '.join(table)}.")
  common = dict(model_dir=dense_dir, eval=PTB_TEST, valid=PTB_VALID, calibration=PTB_VALID,
                calibration_sentences=calibration_sentences,
                layer_sparsity=() if prune_softmax else (("softmax", 0.0),),
                tflite_quantization=("none", "dynamic"), num_parity_sentences=4)
  configs = {}
  for name in _names(groups):
    method, options = ONE_SHOT[name]
    settings = dict(common, method=method, method_options=options, sparsity_sweep=ONE_SHOT_SWEEP)
    settings.update(ONE_SHOT_SETTINGS.get(name, {}))
    configs[name] = CompressConfig(**settings)
  for name in _names(shaped_groups):
    method, options, sweep = SHAPED[name]
    # structured and layers work on whole units: their fraction counts the softmax.
    shaped = dict(common, layer_sparsity=common["layer_sparsity"] if method == "lowrank" else ())
    configs[name] = CompressConfig(**shaped, method=method, method_options=options,
                                   sparsity_sweep=sweep)
  combined = {}
  for name in _names(combined_groups):
    if name in RECIPE_GROUPS:
      continue  # below
    source_group, source_variant, method, options, sweep = COMBINED[name]
    source = layout.source_variant_dir(out_dir, source_group, source_variant)
    if not os.path.exists(os.path.join(source, "metrics.json")):
      raise ValueError(f"--combined_groups={name} compresses {source_group}/{source_variant} "
                       "further; run that group first.")
    configs[name] = CompressConfig(**dict(common, model_dir=source), method=method,
                                   method_options=options, sparsity_sweep=sweep)
    combined[name] = {"perplexity": files.read_json(
        os.path.join(source, "metrics.json"))["perplexity"]}
  plain_retrain = method_retrain_groups(retrain_steps or 1320)
  recipe_runs = {}  # group -> sweep
  for flag, names in (("retrain_groups", retrain_groups), ("finetuned_groups", finetuned_groups),
                      ("combined_groups", combined_groups), ("recipe_groups", recipe_groups)):
    for name in _names(names):
      if flag == "retrain_groups" and name in plain_retrain:
        method, options = plain_retrain[name]
        configs[name] = CompressConfig(**common, train=PTB_TRAIN, method=method,
                                       method_options=options,
                                       sparsity_sweep=tuple(retrain_sweep) or RETRAIN_SWEEP)
      elif name in RECIPE_GROUPS:
        sweep = RECIPE_GROUPS[name].sweep
        recipe_runs[name] = (tuple(retrain_sweep) if flag == "retrain_groups" and retrain_sweep
                             and any(sweep) else sweep)
      elif flag != "combined_groups":
        raise ValueError(f"--{flag}={name} is not a group of this benchmark; recipe groups: "
                         f"{', '.join(RECIPE_GROUPS)}.")
  # Every recipe run is checked before any work.
  planned = [(name, amount, group_recipe(name, amount, calibration_sentences, prune_softmax,
                                         retrain_steps))
             for name, sweep in recipe_runs.items() for amount in sweep]
  rows = []
  for name, config in configs.items():
    t = time.time()
    share_finished_work(out_dir, os.path.join(out_dir, name), config)
    result = compress(config, os.path.join(out_dir, name))
    rows += rows_of(name, result, reference=combined.get(name),
                    group_dir=os.path.join(out_dir, name))
    print(f"{name}: {time.time() - t:.0f} s", flush=True)
  inputs = dict(model_dir=dense_dir, train=PTB_TRAIN, eval=PTB_TEST, valid=PTB_VALID,
                calibration=PTB_VALID)
  for name, amount, recipe in planned:
    t = time.time()
    run_dir = layout.recipe_run_dir(out_dir, name, amount)
    run_recipe(recipe, inputs, run_dir, reuse_dense=dense_donors(out_dir, exclude=run_dir))
    rows += recipe_rows(name, run_dir, amount)
    print(f"{name} at {amount}: {time.time() - t:.0f} s", flush=True)
  return rows
