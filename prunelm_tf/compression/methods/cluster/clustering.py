"""Weight clustering (weight sharing): each matrix keeps only k distinct nonzero values.

Deep Compression's second stage (Han et al., 2016): after pruning, the
nonzero weights of a matrix are replaced by the nearest of k centroids found
by 1-D k-means, so the matrix holds k values (+ exact zeros). The count of
weights, their positions and the sparsity are unchanged, so the model runs as
before; what shrinks is the *information* per weight: a dynamic-range TFLite
file stores each weight as one int8 code, and with k values per matrix those
codes have log2(k) bits of entropy or less, which the zip of the file turns
into bytes (measured: a 512x2048 matrix of 16 values gzips to 0.59 of the
unclustered int8 file, 8 values to 0.44).

Zeros stay zero and never become a centroid's members (sparsity preserving,
as tfmot's ``preserve_sparsity``), so clustering composes with any pruning.
k-means is Lloyd's algorithm in one dimension, exact per step (sorted values,
boundaries at the midpoints between centroids), started from the quantiles of
the values (tfmot's "density-based" start), so it is deterministic.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from prunelm_tf.compression.shared.targets import prunable_weights

keras = tf.keras

MAX_ITERATIONS = 100


def kmeans_1d(values: np.ndarray, k: int, *, weights: Optional[np.ndarray] = None,
              max_iterations: int = MAX_ITERATIONS) -> Tuple[np.ndarray, np.ndarray]:
  """1-D k-means of ``values`` (any shape): ``(centroids [k'], assignment like values)``.

  Minimises sum_i weights_i * (values_i - c_{a(i)})^2; ``weights`` (same shape,
  >= 0) default to 1. Started from the weighted quantiles (i + 0.5) / k; stops
  when no value changes cluster. Fewer than k distinct values give one
  centroid per distinct value (k' <= k, centroids sorted ascending).

  Raises:
    ValueError: k < 1, no values, non-finite values or weights.
  """
  if k < 1:
    raise ValueError(f"k-means needs k >= 1 clusters, got {k}.")
  flat = np.asarray(values, np.float64).reshape(-1)
  if flat.size == 0:
    raise ValueError("k-means of an empty set of values.")
  if not np.all(np.isfinite(flat)):
    raise ValueError("k-means of non-finite values.")
  w = np.ones_like(flat) if weights is None else np.asarray(weights, np.float64).reshape(-1)
  if w.shape != flat.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
    raise ValueError("k-means weights must be finite, >= 0 and shaped like the values.")
  order = np.argsort(flat, kind="stable")
  x, wx = flat[order], w[order]
  distinct = np.unique(x)
  if distinct.size <= k:
    centroids = distinct
  else:
    cum_w = np.concatenate([[0.0], np.cumsum(wx)])
    cw, total = cum_w[1:], cum_w[-1]
    if total <= 0:  # no weight anywhere: plain quantiles
      cw, total = np.arange(1, x.size + 1, dtype=np.float64), float(x.size)
    positions = np.searchsorted(cw, (np.arange(k) + 0.5) / k * total)
    centroids = np.unique(x[np.minimum(positions, x.size - 1)])
    cum_wx = np.concatenate([[0.0], np.cumsum(wx * x)])
    cum_x = np.concatenate([[0.0], np.cumsum(x)])
    bounds = None
    for _ in range(max_iterations):
      # Cluster j holds x[starts[j]:starts[j+1]] (x sorted).
      new_bounds = np.searchsorted(x, (centroids[:-1] + centroids[1:]) / 2, side="right")
      if bounds is not None and np.array_equal(new_bounds, bounds):
        break
      bounds = new_bounds
      starts = np.concatenate([[0], bounds, [x.size]])
      mass = cum_w[starts[1:]] - cum_w[starts[:-1]]
      sums = cum_wx[starts[1:]] - cum_wx[starts[:-1]]
      count = starts[1:] - starts[:-1]
      # An empty or weightless cluster keeps its centroid (the plain mean if it has values).
      plain = np.where(count > 0, (cum_x[starts[1:]] - cum_x[starts[:-1]])
                       / np.maximum(count, 1), centroids)
      centroids = np.where(mass > 0, sums / np.where(mass > 0, mass, 1.0), plain)
      centroids = np.unique(centroids)
  edges = (centroids[:-1] + centroids[1:]) / 2
  assignment = np.searchsorted(edges, flat, side="right")
  return centroids, assignment.reshape(np.shape(values))


def cluster_values(values: np.ndarray, k: int, *, weights: Optional[np.ndarray] = None
                   ) -> Tuple[np.ndarray, Dict]:
  """``values`` with every nonzero replaced by the nearest of its k centroids; zeros kept.

  Returns ``(clustered, record)``: the array (same dtype and shape) and
  ``{"clusters", "distinct_values", "relative_error", "nonzeros"}`` where
  relative_error is ||W - Ŵ||_F / ||W||_F (with ``weights``, also
  "weighted_relative_error": the same with every entry weighted).
  """
  values = np.asarray(values)
  nonzero = values != 0
  out = np.zeros_like(values)
  record = {"clusters": k, "nonzeros": int(nonzero.sum())}
  if record["nonzeros"]:
    w = None if weights is None else np.asarray(weights)[nonzero]
    centroids, assignment = kmeans_1d(values[nonzero], k, weights=w)
    out[nonzero] = centroids[assignment].astype(values.dtype)
    # A centroid of nonzeros can round to 0 only for subnormal values; keep them nonzero.
    out[nonzero & (out == 0)] = values[nonzero & (out == 0)]
  norm = float(np.linalg.norm(values.astype(np.float64)))
  error = float(np.linalg.norm((values - out).astype(np.float64)))
  record["relative_error"] = error / norm if norm else 0.0
  if weights is not None:  # the objective k-means minimised, relative to the weights' own
    w = np.asarray(weights, np.float64)
    own = float(np.sum(w * values.astype(np.float64) ** 2))
    record["weighted_relative_error"] = (
        float(np.sum(w * (values - out).astype(np.float64) ** 2)) / own) ** 0.5 if own else 0.0
  record["distinct_values"] = int(np.unique(out[nonzero]).size)
  return out, record


def cluster_model(model: keras.Model, clusters: Dict[str, int],
                  weights: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, Dict]:
  """Clusters each named prunable weight of ``model`` in place to its number of values.

  Args:
    model: the biLM (not wrapped by tfmot).
    clusters: ``{"layer/weight": k}``; weights not named stay as they are.
    weights: optional per-entry importance ``{"layer/weight": array like the weight}``.

  Returns:
    ``{"layer/weight": record of cluster_values}``.

  Raises:
    ValueError: a name that is not a prunable weight of the model.
  """
  variables = prunable_weights(model)
  unknown = set(clusters) - set(variables)
  if unknown:
    raise ValueError(f"not prunable weights of this model: {sorted(unknown)}.")
  records = {}
  for name, k in clusters.items():
    values = variables[name].numpy()
    clustered, records[name] = cluster_values(values, k, weights=(weights or {}).get(name))
    variables[name].assign(clustered)
  return records


def cluster_ids(values: np.ndarray) -> Tuple[np.ndarray, int]:
  """``(ids like values, segments)``: each nonzero's index among the distinct nonzero values.

  The clustering of a clustered matrix, read off its values: the i-th
  smallest distinct nonzero value is cluster i; zeros get the last id
  (``segments - 1``), the segment that stays zero.
  """
  values = np.asarray(values)
  distinct = np.unique(values[values != 0])
  ids = np.where(values != 0, np.searchsorted(distinct, values), distinct.size)
  return ids.astype(np.int32), int(distinct.size) + 1


class TieToClusters(keras.callbacks.Callback):
  """Keeps clustered weights shared while a model trains (Deep Compression's centroid training).

  Training moves every weight on its own; before each step (and after the
  last) every member of a cluster is set to the mean of its members, and the
  zeros to zero. The assignment is fixed when the callback is made, so each
  step is a projected-gradient step onto "the same k values in the same
  places": with plain SGD the shared value moves by the members' mean
  gradient. The matrices keep at most their k values and their exact zeros.
  """

  def __init__(self, variables: Dict[str, tf.Variable]):
    super().__init__()
    # (name, variable, flat ids, segments, 1 for the value segments and 0 for the zeros').
    self._tied = []
    for name, variable in variables.items():
      ids, segments = cluster_ids(variable.numpy())
      keep = tf.constant(np.arange(segments) < segments - 1, variable.dtype)
      self._tied.append((name, variable, tf.constant(ids.reshape(-1)), segments, keep))

  @property
  def segments(self) -> Dict[str, int]:
    """``{name: distinct nonzero values}`` of the tied matrices."""
    return {name: segments - 1 for name, _, _, segments, _ in self._tied}

  @tf.function
  def _project(self):
    for _, variable, ids, segments, keep in self._tied:
      means = tf.math.unsorted_segment_mean(tf.reshape(variable, [-1]), ids, segments) * keep
      variable.assign(tf.reshape(tf.gather(means, ids), tf.shape(variable)))

  def on_train_begin(self, logs=None):
    self._project()

  def on_train_batch_begin(self, batch, logs=None):
    self._project()

  def on_epoch_end(self, epoch, logs=None):
    self._project()
