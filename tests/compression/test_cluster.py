"""Weight clustering: 1-D k-means, the cluster method, its refusals and its exports."""

import os

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig
from tests.dense_reuse import compress
from prunelm_tf.compression.methods.cluster.clustering import (TieToClusters, cluster_ids,
                                                               cluster_values, kmeans_1d)
from prunelm_tf.compression.methods.cluster.method import bits_for
from tests.compression.method_context import method_context, tiny_source


def test_kmeans_finds_separated_clusters_and_is_deterministic():
  rng = np.random.default_rng(0)
  centres = np.array([-1.0, 0.5, 2.0])
  values = np.concatenate([c + 0.01 * rng.standard_normal(300) for c in centres])
  rng.shuffle(values)
  centroids, assignment = kmeans_1d(values, 3)
  np.testing.assert_allclose(centroids, centres, atol=0.005)
  assert np.all(np.abs(values - centroids[assignment]) < 0.1)
  again, again_assignment = kmeans_1d(values, 3)
  np.testing.assert_array_equal(centroids, again)
  np.testing.assert_array_equal(assignment, again_assignment)


def test_kmeans_error_falls_with_k_and_is_exact_with_enough_clusters():
  values = np.random.default_rng(1).laplace(size=5000)
  errors = []
  for k in (2, 4, 16, 64):
    centroids, assignment = kmeans_1d(values, k)
    assert len(centroids) == k and np.all(np.diff(centroids) > 0)
    errors.append(float(np.mean((values - centroids[assignment]) ** 2)))
  assert errors == sorted(errors, reverse=True) and errors[-1] < 0.01 * errors[0]
  # Lloyd's fixed point: every centroid is the mean of its members.
  for j, c in enumerate(centroids):
    assert c == pytest.approx(values[assignment == j].mean(), rel=1e-9)
  few = np.array([3.0, -1.0, 3.0, 7.0])
  centroids, assignment = kmeans_1d(few, 8)
  np.testing.assert_array_equal(centroids[assignment], few)


def test_weighted_kmeans_follows_the_weights():
  values = np.array([0.0, 1.0, 10.0, 11.0])
  plain, _ = kmeans_1d(values, 1)
  heavy, _ = kmeans_1d(values, 1, weights=np.array([1.0, 1.0, 1.0, 97.0]))
  assert plain[0] == pytest.approx(5.5) and heavy[0] == pytest.approx(
      (0 + 1 + 10 + 97 * 11) / 100)
  with pytest.raises(ValueError, match="weights"):
    kmeans_1d(values, 1, weights=np.array([1.0, -1.0, 1.0, 1.0]))
  with pytest.raises(ValueError, match="non-finite"):
    kmeans_1d(np.array([1.0, np.nan]), 1)
  with pytest.raises(ValueError, match="k >= 1"):
    kmeans_1d(values, 0)


def test_cluster_values_keeps_every_zero_and_at_most_k_values():
  rng = np.random.default_rng(2)
  w = rng.standard_normal((64, 48)).astype(np.float32)
  w[rng.random(w.shape) < 0.7] = 0.0
  out, record = cluster_values(w, 16)
  assert out.dtype == np.float32 and out.shape == w.shape
  np.testing.assert_array_equal(out == 0, w == 0)  # same sparsity, same positions
  assert record["distinct_values"] == len(np.unique(out[out != 0])) <= 16
  assert record["nonzeros"] == int((w != 0).sum())
  assert 0 < record["relative_error"] < 0.15  # 16 values of a Gaussian: about 0.1
  _, coarse = cluster_values(w, 4)
  assert coarse["relative_error"] > record["relative_error"]


@pytest.mark.parametrize("value,bits", [(0.5, 4), (0.625, 3), (0.75, 2), (0.875, 1)])
def test_sweep_value_is_the_fraction_of_int8_bits_removed(value, bits):
  assert bits_for(value) == bits


@pytest.mark.parametrize("value", [0.3, 0.95, 0.0])
def test_a_value_that_is_not_whole_bits_is_refused(value):
  with pytest.raises(ValueError, match="whole number of bits"):
    bits_for(value)


