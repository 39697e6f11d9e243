"""The benchmark folder: where each group's runs, variants and downstream entries are.

::

  DIR/<group>/                         a method group: one compression run folder
  DIR/<group>/<amount x 100>/          a recipe group's run at one amount (e.g. 90, 37.5, 0):
                                       one compression run folder (a one-stage recipe), or
    stages/<k>_<method>/               each stage a compression run folder, and
    metrics.json                       the stages in order (written when the run finished)
  DIR/downstream/<group>/[<amount x 100>/]<variant>/<mode>/   downstream entries
  DIR/downstream_seeds/...             the same, NER over several tagger seeds
  DIR/dense_embedder/                  the size reference (the dense model without softmax)

A recipe group's variants are those of its final stage, named "<amount x 100>/<variant>"
(e.g. "90/finetune"); its reference ("dense") is its first stage's input, the benchmark's
dense model. Other benchmarks that read DIR (``benchmarks.latency_frontier``,
``benchmarks.elmo_int8``) find variants with ``finished_variants``.
"""

from __future__ import annotations

import os
from typing import List, NamedTuple, Tuple

from benchmarks.elmo_ptb.groups import COMBINED
from prunelm_tf.compression.run_folder import CompressionRunFolder, VariantFolder
from prunelm_tf.utils import files


def amount_tag(amount: float) -> str:
  """The folder of a recipe group's run at ``amount``: its percentage ("90", "37.5", "0")."""
  return f"{amount * 100:g}"


def is_amount_tag(name: str) -> bool:
  """Whether a folder name under a recipe group is one of its runs (see ``amount_tag``)."""
  return name.replace(".", "", 1).isdigit()


def recipe_run_dir(out_dir: str, group: str, amount: float) -> str:
  return os.path.join(out_dir, group, amount_tag(amount))


def stage_dirs(run_dir: str) -> List[str]:
  """The compression run folders of a recipe run, first to final ([run_dir] for one stage)."""
  path = os.path.join(run_dir, "metrics.json")
  record = files.read_json(path) if os.path.exists(path) else {}
  if "stages" not in record:
    return [run_dir]
  return [os.path.join(run_dir, s["run_dir"]) for s in record["stages"]]


class Run(NamedTuple):
  """One compression run of the benchmark folder whose variants are report rows."""
  # The group it belongs to.
  group: str
  # "" for a method group; the amount tag of a recipe group's run ("90").
  tag: str
  # Where its reference (the benchmark's dense model) is: the first stage.
  first: CompressionRunFolder
  # Where its variants are: the final stage (``first`` for a single run).
  final: CompressionRunFolder

  def label(self, variant: str) -> str:
    """The report's name of one of its variants: "<tag>/<variant>" in a recipe group."""
    return f"{self.tag}/{variant}" if self.tag and variant != "dense" else variant


def _finished(folder: CompressionRunFolder) -> bool:
  return os.path.exists(folder.config_json) and folder.dense.is_complete()


def runs(out_dir: str, groups=()) -> List[Run]:
  """Every compression run of ``out_dir`` with a finished dense entry, by group name.

  A method group is its folder; a recipe group (a folder whose entries are amount tags)
  contributes each run whose stages have all started (``stage_dirs`` reads the run's
  metrics.json, written when every stage finished). ``groups``: only these (default all).
  """
  found = []
  for group in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else ():
    top = os.path.join(out_dir, group)
    if (groups and group not in groups) or not os.path.isdir(top):
      continue
    if _finished(CompressionRunFolder(top)):
      found.append(Run(group, "", CompressionRunFolder(top), CompressionRunFolder(top)))
      continue
    tags = [t for t in os.listdir(top) if is_amount_tag(t)]
    for tag in sorted(tags, key=float):
      dirs = stage_dirs(os.path.join(top, tag))
      first, final = CompressionRunFolder(dirs[0]), CompressionRunFolder(dirs[-1])
      if _finished(first) and _finished(final):
        found.append(Run(group, tag, first, final))
  return found


def finished_variants(out_dir: str, groups=()) -> List[Tuple[str, str, VariantFolder]]:
  """[(group, name, folder)] of every finished variant of ``out_dir``, the dense model first.

  The dense model (group and name "dense") is the first stage's dense entry of the first
  run that is not a combination (a combination's dense entry is the variant it compressed);
  without such a run there is none. ``name`` is the report's (``Run.label``); ``groups``:
  only these (default all).
  """
  dense, out = [], []
  for run in runs(out_dir, groups):
    if not dense and run.group not in COMBINED:
      dense.append(("dense", "dense", run.first.dense))
    out += [(run.group, run.label(v.name), v) for v in run.final.variants() if v.is_complete()]
  return dense + out


def source_variant_dir(out_dir: str, group: str, variant: str) -> str:
  """The folder of a group's variant by its report name ("<tag>/<variant>": a recipe
  group's, in its final stage)."""
  tag, nested, name = variant.partition("/")
  if nested:
    return CompressionRunFolder(stage_dirs(os.path.join(out_dir, group, tag))[-1]).variant(
        name).path
  return CompressionRunFolder(os.path.join(out_dir, group)).variant(variant).path


def downstream_dir(out_dir: str, group: str, seeds: bool = False) -> str:
  """Where the downstream evaluation of a group's variants (or of "dense") is written.

  ``seeds``: the NER evaluation over several tagger seeds.
  """
  return os.path.join(out_dir, "downstream_seeds" if seeds else "downstream", group)


def downstream_of(out_dir: str, group: str, variant: str, mode: str = "none",
                  seeds: bool = False):
  """The cached downstream entry of one variant ("dense": the float dense model), or None.

  ``variant`` is its report name ("<tag>/<variant>" in a recipe group). ``seeds``: its NER
  entry over several tagger seeds (the dense model's is its one entry, which has them).
  """
  if variant == "dense":  # the reference: the float dense model
    group, mode, seeds = "dense", "none", False
  path = os.path.join(downstream_dir(out_dir, group, seeds), variant, mode, "evaluation.json")
  return files.read_json(path) if os.path.exists(path) else None
