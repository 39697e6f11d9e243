"""Whole units of a biLM (cells, filters, projection dimensions, layers): choosing and counting.

Shared by the methods that remove whole units (``structured``, ``layers``): which indices
are kept, the most important ones by a score, and the parameters a configuration holds.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np

from prunelm_tf.models.config import BiLMConfig, weight_shapes


def check_kept(what: str, kept: Sequence[int], size: int) -> np.ndarray:
  """``kept`` sorted, as int64 indices into ``size`` units.

  Raises:
    ValueError: nothing kept, or indices repeated or outside [0, size); ``what`` names the
      units in the message.
  """
  kept = np.asarray(sorted(int(k) for k in kept), np.int64)
  if kept.size == 0:
    raise ValueError(f"{what}: removing every unit ({size} of {size}) leaves no layer; keep at "
                     "least one (lower the target).")
  if len(set(kept.tolist())) != kept.size or kept[0] < 0 or kept[-1] >= size:
    raise ValueError(f"{what}: kept indices must be distinct and in [0, {size}), got "
                     f"{kept.tolist()}.")
  return kept


def most_important(scores: np.ndarray, count: int) -> List[int]:
  """Indices of the ``count`` highest scores, ascending (ties: the lower index)."""
  order = np.argsort(-np.asarray(scores), kind="stable")
  return sorted(int(i) for i in order[:count])


def matrix_parameters(config: BiLMConfig, names: Sequence[str]) -> int:
  """Parameters of the weights ``names`` (e.g. the prunable matrices) in ``build_bilm(config)``."""
  wanted = set(names)
  return sum(math.prod(shape) for n, shape, _ in weight_shapes(config) if n in wanted)
