"""Running the track: the ELMo input, each group's recipe runs, the work shared between them.

``elmo_input(out_dir, dense_dir=...)`` exports a ``pipelines.train`` run of the ELMo-shaped
PTB model once to an ELMo options.json + HDF5 (no softmax) in DIR/elmo/;
``run_groups(elmo, out_dir, groups, corpora)`` then compresses that file (or a released
ELMo's) through ``staged.run_recipe`` exactly as a user's ``pipelines.compress --recipe``
would, one recipe run per group (or per amount, see ``groups``). A second call resumes.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging

# prunelm_tf (imported by the first line below) sets up Keras 2 before TensorFlow loads.
from prunelm_tf.compression import recipes
from prunelm_tf.compression.methods import get_method
from prunelm_tf.compression.recipes import stage_config
from prunelm_tf.compression.staged import run_recipe
from prunelm_tf.utils import files
from benchmarks.elmo_dropin import layout
from benchmarks.elmo_dropin.groups import GROUPS
from benchmarks.elmo_ptb.run import share_finished_work
from benchmarks.paths import PTB_TEST, PTB_TRAIN, PTB_VALID


class Corpora(NamedTuple):
  """The text every run reads (paths or globs)."""
  # What distillation retrains on.
  train: str = PTB_TRAIN
  # Where fidelity to the dense model is measured (all of it unless max_sentences).
  eval: str = PTB_TEST
  # What one-shot methods and the allocation curves calibrate on: held-out, never eval.
  calibration: str = PTB_VALID


class ElmoFiles(NamedTuple):
  """A softmax-less ELMo: what a released model is."""
  options_file: str
  weight_file: str


def _book(name: str) -> dict:
  return recipes.load_recipe(name).to_dict()


def _local(name: str, purpose: str, stages: List[dict], run: Optional[dict] = None
           ) -> recipes.Recipe:
  return recipes.recipe_from_dict(name, {
      "purpose": purpose, "applies_to": ["softmax_less"], "stages": stages,
      "run": run or _book("obs_50_elmo")["run"], "measured": []})


# Recipes of the track's own: methods a user of a released ELMo would not choose (obs is
# better than wanda and magnitude; one-shot structured and layers need fine-tuning), kept
# here to compare them, built from the book's softmax-less forms.
def _wanda() -> recipes.Recipe:
  stage = dict(_book("obs_50_elmo")["stages"][0], method="wanda")
  return _local("wanda_elmo", "Wanda (|W| * ||x||) one-shot pruning of a released ELMo.", [stage])


def _magnitude() -> recipes.Recipe:
  return _local("magnitude_elmo", "Magnitude (threshold) one-shot pruning of a released ELMo.",
                [{"method": "threshold", "options": {}, "amount": [0.5]}])


def _structured() -> recipes.Recipe:
  book = _book("structured_30_ft_elmo")
  return _local("structured_elmo", "One-shot structured pruning (OBS importance) of a released "
                "ELMo, no fine-tuning.", book["stages"][:1], book["run"])


def _layers() -> recipes.Recipe:
  return _local("layers_elmo", "LSTM layers removed, the kept ones closest to the dense top "
                "layer on held-out text (fewer layers: not drop-in).",
                [{"method": "layers", "options": {"criterion": "representation"},
                  "amount": [0.5]}])


def _obs_cluster() -> recipes.Recipe:
  cluster = dict(_book("cluster_32_elmo")["stages"][0], amount=[0.5])
  return _local("obs_cluster_elmo", "One-shot OBS, then k-means weight sharing of the kept "
                "weights to 16 values per matrix (zeros kept), no training.",
                [_book("obs_50_elmo")["stages"][0], cluster])


LOCAL_RECIPES = {"wanda_elmo": _wanda, "magnitude_elmo": _magnitude,
                 "structured_elmo": _structured, "layers_elmo": _layers,
                 "obs_cluster_elmo": _obs_cluster}


def base_recipe(name: str) -> recipes.Recipe:
  """The book's recipe ``name`` or the track's own (``LOCAL_RECIPES``), validated."""
  return LOCAL_RECIPES[name]() if name in LOCAL_RECIPES else recipes.load_recipe(name)


def sweep_stage(recipe: recipes.Recipe) -> Optional[int]:
  """The index of the recipe's first stage that has an amount (what a sweep sets), or None."""
  return next((k for k, s in enumerate(recipe.stages) if get_method(s.method).has_amount), None)


