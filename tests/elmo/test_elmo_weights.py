"""ELMo HDF5 import/export: char-CNN parity, bit-exact round trip, bad files."""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf import data as data_lib
from prunelm_tf.elmo import weights as weights_lib
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm

keras = tf.keras


def _datasets(path):
  out = {}
  with h5py.File(path, "r") as f:
    f.visititems(lambda name, obj: out.__setitem__(name, (obj[()], obj.dtype))
                 if isinstance(obj, h5py.Dataset) else None)
  return out


def _weights(model):
  return {w.name: w.numpy() for w in model.weights}


def _copy_fixture(fixture, tmp_path):
  options = tmp_path / "options.json"
  weights = tmp_path / "lm_weights.hdf5"
  shutil.copyfile(fixture.options, options)
  shutil.copyfile(fixture.weights, weights)
  return options, weights


@pytest.fixture(scope="module")
def loaded(elmo_loaded):
  return elmo_loaded


def test_char_cnn_matches_reference_token_embeddings(loaded, shared_data):
  model, config = loaded
  root = shared_data / "elmo_fixture"
  words = (root / "vocab_test.txt").read_text(encoding="utf-8").split("\n")
  assert len(words) == 458 and "<S>" in words and "</S>" in words
  # <S> and </S> map to the sentence-boundary character rows.
  ids = np.stack([data_lib.word_to_char_ids(w) for w in words])[np.newaxis]
  token_embedding = keras.Model(model.input, model.get_layer("token_embedding").output)
  got = token_embedding(ids, training=False).numpy()[0]
  with h5py.File(root / "elmo_token_embeddings.hdf5", "r") as f:
    expected = f["embedding"][()]
  diff = float(np.abs(got - expected).max())
  print(f"char-CNN token embedding vs elmo_token_embeddings.hdf5: max abs diff {diff:.3g}")
  assert got.shape == expected.shape == (458, 16)
  assert diff <= 1e-5


def test_import_export_is_bit_exact(any_fixture, tmp_path):
  model, config = weights_lib.load_elmo(any_fixture.options, any_fixture.weights)
  weights_lib.export_elmo(model, config, tmp_path / "options.json", tmp_path / "weights.hdf5")
  original, exported = _datasets(any_fixture.weights), _datasets(tmp_path / "weights.hdf5")
  assert set(original) == set(exported)
  for name, (value, dtype) in original.items():
    assert exported[name][1] == dtype == np.float32, name
    assert np.array_equal(exported[name][0], value), name
  assert (json.loads((tmp_path / "options.json").read_text()) ==
          json.loads(any_fixture.options.read_text()))
  # ... and import again gives the same model.
  again, again_config = weights_lib.load_elmo(tmp_path / "options.json", tmp_path / "weights.hdf5")
  assert again_config == config
  for name, value in _weights(model).items():
    assert np.array_equal(_weights(again)[name], value), name
  assert sorted(os.listdir(tmp_path)) == ["options.json", "weights.hdf5"]  # no temp files


def test_thresholded_model_exports_and_reloads_equal(loaded, tmp_path):
  model, config = loaded
  clone = build_bilm(config)
  clone.set_weights(model.get_weights())
  for spec in weights_lib.weight_layout(config):
    var = weights_lib.model_variable(clone, spec)
    value = var.numpy()
    var.assign(np.where(np.abs(value) < np.median(np.abs(value)), 0.0, value))
  weights_lib.export_elmo(clone, config, tmp_path / "o.json", tmp_path / "w.hdf5")
  reloaded, _ = weights_lib.load_elmo(tmp_path / "o.json", tmp_path / "w.hdf5")
  kernel = reloaded.get_layer("forward_lstm_1").kernel.numpy()
  assert 0.45 <= 1.0 - np.count_nonzero(kernel) / kernel.size <= 0.55
  for name, value in _weights(clone).items():
    assert np.array_equal(_weights(reloaded)[name], value), name


