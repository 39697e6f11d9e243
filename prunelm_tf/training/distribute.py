"""Training on more than one machine: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``.

Every worker runs the same command with the same flags and its own run
folder; ``TF_CONFIG`` (TensorFlow's cluster description, one JSON object per
worker) says which worker it is::

  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}'

The steps of the training loop (`prunelm_tf.training.loop.Trainer`) then
run data-parallel: every worker reads the same global batch, takes its share
of the rows (row ``i`` goes to replica ``i mod num_replicas``), and the
gradients are summed over all replicas before one update, so a step is the
step of one process on the whole batch up to float summation order. tfmot's
mask updates run in the cross-replica context (``merge_call``) from the
mirrored weights, so every replica computes the same masks.

Without ``TF_CONFIG`` (or with a cluster of one worker) there is no strategy
and training runs as before, in one process.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional

import tensorflow as tf

TF_CONFIG = "TF_CONFIG"


def parse_tf_config(text: str) -> dict:
  """Checks ``TF_CONFIG``; returns it parsed.

  Raises:
    ValueError: not a JSON object with ``cluster.worker`` (a non-empty list of
      "host:port") and ``task`` ``{"type": "worker", "index": i}`` naming one
      of them; the message names TF_CONFIG and the fix.
  """
  fix = ("Set TF_CONFIG to '{\"cluster\": {\"worker\": [\"host1:port\", \"host2:port\"]}, "
         "\"task\": {\"type\": \"worker\", \"index\": I}}' with I this worker's position, or "
         "unset it to train in one process.")
  try:
    config = json.loads(text)
  except ValueError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}). {fix}") from None
  if not isinstance(config, dict):
    raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}. {fix}")
  cluster, task = config.get("cluster"), config.get("task")
  workers = cluster.get("worker") if isinstance(cluster, dict) else None
  if (not isinstance(workers, list) or not workers
      or not all(isinstance(w, str) and ":" in w for w in workers)):
    raise ValueError(f"TF_CONFIG needs cluster.worker, a non-empty list of \"host:port\"; got "
                     f"{cluster!r}. {fix}")
  if set(cluster) - {"worker", "chief"}:
    raise ValueError(f"TF_CONFIG's cluster may only hold \"worker\" (and \"chief\") jobs for "
                     f"MultiWorkerMirroredStrategy; got {sorted(cluster)}. {fix}")
  if (not isinstance(task, dict) or task.get("type") not in cluster
      or not isinstance(task.get("index"), int) or isinstance(task.get("index"), bool)
      or not 0 <= task["index"] < len(cluster[task["type"]])):
    raise ValueError(f"TF_CONFIG's task must name one of its workers, e.g. {{\"type\": "
                     f"\"worker\", \"index\": 0}}; got {task!r}. {fix}")
  return config


def strategy_from_environment(
    environ: Optional[Mapping[str, str]] = None) -> Optional[tf.distribute.Strategy]:
  """``MultiWorkerMirroredStrategy`` if ``TF_CONFIG`` describes more than one worker, else None.

  Call it when the program starts, before any TensorFlow operation runs (the
  strategy sets up the collective ops of this process).

  Raises:
    ValueError: ``TF_CONFIG`` is malformed (see `parse_tf_config`).
  """
  environ = os.environ if environ is None else environ
  text = environ.get(TF_CONFIG, "")
  if not text.strip():
    return None
  config = parse_tf_config(text)
  if sum(len(v) for v in config["cluster"].values()) < 2:
    return None
  return tf.distribute.MultiWorkerMirroredStrategy()


def num_replicas(strategy: Optional[tf.distribute.Strategy]) -> int:
  return 1 if strategy is None else strategy.num_replicas_in_sync
