"""GLUE CoLA (linguistic acceptability) on frozen biLM representations: Matthews correlation.

The same protocol as SST-2 (``downstream``): every sentence is the mean over its tokens of
each layer's representation, a learned ScalarMix and a small classifier are trained on the
train split with a fixed seed, and dev is scored once at the end of training. CoLA's figure is
the Matthews correlation coefficient (MCC) of the dev predictions, GLUE's metric for it
(accuracy is reported too; about 69 % of dev is acceptable, so accuracy alone rewards a
probe that says "acceptable" to everything, whose MCC is 0).

GLUE's CoLA files have no header; each line is ``source<TAB>label<TAB>original
mark<TAB>sentence`` with the sentence as raw text, tokenized here by ``mrpc.tokenize``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import numpy as np

from prunelm_tf.elmo.embedder import Embedder
from prunelm_tf.evaluation import downstream
from prunelm_tf.evaluation.mrpc import tokenize

TRAIN_CACHE = "cola_train.npz"
DEV_CACHE = "cola_dev.npz"
FILES = ("train.tsv", "dev.tsv")


def read_cola(path: str | os.PathLike) -> Tuple[List[List[str]], np.ndarray]:
  """Reads a GLUE CoLA TSV (no header; source, label, mark, sentence per line).

  Returns:
    ``(sentences, labels)``: token lists, and int64 [n] labels (1 = acceptable).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: a line without 4 tab-separated fields, a label other than 0/1, an
      empty sentence, or no rows (the message names the file and line).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"CoLA file {path} not found; pass the folder of GLUE's CoLA "
                            "train.tsv and dev.tsv (--cola_dir).")
  sentences, labels = [], []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      line = line.rstrip("\r\n")
      if not line.strip():
        continue
      fields = line.split("\t")
      if len(fields) != 4:
        raise ValueError(f"{path}, line {line_no}: expected 4 tab-separated fields (source, "
                         f"label, mark, sentence) as in GLUE's CoLA files, got {len(fields)}. "
                         "Fix or remove the row.")
      if fields[1] not in ("0", "1"):
        raise ValueError(f"{path}, line {line_no}: the label must be 0 or 1, got "
                         f"{fields[1]!r}. Fix or remove the row.")
      tokens = tokenize(fields[3])
      if not tokens:
        raise ValueError(f"{path}, line {line_no}: the sentence is empty. Remove the row.")
      sentences.append(tokens)
      labels.append(int(fields[1]))
  if not sentences:
    raise ValueError(f"{path} has no rows; CoLA evaluation needs at least one sentence.")
  return sentences, np.asarray(labels, np.int64)


def evaluate_cola(embedder: Embedder, train_path: str | os.PathLike,
                  dev_path: str | os.PathLike, *, cache_dir: Optional[str | os.PathLike] = None,
                  probe: downstream.ProbeConfig = downstream.ProbeConfig(),
                  batch_size: int = 64, model_fingerprint: str = "",
                  save_frozen: Optional[str] = None) -> Dict[str, Any]:
  """CoLA dev Matthews correlation of the SST-2 probe on the frozen ``embedder``.

  Args: as ``downstream.evaluate_sst2`` (caches ``cola_train.npz``, ``cola_dev.npz``;
    ``save_frozen`` keeps the probe for drop-in scoring).

  Returns:
    The ``downstream.train_probe`` result (``matthews_corrcoef``, ``accuracy``, the mix
    weights, ...) plus ``majority_baseline`` (dev accuracy of always predicting the
    majority train label; its MCC is 0).

  Raises:
    FileNotFoundError, ValueError: see ``read_cola``, ``downstream.pooled_features`` and
      ``downstream.train_probe``.
  """
  train_sentences, train_labels = read_cola(train_path)
  dev_sentences, dev_labels = read_cola(dev_path)
  subset = downstream.train_subset(len(train_sentences), probe)
  logging.info("CoLA: %d of %d training sentences, %d dev sentences.", subset.size,
               len(train_sentences), len(dev_sentences))

  def cache(name):
    return None if cache_dir is None else os.path.join(os.fspath(cache_dir), name)

  train_features = downstream.pooled_features(
      embedder, [train_sentences[i] for i in subset], cache_path=cache(TRAIN_CACHE),
      batch_size=batch_size, model_fingerprint=model_fingerprint)
  dev_features = downstream.pooled_features(
      embedder, dev_sentences, cache_path=cache(DEV_CACHE), batch_size=batch_size,
      model_fingerprint=model_fingerprint)
  result = downstream.train_probe(train_features, train_labels[subset], dev_features,
                                  dev_labels, probe, save_frozen=save_frozen)
  majority = int(np.argmax(np.bincount(train_labels, minlength=2)))
  result["majority_baseline"] = float(np.mean(dev_labels == majority))
  logging.info("CoLA probe: dev MCC %.4f, accuracy %.4f.", result["matthews_corrcoef"],
               result["accuracy"])
  return result
