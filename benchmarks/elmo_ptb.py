r"""Compression of the ELMo-shaped PTB biLM (issue #10): one-shot and retraining sweeps, one report.

  python -m benchmarks.elmo_ptb --dense_dir=saved_models/ptb_elmo --out_dir=DIR \
      [--groups=threshold,threshold_sens,wanda,obs,obs_sens] [--retrain_groups=...] \
      [--shaped_groups=...] [--finetuned_groups=...] [--recipe_groups=...] \
      [--combined_groups=...] [--prune_softmax]

The dense model comes from `pipelines.train --flagfile=pipelines/flags/ptb_elmo.flags`.
The **embedder** is compressed (char CNN, highway, token projection, LSTMs, projections);
the softmax stays dense unless --prune_softmax (released ELMo files have none; it is only
there to measure perplexity). Data-aware methods and the sensitivity allocation calibrate
on PTB valid (300 sentences); every figure is measured on all of PTB test. A one-shot,
shape-changing, combination or --method=retrain group is a `pipelines.compress` run
folder under DIR/<group>; a recipe group (RECIPE_GROUPS: a recipe of the book and its
`--set` overrides, e.g. OBS and then fine-tuning) is one `staged.run_recipe` run per
sweep value under DIR/<group>/<amount x 100>/, its rows read from the final stage. A
second call resumes; DIR/report.md and DIR/report.json gather the rows,
DIR/ppl_vs_sparsity.png plots them, and the issue's one-shot targets are checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Optional

# prunelm_tf (imported by the first line below) sets up Keras 2 before TensorFlow loads.
from prunelm_tf.compression import CompressConfig, RetrainConfig, ScheduleConfig, compress
from prunelm_tf.compression import recipes
from prunelm_tf.compression.methods import get_method
from prunelm_tf.compression.methods.retrain import RetrainOptions
from prunelm_tf.compression.run_folder import (CompressionRunFolder, dense_settings,
                                               reuse_dense_entry)
from prunelm_tf.compression.shared.targets import prunable_weights, subset_sparsity
from prunelm_tf.compression.staged import run_recipe
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.export.sizes import path_bytes, zip_directory
from prunelm_tf.models.bilm import build_bilm, output_model
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.reporting import plots as plots_lib
from prunelm_tf.training.run_folder import load_run
from prunelm_tf.utils import files
from benchmarks.paths import PTB, SHARED_DATA as SHARED

# The downstream tasks of issue #12 (frozen features; see prunelm_tf/evaluation).
DOWNSTREAM_DATA = {"sst2_dir": os.path.join(SHARED, "sst2"),
                   "ner_dir": os.path.join(SHARED, "conll2003"),
                   "mrpc_dir": os.path.join(SHARED, "mrpc")}
# The dense model's tagger seeds: its NER F1 is a mean ± std, so that a reader
# knows what a variant's difference means.
DENSE_NER_SEEDS = (0, 1, 2)
ONE_SHOT_SWEEP = (0.5, 0.7, 0.9)
RETRAIN_SWEEP = (0.9, 0.8, 0.95)
# The benchmark's groups: name -> (method, method options).
ONE_SHOT = {
    "threshold": ("threshold", {}),
    "threshold_sens": ("threshold", {"allocation": "sensitivity"}),
    "wanda": ("wanda", {}),
    "obs": ("obs", {}),
    "obs_sens": ("obs", {"allocation": "sensitivity"}),
    "obs_osens": ("obs", {"allocation": "obs_sensitivity"}),
    # The same curves (first 300 valid sentences), the pruning calibrated on 1,000.
    "obs_osens_cal1000": ("obs", {"allocation": "obs_sensitivity", "sensitivity_sentences": 300}),
    "obs_osens_cal2000": ("obs", {"allocation": "obs_sensitivity", "sensitivity_sentences": 300}),
}
# Run settings of a one-shot group that differ from the benchmark's.
ONE_SHOT_SETTINGS = {"obs_osens_cal1000": {"calibration_sentences": 1000},
                     "obs_osens_cal2000": {"calibration_sentences": 2000,
                                           "sparsity_sweep": (0.7,)}}
# Groups that change the model's shape (issue #11): name -> (method, options, sweep).
# Their sweep value is the fraction of the compressed matrices' parameters removed.
# structured and layers work on whole units, so they cannot leave the softmax out
# by --layer_sparsity: their fraction counts it (its rows shrink with nothing).
SHAPED = {
    "lowrank_data": ("lowrank", {"criterion": "data"}, (0.3, 0.5, 0.7)),
    "lowrank_svd": ("lowrank", {"criterion": "svd"}, (0.3, 0.5, 0.7)),
    # lowrank_data at 50 % alone (the source of lowrank_data_cluster, quicker to make).
    "lowrank_data_at50": ("lowrank", {"criterion": "data"}, (0.5,)),
    "structured_obs": ("structured", {"importance": "obs"}, (0.25, 0.5)),
    "structured_norm": ("structured", {"importance": "norm"}, (0.25, 0.5)),
    "layers": ("layers", {}, (0.5,)),
}
# Weight clustering of a finished variant (combinations below): the sweep value is
# the fraction of the 8 int8 bits per weight removed: 64, 32, 16 and 8 values per matrix
# (on lowrank_data_50: +2.8 %, +4.4 %, +8.8 %, +39.6 % mean test perplexity one-shot).
CLUSTER_SWEEP = (0.25, 0.375, 0.5, 0.625)


def finetune_config(steps: int) -> RetrainConfig:
  """The optimisation of the schedule-pruning groups: KD, Adam 1e-3, cosine, batch 32."""
  return RetrainConfig(num_steps=steps, learning_rate=1e-3, lr_schedule="cosine", objective="kd",
                       batch_size=32, checkpoint_every_steps=100)


def retrain_groups(steps: int):
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

# Overrides shared by several groups below (recipe `--set` strings).
_LR = "finetune.retrain.learning_rate="
_COLD = ("finetune.retrain.warmup_steps=0", "finetune.retrain.average_last=0")  # retrain_90 unwarmed
_NO_AVERAGE = ("finetune.retrain.average_last=0",)
_OSENS = ("obs.sensitivity_max_level=0.95",)  # retrain_95 at the default curve levels
_LR1_DROPOUT = (_LR + "0.001", "finetune.retrain.dropout=null")  # the first recipe: lr 1e-3,
# the model's dropout
_EPSILON = ("finetune.retrain.adam_epsilon=1e-05",)
_FROZEN = ("finetune.retrain.frozen=softmax",)
_B16 = ("finetune.retrain.batch_size=16", "finetune.retrain.num_steps=2620")


def _recipe_groups():
  """{group: (recipe, overrides, sweep)}; see RECIPE_GROUPS."""
  groups = {}
  for objective in ("lm", "kd"):
    obj = () if objective == "kd" else ("finetune.retrain.objective=lm",)
    # The first recipe (lr 1e-3 with dropout) from each OBS start.
    groups[f"retrain_{objective}_obs"] = (
        "retrain_90", ("obs.allocation=uniform",) + _COLD + _LR1_DROPOUT + obj, RETRAIN_SWEEP)
    groups[f"retrain_{objective}_obs_sens"] = (
        "retrain_90", _COLD + _LR1_DROPOUT + obj, RETRAIN_SWEEP)
    groups[f"retrain_{objective}_obs_osens"] = (
        "retrain_95", _OSENS + _LR1_DROPOUT + obj, RETRAIN_SWEEP)
    # Without dropout, or at the dense training's learning rate (3e-3).
    groups[f"retrain_{objective}_obs_osens_nodrop"] = (
        "retrain_95", _OSENS + (_LR + "0.001",) + obj, RETRAIN_SWEEP)
    groups[f"retrain_{objective}_obs_osens_lr3"] = (
        "retrain_95", _OSENS + (_LR + "0.003", "finetune.retrain.dropout=null") + obj,
        RETRAIN_SWEEP)
    for lr, tag in (("0.003", "lr3"), ("0.005", "lr5"), ("0.01", "lr10")):
      groups[f"retrain_{objective}_obs_osens_nodrop_{tag}"] = (
          "retrain_95", _OSENS + (_LR + lr,) + obj, RETRAIN_SWEEP)
  # Allocation curves measured up to 0.99: a 95 % target no longer spent uniformly.
  groups["retrain_kd_obs_osens_to99_nodrop_lr10"] = ("retrain_95", (), (0.95,))
  groups["retrain_kd_obs_osens_to99_nodrop_lr5"] = ("retrain_95", (_LR + "0.005",), (0.95,))
  # About the same epoch in twice as many steps of half the batch (2 x 1,320 - 20 steps
  # stay within one epoch of PTB train's 2,630 batches of 16).
  groups["retrain_kd_obs_osens_nodrop_lr10_b16"] = ("retrain_95", _OSENS + _B16, RETRAIN_SWEEP)
  groups["retrain_kd_obs_osens_to99_nodrop_lr10_b16"] = ("retrain_95", _B16, (0.95,))
  groups["retrain_kd_obs_osens_nodrop_lr20"] = ("retrain_95", _OSENS + (_LR + "0.02",),
                                                RETRAIN_SWEEP)
  # A softer teacher (KD temperature 2).
  for lr, tag in (("0.01", "lr10"), ("0.005", "lr5")):
    groups[f"retrain_kd_obs_osens_nodrop_{tag}_t2"] = (
        "retrain_95", _OSENS + (_LR + lr, "finetune.retrain.kd_temperature=2.0"), RETRAIN_SWEEP)
  # The same as ..._nodrop_lr10 in folders of its own (95 % and 80 % apart).
  groups["retrain_kd_obs_osens_to95_nodrop_lr10"] = ("retrain_95", _OSENS, (0.95,))
  groups["retrain_kd_obs_osens_nodrop_lr10_80"] = ("retrain_95", _OSENS, (0.8,))
  # KD plus the MSE to the dense model's representations (what the embedder is for).
  groups["retrain_kd_distill_obs_osens_nodrop"] = (
      "retrain_95", _OSENS + (_LR + "0.001", "finetune.retrain.objective=kd+distill"),
      RETRAIN_SWEEP)
  # OBS from the magnitude-sensitivity allocation, lr 1e-2 without dropout.
  groups["retrain_kd_obs_sens_nodrop_lr10"] = ("retrain_90", _COLD, RETRAIN_SWEEP)
  # The dense control: the dense model trained for the same budget with the same objective
  # and optimisation (nothing pruned), so that a reader can separate what pruning cost
  # from what the extra training gained.
  groups[DENSE_CONTROL] = ("dense_finetune", _COLD, (0.0,))
  # That control lost 4.3 % in one epoch: a fresh Adam moves every weight by about the
  # learning rate in its first steps. The rate warmed up over the first tenth of the
  # steps, its control, and the OBS starts under it.
  groups[DENSE_CONTROL_WARMUP] = ("dense_finetune", _NO_AVERAGE, (0.0,))
  groups["retrain_kd_obs_osens_nodrop_lr10_wu"] = (
      "retrain_90", ("obs.allocation=obs_sensitivity",) + _NO_AVERAGE, RETRAIN_SWEEP)
  groups["retrain_kd_obs_sens_nodrop_lr10_wu"] = ("retrain_90", _NO_AVERAGE, RETRAIN_SWEEP)
  # Adam's epsilon at 1e-5 instead of 1e-7 (measured: the control drifts less, +3.9 %
  # against +5.9 %; the 90 % variant does not gain, +8.8 % against +8.1 %).
  groups[DENSE_CONTROL_EPSILON] = ("dense_finetune", _NO_AVERAGE + _EPSILON, (0.0,))
  groups["retrain_kd_obs_sens_nodrop_lr10_wu_eps5"] = (
      "retrain_90", _NO_AVERAGE + _EPSILON, RETRAIN_SWEEP)
  # The kept weights as the average of the last steps (SWA, AWD-LSTM's averaged SGD): the
  # warmed-up cosine recipe averaging its last quarter (= the book's retrain_90), and a
  # constant 5e-3 after the same warm-up averaging its last half.
  groups["retrain_kd_obs_sens_nodrop_lr10_wu_avg25"] = ("retrain_90", (), RETRAIN_SWEEP)
  groups["retrain_kd_obs_sens_nodrop_lr5c_wu_avg50"] = (
      "retrain_90", (_LR + "0.005", "finetune.retrain.lr_schedule=constant",
                     "finetune.retrain.average_last=0.5"), RETRAIN_SWEEP)
  # The softmax frozen: the retraining changes only the embedder (what is shipped).
  groups[DENSE_CONTROL_FROZEN] = ("dense_finetune", _NO_AVERAGE + _FROZEN, (0.0,))
  groups["retrain_kd_obs_sens_nodrop_lr10_wu_fs"] = (
      "retrain_90", _NO_AVERAGE + _FROZEN, RETRAIN_SWEEP)
  # Momentum SGD instead of Adam (its steps are the rate times the gradient: what is near
  # the teacher stays), rates 1 and 3 at momentum 0.9, otherwise the averaged recipe.
  for lr in SGD_RATES:
    sgd = ("finetune.retrain.optimizer=sgd", f"{_LR}{float(lr)}")
    groups[f"retrain_kd_obs_sens_nodrop_sgd{lr}_wu_avg25"] = ("retrain_90", sgd, RETRAIN_SWEEP)
    groups[sgd_control(lr)] = ("dense_finetune", sgd, (0.0,))
  # Shape-changing methods fine-tuned afterwards by KD from the dense model (issue #11).
  # Their sweep value is the fraction of the compressed matrices' parameters removed.
  groups["lowrank_data_ft"] = ("lowrank_70_ft", _LR1_DROPOUT, (0.7,))
  groups["structured_obs_ft"] = ("structured_30_ft", (), (0.3,))
  # lr 1e-2 without dropout (at 90 % sparsity it gave +9.0 % where lr 1e-3 with dropout
  # gave +19.7 %) at 70 % and 80 % removed; it made the factorized model's loss NaN at
  # step ~300, so lr 3e-3 without dropout (the book's lowrank_70_ft) instead.
  groups["lowrank_data_ft_nodrop_lr10"] = ("lowrank_70_ft", (_LR + "0.01",), (0.7,))
  groups["lowrank_data_ft80_nodrop_lr10"] = ("lowrank_70_ft", (_LR + "0.01",), (0.8,))
  groups["lowrank_data_ft_nodrop_lr3"] = ("lowrank_70_ft", (), (0.7,))
  # Structured (30 %, fine-tuned) and then one-shot OBS of half the remaining matrices'
  # weights with the sensitivity allocation (the book's structured_obs).
  groups["structured_obs_ft_obs_sens"] = ("structured_obs", (), (0.3,))
  # Low-rank (50 %), weight sharing and the shared values trained afterwards (Deep
  # Compression's centroid training), assignments and zeros fixed: a quarter epoch at
  # lr 1e-3 with 16 values (cluster 0.5) or 8 (0.625); and 16 values over half an epoch
  # at lr 3e-3 (the book's lowrank_cluster_ft; 330 steps at 1e-3 left it at +5.5 %).
  quarter = ("finetune.retrain.num_steps=330", _LR + "0.001")
  groups["lowrank_data_cluster_ft"] = ("lowrank_cluster_ft", quarter, (0.5,))
  groups["lowrank_data_cluster8_ft"] = ("lowrank_cluster_ft", quarter + ("cluster.amount=0.625",),
                                        (0.5,))
  groups["lowrank_data_cluster_ft_lr3"] = ("lowrank_cluster_ft", (), (0.5,))
  return groups


# The dense controls of the best retraining recipes.
DENSE_CONTROL = "retrain_kd_dense_control_nodrop_lr10"
DENSE_CONTROL_WARMUP = "retrain_kd_dense_control_nodrop_lr10_wu"
DENSE_CONTROL_EPSILON = "retrain_kd_dense_control_nodrop_lr10_wu_eps5"
DENSE_CONTROL_FROZEN = "retrain_kd_dense_control_nodrop_lr10_wu_fs"
# The momentum-SGD rates of the SGD groups (momentum 0.9).
SGD_RATES = (1, 3)


def sgd_control(lr: int) -> str:
  """The dense control of the momentum-SGD recipe at rate ``lr``."""
  return f"retrain_kd_dense_control_nodrop_sgd{lr}_wu_avg25"


# Each control and its marker colour in the perplexity plot.
DENSE_CONTROLS = {DENSE_CONTROL: "red", DENSE_CONTROL_WARMUP: "darkorange",
                  DENSE_CONTROL_EPSILON: "purple", DENSE_CONTROL_FROZEN: "brown",
                  **dict(zip(map(sgd_control, SGD_RATES), ("olive", "teal")))}
# Groups that are stages (prune or factorize, then fine-tune; a dense model fine-tuned):
# name -> (recipe, overrides, sweep). The recipe is the book's (prunelm_tf/compression/
# recipes/<name>.json) or LOCAL_RECIPES's; the overrides are `--set` strings; each sweep
# value sets the amount of the recipe's first stage that has one (a recipe without one
# takes (0.0,)), one recipe run per value in DIR/<group>/<amount x 100>/.
RECIPE_GROUPS = _recipe_groups()


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


def amount_tag(amount: float) -> str:
  """The folder of a recipe group's run at ``amount``: its percentage ("90", "37.5", "0")."""
  return f"{amount * 100:g}"