def group_recipe(group: str, amounts: Sequence[float], *,
                 calibration_sentences: Optional[int] = None,
                 retrain_steps: Optional[int] = None,
                 num_parity_sentences: int = 4,
                 run_overrides: Sequence[str] = ()) -> recipes.Recipe:
  """The validated recipe of one of ``group``'s runs, its sweep stage at ``amounts``.

  The track's settings are overrides applied before the group's own: the calibration
  sentences (None: the recipe's), the TFLite parity sentences, and ``retrain_steps`` (every
  fine-tuning stage's steps; None: the recipe's), and ``run_overrides`` (``run.FIELD=VALUE``
  strings for every group, e.g. the TFLite modes of a smoke test).

  Raises:
    ValueError: a recipe that does not apply to a softmax-less model, an override it
      refuses, or amounts it cannot take.
  """
  spec = GROUPS[group]
  recipe = base_recipe(spec.recipe)
  if "softmax_less" not in recipe.applies_to:
    raise ValueError(f"group {group}: recipe {spec.recipe} applies to {list(recipe.applies_to)}, "
                     "not to a softmax-less ELMo.")
  settings = [f"run.num_parity_sentences={num_parity_sentences}"]
  if calibration_sentences is not None:
    settings.append(f"run.calibration_sentences={calibration_sentences}")
  for k, stage in enumerate(recipe.stages):
    if retrain_steps and stage.method == "finetune":
      settings.append(f"{k + 1}.retrain.num_steps={retrain_steps}")
      # A warm-up and an average sized for the recipe's steps must fit the new count.
      retrain = stage.options.get("retrain", {})
      if retrain.get("warmup_steps"):
        settings.append(f"{k + 1}.retrain.warmup_steps={max(1, retrain_steps // 10)}")
  recipe = recipes.apply_overrides(recipe, settings + list(run_overrides) + list(spec.overrides))
  k = sweep_stage(recipe)
  if k is None:
    raise ValueError(f"group {group}: recipe {spec.recipe} has no stage with an amount.")
  return recipes.apply_overrides(recipe, [f"{k + 1}.amount={','.join(map(str, amounts))}"])


def planned_runs(group: str, **settings) -> List[Tuple[str, recipes.Recipe]]:
  """[(tag, recipe)] of a group: one run ("") when its sweep stage is the recipe's last, else
  one per amount (its amount tag)."""
  spec = GROUPS[group]
  k = sweep_stage(base_recipe(spec.recipe))
  if k == len(base_recipe(spec.recipe).stages) - 1:
    return [("", group_recipe(group, spec.sweep, **settings))]
  return [(layout.amount_tag(a), group_recipe(group, (a,), **settings)) for a in spec.sweep]


