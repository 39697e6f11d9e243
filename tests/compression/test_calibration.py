"""Calibration of layer-wise pruning on tiny biLMs: the H of each matrix, the driver, bad input."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf import data as data_lib
from prunelm_tf.compression import prunable_weights
from prunelm_tf.compression.shared.calibration import collect_grams, prune_model_layerwise
from prunelm_tf.compression.shared.layerwise import reconstruction_error
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm

keras = tf.keras
CHAR = CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 8), (3, 4)), n_highway=2)
# Real sentences, cut to 10 positions (BOS + 9 tokens).
MAX_LENGTH = 10


@pytest.fixture(scope="module")
def ptb(shared_data):
  sentences = data_lib.read_sentences(
      data_lib.open_corpus(str(shared_data / "ptb" / "ptb.valid.txt"), max_sentences=60))
  counts = collections.Counter(t for s in sentences for t in s)
  vocab = data_lib.Vocabulary(list(data_lib.Vocabulary.SPECIAL_TOKENS) +
                              [w for w, _ in counts.most_common(40)])
  return sentences, vocab


def _model(encoder, vocab_size, seed=0):
  keras.utils.set_random_seed(seed)
  return build_bilm(BiLMConfig(vocab_size=vocab_size, token_encoder=encoder, lstm_dim=16,
                               projection_dim=8, n_layers=2, dropout=0.3, char_cnn=CHAR))


def _batches(ptb, encoder, start, count):
  sentences, vocab = ptb
  ds = data_lib.make_dataset(sentences[start:start + count], vocab, batch_size=8,
                             char_inputs=encoder == "char", shuffle=False, max_length=MAX_LENGTH)
  return [b["char_ids" if encoder == "char" else "token_ids"].numpy() for b in ds]


def _real(ids):
  return (ids > 0).any(-1) if ids.ndim == 3 else ids > 0


def _mean_gram(rows):
  rows = np.concatenate(rows).astype(np.float64)
  return rows.T @ rows / len(rows)


def _assert_gram_close(actual, expected):
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def _weights(model):
  return {n: w.numpy().copy() for n, w in prunable_weights(model).items()}


def test_word_model_grams_are_the_inputs_each_matrix_multiplies(ptb):
  model = _model("word", len(ptb[1]))
  batches = _batches(ptb, "word", 0, 24)
  names = ["forward_lstm_0/kernel", "forward_lstm_1/kernel", "softmax/kernel"]
  grams = {n: g.gram() for n, g in collect_grams(model, names, batches).items()}
  layer_out = keras.Model(model.inputs, model.get_layer("forward_lstm_1").output)
  layer_in = keras.Model(model.inputs, model.get_layer("forward_lstm_0").output)
  table = model.get_layer("word_embedding").embeddings.numpy()
  embeddings, inputs_1, previous_1, tops = [], [], [], []
  for ids in batches:
    real = _real(ids)
    embeddings.append(table[ids][real])
    inputs_1.append(layer_in(ids).numpy()[real])  # layer 1 input: layer 0 output (no skip)
    out = layer_out(ids).numpy()
    previous = np.concatenate([np.zeros_like(out[:, :1]), out[:, :-1]], axis=1)
    previous_1.append(previous[real])  # h_{t-1} of the forward direction
    outputs = model(ids, training=False)
    tops += [outputs["forward_hidden"].numpy()[real], outputs["backward_hidden"].numpy()[real]]
  _assert_gram_close(grams["forward_lstm_0/kernel"][:8, :8], _mean_gram(embeddings))
  _assert_gram_close(grams["forward_lstm_1/kernel"][:8, :8], _mean_gram(inputs_1))
  _assert_gram_close(grams["forward_lstm_1/kernel"][8:, 8:], _mean_gram(previous_1))
  _assert_gram_close(grams["softmax/kernel"], _mean_gram(tops))


def test_char_model_grams_cover_every_window_of_every_real_token(ptb):
  model = _model("char", 0)
  per_position = build_bilm(BiLMConfig(vocab_size=0, token_encoder="char", lstm_dim=16,
                                       projection_dim=8, n_layers=2, char_cnn=CHAR),
                            unique_tokens=False)
  per_position.set_weights(model.get_weights())
  batches = _batches(ptb, "char", 0, 24)
  names = ["char_cnn/kernel_2", "highway_0/carry_kernel", "highway_0/transform_kernel",
           "token_projection/kernel", "backward_lstm_0/kernel"]
  accumulators = collect_grams(model, names, batches)
  assert accumulators["highway_0/carry_kernel"] is accumulators["highway_0/transform_kernel"]
  grams = {n: a.gram() for n, a in accumulators.items()}
  cnn = model.get_layer("char_cnn")
  table = np.concatenate([np.zeros((1, 4), np.float32), cnn.char_embedding.numpy()])
  views = {n: keras.Model(per_position.inputs, per_position.get_layer(n).output)
           for n in ("char_cnn", "highway_1", "token_embedding")}
  windows, cnn_out, highway_out, embedding = [], [], [], []
  for ids in batches:
    real = _real(ids)
    chars = table[ids[real]]  # [tokens, 50, 4]
    windows.append(np.concatenate([chars[:, k:48 + k] for k in range(3)], -1).reshape(-1, 12))
    cnn_out.append(views["char_cnn"](ids).numpy()[real])
    highway_out.append(views["highway_1"](ids).numpy()[real])
    embedding.append(views["token_embedding"](ids).numpy()[real])
  assert accumulators["char_cnn/kernel_2"].count == sum(len(w) for w in windows)
  _assert_gram_close(grams["char_cnn/kernel_2"], _mean_gram(windows))
  _assert_gram_close(grams["highway_0/carry_kernel"], _mean_gram(cnn_out))
  _assert_gram_close(grams["token_projection/kernel"], _mean_gram(highway_out))
  _assert_gram_close(grams["backward_lstm_0/kernel"][:8, :8], _mean_gram(embedding))


def test_max_char_windows_weight_the_windows_max_pooling_selects(ptb):
  model = _model("char", 0)
  batches = _batches(ptb, "char", 0, 8)
  acc = collect_grams(model, ["char_cnn/kernel_1"], batches, char_windows="max")[
      "char_cnn/kernel_1"]
  cnn = model.get_layer("char_cnn")
  table = np.concatenate([np.zeros((1, 4), np.float32), cnn.char_embedding.numpy()])
  kernel, bias = cnn.kernels[1].numpy().reshape(8, 8), cnn.biases[1].numpy()
  selected = []
  for ids in batches:
    chars = table[ids[_real(ids)]]  # every real position, repeats included
    windows = np.concatenate([chars[:, :49], chars[:, 1:]], -1)  # [tokens, 49, 8]
    best = np.argmax(windows @ kernel + bias, axis=1)  # [tokens, 8 filters]
    selected += [windows[t, best[t, f]] for t in range(len(windows)) for f in range(8)]
  assert acc.count == len(selected)
  _assert_gram_close(acc.gram(), _mean_gram([np.array(selected)]))


@pytest.mark.parametrize("encoder,with_softmax", [("word", True), ("char", True),
                                                  ("char", False)])
@pytest.mark.parametrize("method", ["obs", "wanda"])
def test_driver_reaches_exact_targets_and_outputs_stay_finite(ptb, encoder, with_softmax, method):
  model = _model(encoder, len(ptb[1]) if with_softmax else 0)
  names = list(prunable_weights(model))
  targets = {n: 0.6 for n in names}
  targets[names[0]] = 0.0
  targets[names[-1]] = 0.35
  before = _weights(model)
  records = prune_model_layerwise(model, targets, _batches(ptb, encoder, 0, 24), method=method,
                                  block_size=8, heldout_batches=_batches(ptb, encoder, 24, 16))
  assert set(records) == set(names)
  for name, values in _weights(model).items():
    zeros = values.size - np.count_nonzero(values)
    assert zeros == round(targets[name] * values.size), name
    assert records[name]["sparsity"] == zeros / values.size
    if targets[name] == 0:
      np.testing.assert_array_equal(values, before[name])
      assert records[name]["method"] == "none"
    elif name == "word_embedding/embeddings":
      assert records[name]["method"] == "magnitude"
    else:
      r = records[name]
      assert r["method"] == method and r["num_tokens"] > 0 and r["seconds"] >= 0
      assert r["bias_updated"] == (not name.endswith("/projection"))
      assert 0 < r["calibration_error"] < 1 and 0 < r["heldout_error"] < 1.5, (name, r)
  ids = _batches(ptb, encoder, 40, 8)[0]
  for value in model(ids, training=False).values():
    assert np.isfinite(value.numpy()).all()


def test_each_stage_is_calibrated_through_the_model_pruned_so_far(ptb):
  dense = _model("word", len(ptb[1]))
  model = _model("word", len(ptb[1]))
  batches = _batches(ptb, "word", 0, 24)
  names = list(prunable_weights(model))
  records = prune_model_layerwise(model, {n: 0.5 for n in names}, batches, block_size=8)
  # One pass per stage: both directions together, a layer's projections after its kernels.
  stage = {n: r["stage"] for n, r in records.items()}
  assert stage["word_embedding/embeddings"] is None  # magnitude, pruned first
  assert stage["forward_lstm_0/kernel"] == stage["backward_lstm_0/kernel"] == 0
  assert stage["forward_lstm_0/projection"] == stage["backward_lstm_0/projection"] == 1
  assert stage["forward_lstm_1/kernel"] == 2 and stage["softmax/kernel"] == 4
  pruned_layers = {l.name: l.get_weights() for l in model.layers}
  # forward_lstm_1/kernel: the embedding and layer 0 pruned (biases updated), layer 1 dense.
  for name in ("forward_lstm_1", "backward_lstm_1", "softmax"):
    model.get_layer(name).set_weights(dense.get_layer(name).get_weights())
  name = "forward_lstm_1/kernel"
  acc = collect_grams(model, [name], batches)[name]
  kernel, bias, projection = dense.get_layer("forward_lstm_1").get_weights()
  pruned_kernel, pruned_bias, pruned_projection = pruned_layers["forward_lstm_1"]
  assert records[name]["bias_updated"]
  assert records[name]["calibration_error"] == pytest.approx(reconstruction_error(
      kernel, pruned_kernel, acc.gram(), mean=acc.mean(), bias_change=bias - pruned_bias),
      rel=1e-6)
  # Its projection (no bias): after its own kernel (and bias) were pruned.
  model.get_layer("forward_lstm_1").set_weights([pruned_kernel, pruned_bias, projection])
  name = "forward_lstm_1/projection"
  gram = collect_grams(model, [name], batches)[name].gram()
  assert not records[name]["bias_updated"]
  assert records[name]["calibration_error"] == pytest.approx(
      reconstruction_error(projection, pruned_projection, gram), rel=1e-6)


def test_projections_can_be_calibrated_with_the_dense_kernels(ptb):
  model = _model("word", len(ptb[1]))
  records = prune_model_layerwise(model, {n: 0.5 for n in prunable_weights(model)},
                                  _batches(ptb, "word", 0, 24), projection_after_kernel=False)
  assert records["forward_lstm_1/projection"]["stage"] == records["forward_lstm_1/kernel"]["stage"]


def test_dense_upstream_calibrates_every_matrix_on_the_dense_model(ptb):
  dense = _model("char", 0)
  model = _model("char", 0)
  batches = _batches(ptb, "char", 0, 24)
  names = [n for n in prunable_weights(model)]
  records = prune_model_layerwise(model, {n: 0.5 for n in names}, batches, upstream="dense",
                                  update_bias=False)
  grams = collect_grams(dense, names, batches)
  dense_w, pruned_w = _weights(dense), _weights(model)
  for n in names:
    assert records[n]["stage"] == 0  # a single pass
    assert records[n]["calibration_error"] == pytest.approx(
        reconstruction_error(dense_w[n].reshape(-1, dense_w[n].shape[-1]),
                             pruned_w[n].reshape(-1, dense_w[n].shape[-1]), grams[n].gram()),
        rel=1e-6)


def test_same_inputs_give_the_same_masks(ptb):
  batches = _batches(ptb, "char", 0, 24)
  results = []
  for _ in range(2):
    model = _model("char", len(ptb[1]))
    prune_model_layerwise(model, {n: 0.7 for n in prunable_weights(model)}, batches,
                          block_size=4)
    results.append(_weights(model))
  for name in results[0]:
    np.testing.assert_array_equal(results[0][name], results[1][name])


def _refused(model, match, targets=None, batches=(), **kw):
  targets = targets if targets is not None else {n: 0.5 for n in prunable_weights(model)}
  before = model.get_weights()
  with pytest.raises(ValueError, match=match):
    prune_model_layerwise(model, targets, batches, **kw)
  for a, b in zip(before, model.get_weights()):
    np.testing.assert_array_equal(a, b)  # nothing changed (NaNs compare equal)


def test_bad_input_is_refused_before_any_weight_changes(ptb):
  model = _model("char", 0)
  batches = _batches(ptb, "char", 0, 24)
  _refused(model, "empty \\(0 batches, 0 real tokens\\)", batches=[])
  _refused(model, "empty \\(1 batches, 0 real tokens\\)", batches=[np.zeros((2, 3, 50), np.int32)])
  _refused(model, r"int32 \[batch, time, 50\] char ids .* got a batch of int32 \(2, 3\)",
           batches=[np.ones((2, 3), np.int32)])
  _refused(model, r"cannot prune: \['softmax/kernel'\]", targets={"softmax/kernel": 0.5},
           batches=batches)
  _refused(model, r"in \[0, 1\), got 1.0", targets={"highway_0/carry_kernel": 1.0},
           batches=batches)
  _refused(model, "method must be one of", batches=batches, method="sparsegpt")
  _refused(model, "upstream must be one of", batches=batches, upstream="teacher")
  _refused(model, "char_windows must be one of", batches=batches, char_windows="first")
  tokens = sum(int(_real(b).sum()) for b in batches)  # the widest input here is 16
  _refused(model, f"{tokens} real tokens given, {tokens + 1} needed", batches=batches,
           min_tokens_factor=(tokens + 1) / 16)
  # The boundary passes: exactly as many tokens as needed.
  prune_model_layerwise(_model("char", 0), {"forward_lstm_0/kernel": 0.5}, batches,
                        min_tokens_factor=tokens / 16)


def test_non_finite_inputs_name_the_matrix_and_restore_every_weight(ptb):
  model = _model("char", 0)
  bias = model.get_layer("highway_1").carry_bias
  bias.assign(np.full(bias.shape, np.nan, np.float32))  # token_projection's inputs become NaN
  batches = _batches(ptb, "char", 0, 24)
  targets = {n: 0.5 for n in prunable_weights(model) if not n.startswith("highway_1")}
  # Found after the char CNN and highway_0 were pruned: they are restored.
  _refused(model, "inputs of token_projection/kernel are not finite", targets, batches)
  # A non-finite weight or bias of a target is found before anything changes.
  _refused(model, r"highway_1/carry_kernel .* not finite", None, batches)


def test_wrapped_model_is_refused(ptb):
  model = tfmot.sparsity.keras.prune_low_magnitude(_model("word", len(ptb[1])))
  with pytest.raises(ValueError, match="strip_pruning"):
    prune_model_layerwise(model, {}, _batches(ptb, "word", 0, 8))