def recipe_run_dir(out_dir: str, group: str, amount: float) -> str:
  return os.path.join(out_dir, group, amount_tag(amount))


def finished_result(path: str):
  """{"dense", "variants"} of a compression run folder's finished entries, or None."""
  folder = CompressionRunFolder(path)
  if not (os.path.exists(folder.config_json) and folder.dense.is_complete()):
    return None
  return {"dense": files.read_json(folder.dense.metrics_json),
          "variants": [files.read_json(v.metrics_json) for v in folder.variants()
                       if v.is_complete()]}


def stage_dirs(run_dir: str) -> list:
  """The compression run folders of a recipe run, first to final ([run_dir] for one stage)."""
  path = os.path.join(run_dir, "metrics.json")
  record = files.read_json(path) if os.path.exists(path) else {}
  if "stages" not in record:
    return [run_dir]
  return [os.path.join(run_dir, s["run_dir"]) for s in record["stages"]]


def recipe_rows(group: str, run_dir: str, amount: float) -> list:
  """Report rows of one finished recipe run: the final stage's variants, named
  "<amount tag>/<variant>", with the group's amount as their target when the final stage
  has none, the recipe's stages, and the fraction every shape-changing stage took out.
  A run of several stages is measured against the first stage's dense entry (the
  benchmark's dense model); an unfinished run has no rows.
  """
  dirs = stage_dirs(run_dir)
  results = [finished_result(d) for d in dirs]
  if any(r is None for r in results):
    return []
  reference = results[0]["dense"] if len(dirs) > 1 else None
  rows = rows_of(group, results[-1], reference=reference, group_dir=dirs[-1])
  kept, shaped = 1.0, False
  for result in results[:-1]:
    for v in result["variants"][:1]:  # a stage before the last has one variant
      if v.get("removed_fraction") is not None:
        kept, shaped = kept * (1 - v["removed_fraction"]), True
  methods = [files.read_config_json(CompressionRunFolder(d).config_json)["method"] for d in dirs]
  for r in rows:
    if r["group"] == "dense":
      continue
    own = r.get("removed_fraction")
    r.update(variant=f"{amount_tag(amount)}/{r['variant']}", recipe=RECIPE_GROUPS[group][0],
             amount=amount, stages=methods,
             target_sparsity=r["target_sparsity"] or amount,
             removed_fraction=(1 - kept * (1 - (own or 0.0)) if shaped or own is not None
                               else None))
  return rows


