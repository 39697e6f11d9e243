"""Downstream evaluation of the benchmark's variants (issue #12: frozen features).

CoNLL-2003 NER test F1, SST-2 and MRPC dev of the dense model and of chosen variants,
cached per (variant, mode) under DIR/downstream/ (``layout.downstream_dir``).
"""

from __future__ import annotations

import os
import time

from benchmarks.elmo_ptb import layout
from benchmarks.elmo_ptb.groups import RECIPE_GROUPS
from benchmarks.paths import CONLL2003, SHARED_DATA
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate

# The downstream tasks' data (see prunelm_tf/evaluation).
DOWNSTREAM_DATA = {"sst2_dir": os.path.join(SHARED_DATA, "sst2"),
                   "ner_dir": CONLL2003,
                   "mrpc_dir": os.path.join(SHARED_DATA, "mrpc")}
# The dense model's tagger seeds: its NER F1 is a mean ± std, so that a reader
# knows what a variant's difference means.
DENSE_NER_SEEDS = (0, 1, 2)


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

  Raises:
    ValueError: a name whose group is not in ``out_dir``, or a recipe group's name
      without its amount; before any work.
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
           layout.downstream_dir(out_dir, "dense"))
  print(f"downstream dense: {time.time() - t:.0f} s", flush=True)
  # Over seeds: NER only, beside (not instead of) the single-seed entries.
  tasks = (dict(ner_dir=DOWNSTREAM_DATA["ner_dir"], ner_seeds=tuple(ner_seeds)) if ner_seeds
           else DOWNSTREAM_DATA)
  for (group, run), variants in by_group.items():
    t = time.time()
    target = (layout.stage_dirs(os.path.join(out_dir, group, run))[-1] if run
              else os.path.join(out_dir, group))
    config = EvaluateConfig(target=target, variants=tuple(variants),
                            quantization=(mode,), measure_latency=False, num_threads=1, **tasks)
    evaluate(config, os.path.join(layout.downstream_dir(out_dir, group, seeds=bool(ner_seeds)),
                                  run),
             group=group, skip=("dense",))
    print(f"downstream {group}: {time.time() - t:.0f} s", flush=True)


def with_downstream(rows, out_dir: str, mode: str) -> None:
  """Adds each row's cached downstream entry (None if not evaluated) as row["downstream"]."""
  for r in rows:
    r["downstream"] = layout.downstream_of(out_dir, r["group"], r["variant"], mode)
    r["downstream_seeds"] = (layout.downstream_of(out_dir, r["group"], r["variant"], mode,
                                                  seeds=True)
                             if r["variant"] != "dense" else None)
