"""The pruning patterns of benchmarks/sparse_tflite.py."""

import numpy as np
import pytest

from benchmarks.sparse_tflite import prune_matrix


def test_block_pruning_zeroes_whole_1x4_blocks_along_the_input_axis():
  w = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
  pruned = prune_matrix(w, 0.75, "block1x4")
  blocks = pruned.reshape(4, 4, 6)  # [input blocks, 4 inputs, outputs]
  zero = (blocks == 0).all(axis=1)
  assert ((blocks != 0).all(axis=1) | zero).all()  # each block is all kept or all zero
  assert zero.mean() == pytest.approx(0.75)
  kept = np.abs(w.reshape(4, 4, 6)).sum(axis=1)[~zero]
  assert kept.min() >= np.abs(w.reshape(4, 4, 6)).sum(axis=1)[zero].max()


def test_unstructured_pruning_removes_the_smallest_weights():
  w = np.arange(1, 21, dtype=np.float32).reshape(4, 5) * np.where(np.arange(20) % 2, 1, -1) \
      .reshape(4, 5)
  pruned = prune_matrix(w, 0.5, "unstructured")
  assert (pruned == 0).sum() == 10 and np.abs(pruned[pruned != 0]).min() == 11