def pruned_and_retrained(row) -> bool:
  """A row pruned and trained within its run: --method=retrain, or a recipe's fine-tuning
  of a model that kept its shape (the shape-changing recipes are their own families)."""
  return row["method"] == "retrain" or (row["method"] == "finetune"
                                        and not row.get("removed_fraction"))


# Combinations (issue #11): a finished variant of another group compressed further (no
# training): name -> (source group, source variant, method, options, sweep). The sweep is
# the sparsity of the variant's own matrices (factors, remaining cells). A recipe group's
# variant is "<amount tag>/<variant>" of its final stage.
COMBINED = {
    "lowrank_data_threshold_sens": ("lowrank_data", "lowrank_data_30", "threshold",
                                    {"allocation": "sensitivity"}, (0.5,)),
    # Deep Compression's weight sharing on the variants that keep their quality: the
    # factors (or the remaining nonzeros) keep 64 ... 8 values per matrix, so the zipped
    # int8 codes shrink; the softmax stays unclustered (--layer_sparsity 0).
    "lowrank_data_cluster": ("lowrank_data_at50", "lowrank_data_50", "cluster", {},
                             CLUSTER_SWEEP),
    "lowrank_data_ft_cluster": ("lowrank_data_ft_nodrop_lr3", "70/finetune", "cluster", {},
                                CLUSTER_SWEEP),
    "lowrank_data_ft80_cluster": ("lowrank_data_ft80_nodrop_lr10", "80/finetune", "cluster", {},
                                  CLUSTER_SWEEP),
    "obs_sens_cluster": ("obs_sens", "obs_sens_50", "cluster", {}, CLUSTER_SWEEP),
}


def source_variant_dir(out_dir: str, group: str, variant: str) -> str:
  """The folder of a group's variant: "<tag>/<variant>" of a recipe group's final stage."""
  if group in RECIPE_GROUPS:
    tag, _, name = variant.partition("/")
    return CompressionRunFolder(stage_dirs(os.path.join(out_dir, group, tag))[-1]).variant(
        name).path
  return CompressionRunFolder(os.path.join(out_dir, group)).variant(variant).path


def dense_donors(out_dir: str, exclude: str = "") -> list:
  """Compression run folders of ``out_dir`` with a finished dense entry (--reuse_dense):
  every group folder, and the first stage of every recipe run."""
  found = []
  for group in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else ():
    top = os.path.join(out_dir, group)
    runs = sorted(os.path.join(top, t) for t in os.listdir(top)) if os.path.isdir(top) else []
    candidates = [top] + runs + [d for run in runs for d in stage_dirs(run)[:1] if d != run]
    for path in candidates:
      folder = CompressionRunFolder(path)
      if (os.path.abspath(path) != os.path.abspath(exclude or "/nonexistent")
          and os.path.isfile(folder.config_json) and folder.dense.is_complete()
          and CompressionRunFolder.holds_compression_config(
              files.read_config_json(folder.config_json))):
        found.append(path)
  return found