def test_pruned_then_stripped_model_exports(loaded, elmo_fixture, tmp_path):
  model, config = loaded
  clone = build_bilm(config)
  clone.set_weights(model.get_weights())
  sparsity = tfmot.sparsity.keras
  pruned = sparsity.prune_low_magnitude(
      clone, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
  with pytest.raises(ValueError, match="strip_pruning"):
    weights_lib.export_elmo(pruned, config, tmp_path / "o.json", tmp_path / "w.hdf5")
  step = sparsity.UpdatePruningStep()
  step.set_model(pruned)
  step.on_train_begin()
  step.on_train_batch_begin(batch=0)
  ids = data_lib.sentence_to_char_ids(elmo_fixture.sentences[0])[np.newaxis]
  pruned(ids, training=True)  # applies the masks
  stripped = sparsity.strip_pruning(pruned)
  weights_lib.export_elmo(stripped, config, tmp_path / "o.json", tmp_path / "w.hdf5")
  with h5py.File(tmp_path / "w.hdf5", "r") as f:
    kernel = f["RNN_1/RNN/MultiRNNCell/Cell0/LSTMCell/W_0"][()]
  assert abs(1.0 - np.count_nonzero(kernel) / kernel.size - 0.5) < 0.01
  reloaded, _ = weights_lib.load_elmo(tmp_path / "o.json", tmp_path / "w.hdf5")
  expected = stripped(ids, training=False)["representations"].numpy()
  np.testing.assert_array_equal(reloaded(ids, training=False)["representations"].numpy(),
                                expected)


def test_softmax_is_not_exported(loaded, elmo_fixture, tmp_path):
  model, config = loaded
  with_softmax = BiLMConfig(**{**config.to_dict(), "vocab_size": 12})
  lm = build_bilm(with_softmax)
  for layer in model.layers:
    if layer.weights:
      lm.get_layer(layer.name).set_weights(layer.get_weights())
  weights_lib.export_elmo(lm, with_softmax, tmp_path / "o.json", tmp_path / "w.hdf5")
  assert set(_datasets(tmp_path / "w.hdf5")) == set(_datasets(elmo_fixture.weights))
  assert "n_tokens_vocab" not in json.loads((tmp_path / "o.json").read_text())


def test_word_input_model_export_is_refused(tmp_path):
  config = BiLMConfig(vocab_size=10, token_encoder="word", lstm_dim=8, projection_dim=4,
                      n_layers=1)
  with pytest.raises(ValueError, match="word-input model is not supported"):
    weights_lib.export_elmo(build_bilm(config), config, tmp_path / "o.json", tmp_path / "w.hdf5")
  assert not os.listdir(tmp_path)


def test_export_failure_leaves_nothing_and_keeps_existing_files(loaded, tmp_path):
  model, config = loaded
  (tmp_path / "w.hdf5").write_bytes(b"previous weights")
  other = BiLMConfig(**{**config.to_dict(), "lstm_dim": 32})  # does not match the model
  with pytest.raises(ValueError, match="does not match its config"):
    weights_lib.export_elmo(model, other, tmp_path / "o.json", tmp_path / "w.hdf5")
  assert sorted(os.listdir(tmp_path)) == ["w.hdf5"]
  assert (tmp_path / "w.hdf5").read_bytes() == b"previous weights"


def test_width_equal_to_projection_has_no_cnn_proj(tmp_path):
  # bilm-tf writes no CNN_proj when the char-CNN width equals projection_dim.
  config = BiLMConfig(vocab_size=0, lstm_dim=16, projection_dim=8, n_layers=1,
                      char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)),
                                             n_highway=1))
  model = build_bilm(config)
  projection = model.get_layer("token_projection")
  projection.set_weights([np.eye(8, dtype=np.float32), np.zeros(8, np.float32)])
  weights_lib.export_elmo(model, config, tmp_path / "o.json", tmp_path / "w.hdf5")
  assert not any(n.startswith("CNN_proj") for n in _datasets(tmp_path / "w.hdf5"))
  reloaded, _ = weights_lib.load_elmo(tmp_path / "o.json", tmp_path / "w.hdf5")
  ids = data_lib.sentence_to_char_ids(["a", "tiny", "test"])[np.newaxis]
  np.testing.assert_array_equal(reloaded(ids)["representations"].numpy(),
                                model(ids)["representations"].numpy())
  with h5py.File(tmp_path / "w.hdf5", "r+") as f:  # half a projection is an error
    f["CNN_proj/W_proj"] = np.eye(8, dtype=np.float32)
  with pytest.raises(ValueError, match="'CNN_proj/b_proj' is missing"):
    weights_lib.load_elmo(tmp_path / "o.json", tmp_path / "w.hdf5")


