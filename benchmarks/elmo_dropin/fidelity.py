"""Fidelity per layer of every variant to the dense model (the drop-in view).

A run of one stage measured its variants against its input, the dense ELMo: its
metrics.json ``representation_fidelity`` is used as it is. The final stage of a run of
several stages measured against the previous stage's variant, so its variants are
measured here against the first stage's dense entry, on the same eval text, with the
library's ``representation_fidelity``, and cached in DIR/fidelity/.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from prunelm_tf.compression.run_folder import VariantFolder
from prunelm_tf.compression.source import EVAL_BATCH_SIZE, model_dataset, representation_fidelity
from prunelm_tf.utils import files
from benchmarks.elmo_dropin import layout


def _eval_corpus(run: layout.Run):
  """(eval corpus, max_sentences) the run's first stage measured with."""
  config = files.read_config_json(run.first.config_json)
  return config.get("eval", ""), int(config.get("max_sentences", 0) or 0)


def fidelity_to_dense(out_dir: str, run: layout.Run, variant: VariantFolder) -> Dict[str, Any]:
  """``representation_fidelity`` of a finished variant of ``run`` against the dense ELMo.

  {} when nothing is comparable (another width) or the run measured no eval text.
  """
  own = files.read_json(variant.metrics_json).get("representation_fidelity") or {}
  if len(run.stages) == 1:
    return own
  path = layout.fidelity_path(out_dir, run, variant.name)
  eval_corpus, max_sentences = _eval_corpus(run)
  record = {"variant": variant.path, "eval": eval_corpus, "max_sentences": max_sentences,
            "variant_metrics_mtime": os.path.getmtime(variant.metrics_json)}
  if os.path.exists(path):
    cached = files.read_json(path)
    if cached.get("record") == record:
      return cached["fidelity"]
  if not eval_corpus:
    return {}
  from prunelm_tf.data.corpus import load_corpus  # pylint: disable=import-outside-toplevel
  from prunelm_tf.export.saved_model import load_saved_model  # pylint: disable=import-outside-toplevel
  dense = run.first.dense
  config, vocab, _ = dense.read_description()
  sentences = load_corpus(eval_corpus, max_sentences, what="eval corpus")
  dataset = model_dataset(config, vocab, sentences, EVAL_BATCH_SIZE, shuffle=False)
  fidelity = representation_fidelity(load_saved_model(variant.saved_model),
                                     load_saved_model(dense.saved_model), dataset)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.write_json(path, {"record": record, "fidelity": fidelity})
  return fidelity