def test_cluster_refuses_before_any_work(tiny_run_dir, tiny_text, tmp_path):
  for sweep, match in (((0.3,), "whole number of bits"), ((0.0,), "removes no bits")):
    run_dir = str(tmp_path / f"bad_{sweep[0]}")
    with pytest.raises(ValueError, match=match):
      compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="cluster",
                              sparsity_sweep=sweep, tflite_quantization=()), run_dir)
    assert not os.path.exists(os.path.join(run_dir, "config.json"))
  run_dir = str(tmp_path / "too_small")
  with pytest.raises(ValueError, match="nonzero weights, fewer than"):
    compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="cluster",
                            method_options={"min_weights_per_cluster": 10_000},
                            sparsity_sweep=(0.5,), tflite_quantization=()), run_dir)
  assert not os.path.exists(os.path.join(run_dir, "config.json"))


def test_data_weighting_lowers_the_error_where_the_inputs_are_large():
  """Inputs of very different energy: weighted k-means spends its values on the rows that
  matter, so the weighted error (the diagonal part of ||XW - XŴ||²) falls."""
  rng = np.random.default_rng(3)
  w = rng.standard_normal((64, 32))
  w[:8] *= 0.1  # the rows of the strong inputs hold small weights
  energy = np.broadcast_to(np.where(np.arange(64) < 8, 100.0, 0.01)[:, None], w.shape)

  def weighted_error(out):
    return np.sum(energy * (w - out) ** 2)
  plain_out, _ = cluster_values(w, 4)
  weighted_out, _ = cluster_values(w, 4, weights=energy)
  assert weighted_error(weighted_out) < 0.5 * weighted_error(plain_out)
  weighted_out, weighted = cluster_values(w, 4, weights=energy)
  assert weighted["weighted_relative_error"] == pytest.approx(
      (weighted_error(weighted_out) / np.sum(energy * w ** 2)) ** 0.5)


def test_data_weighting_needs_calibration_and_full_matrices(tiny_run_dir, tiny_text, tmp_path):
  import types  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.methods import get_method  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match="--calibration"):
    CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="cluster",
                   method_options={"weighting": "data"}, sparsity_sweep=(0.5,))
  method = get_method("cluster")
  factorized = types.SimpleNamespace(config=types.SimpleNamespace(ranks=(("softmax/kernel", 2),)),
                                     description="a low-rank variant")
  with pytest.raises(ValueError, match="low-rank factors"):
    method.check(method.Options(weighting="data"), None, factorized)
  options = method.Options(weighting="data")
  done = method.compress(options, method_context(
      tiny_source(tiny_run_dir), tmp_path / "data", target=0.75, calibration=tiny_text,
      max_sentences=20, layer_sparsity=(("softmax", 0.0),)))
  v = done.metrics
  assert method.variant_name(options, 0.75) == "cluster_data_4" and v["calibration_tokens"] > 0
  lstm = v["clustering"]["forward_lstm_0/kernel"]
  assert lstm["distinct_values"] <= 4 and 0 < lstm["weighted_relative_error"] < 1
  assert "weighted_relative_error" not in v["clustering"].get("word_embedding/embeddings", {})


def test_tie_to_clusters_sets_each_cluster_to_its_mean_and_keeps_the_zeros():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  start = np.array([[0.5, 0.0, -1.0], [0.5, -1.0, 0.0], [2.0, 0.5, 2.0]], np.float32)
  ids, segments = cluster_ids(start)
  assert segments == 4 and ids[0, 1] == ids[1, 2] == 3  # -1, 0.5, 2 and the zeros
  variable = tf.Variable(start)
  tie = TieToClusters({"m": variable})
  assert tie.segments == {"m": 3}
  moved = start + np.arange(9, dtype=np.float32).reshape(3, 3) * 0.1
  variable.assign(moved)
  tie.on_train_batch_begin(0)
  out = variable.numpy()
  for value in (0.5, -1.0, 2.0):
    members = start == value
    np.testing.assert_allclose(out[members], moved[members].mean(), rtol=1e-6)
  np.testing.assert_array_equal(out[start == 0], 0.0)
  assert len(np.unique(out[out != 0])) == 3