# --- bad input -------------------------------------------------------------


def test_truncated_weight_file(elmo_fixture, tmp_path):
  options, weights = _copy_fixture(elmo_fixture, tmp_path)
  data = weights.read_bytes()
  weights.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=f"{weights} is not a readable HDF5 file.*truncated"):
    weights_lib.load_elmo(options, weights)


def test_garbage_weight_file(elmo_fixture, tmp_path):
  options, weights = _copy_fixture(elmo_fixture, tmp_path)
  weights.write_bytes(np.random.default_rng(0).bytes(4096))
  with pytest.raises(ValueError, match=f"{weights} is not a readable HDF5 file"):
    weights_lib.load_elmo(options, weights)


def test_missing_weight_file(elmo_fixture, tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.hdf5"):
    weights_lib.load_elmo(elmo_fixture.options, tmp_path / "missing.hdf5")


def test_missing_dataset_is_named(elmo_fixture, tmp_path):
  options, weights = _copy_fixture(elmo_fixture, tmp_path)
  with h5py.File(weights, "r+") as f:
    del f["CNN_high_1/b_transform"]
  with pytest.raises(ValueError, match=f"{weights}.*'CNN_high_1/b_transform' is missing "
                     r"\(expected shape \(124,\)"):
    weights_lib.load_elmo(options, weights)


def test_shape_disagreeing_with_options_names_dataset_and_shapes(elmo_fixture, tmp_path):
  options, weights = _copy_fixture(elmo_fixture, tmp_path)
  changed = json.loads(options.read_text())
  changed["lstm"]["projection_dim"] = 8
  options.write_text(json.dumps(changed))
  with pytest.raises(ValueError) as e:
    weights_lib.load_elmo(options, weights)
  message = str(e.value)
  assert str(weights) in message and str(options) in message
  assert "'CNN_proj/W_proj' has shape (124, 16) but options" in message
  assert "expects (124, 8)" in message


def test_more_layers_than_options_say_is_refused(elmo_fixture, tmp_path):
  options, weights = _copy_fixture(elmo_fixture, tmp_path)
  changed = json.loads(options.read_text())
  changed["lstm"]["n_layers"] = 1
  options.write_text(json.dumps(changed))
  with pytest.raises(ValueError, match="RNN_0/RNN/MultiRNNCell/Cell1/LSTMCell/B.*not part of"):
    weights_lib.load_elmo(options, weights)


def test_non_finite_dataset_is_named(elmo_fixture, tmp_path):
  options, weights = _copy_fixture(elmo_fixture, tmp_path)
  with h5py.File(weights, "r+") as f:
    f["CNN/b_cnn_2"][3] = np.nan
  with pytest.raises(ValueError, match="'CNN/b_cnn_2' holds NaN"):
    weights_lib.load_elmo(options, weights)


def _tiny_elmo_files(tmp_path):
  """options.json + HDF5 of a tiny random char biLM, written with export_elmo."""
  config = BiLMConfig(vocab_size=0, lstm_dim=8, projection_dim=4, n_layers=1,
                      char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)),
                                             n_highway=1))
  options, weights = tmp_path / "o.json", tmp_path / "w.hdf5"
  weights_lib.export_elmo(build_bilm(config), config, options, weights)
  return options, weights