def elmo_input(out_dir: str, *, dense_dir: str = "", options_file: str = "",
               weight_file: str = "") -> ElmoFiles:
  """The ELMo the track compresses: a released one as given, or ``dense_dir`` exported once.

  A ``pipelines.train`` run (char input) is written to DIR/elmo/ as ELMo options.json and
  HDF5 weights, without its softmax (``elmo.export_elmo``), with DIR/elmo/source.json naming
  the run; a later call reuses the files.

  Raises:
    ValueError: both or neither input, or DIR/elmo/ exported from another run.
    FileNotFoundError: a released ELMo's file is missing.
  """
  if bool(dense_dir) == bool(options_file or weight_file):
    raise ValueError("give either --dense_dir (a pipelines.train run, exported to an ELMo once) "
                     "or --options_file and --weight_file (a released ELMo), not both.")
  if not dense_dir:
    for flag, path in (("options_file", options_file), ("weight_file", weight_file)):
      if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"--{flag}={path!r} is not a file; a released ELMo needs both "
                                "--options_file and --weight_file.")
    return ElmoFiles(os.path.abspath(options_file), os.path.abspath(weight_file))
  folder = os.path.join(out_dir, layout.ELMO_DIR)
  out = ElmoFiles(os.path.join(folder, layout.ELMO_OPTIONS),
                  os.path.join(folder, layout.ELMO_WEIGHTS))
  source = {"dense_dir": os.path.abspath(dense_dir)}
  source_json = os.path.join(folder, "source.json")
  if os.path.exists(source_json):
    if files.read_json(source_json) != source:
      raise ValueError(f"{folder} was exported from {files.read_json(source_json)['dense_dir']}, "
                       f"not from --dense_dir={dense_dir}; choose a new --out_dir.")
    if all(os.path.exists(p) for p in out):
      return out
  from prunelm_tf import elmo  # pylint: disable=import-outside-toplevel
  from prunelm_tf.training.run_folder import load_run  # pylint: disable=import-outside-toplevel
  model, config, _ = load_run(dense_dir)
  os.makedirs(folder, exist_ok=True)
  elmo.export_elmo(model, config, out.options_file, out.weight_file)  # the softmax left out
  files.write_json(source_json, source)  # last: the export is complete
  return out


def dense_donors(out_dir: str) -> List[str]:
  """The first stage of every finished run: compression run folders whose dense entry (the
  ELMo as read, exported and measured) a new run may copy (``--reuse_dense``)."""
  return [run.stages[0] for run in layout.runs(out_dir)]


def run_groups(elmo: ElmoFiles, out_dir: str, groups: Sequence[str], *,
               corpora: Corpora = Corpora(), max_sentences: int = 0,
               calibration_sentences: Optional[int] = None,
               retrain_steps: Optional[int] = None,
               run_overrides: Sequence[str] = ()) -> Dict[str, float]:
  """Runs ``groups`` on ``elmo`` into ``out_dir`` (see ``layout``); returns seconds per run.

  Every run's inputs are those of a released model (options_file, weight_file) and the
  corpora; ``max_sentences`` (0 = all) caps every corpus read (a smoke test). The other
  settings are ``group_recipe``'s.

  Raises:
    ValueError: an unknown group, or a run whose recipe refuses its settings; before any work.
  """
  unknown = [g for g in groups if g not in GROUPS]
  if unknown:
    raise ValueError(f"no such groups {unknown}; the choices are {', '.join(GROUPS)}.")
  bad = [o for o in run_overrides if not o.startswith("run.")]
  if bad:
    raise ValueError(f"run_overrides {bad}: only run.FIELD=VALUE settings apply to every group.")
  settings = dict(calibration_sentences=calibration_sentences, retrain_steps=retrain_steps,
                  run_overrides=tuple(run_overrides))
  plan = [(g, tag, recipe) for g in groups for tag, recipe in planned_runs(g, **settings)]
  inputs = dict(options_file=elmo.options_file, weight_file=elmo.weight_file,
                train=corpora.train, eval=corpora.eval, calibration=corpora.calibration,
                max_sentences=max_sentences)
  seconds = {}
  for group, tag, recipe in plan:
    path = layout.run_dir(out_dir, group, tag)
    if len(recipe.stages) == 1:
      # Sensitivity curves of the same ELMo on the same calibration text, from a finished
      # one-stage group (magnitude curves: obs_sens, wanda_sens, magnitude_sens share them).
      share_finished_work(out_dir, path, stage_config(recipe, 0, **inputs))
    t = time.time()
    run_recipe(recipe, inputs, path, reuse_dense=[d for d in dense_donors(out_dir)
                                                  if not d.startswith(path + os.sep)
                                                  and d != path])
    name = os.path.relpath(path, out_dir)
    seconds[name] = time.time() - t
    logging.info("%s: %.0f s", name, seconds[name])
  return seconds