def share_finished_work(out_dir: str, group_dir: str, config: CompressConfig) -> None:
  """Seeds a new group folder with what the finished groups of this benchmark already hold.

  - Sensitivity curves: every group compresses the same dense model and
    calibrates on PTB valid, so the per-matrix curves (magnitude:
    ``sensitivity.json``, about 12 minutes to measure; OBS:
    ``sensitivity_obs_<windows>.json``, longer) are the same; each kind found
    is copied into the new group's cache.
  - The "dense" entry (its exports, sizes, perplexity, about 3 minutes): copied
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


def downstream_dir(out_dir: str, group: str, seeds: bool = False) -> str:
  """Where the downstream evaluation of a group's variants (or of "dense") is written.

  ``seeds``: the NER evaluation over several tagger seeds (`evaluate_downstream`).
  """
  return os.path.join(out_dir, "downstream_seeds" if seeds else "downstream", group)


def evaluate_downstream(dense_dir: str, out_dir: str, wanted, mode: str = "none",
                        ner_seeds=()) -> None:
  """NER test F1, SST-2 and MRPC dev of the dense model and of the ``wanted`` variants.

  ``wanted`` holds "group/variant" names (or "group" for all its variants; a recipe
  group's are "group/<amount x 100>/variant" or "group/<amount x 100>"). The
  dense model is evaluated once, from ``dense_dir``, with the tagger seeds
  DENSE_NER_SEEDS; a variant with the one seed of the tagger config. Each
  (variant, mode) is cached in DIR/downstream/<group>/<variant>/<mode>, so a
  second call resumes. ``mode`` "none" evaluates the float Keras model; a
  TFLite mode ("dynamic", "int8") the variant's own TFLite file of that mode.
  ``ner_seeds`` (two or more): the variants' NER only, as mean ± std over these
  tagger seeds like the dense model's, into DIR/downstream_seeds/<group> (the
  single-seed entries stay as they are).
  """
  by_group = {}  # (group, the run of a recipe group or "") -> variants
  for name in wanted:
    group, _, variant = name.partition("/")
    if not os.path.isdir(os.path.join(out_dir, group)):
      raise ValueError(f"--downstream names {name!r}, but {out_dir} has no group {group!r}.")
    run = ""
    if group in RECIPE_GROUPS:  # group/<amount tag>[/<variant>]: its final stage's variants
      run, _, variant = variant.partition("/")
      if not run:
        raise ValueError(f"--downstream names {name!r}: a recipe group's variants are "
                         f"{group}/<amount x 100>[/<variant>], e.g. {group}/90/finetune.")
    by_group.setdefault((group, run), [])
    if variant:
      by_group[(group, run)].append(variant)
  t = time.time()
  evaluate(EvaluateConfig(target=dense_dir, ner_seeds=DENSE_NER_SEEDS, measure_latency=False,
                          num_threads=1, **DOWNSTREAM_DATA),
           downstream_dir(out_dir, "dense"))
  print(f"downstream dense: {time.time() - t:.0f} s", flush=True)
  # Over seeds: NER only, beside (not instead of) the single-seed entries.
  tasks = (dict(ner_dir=DOWNSTREAM_DATA["ner_dir"], ner_seeds=tuple(ner_seeds)) if ner_seeds
           else DOWNSTREAM_DATA)
  for (group, run), variants in by_group.items():
    t = time.time()
    target = (stage_dirs(os.path.join(out_dir, group, run))[-1] if run
              else os.path.join(out_dir, group))
    config = EvaluateConfig(target=target, variants=tuple(variants),
                            quantization=(mode,), measure_latency=False, num_threads=1, **tasks)
    evaluate(config, os.path.join(downstream_dir(out_dir, group, seeds=bool(ner_seeds)), run),
             group=group, skip=("dense",))
    print(f"downstream {group}: {time.time() - t:.0f} s", flush=True)


def downstream_of(out_dir: str, group: str, variant: str, mode: str = "none",
                  seeds: bool = False):
  """The cached downstream entry of one variant ("dense": the float dense model), or None.

  ``seeds``: its NER entry over several tagger seeds (the dense model's is its
  one entry, which has them).
  """
  if variant == "dense":  # the reference: the float dense model
    group, mode, seeds = "dense", "none", False
  path = os.path.join(downstream_dir(out_dir, group, seeds), variant, mode, "evaluation.json")
  return files.read_json(path) if os.path.exists(path) else None


def with_downstream(rows, out_dir: str, mode: str) -> None:
  """Adds each row's cached downstream entry (None if not evaluated) as row["downstream"]."""
  for r in rows:
    r["downstream"] = downstream_of(out_dir, r["group"], r["variant"], mode)
    r["downstream_seeds"] = (downstream_of(out_dir, r["group"], r["variant"], mode, seeds=True)
                             if r["variant"] != "dense" else None)


_SIZES_BY_ARCHITECTURE = {}


def recorded_weight_sizes(variant_dir: str):
  """{matrix: size} of the prunable matrices of a variant folder's architecture, or None.

  For sparsity records written before they held the sizes ("num_weights"):
  built from the folder's config.json (no weights read), once per architecture.
  """
  path = os.path.join(variant_dir, "config.json")
  if not os.path.exists(path):
    return None
  model = files.read_json(path).get("model")
  if not isinstance(model, dict):
    return None
  key = json.dumps(model, sort_keys=True)
  if key not in _SIZES_BY_ARCHITECTURE:
    built = build_bilm(BiLMConfig.from_dict(model))
    _SIZES_BY_ARCHITECTURE[key] = {n: int(w.shape.num_elements())
                                   for n, w in prunable_weights(built).items()}
  return _SIZES_BY_ARCHITECTURE[key]


def is_embedder_matrix(name: str) -> bool:
  """Everything the representation model holds: all prunable matrices but the softmax."""
  return not name.startswith("softmax/")


def _deltas(ppl: dict, dense: dict) -> dict:
  """Relative change of each of ``ppl``'s perplexities against ``dense``'s ({} if either is missing)."""
  return {k: ppl[k] / dense[k] - 1 for k in ppl} if ppl and dense else {}


def rows_of(group: str, result, reference=None, group_dir: str = "") -> list:
  """Report rows of one group's result (``compress``'s return value).

  ``reference``: the benchmark's dense metrics when the group compressed a
  variant further (a combination): its "dense" entry is that variant, so it is
  left out, Δ is taken against ``reference`` and the cosine similarity (to the
  variant, not to the dense model) is not shown.
  ``group_dir``: the group's run folder, where the matrix sizes of records that
  lack them are found (without it such rows have no embedder sparsity).
  """
  combined = reference is not None
  dense_ppl = (reference if combined else result["dense"])["perplexity"]
  dense_valid = (reference if combined else result["dense"]).get("valid_perplexity") or {}
  out = []
  for v in ([] if combined else [result["dense"]]) + result["variants"]:
    ppl = v.get("perplexity") or {}
    valid = v.get("valid_perplexity") or {}
    sims = {} if combined else v.get("representation_similarity") or {}
    out.append({
        "group": "dense" if v["name"] == "dense" else group, "variant": v["name"],
        "method": v.get("method", "dense"), "method_options": v.get("method_options"),
        "target_sparsity": v.get("target_sparsity", 0.0),
        "sparsity": v["sparsity"]["overall"],
        # Of the embedder's matrices (the softmax left out); None if their sizes are unknown.
        "embedder_sparsity": subset_sparsity(
            v["sparsity"], is_embedder_matrix,
            None if "num_weights" in v["sparsity"] or not group_dir else recorded_weight_sizes(
                os.path.join(group_dir, "dense") if v["name"] == "dense" else
                CompressionRunFolder(group_dir).variant(v["name"]).path)),
        # Shape-changing methods: the fraction of the compressed matrices' parameters removed.
        "removed_fraction": v.get("removed_fraction"),
        "num_parameters": v.get("num_parameters"),
        "ppl": ppl, "ppl_delta": _deltas(ppl, dense_ppl),
        # PTB valid (what recipes are chosen by), when the group measured it.
        "valid_ppl": valid, "valid_delta": _deltas(valid, dense_valid),
        # An averaged retraining's last step on valid (before the average was written).
        "valid_delta_before_average": _deltas(
            (v.get("retraining") or {}).get("valid_perplexity_before_average") or {}, dense_valid),
        "cosine_similarity": sum(sims.values()) / len(sims) if sims else None,
        "saved_model_zip_bytes": v["sizes"]["saved_model_zip_bytes"],
        "tflite_zip_bytes": {m: s["gzip_bytes"] for m, s in v["sizes"]["tflite"].items()},
        # Retraining, or the fine-tuning of a shape-changing method (same record).
        "retraining": v.get("retraining") or v.get("finetuning"), "seconds": v.get("seconds"),
        "tflite_errors": v.get("tflite_errors")})
  return out


