"""One-matrix one-shot pruning: SparseGPT (obs), Wanda, magnitude; Gram accumulation."""

import numpy as np
import pytest

from prunelm_tf import data as data_lib
from prunelm_tf.compression.shared.calibration import collect_grams
from prunelm_tf.compression.shared.layerwise import (GramAccumulator, bias_correction,
                                                     prune_magnitude, prune_obs,
                                                     prune_obs_affine, prune_wanda,
                                                     reconstruction_error)
from prunelm_tf.compression.shared.layerwise import _upper_inverse_cholesky  # the O(n^3) step
from prunelm_tf.elmo import load_elmo


def _inputs(seed=0, n=400, in_dim=20, dead=()):
  """Correlated inputs (as real activations are), with some inputs always zero."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, in_dim)) @ rng.normal(size=(in_dim, in_dim)) + rng.normal(size=in_dim)
  x[:, list(dead)] = 0.0
  return x


def _gram(x):
  acc = GramAccumulator(x.shape[1])
  acc.add(x)
  return acc.gram()


def _split_rounding(k, n, cut):
  return (2 * k * cut + n) // (2 * n)


def naive_obs(weight, gram, sparsity, block_size, damp, frozen_last=False):
  """SparseGPT written out: explicit inverses of the trailing H, eager updates of all later rows.

  With ``frozen_last`` the last row is never pruned (and the zeros are counted without it).
  """
  in_dim = weight.shape[0]
  h = gram + damp * np.mean(np.diag(gram)) * np.eye(in_dim)
  w = weight.astype(np.float64).copy()
  prunable = in_dim - 1 if frozen_last else in_dim
  k = int(round(sparsity * prunable * w.shape[1]))
  for start in range(0, in_dim, block_size):
    end = min(start + block_size, in_dim)
    k_block = (_split_rounding(k, prunable, min(end, prunable)) -
               _split_rounding(k, prunable, min(start, prunable)))
    inv_diag = np.array([np.linalg.inv(h[j:, j:])[0, 0] for j in range(start, end)])
    score = w[start:end] ** 2 / inv_diag[:, None]  # w^2 / [chol(H^-1)]_jj^2
    if frozen_last and end == in_dim:
      score[-1] = np.inf
    mask = np.zeros(score.shape, bool)
    mask.reshape(-1)[np.argsort(score.reshape(-1), kind="stable")[:k_block]] = True
    for j in range(start, end):
      h_inv = np.linalg.inv(h[j:, j:])
      q = np.where(mask[j - start], 0.0, w[j])
      w[j:] -= np.outer(h_inv[0], (w[j] - q) / h_inv[0, 0])
      w[j] = q
  return w


def test_gram_accumulator_mean_over_batches_and_counts_as_repeats():
  x = _inputs(n=30, in_dim=5)
  acc = GramAccumulator(5)
  acc.add(x[:10].astype(np.float32))
  acc.add(x[10:])
  assert acc.count == 30
  np.testing.assert_allclose(acc.gram(), x.T @ x / 30, rtol=1e-6)
  weighted = GramAccumulator(5)
  weighted.add(x[:3], counts=np.array([2, 0, 1]))
  np.testing.assert_allclose(weighted.gram(), _gram(x[[0, 0, 2]]), rtol=1e-12)
  assert weighted.count == 3
  np.testing.assert_allclose(weighted.mean(), x[[0, 0, 2]].mean(axis=0), rtol=1e-12)


def test_gram_accumulator_rejects_bad_input():
  acc = GramAccumulator(4)
  with pytest.raises(ValueError, match="no input rows were added"):
    acc.gram()
  with pytest.raises(ValueError, match="no input rows were added"):
    acc.mean()
  with pytest.raises(ValueError, match=r"shape \[n, 4\], got \(3, 5\)"):
    acc.add(np.zeros((3, 5)))
  with pytest.raises(ValueError, match="non-negative integers"):
    acc.add(np.zeros((3, 4)), counts=np.array([1, -1, 1]))
  with pytest.raises(ValueError, match="in_dim >= 1"):
    GramAccumulator(0)


@pytest.mark.parametrize("block_size", [1, 5, 8, 20, 128])
def test_obs_matches_sparsegpt_written_out(block_size):
  x = _inputs(in_dim=20)
  weight = np.random.default_rng(1).normal(size=(20, 7))
  ours = prune_obs(weight, _gram(x), 0.55, block_size=block_size, damp=0.01)
  np.testing.assert_allclose(ours, naive_obs(weight, _gram(x), 0.55, block_size, 0.01),
                             atol=1e-9)


@pytest.mark.parametrize("n", [5, 256, 600])
def test_inverse_cholesky_factor_beyond_the_block_recursion(n):
  gram = _gram(_inputs(n=2 * n, in_dim=n))
  u = _upper_inverse_cholesky(gram, 0.01)
  damped = gram + 0.01 * np.mean(np.diag(gram)) * np.eye(n)
  np.testing.assert_array_equal(u, np.triu(u))
  np.testing.assert_allclose(u.T @ u @ damped, np.eye(n), atol=1e-8)


@pytest.mark.parametrize("block_size", [1, 7, 21])
def test_affine_obs_is_obs_with_the_bias_as_a_last_constant_input(block_size):
  x = _inputs(in_dim=20)
  rng = np.random.default_rng(7)
  weight, bias = rng.normal(size=(20, 6)), rng.normal(size=6)
  acc = GramAccumulator(20)
  acc.add(x)
  pruned, new_bias = prune_obs_affine(weight, bias, acc.gram(), acc.mean(), 0.6,
                                      block_size=block_size)
  augmented = np.hstack([x, np.ones((len(x), 1))])
  expected = naive_obs(np.vstack([weight, bias]), _gram(augmented), 0.6, block_size, 0.01,
                       frozen_last=True)
  np.testing.assert_allclose(pruned, expected[:-1], atol=1e-9)
  np.testing.assert_allclose(new_bias, expected[-1], atol=1e-9)
  assert pruned.size - np.count_nonzero(pruned) == 72
  # Output error of the affine map, as reconstruction_error reports it.
  direct = (np.sum((x @ weight + bias - x @ pruned - new_bias) ** 2) /
            np.sum((x @ weight) ** 2))
  assert reconstruction_error(weight, pruned, acc.gram(), mean=acc.mean(),
                              bias_change=bias - new_bias) == pytest.approx(direct, rel=1e-9)


def test_bias_updates_reduce_the_error_of_inputs_with_a_mean():
  x = _inputs(in_dim=16) + 3.0  # far from zero mean, as relu or padding windows are
  acc = GramAccumulator(16)
  acc.add(x)
  rng = np.random.default_rng(8)
  weight, bias = rng.normal(size=(16, 5)), rng.normal(size=5)
  gram, mean = acc.gram(), acc.mean()
  plain = prune_obs(weight, gram, 0.8)
  affine, new_bias = prune_obs_affine(weight, bias, gram, mean, 0.8)
  assert (reconstruction_error(weight, affine, gram, mean=mean, bias_change=bias - new_bias)
          < reconstruction_error(weight, plain, gram))
  wanda = prune_wanda(weight, gram, 0.8)
  corrected = bias_correction(weight, wanda, bias, mean)
  np.testing.assert_allclose((x @ wanda + corrected).mean(0), (x @ weight + bias).mean(0),
                             atol=1e-9)
  assert (reconstruction_error(weight, wanda, gram, mean=mean, bias_change=bias - corrected)
          < reconstruction_error(weight, wanda, gram))
  with pytest.raises(ValueError, match=r"bias \[5\] and mean input \[16\]"):
    prune_obs_affine(weight, bias[:4], gram, mean, 0.5)


@pytest.mark.parametrize("shape", [(20, 7), (13, 3), (1, 9), (24, 1)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.8, 0.99])
@pytest.mark.parametrize("dead", [(), (2,)])
def test_every_method_reaches_exactly_round_sparsity_size_zeros(shape, sparsity, dead):
  dead = [d for d in dead if d < shape[0]]
  x = _inputs(in_dim=shape[0], dead=dead)
  gram = _gram(x)
  weight = np.random.default_rng(2).normal(size=shape).astype(np.float32)
  expected = round(sparsity * weight.size)
  bias = np.ones(shape[1], np.float32)
  for pruned in (prune_obs(weight, gram, sparsity, block_size=4),
                 prune_obs(weight, gram, sparsity),
                 prune_obs_affine(weight, bias, gram, x.mean(0), sparsity, block_size=4)[0],
                 prune_wanda(weight, gram, sparsity),
                 prune_magnitude(weight, sparsity)):
    assert pruned.shape == weight.shape and pruned.dtype == np.float32
    assert pruned.size - np.count_nonzero(pruned) == expected


def test_obs_zeroes_dead_inputs_and_counts_them_in_the_target():
  x = _inputs(in_dim=12, dead=(3, 7))
  weight = np.random.default_rng(3).normal(size=(12, 5))
  pruned = prune_obs(weight, _gram(x), 0.5, block_size=4)
  np.testing.assert_array_equal(pruned[[3, 7]], 0.0)
  assert pruned.size - np.count_nonzero(pruned) == 30
  # More dead entries than the target: only (the smallest of) those are zeroed.
  pruned = prune_obs(weight, _gram(x), 0.1)
  assert pruned.size - np.count_nonzero(pruned) == 6
  changed = pruned != weight
  assert changed[[3, 7]].sum() == 6 and not changed[np.r_[0:3, 4:7, 8:12]].any()


def test_wanda_prunes_lowest_activation_weighted_magnitude_per_output_unit():
  x = _inputs(in_dim=10)
  gram = _gram(x)
  weight = np.random.default_rng(4).normal(size=(10, 6)).astype(np.float32)
  pruned = prune_wanda(weight, gram, 0.45)  # 27 zeros: 4 or 5 per output unit
  per_unit = (pruned == 0).sum(axis=0)
  assert sorted(per_unit) == [4, 4, 4, 5, 5, 5]
  kept = pruned != 0
  np.testing.assert_array_equal(pruned[kept], weight[kept])
  score = np.abs(weight) * np.sqrt(np.diag(gram))[:, None]
  for c in range(6):
    assert score[~kept[:, c], c].max() <= score[kept[:, c], c].min()


def test_same_inputs_same_masks_and_inputs_untouched():
  x = _inputs(in_dim=16)
  gram = _gram(x)
  weight = np.random.default_rng(5).normal(size=(16, 8)).astype(np.float32)
  # Ties in the scores are broken by position, not at random.
  weight[:4] = 1.0
  before, gram_before = weight.copy(), gram.copy()
  for fn in (lambda: prune_obs(weight, gram, 0.6, block_size=4),
             lambda: prune_wanda(weight, gram, 0.6),
             lambda: prune_magnitude(weight, 0.6)):
    np.testing.assert_array_equal(fn(), fn())
  np.testing.assert_array_equal(weight, before)
  np.testing.assert_array_equal(gram, gram_before)


def test_reconstruction_error_is_relative_output_error():
  x = _inputs(in_dim=9)
  rng = np.random.default_rng(6)
  weight = rng.normal(size=(9, 4))
  pruned = prune_magnitude(weight, 0.5)
  direct = np.sum((x @ weight - x @ pruned) ** 2) / np.sum((x @ weight) ** 2)
  assert reconstruction_error(weight, pruned, _gram(x)) == pytest.approx(direct, rel=1e-9)
  assert reconstruction_error(weight, weight, _gram(x)) == 0.0


def test_bad_arguments_are_refused_with_the_rule():
  weight = np.ones((4, 3), np.float32)
  gram = np.eye(4)
  with pytest.raises(ValueError, match=r"0 <= sparsity < 1, got 1.0"):
    prune_obs(weight, gram, 1.0)
  with pytest.raises(ValueError, match=r"0 <= sparsity < 1, got -0.1"):
    prune_wanda(weight, gram, -0.1)
  with pytest.raises(ValueError, match=r"\[4, 4\] for this kernel; got \(3, 3\)"):
    prune_obs(weight, np.eye(3), 0.5)
  bad = np.eye(4)
  bad[1, 2] = np.nan
  with pytest.raises(ValueError, match="non-finite"):
    prune_obs(weight, bad, 0.5)
  with pytest.raises(ValueError, match="block_size >= 1"):
    prune_obs(weight, gram, 0.5, block_size=0)
  with pytest.raises(ValueError, match="damp >= 0"):
    prune_obs(weight, gram, 0.5, damp=-1.0)
  with pytest.raises(ValueError, match=r"Keras kernel \[in, out\]"):
    prune_obs(np.ones((2, 2, 2)), np.eye(4), 0.5)
  # A rank-deficient H without dampening cannot be inverted: the fix is named.
  x = _inputs(n=3, in_dim=6)
  with pytest.raises(ValueError, match="Raise damp"):
    prune_obs(np.ones((6, 2)), _gram(x), 0.5, damp=0.0)
  # Boundaries that pass: 0 sparsity (a copy) and damp 0 on a full-rank H.
  np.testing.assert_array_equal(prune_obs(weight, gram, 0.0), weight)
  assert np.count_nonzero(prune_obs(weight, gram, 0.5, damp=0.0)) == 6


@pytest.fixture(scope="module")
def elmo_inputs(shared_data):
  """Real inputs of real ELMo matrices: the fixture fed with PTB validation sentences."""
  root = shared_data / "elmo_fixture"
  model, config = load_elmo(root / "options.json", root / "lm_weights.hdf5")
  sentences = data_lib.read_sentences(
      data_lib.open_corpus(str(shared_data / "ptb" / "ptb.valid.txt"), max_sentences=400))

  def batches(part):
    return [b["char_ids"].numpy() for b in data_lib.make_dataset(
        part, data_lib.Vocabulary(["<S>", "</S>", "<UNK>"]), batch_size=50, char_inputs=True,
        shuffle=False)]

  names = ["forward_lstm_1/kernel", "backward_lstm_0/projection", "highway_0/carry_kernel"]
  calibration = collect_grams(model, names, batches(sentences[:200]))
  heldout = collect_grams(model, names, batches(sentences[200:]))
  return {n: (getattr(model.get_layer(n.split("/")[0]), n.split("/")[1]).numpy(),
              calibration[n].gram(), heldout[n].gram()) for n in names}


@pytest.mark.parametrize("name", ["forward_lstm_1/kernel", "backward_lstm_0/projection",
                                  "highway_0/carry_kernel"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_obs_reconstructs_real_inputs_better_than_magnitude_and_wanda(elmo_inputs, name,
                                                                      sparsity):
  weight, calibration, heldout = elmo_inputs[name]
  assert weight.shape[0] == calibration.shape[0]
  pruned = {"obs": prune_obs(weight, calibration, sparsity),
            "wanda": prune_wanda(weight, calibration, sparsity),
            "magnitude": prune_magnitude(weight, sparsity)}
  for p in pruned.values():
    assert p.size - np.count_nonzero(p) == round(sparsity * weight.size)
  for gram in (calibration, heldout):
    error = {m: reconstruction_error(weight, p, gram) for m, p in pruned.items()}
    assert error["obs"] < error["wanda"] and error["obs"] < error["magnitude"], error
