"""The track's folder: where the ELMo input, each group's runs and the measurements are.

::

  DIR/elmo/options.json, lm_weights.hdf5   the --dense_dir model as an ELMo (no softmax),
  DIR/elmo/source.json                     exported once; what it was exported from
  DIR/<group>/                             a group whose sweep is its recipe's last stage's
                                           amounts: one recipe run, a variant per amount
  DIR/<group>/<amount x 100>/              otherwise one recipe run per amount (e.g. 80)
  DIR/fidelity/<group>/[<tag>/]<variant>.json   a several-stage run's variant against the
                                           dense model (its final stage measured it against
                                           the previous stage's variant)
  DIR/downstream/dropin/                   the downstream models trained on the dense model
  DIR/downstream/dense/none/               the dense model's entry (and its feature caches)
  DIR/downstream/<group>/[<tag>/]<variant>/<mode>/evaluation.json   a variant's entry
  DIR/report.md, report.json, ner_dropin_vs_size.png

A recipe run (``staged.run_recipe``) of one stage is a compression run folder; of several,
a folder of stages whose metrics.json is written when every stage finished.
"""

from __future__ import annotations

import os
from typing import List, NamedTuple, Sequence

from prunelm_tf.compression.run_folder import (CompressionRunFolder, is_recipe_run_config,
                                               recipe_stage_dirs)
from prunelm_tf.utils import files

ELMO_DIR = "elmo"
ELMO_OPTIONS, ELMO_WEIGHTS = "options.json", "lm_weights.hdf5"
FIDELITY_DIR = "fidelity"
DOWNSTREAM_DIR = "downstream"
# Folders of DIR that are no group.
NOT_GROUPS = (ELMO_DIR, FIDELITY_DIR, DOWNSTREAM_DIR)


def amount_tag(amount: float) -> str:
  """The folder of a group's run at ``amount``: its percentage ("80", "37.5")."""
  return f"{amount * 100:g}"


def run_dir(out_dir: str, group: str, tag: str = "") -> str:
  """A group's recipe run: DIR/<group> (``tag`` "") or DIR/<group>/<tag>."""
  return os.path.join(out_dir, group, tag) if tag else os.path.join(out_dir, group)


def stage_dirs(path: str) -> List[str]:
  """The compression run folders of a recipe run, first to final ([path] for one stage)."""
  config_json = os.path.join(path, "config.json")
  config = files.read_config_json(config_json) if os.path.exists(config_json) else None
  return recipe_stage_dirs(path, config) if is_recipe_run_config(config) else [path]


class Run(NamedTuple):
  """One recipe run of the track whose final stage's variants are report rows."""
  group: str
  # "" for a group of one run; the amount tag otherwise.
  tag: str
  path: str
  # The compression run folders of its stages, first to final.
  stages: List[str]

  @property
  def first(self) -> CompressionRunFolder:
    """Where the dense model's entry (the ELMo as read) is."""
    return CompressionRunFolder(self.stages[0])

  @property
  def final(self) -> CompressionRunFolder:
    """Where the variants are."""
    return CompressionRunFolder(self.stages[-1])

  def label(self, variant: str) -> str:
    """The report's name of one of its variants: "<tag>/<variant>" in a run per amount."""
    return f"{self.tag}/{variant}" if self.tag else variant


def is_finished(run: Run) -> bool:
  """Several stages: every stage finished (the run's metrics.json); one: its dense entry."""
  if len(run.stages) > 1:
    return os.path.exists(os.path.join(run.path, "metrics.json"))
  return os.path.exists(run.first.config_json) and run.first.dense.is_complete()


def runs(out_dir: str, groups: Sequence[str] = ()) -> List[Run]:
  """Every finished recipe run of ``out_dir`` (of ``groups`` only, when given), by group."""
  found = []
  for group in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else ():
    top = os.path.join(out_dir, group)
    if group in NOT_GROUPS or (groups and group not in groups) or not os.path.isdir(top):
      continue
    if os.path.exists(os.path.join(top, "config.json")):
      candidates = [("", top)]
    else:
      tags = [t for t in os.listdir(top) if t.replace(".", "", 1).isdigit()]
      candidates = [(t, os.path.join(top, t)) for t in sorted(tags, key=float)]
    for tag, path in candidates:
      run = Run(group, tag, path, stage_dirs(path))
      if is_finished(run):
        found.append(run)
  return found


def fidelity_path(out_dir: str, run: Run, variant: str) -> str:
  return os.path.join(out_dir, FIDELITY_DIR, run.group, run.tag, f"{variant}.json")


def downstream_dir(out_dir: str) -> str:
  """The evaluation folder of every downstream entry (and the drop-in reference)."""
  return os.path.join(out_dir, DOWNSTREAM_DIR)


def downstream_entry_dir(out_dir: str, group: str, tag: str = "") -> str:
  """Where ``evaluate_variant`` writes a group's entries (group "dense": the dense model's)."""
  if group == "dense":
    return downstream_dir(out_dir)
  return os.path.join(downstream_dir(out_dir), group, tag)


def downstream_entry(out_dir: str, group: str, tag: str, variant: str, mode: str):
  """The cached downstream entry of one variant of a group's run at ``mode``, or None."""
  path = os.path.join(downstream_entry_dir(out_dir, group, tag), variant, mode,
                      "evaluation.json")
  return files.read_json(path) if os.path.exists(path) else None