def test_non_finite_weights_blame_the_weight_file_not_the_options(tmp_path):
  options, weights = _tiny_elmo_files(tmp_path)
  with h5py.File(weights, "r+") as f:
    f["char_embed"][2, 1] = np.nan
    f["CNN/W_cnn_1"][0, 0, 0, 0] = np.inf
  with pytest.raises(ValueError) as e:
    weights_lib.load_elmo(options, weights)
  message = str(e.value)
  assert message.startswith(f"ELMo weight file {weights} holds non-finite weights: ")
  assert "dataset 'char_embed' holds NaN or infinite values" in message
  assert "dataset 'CNN/W_cnn_1' holds NaN or infinite values" in message
  assert "corrupt" in message and "retrain" in message
  # The options match; the weights are broken.
  assert "does not match" not in message and "options.json" not in message


def test_non_finite_weights_and_a_mismatch_are_told_apart(tmp_path):
  options, weights = _tiny_elmo_files(tmp_path)
  with h5py.File(weights, "r+") as f:
    f["char_embed"][2, 1] = np.nan
    del f["CNN_high_0/b_carry"]
  with pytest.raises(ValueError) as e:
    weights_lib.load_elmo(options, weights)
  mismatch, non_finite = str(e.value).split(" ELMo weight file ")
  assert "'CNN_high_0/b_carry' is missing" in mismatch and "char_embed" not in mismatch
  assert "options.json released with this weight file" in mismatch
  assert "'char_embed' holds NaN" in non_finite and "options.json" not in non_finite


def test_malformed_options_name_the_file(elmo_fixture, tmp_path):
  options, weights = _copy_fixture(elmo_fixture, tmp_path)
  options.write_text('{"lstm": {"dim": 64')
  with pytest.raises(ValueError, match=f"{options} is not valid JSON"):
    weights_lib.load_elmo(options, weights)


def test_nothing_is_assigned_when_any_dataset_is_bad(loaded, elmo_fixture, tmp_path):
  model, config = loaded
  _, weights = _copy_fixture(elmo_fixture, tmp_path)
  last = weights_lib.weight_layout(config)[-1].dataset
  with h5py.File(weights, "r+") as f:
    del f[last]
    f[last] = np.zeros((64, 15), np.float32)  # the last dataset checked
  fresh = build_bilm(config)
  before = _weights(fresh)
  with pytest.raises(ValueError, match=rf"'{last}' has shape \(64, 15\).*expects \(64, 16\)"):
    weights_lib.assign_elmo_weights(fresh, config, weights)
  for name, value in _weights(fresh).items():
    assert np.array_equal(before[name], value), name


# --- fuzz: untrusted weight files ------------------------------------------
#
# Every dataset of the fixture deleted, reshaped, retyped or replaced by a
# group; the file truncated; single bytes flipped (headers, B-trees, heaps and
# data). Each case must be refused with a ValueError naming the file (and the
# dataset with its expected shape where there is one) or, when a flip only
# changed weight values, load: nothing else may escape from h5py.

# Offsets whose flip once escaped as RuntimeError, KeyError, TypeError or an
# unnamed ValueError (corrupt B-tree, heap, object header, float type, name).
_REGRESSION_FLIPS = (112, 137, 167, 833, 1074, 1241, 1511, 1542, 1731, 1857, 31344, 157153)
_SEEDED_FLIPS = tuple(int(o) for o in np.random.default_rng(13).integers(0, 4096, 32)) + tuple(
    int(o) for o in np.random.default_rng(14).integers(0, 450_896, 32))
_TRUNCATIONS = (0, 1, 8, 512, 1024, 2048, 4096, 100_000, 300_000, 450_000)
_DATASET_MUTATIONS = ("delete", "reshape", "int32", "string", "group", "float64")


@pytest.fixture(scope="module")
def fixture_config(elmo_fixture):
  from prunelm_tf.elmo import options as options_lib  # pylint: disable=import-outside-toplevel
  return options_lib.load_options(elmo_fixture.options)


