"""Which weights are pruned, to what target, and how sparse they really are.

Weight names are ``<layer>/<weight>`` as the biLM defines them, e.g.
``forward_lstm_0/kernel``, ``softmax/kernel``, ``char_cnn/kernel_2``,
``word_embedding/embeddings``. The prunable weights of a layer are those its
``get_prunable_weights`` returns (tfmot's registry for built-in layers): never
biases.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

keras = tf.keras


def _short_name(variable: tf.Variable) -> str:
  return variable.name.split("/")[-1].split(":")[0]


def prunable_weights(model: keras.Model) -> Dict[str, tf.Variable]:
  """``{"layer/weight": variable}`` for every prunable matrix of ``model``, in layer order."""
  out = {}
  for layer in model.layers:
    inner = getattr(layer, "layer", layer)  # a tfmot wrapper holds the real layer
    if hasattr(inner, "get_prunable_weights"):
      weights = inner.get_prunable_weights()
    elif prune_registry.PruneRegistry.supports(inner):
      weights = [getattr(inner, name) for name in
                 prune_registry.PruneRegistry._weight_names(inner)]  # pylint: disable=protected-access
    else:
      weights = []
    for w in weights:
      out[f"{inner.name}/{_short_name(w)}"] = w
  return out


def resolve_targets(names: Sequence[str], default: float,
                    overrides: Sequence[Tuple[str, float]]) -> Dict[str, float]:
  """Target sparsity per weight: ``default`` unless a pattern matches (last match wins).

  Patterns are regular expressions matched against the whole weight name
  (``re.fullmatch``); a pattern naming a layer (``softmax``) also matches its
  weights (``softmax/kernel``).

  Raises:
    ValueError: a pattern matches no weight (a typo would otherwise silently
      prune what the user meant to skip).
  """
  targets = {n: default for n in names}
  for pattern, value in overrides:
    try:
      regex = re.compile(pattern)
    except re.error as e:
      raise ValueError(f"--layer_sparsity pattern {pattern!r} is not a valid regular "
                       f"expression: {e}.") from e
    matched = [n for n in names if regex.fullmatch(n) or regex.fullmatch(n.split("/")[0])]
    if not matched:
      raise ValueError(
          f"--layer_sparsity pattern {pattern!r} matches no prunable weight. The prunable "
          f"weights are: {', '.join(names)}.")
    for n in matched:
      targets[n] = value
  return targets


def overridden_names(names: Sequence[str], overrides: Sequence[Tuple[str, float]]) -> List[str]:
  """The weights that some ``--layer_sparsity`` pattern sets (same matching as above)."""
  regexes = [re.compile(p) for p, _ in overrides]
  return [n for n in names
          if any(r.fullmatch(n) or r.fullmatch(n.split("/")[0]) for r in regexes)]


def measure_sparsity(model: keras.Model) -> Dict:
  """Measured on the weights themselves: ``{"overall", "per_weight": {name: fraction}}``.

  "overall" is the fraction of zeros over all prunable matrices together;
  "num_weights" gives each matrix's size, so that the sparsity of any subset
  (e.g. the embedder without the softmax) can be computed from the record.
  """
  per_weight, sizes = {}, {}
  zeros = total = 0
  for name, w in prunable_weights(model).items():
    values = w.numpy()
    z = int(values.size - np.count_nonzero(values))
    per_weight[name] = z / values.size
    sizes[name] = int(values.size)
    zeros += z
    total += values.size
  return {"overall": zeros / total if total else 0.0, "per_weight": per_weight,
          "num_weights": sizes}


def subset_sparsity(sparsity: Dict, keep, sizes: Optional[Dict[str, int]] = None
                    ) -> Optional[float]:
  """The fraction of zeros over the matrices of a `measure_sparsity` record for which
  ``keep(name)`` is true.

  ``sizes``: the matrix sizes to use when the record has none (records written
  before "num_weights" existed), e.g. the dense model's for a variant of the same
  shapes. None when neither gives the size of every kept matrix.
  """
  sizes = sparsity.get("num_weights") or sizes or {}
  names = [n for n in sparsity.get("per_weight", {}) if keep(n)]
  if not names or any(n not in sizes for n in names):
    return None
  total = sum(sizes[n] for n in names)
  return sum(sparsity["per_weight"][n] * sizes[n] for n in names) / total