def embedder_removed(row, rows):
  """The fraction of the embedder's matrix parameters a row removed: zeros, or taken out by a
  shape-changing method, or both in a combination (the one axis of every method); None when
  the record lacks the matrix sizes.
  """
  sparsity = row.get("embedder_sparsity")
  if sparsity is None:
    return None
  removed = row.get("removed_fraction") or 0.0
  if row["group"] in COMBINED:  # what its source variant took out, then its zeros
    source = combination_source(row, rows)
    if source is None:
      return None
    removed = source.get("removed_fraction") or 0.0
  return 1 - (1 - removed) * (1 - sparsity)


def combination_source(row, rows):
  """The row of the variant a combination row compressed further, or None (not in ``rows``)."""
  source_group, source_variant = COMBINED[row["group"]][:2]
  return next((r for r in rows if r["group"] == source_group
               and r["variant"] == source_variant), None)


def retraining_of(row, rows):
  """A row's retraining (or fine-tuning) budget; a combination's includes its source's."""
  if row.get("retraining") or row["group"] not in COMBINED:
    return row.get("retraining")
  source = combination_source(row, rows)
  return None if source is None else source.get("retraining")


def _removed_cell(row, rows) -> str:
  removed = embedder_removed(row, rows)
  if removed is None:
    return f"{row['sparsity']:.3f} (all matrices)"
  shape = row.get("removed_fraction")
  return f"{removed:.3f}" + ("" if shape is None else f" (shape {shape:.2f})")