def _expect_refused(weights, config, *fragments):
  with pytest.raises(ValueError) as e:
    weights_lib.read_elmo_weights(weights, config)
  message = str(e.value)
  assert str(weights) in message
  for fragment in fragments:
    assert fragment in message, message


def test_fuzz_case_count(fixture_config):
  n = len(weights_lib.weight_layout(fixture_config))
  assert n == 33
  # 198 dataset mutations + 10 truncations + 76 byte flips = 284 cases.
  assert n * len(_DATASET_MUTATIONS) + len(_TRUNCATIONS) + len(_REGRESSION_FLIPS) + len(
      _SEEDED_FLIPS) == 284


@pytest.mark.parametrize("mutation", _DATASET_MUTATIONS)
def test_every_dataset_mutated_is_refused_naming_it_and_its_shape(elmo_fixture, fixture_config,
                                                                 tmp_path, mutation):
  _, weights = _copy_fixture(elmo_fixture, tmp_path)
  original = weights.read_bytes()
  for spec in weights_lib.weight_layout(fixture_config):
    weights.write_bytes(original)
    with h5py.File(weights, "r+") as f:
      value = f[spec.dataset][()]
      del f[spec.dataset]
      if mutation == "reshape":
        f[spec.dataset] = np.zeros(spec.shape + (1,), np.float32)
      elif mutation == "int32":
        f[spec.dataset] = value.astype(np.int32)
      elif mutation == "string":
        f[spec.dataset] = "not a weight"
      elif mutation == "group":
        f.create_group(spec.dataset)
      elif mutation == "float64":  # a float type is converted, not refused
        f[spec.dataset] = value.astype(np.float64)
    if mutation == "float64":
      got = weights_lib.read_elmo_weights(weights, fixture_config)[spec.dataset]
      assert got.dtype == np.float32 and np.array_equal(got, value)
      continue
    _expect_refused(weights, fixture_config, repr(spec.dataset), str(spec.shape))


@pytest.mark.parametrize("size", _TRUNCATIONS)
def test_truncated_weight_file_is_refused(elmo_fixture, fixture_config, tmp_path, size):
  _, weights = _copy_fixture(elmo_fixture, tmp_path)
  weights.write_bytes(weights.read_bytes()[:size])
  _expect_refused(weights, fixture_config, "is not a readable HDF5 file")


@pytest.mark.parametrize("offset", _REGRESSION_FLIPS + _SEEDED_FLIPS)
def test_flipped_byte_is_refused_cleanly_or_loads(elmo_fixture, fixture_config, tmp_path, offset):
  _, weights = _copy_fixture(elmo_fixture, tmp_path)
  data = bytearray(weights.read_bytes())
  data[offset] ^= 0xFF
  weights.write_bytes(bytes(data))
  try:
    arrays = weights_lib.read_elmo_weights(weights, fixture_config)
  except ValueError as e:
    assert str(weights) in str(e)
    return
  assert all(np.all(np.isfinite(a)) for a in arrays.values())  # a flip inside weight values


def test_an_unreadable_dataset_blames_the_weight_file_not_the_options(tmp_path):
  options, weights = _tiny_elmo_files(tmp_path)
  with h5py.File(weights, "r+") as f:  # the same values, stored gzip-compressed in one chunk
    value = f["char_embed"][()]
    del f["char_embed"]
    f.create_dataset("char_embed", data=value, compression="gzip", chunks=value.shape)
    offset = f["char_embed"].id.get_chunk_info(0).byte_offset
  with open(weights, "r+b") as raw:  # a damaged chunk: inflate() fails on read
    raw.seek(offset + 2)
    raw.write(b"\xff" * 16)
  with pytest.raises(ValueError) as e:
    weights_lib.load_elmo(options, weights)
  message = str(e.value)
  assert message.startswith(f"ELMo weight file {weights} is corrupt: dataset 'char_embed' "
                            "cannot be read")
  assert "intact copy" in message
  assert "does not match" not in message and "options.json" not in message
