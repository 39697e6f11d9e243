"""Downstream evaluation of the track's variants, drop-in and retrained (issue #33).

The downstream models (NER tagger per seed, SST-2, MRPC and CoLA probes) are trained once
on the dense ELMo's features (``evaluate.dropin_reference``, DIR/downstream/dropin/); each
variant's features are then fed to them unchanged (drop-in) and, with the ``retrain``
protocol, to models trained on its own features. Every entry is cached per (variant, mode)
under DIR/downstream/ (``layout``) by ``evaluate.evaluate_variant``, so a second call
resumes; a variant whose representation shape differs is recorded as not drop-in.
"""

from __future__ import annotations

import os
import time
from typing import Dict, Optional, Sequence

from absl import logging

from prunelm_tf.evaluation.evaluate import (EvaluateConfig, dropin_reference, evaluate_variant,
                                            quality_settings)
from prunelm_tf.evaluation.variants import find_variants
from prunelm_tf.utils import files
from benchmarks.elmo_dropin import layout
from benchmarks.paths import CONLL2003, SHARED_DATA

# The tasks' data (see prunelm_tf/evaluation).
DOWNSTREAM_DATA = {"ner_dir": CONLL2003, "sst2_dir": os.path.join(SHARED_DATA, "sst2"),
                   "mrpc_dir": os.path.join(SHARED_DATA, "mrpc"),
                   "cola_dir": os.path.join(SHARED_DATA, "cola")}
# The tagger seeds: the dense reference (drop-in = retrained for the dense model) and every
# variant's NER are a mean ± std over them.
NER_SEEDS = (0, 1, 2)


def downstream_config(dense_dir: str, protocols: Sequence[str] = ("dropin", "retrain"),
                      data: Optional[Dict[str, str]] = None, **kwargs) -> EvaluateConfig:
  """The one evaluation config of every entry (the drop-in reference is keyed by it)."""
  return EvaluateConfig(target=dense_dir, ner_seeds=NER_SEEDS, measure_latency=False,
                        num_threads=1, downstream_protocol=tuple(protocols),
                        **(DOWNSTREAM_DATA if data is None else data), **kwargs)


def _wanted(row, names: Sequence[str]) -> bool:
  return "all" in names or row["group"] in names or f"{row['group']}/{row['variant']}" in names


def evaluate_downstream(out_dir: str, rows, names: Sequence[str] = ("all",), *,
                        mode: str = "dynamic", protocols: Sequence[str] = ("dropin", "retrain"),
                        data: Optional[Dict[str, str]] = None, **config_kwargs) -> None:
  """Evaluates the dense model and the rows ``names`` selects, into DIR/downstream/.

  Args:
    out_dir: the track's folder.
    rows: ``rows.finished_rows`` (the dense row first).
    names: "all", group names, or "group/variant" names (the report's variant names).
    mode: the artifact of the variants that is evaluated: "dynamic" (the dynamic-range
      TFLite file the size ratio counts) or "none" (the float Keras model). The dense
      model's downstream models are always trained on its float features.
    protocols: "dropin" and/or "retrain".
    data: the tasks' folders (default ``DOWNSTREAM_DATA``); config_kwargs: other
      ``EvaluateConfig`` fields (e.g. a smaller NER tagger for a test).
  """
  if not rows:
    return
  dense_dir = rows[0]["variant_dir"]
  (dense,) = find_variants(dense_dir)
  config = downstream_config(dense_dir, protocols, data, **config_kwargs)
  settings = quality_settings(config, None)
  folder = layout.downstream_dir(out_dir)
  os.makedirs(folder, exist_ok=True)
  with files.run_dir_lock(folder, flag_name="downstream folder"):
    t = time.time()
    reference = (dropin_reference(dense, config, folder, settings) if "dropin" in protocols
                 else None)
    evaluate_variant(dense, "none", config, folder, group="dense", settings=settings,
                     reference=reference)
    logging.info("downstream dense: %.0f s", time.time() - t)
    for row in rows[1:]:
      if not _wanted(row, names):
        continue
      t = time.time()
      (variant,) = find_variants(row["variant_dir"])
      chosen = mode if mode == "none" or mode in variant.tflite else "none"
      if chosen != mode:
        logging.warning("%s has no %s TFLite file; its float model is evaluated.",
                        row["variant"], mode)
      evaluate_variant(variant, chosen, config,
                       layout.downstream_entry_dir(out_dir, row["group"], row["run"]["tag"]),
                       group=row["group"], settings=settings, reference=reference)
      logging.info("downstream %s/%s: %.0f s", row["group"], row["variant"], time.time() - t)


def with_downstream(out_dir: str, rows, mode: str = "dynamic") -> None:
  """Adds each row's cached downstream entry as row["downstream"]: the ``mode`` entry, else
  the float model's (a variant without that TFLite file), else None (not evaluated)."""
  for row in rows:
    if row["group"] == "dense":
      row["downstream"] = layout.downstream_entry(out_dir, "dense", "", "dense", "none")
      continue
    tag, name = row["run"]["tag"], row["run"]["name"]
    row["downstream"] = (layout.downstream_entry(out_dir, row["group"], tag, name, mode)
                         or layout.downstream_entry(out_dir, row["group"], tag, name, "none"))