def report(rows, embedder_bytes: int, out_dir: str, command: str,
           downstream_mode: str = "none") -> str:
  lines = ["# ELMo-shaped PTB biLM: compression of the embedder\n",
           f"Command: `{command}`\n",
           "PTB test (all 3,761 sentences); Δ = relative to the dense model; valid Δ = the same "
           "on all of PTB valid (groups that measured it), which the target lines choose by; "
           "calibration and sensitivity on 300 PTB valid sentences. Sizes: gzip of the TFLite file (dynamic = "
           "int8 weights) and the ratio of the dense float32 **embedder** SavedModel "
           f"({embedder_bytes:,} bytes) to it.\n",
           "Downstream (issue #12; "
           + ("the float Keras model" if downstream_mode == "none" else
              f"the variant's {downstream_mode} TFLite file")
           + ", frozen features, ELMo ScalarMix): CoNLL-2003 "
           "NER test F1 (BiLSTM tagger, seed 0; dense: mean ± std over seeds "
           f"{', '.join(map(str, DENSE_NER_SEEDS))}), SST-2 dev accuracy, MRPC dev accuracy / F1; "
           "— = not evaluated.\n",
           "Removed = the fraction of the embedder's matrix parameters (softmax left out) that "
           "are zero or were taken out by a shape-changing method (shape = its share; in a "
           "combination both); \"all matrices\" marks an older record without the sizes, whose "
           "sparsity counts the dense softmax.\n",
           "| group | variant | removed | ppl fwd / bwd / mean | Δ mean | valid Δ mean | cos sim | "
           "TFLite none / dynamic gzip MB | ratio (dynamic) | retraining | seconds | "
           "NER F1 | SST-2 | MRPC acc / F1 |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  seen = set()
  for r in rows:
    if r["variant"] == "dense" and "dense" in seen:
      continue
    seen.add(r["variant"])
    ppl = r["ppl"]
    tfl = r["tflite_zip_bytes"]
    ratio = embedder_bytes / tfl["dynamic"] if "dynamic" in tfl else None
    budget = retraining_of(r, rows)
    budget_text = ("—" if not budget else
                   f"{budget['num_train_steps']} steps ({budget['num_train_epochs']:.2f} ep)")
    lines.append(
        f"| {r['group']} | {r['variant']} | {_removed_cell(r, rows)} | "
        f"{ppl['forward']:.1f} / {ppl['backward']:.1f} / {ppl['mean']:.1f} | "
        f"{r['ppl_delta'].get('mean', 0) * 100:+.1f} % | "
        f"{format(r['valid_delta']['mean'] * 100, '+.1f') + ' %' if r.get('valid_delta') else '—'} | "
        f"{'—' if r['cosine_similarity'] is None else format(r['cosine_similarity'], '.4f')} | "
        f"{tfl.get('none', 0) / 1e6:.2f} / {tfl.get('dynamic', 0) / 1e6:.2f} | "
        f"{'—' if ratio is None else format(ratio, '.1f') + 'x'} | "
        f"{budget_text} | "
        f"{sum((r['seconds'] or {}).values()):.0f} | {_downstream_cells(r.get('downstream'))} |")
  lines.append("\n## One-shot targets (mean test perplexity)\n")
  for target, limit in ((0.5, 0.02), (0.7, 0.08)):
    best = [r for r in rows if r["group"] in ONE_SHOT and abs(r["target_sparsity"] - target) < 1e-9]
    if best:
      lines.append(_target_line(f"one-shot {target:.0%} within +{limit:.0%}:", limit, best))
  lines.append("\n## Retraining targets (at most one epoch, mean test perplexity)\n")
  for target, limit in ((0.9, 0.05), (0.95, 0.15)):
    best = [r for r in rows if pruned_and_retrained(r) and r["retraining"]
            and r["retraining"]["num_train_epochs"] <= 1.0 + 1e-6
            and abs(r["target_sparsity"] - target) < 1e-9]
    label = f"retrained {target:.0%} within +{limit:.0%}:"
    lines.append(_target_line(label, limit, best) if best else f"- {label} not run.")
  lines += dense_control_lines(rows)
  lines += averaging_lines(rows)
  lines.append("\n## Size\n")
  within = [r for r in rows if r["ppl_delta"] and r["ppl_delta"]["mean"] <= 0.05
            and "dynamic" in r["tflite_zip_bytes"]]
  if within:
    best = max(within, key=lambda r: embedder_bytes / r["tflite_zip_bytes"]["dynamic"])
    ratio = embedder_bytes / best["tflite_zip_bytes"]["dynamic"]
    lines.append(f"- smallest variant within +5 %: {best['variant']} ({best['group']}), zipped "
                 f"dynamic TFLite {ratio:.1f}x smaller than the dense embedder SavedModel "
                 f"(target 30x: **{'met' if ratio >= 30 else 'missed'}**).")
  lines += downstream_target_lines(rows)
  text = "\n".join(lines) + "\n"
  files.write_text(os.path.join(out_dir, "report.md"), text)
  _plot(rows, out_dir)
  _plot_size(rows, embedder_bytes, out_dir)
  _plot_downstream(rows, embedder_bytes, out_dir)
  return text


def averaging_lines(rows) -> list:
  """Each variant whose weights average its last steps (--retrain_average_last) and that
  recorded the valid perplexity of its last step: valid Δ mean of the last step against
  that of the average, both against the row's dense valid (one run, the same steps)."""
  lines = []
  for r in rows:
    budget = r.get("retraining") or {}
    last = (r.get("valid_delta_before_average") or {}).get("mean")
    if last is None or not r.get("valid_delta"):
      continue
    lines.append(f"- {r['variant']} ({r['group']}): valid Δ mean {last:+.2%} with the last "
                 f"step's weights, {r['valid_delta']['mean']:+.2%} with the "
                 f"average of the last {budget.get('averaged_steps', '?')} steps.")
  return (["\n## Weight averaging (PTB valid: the last step against the average)\n"] + lines
          if lines else [])


def dense_control_lines(rows) -> list:
  """Each dense control (sweep 0 of a retraining group) against the dense model and the
  pruned variants of its recipe: what pruning cost apart from the extra training.

  A control is compared with the variants retrained with exactly its optimisation (the
  recorded RetrainConfig: objective, rate, warm-up, dropout, batch, steps), or, when its
  record lacks the options, with those of the same number of steps.
  """
  controls = [r for r in rows if pruned_and_retrained(r) and r["target_sparsity"] == 0.0
              and r["ppl"]]
  if not controls:
    return []
  lines = ["\n## Dense control (the dense model retrained with the same budget and objective)\n"]

  def recipe(r):
    return (r.get("method_options") or {}).get("retrain")

  for c in controls:
    budget = c["retraining"] or {}
    lines.append(f"- {c['group']}: {budget.get('num_train_steps', '?')} steps "
                 f"({budget.get('num_train_epochs', 0):.2f} ep), mean test perplexity "
                 f"{c['ppl']['mean']:.1f} ({c['ppl_delta']['mean'] * 100:+.1f} % against the "
                 "dense model).")
    if recipe(c) is not None:
      kind, alike = "recipe", lambda r, c=c: recipe(r) == recipe(c)
    else:
      kind, alike = "budget", lambda r, b=budget: (r["retraining"]["num_train_steps"]
                                                   == b.get("num_train_steps"))
    for target in (0.8, 0.9, 0.95):
      same = [r for r in rows if pruned_and_retrained(r) and r["ppl"] and r["retraining"]
              and alike(r) and abs(r["target_sparsity"] - target) < 1e-9]
      if same:
        best = min(same, key=lambda r: r["ppl"]["mean"])
        lines.append(f"  - best {target:.0%} variant of the same {kind} ({best['group']}): "
                     f"{best['ppl']['mean'] / c['ppl']['mean'] * 100 - 100:+.1f} % against the "
                     f"control, {best['ppl_delta']['mean'] * 100:+.1f} % against the dense "
                     "model.")
  return lines


def _downstream_cells(entry) -> str:
  if not entry:
    return "— | — | —"
  f1 = entry.get("ner_test_f1")
  ner_text = "—" if f1 is None else f"{f1 * 100:.2f}"
  if f1 is not None and entry.get("ner_test_f1_std") is not None:
    ner_text += f" ± {entry['ner_test_f1_std'] * 100:.2f}"
  sst2 = entry.get("sst2_accuracy")
  acc, f1m = entry.get("mrpc_accuracy"), entry.get("mrpc_f1")
  return (f"{ner_text} | {'—' if sst2 is None else format(sst2 * 100, '.2f')} | "
          + ("—" if acc is None else f"{acc * 100:.2f} / {f1m * 100:.2f}"))


def downstream_target_lines(rows) -> list:
  """The issue #12 targets, on the variants the perplexity targets single out.

  The 90 % retrained variant is the best (mean test perplexity) one retrained
  for at most one epoch; the smallest variant within +5 % is the one of the
  size line. Both are compared with the dense model's mean NER test F1 over
  its tagger seeds: a variant's NER is its mean over seeds too when it was
  evaluated so (--downstream_ner_seeds), else its seed-0 F1.
  """
  lines = ["\n## Downstream targets (NER test F1, SST-2 dev accuracy)\n"]
  dense = next((r.get("downstream") for r in rows if r["variant"] == "dense"), None)
  if not dense or dense.get("ner_test_f1") is None:
    return lines + ["- the dense model's downstream evaluation has not run (--downstream)."]
  spread = dense.get("ner_test_f1_std")
  majority = (dense.get("mrpc") or {}).get("majority_baseline")
  lines.append(f"- dense: NER test F1 {dense['ner_test_f1'] * 100:.2f}"
               + ("" if spread is None else f" ± {spread * 100:.2f}")
               + f", SST-2 {dense['sst2_accuracy'] * 100:.2f}"
               + ("" if not majority else
                  f"; MRPC {dense['mrpc_accuracy'] * 100:.2f} / {dense['mrpc_f1'] * 100:.2f} "
                  f"against the majority class's {majority['accuracy'] * 100:.2f} / "
                  f"{majority['f1'] * 100:.2f} (at or below it, MRPC does not tell variants "
                  "apart)") + ".")
  retrained = sorted((r for r in rows if pruned_and_retrained(r) and r["retraining"]
                      and r["retraining"]["num_train_epochs"] <= 1.0 + 1e-6
                      and abs(r["target_sparsity"] - 0.9) < 1e-9),
                     key=lambda r: r["ppl_delta"]["mean"])
  within = [r for r in rows if r["ppl_delta"] and r["ppl_delta"]["mean"] <= 0.05
            and "dynamic" in r["tflite_zip_bytes"] and r["variant"] != "dense"]
  smallest = min(within, key=lambda r: r["tflite_zip_bytes"]["dynamic"]) if within else None
  checks = [("retrained 90 % (best perplexity)", retrained[0] if retrained else None,
             (("NER", "ner_test_f1", 0.005), ("SST-2", "sst2_accuracy", 0.01))),
            ("smallest within +5 % perplexity", smallest, (("NER", "ner_test_f1", 0.01),))]
  for label, row, limits in checks:
    if row is None:
      lines.append(f"- {label}: no such variant.")
      continue
    entry = row.get("downstream") or {}
    seeded = row.get("downstream_seeds") or {}
    parts = []
    for task, key, limit in limits:
      value, note = entry.get(key), ""
      if key == "ner_test_f1" and seeded.get(key) is not None:
        # Mean over tagger seeds against the dense mean: like with like.
        seeds = ", ".join(str(x) for x in seeded["ner"]["seeds"])
        note = (f" mean ± {seeded['ner_test_f1_std'] * 100:.2f} over seeds {seeds}"
                + ("" if value is None else f"; seed 0 alone {value * 100:.2f}, "
                   f"{(value - dense[key]) * 100:+.2f}"))
        value = seeded[key]
      if value is None:
        parts.append(f"{task} not evaluated")
        continue
      diff = value - dense[key]
      met = diff >= -limit - 1e-12
      parts.append(f"{task} {value * 100:.2f}{note} ({diff * 100:+.2f}; within "
                   f"{limit * 100:g}: **{'met' if met else 'missed'}**)")
    lines.append(f"- {label}: {row['variant']} ({row['group']}) — " + "; ".join(parts) + ".")
  return lines


def _target_line(label: str, limit: float, candidates) -> str:
  """``- <label> **met|missed** — best ...; all: ...``: the test Δ of the candidate that is best
  on PTB valid when every candidate measured valid (the choice is made there, the test split
  only reports it), else of the one best on test (older records, said so)."""
  on_valid = all(r.get("valid_delta") for r in candidates)
  key = "valid_delta" if on_valid else "ppl_delta"
  ranked = sorted(candidates, key=lambda r: r[key]["mean"])
  b = ranked[0]
  met = b["ppl_delta"]["mean"] <= limit
  chosen = (f"chosen on valid ({b['valid_delta']['mean'] * 100:+.1f} % there)" if on_valid
            else "chosen on test: not every candidate measured valid")
  return (f"- {label} **{'met' if met else 'missed'}** — "
          f"best {b['variant']} ({b['group']}) {b['ppl_delta']['mean'] * 100:+.1f} %"
          + ("" if met else f", missed by {(b['ppl_delta']['mean'] - limit) * 100:.1f} points")
          + f", {chosen}; all (test): "
          + ", ".join(f"{r['group']} {r['ppl_delta']['mean'] * 100:+.1f} %" for r in ranked)
          + ".")


def _figure():
  """A (figure, axes) of `plots.new_figure`, or None without matplotlib (plots are optional)."""
  try:
    return plots_lib.new_figure()
  except ImportError:
    return None


# One-shot groups left out of the plot: calibration-size ablations of obs_osens.
PLOT_LEFT_OUT = ("obs_osens_cal1000", "obs_osens_cal2000")


def retrained_frontier(rows, max_epochs: float = 1.0):
  """[(removed, ppl mean, group)]: the best retrained variant per target sparsity among every
  retraining group within ``max_epochs`` of retraining (the dense control excluded)."""
  best = {}
  for r in rows:
    budget = r.get("retraining")
    removed = embedder_removed(r, rows)
    if (not pruned_and_retrained(r) or r["group"] in COMBINED or not r["target_sparsity"]
        or removed is None or not budget or budget["num_train_epochs"] > max_epochs + 1e-6):
      continue
    key = round(r["target_sparsity"], 6)
    if key not in best or r["ppl"]["mean"] < best[key][1]:
      best[key] = (removed, r["ppl"]["mean"], r["group"])
  return [best[k] for k in sorted(best)]


def _plot(rows, out_dir: str) -> None:
  """ppl_vs_sparsity.png: one line per one-shot or shape-changing method, the best retrained
  variant per target as one line, combinations and the dense control as markers."""
  made = _figure()
  if made is None:
    return
  fig, ax = made
  fig.set_size_inches(10.0, 5.5)
  import matplotlib  # pylint: disable=import-outside-toplevel
  ax.set_prop_cycle(color=matplotlib.colormaps["tab20"].colors)  # > 10 lines, all distinct
  dense = next(r for r in rows if r["variant"] == "dense")
  ax.axhline(dense["ppl"]["mean"], color="black", lw=1, label="dense")
  ax.axhline(dense["ppl"]["mean"] * 1.05, color="gray", lw=0.8, ls="--", label="dense +5 %")
  # Recipe groups that changed the shape (fine-tuned or not) are lines of their own.
  shaped_recipes = {r["group"] for r in rows if r.get("recipe") and r.get("removed_fraction")
                    and r["group"] not in COMBINED}
  lines = [g for g in sorted({r["group"] for r in rows})
           if g in ONE_SHOT or g in SHAPED or g in shaped_recipes]
  for group in lines:
    if group in PLOT_LEFT_OUT:
      continue
    pts = sorted((embedder_removed(r, rows), r["ppl"]["mean"]) for r in rows
                 if r["group"] == group and embedder_removed(r, rows) is not None)
    if pts:
      ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=group)
  frontier = retrained_frontier(rows)
  if frontier:
    ax.plot([p[0] for p in frontier], [p[1] for p in frontier], marker="*", ms=11, lw=2,
            color="black", label="retrained ≤ 1 epoch (best recipe per target)")
  for group in sorted({r["group"] for r in rows if r["group"] in COMBINED}):
    pts = [(embedder_removed(r, rows), r["ppl"]["mean"]) for r in rows
           if r["group"] == group and embedder_removed(r, rows) is not None]
    if pts:
      ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="D", s=30,
                 label=f"combined: {group}")
  for control, color in DENSE_CONTROLS.items():
    controls = [r for r in rows if r["group"] == control and r["ppl"]]
    if controls:
      ax.scatter([0.0], [controls[0]["ppl"]["mean"]], marker="x", s=60, color=color,
                 label=f"dense control: {control}")
  ax.set_yscale("log")
  ax.set_xlabel("fraction of the embedder's matrix parameters removed (zeros or shape)")
  ax.set_ylabel("PTB test perplexity (mean of directions)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  plots_lib.save_png(fig, os.path.join(out_dir, "ppl_vs_sparsity.png"))


def _plot_size(rows, embedder_bytes: int, out_dir: str) -> None:
  """ppl_vs_size.png: perplexity against how many times smaller than the dense embedder
  SavedModel each variant's zipped dynamic TFLite is (the size target's axis), one marker
  kind per family, the +5 % and 30x target lines."""
  points = [(embedder_bytes / r["tflite_zip_bytes"]["dynamic"], r["ppl"]["mean"], r)
            for r in rows if "dynamic" in r["tflite_zip_bytes"] and r["ppl"]]
  made = _figure() if len(points) >= 2 else None
  if made is None:
    return
  fig, ax = made
  fig.set_size_inches(10.0, 5.5)
  dense = next((r for r in rows if r["variant"] == "dense"), None)
  if dense is not None:
    ax.axhline(dense["ppl"]["mean"] * 1.05, color="gray", lw=0.8, ls="--", label="dense +5 %")
  ax.axvline(30.0, color="gray", lw=0.8, ls=":", label="30x")

  def family(r):
    if r["variant"] == "dense":
      return "dense"
    if r["group"] in COMBINED:
      return f"{COMBINED[r['group']][2]} of a variant"
    if r.get("stages"):  # a recipe run: its stages
      return "retrained" if pruned_and_retrained(r) else " + ".join(r["stages"])
    return "retrained" if r["method"] == "retrain" else r["method"]
  for name in sorted({family(r) for _, _, r in points}):
    pts = [(x, y) for x, y, r in points if family(r) == name]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, label=name)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("dense float32 embedder SavedModel / zipped dynamic-range TFLite")
  ax.set_ylabel("PTB test perplexity (mean of directions)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  plots_lib.save_png(fig, os.path.join(out_dir, "ppl_vs_size.png"))


def _plot_downstream(rows, embedder_bytes: int, out_dir: str) -> None:
  """NER test F1 vs the dense embedder's size ratio (zipped dynamic TFLite), one point per variant."""
  points = [(embedder_bytes / r["tflite_zip_bytes"]["dynamic"], r["downstream"]["ner_test_f1"],
             r["group"]) for r in rows
            if (r.get("downstream") or {}).get("ner_test_f1") is not None
            and "dynamic" in r["tflite_zip_bytes"]]
  made = _figure() if len(points) >= 2 else None
  if made is None:
    return
  fig, ax = made
  for group in sorted({p[2] for p in points}):
    pts = sorted((x, y * 100) for x, y, g in points if g == group)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=group)
  ax.set_xscale("log")
  ax.set_xlabel("dense embedder SavedModel / zipped dynamic TFLite (x smaller)")
  ax.set_ylabel("CoNLL-2003 NER test F1")
  ax.legend(fontsize=8)
  plots_lib.save_png(fig, os.path.join(out_dir, "ner_f1_vs_size.png"))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dense_dir", required=True, help="pipelines.train run of ptb_elmo.flags.")
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--groups", default=",".join(ONE_SHOT), help="One-shot groups to run.")
  parser.add_argument("--helpfull", action="help", help="Show this help and exit.")
  parser.add_argument("--retrain_groups", default="", help="Retraining groups to run: recipe "
                      "groups (RECIPE_GROUPS, e.g. retrain_kd_obs_sens_nodrop_lr10_wu_avg25, "
                      f"a dense control) or --method=retrain groups ({', '.join(retrain_groups(1))}"
                      ", tfmot pruning on a schedule from the dense model).")
  parser.add_argument("--shaped_groups", default="", help="Shape-changing groups to run "
                      f"(one of {', '.join(SHAPED)}), each with its own sweep.")
  parser.add_argument("--finetuned_groups", default="", help="Recipe groups (RECIPE_GROUPS) "
                      "that change the shape and fine-tune by KD afterwards, e.g. "
                      "lowrank_data_ft_nodrop_lr3, structured_obs_ft, lowrank_data_cluster_ft_lr3.")
  parser.add_argument("--recipe_groups", default="", help="Any recipe groups (RECIPE_GROUPS): "
                      "each runs its recipe with its overrides once per sweep value, into "
                      "DIR/<group>/<amount x 100>.")
  parser.add_argument("--combined_groups", default="", help="Combinations: a finished variant "
                      f"of another group compressed further (one of {', '.join(COMBINED)}).")
  parser.add_argument("--retrain_steps", type=int, default=None,
                      help="Optimizer steps per retrained variant. --method=retrain groups: "
                           "default 1,320 (one PTB epoch at batch 32). Recipe groups: every "
                           "fine-tuning stage's steps, unless the group sets its own; default: "
                           "the recipe's.")
  parser.add_argument("--retrain_sweep", default="",
                      help="Comma-separated sparsities replacing the sweep of the "
                           "--retrain_groups that remove something (default: each group's "
                           f"own; {','.join(map(str, RETRAIN_SWEEP))} for most).")
  parser.add_argument("--prune_softmax", action="store_true",
                      help="Also prune the softmax (default: the embedder only).")
  parser.add_argument("--calibration_sentences", type=int, default=300)
  parser.add_argument("--downstream", default="",
                      help="Comma-separated group/variant names (or group for all its "
                           "variants) to evaluate on CoNLL-2003 NER, SST-2 and MRPC, with the "
                           "dense model (issue #12), after the groups above; resumable.")
  parser.add_argument("--downstream_ner_seeds", default="",
                      help="With --downstream: evaluate those variants' NER only, as mean ± "
                           "std over these tagger seeds (e.g. 0,1,2, as the dense model), for "
                           "the target lines; their single-seed entries stay.")
  parser.add_argument("--downstream_quantization", default="none",
                      help="Artifact the downstream tasks read: none (the float model) or a "
                           "TFLite mode of the variants (dynamic, int8).")
  parser.add_argument("--report_only", action="store_true",
                      help="Only gather the finished variants of every group folder in "
                           "--out_dir into the report (computes nothing).")
  args = parser.parse_args()
  if args.report_only:
    rows, later = [], []
    for group in sorted(os.listdir(args.out_dir)):
      if group in RECIPE_GROUPS:
        group_dir = os.path.join(args.out_dir, group)
        for tag in sorted(os.listdir(group_dir)):
          if tag.replace(".", "", 1).isdigit():  # a run folder per amount
            rows += recipe_rows(group, os.path.join(group_dir, tag), float(tag) / 100)
        continue
      folder = CompressionRunFolder(os.path.join(args.out_dir, group))
      if not (os.path.exists(folder.config_json) and folder.dense.is_complete()):
        continue
      finished = [files.read_json(v.metrics_json) for v in folder.variants() if v.is_complete()]
      result = {"dense": files.read_json(folder.dense.metrics_json), "variants": finished}
      if group in COMBINED:  # against the benchmark's dense model, once it is known
        later.append((group, result))
      else:
        rows += rows_of(group, result, group_dir=folder.path)
    reference = next((r for r in rows if r["variant"] == "dense"), None)
    for group, result in later:
      if reference is not None:
        rows += rows_of(group, result, reference={"perplexity": reference["ppl"],
                                                  "valid_perplexity": reference.get("valid_ppl")},
                        group_dir=os.path.join(args.out_dir, group))
    with_downstream(rows, args.out_dir, args.downstream_quantization)
    embedder_bytes = embedder_saved_model_bytes(args.dense_dir, args.out_dir)
    command = "python -m benchmarks.elmo_ptb " + " ".join(sys.argv[1:])
    files.write_json(os.path.join(args.out_dir, "report.json"),
                     {"rows": rows, "dense_embedder_saved_model_bytes": embedder_bytes,
                      "command": command})
    print(report(rows, embedder_bytes, args.out_dir, command, args.downstream_quantization))
    return
  start = time.time()
  common = dict(model_dir=args.dense_dir, eval=os.path.join(PTB, "ptb.test.txt"),
                valid=os.path.join(PTB, "ptb.valid.txt"),
                calibration=os.path.join(PTB, "ptb.valid.txt"),
                calibration_sentences=args.calibration_sentences,
                layer_sparsity=() if args.prune_softmax else (("softmax", 0.0),),
                tflite_quantization=("none", "dynamic"), num_parity_sentences=4)
  groups = {}
  for name in filter(None, args.groups.split(",")):
    method, options = ONE_SHOT[name]
    settings = dict(common, method=method, method_options=options, sparsity_sweep=ONE_SHOT_SWEEP)
    settings.update(ONE_SHOT_SETTINGS.get(name, {}))
    groups[name] = CompressConfig(**settings)
  for name in filter(None, args.shaped_groups.split(",")):
    method, options, sweep = SHAPED[name]
    # structured and layers work on whole units: their fraction counts the softmax.
    shaped = dict(common, layer_sparsity=common["layer_sparsity"] if method == "lowrank" else ())
    groups[name] = CompressConfig(**shaped, method=method, method_options=options,
                                  sparsity_sweep=sweep)
  combined = {}
  for name in filter(None, args.combined_groups.split(",")):
    if name in RECIPE_GROUPS:
      continue  # below
    source_group, source_variant, method, options, sweep = COMBINED[name]
    source = source_variant_dir(args.out_dir, source_group, source_variant)
    if not os.path.exists(os.path.join(source, "metrics.json")):
      raise ValueError(f"--combined_groups={name} compresses {source_group}/{source_variant} "
                       "further; run that group first.")
    groups[name] = CompressConfig(**dict(common, model_dir=source), method=method,
                                  method_options=options, sparsity_sweep=sweep)
    combined[name] = {"perplexity": files.read_json(
        os.path.join(source, "metrics.json"))["perplexity"]}
  retrain_sweep = tuple(float(s) for s in filter(None, args.retrain_sweep.split(",")))
  plain_retrain = retrain_groups(args.retrain_steps or 1320)
  recipe_runs = {}  # group -> sweep
  for flag, names in (("retrain_groups", args.retrain_groups),
                      ("finetuned_groups", args.finetuned_groups),
                      ("combined_groups", args.combined_groups),
                      ("recipe_groups", args.recipe_groups)):
    for name in filter(None, names.split(",")):
      if flag == "retrain_groups" and name in plain_retrain:
        method, options = plain_retrain[name]
        groups[name] = CompressConfig(**common, train=os.path.join(PTB, "ptb.train.txt"),
                                      method=method, method_options=options,
                                      sparsity_sweep=retrain_sweep or RETRAIN_SWEEP)
      elif name in RECIPE_GROUPS:
        sweep = RECIPE_GROUPS[name][2]
        recipe_runs[name] = (retrain_sweep if flag == "retrain_groups" and retrain_sweep
                             and any(sweep) else sweep)
      elif flag != "combined_groups":
        raise ValueError(f"--{flag}={name} is not a group of this benchmark; recipe groups: "
                         f"{', '.join(RECIPE_GROUPS)}.")
  # Every recipe run is checked before any work.
  planned = [(name, amount, group_recipe(name, amount, args.calibration_sentences,
                                         args.prune_softmax, args.retrain_steps))
             for name, sweep in recipe_runs.items() for amount in sweep]
  rows = []
  for name, config in groups.items():
    t = time.time()
    share_finished_work(args.out_dir, os.path.join(args.out_dir, name), config)
    result = compress(config, os.path.join(args.out_dir, name))
    rows += rows_of(name, result, reference=combined.get(name),
                    group_dir=os.path.join(args.out_dir, name))
    print(f"{name}: {time.time() - t:.0f} s", flush=True)
  inputs = dict(model_dir=args.dense_dir, train=os.path.join(PTB, "ptb.train.txt"),
                eval=common["eval"], valid=common["valid"], calibration=common["calibration"])
  for name, amount, recipe in planned:
    t = time.time()
    run_dir = recipe_run_dir(args.out_dir, name, amount)
    run_recipe(recipe, inputs, run_dir, reuse_dense=dense_donors(args.out_dir, exclude=run_dir))
    rows += recipe_rows(name, run_dir, amount)
    print(f"{name} at {amount}: {time.time() - t:.0f} s", flush=True)
  if args.downstream:
    evaluate_downstream(args.dense_dir, args.out_dir, args.downstream.split(","),
                        args.downstream_quantization,
                        ner_seeds=[int(x) for x in filter(None,
                                                          args.downstream_ner_seeds.split(","))])
  with_downstream(rows, args.out_dir, args.downstream_quantization)
  embedder_bytes = embedder_saved_model_bytes(args.dense_dir, args.out_dir)
  command = "python -m benchmarks.elmo_ptb " + " ".join(sys.argv[1:])
  files.write_json(os.path.join(args.out_dir, "report.json"),
                   {"rows": rows, "dense_embedder_saved_model_bytes": embedder_bytes,
                    "command": command, "wall_seconds": time.time() - start})
  print(report(rows, embedder_bytes, args.out_dir, command, args.downstream_quantization))


if __name__ == "__main__":
  main()
