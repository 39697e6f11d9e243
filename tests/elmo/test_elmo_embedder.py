"""ElmoEmbedder against an independent NumPy ELMo, stateless and stateful."""

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.elmo import embedder as embedder_lib
from prunelm_tf.models import BiLMConfig, build_bilm
from tests.elmo import numpy_reference
from tests.tolerance import assert_float32_close

TOLERANCE = 1e-5
# Stateful batches over the 30 sentences: the second has fewer rows (rows 7-9
# keep their state), the third more (rows 10-12 start from zero).
STATEFUL_BATCHES = (10, 7, 13)


def _max_diff_per_layer(got, expected):
  """Max abs difference per representation layer over a list of sentences."""
  assert len(got) == len(expected)
  diffs = []
  for g, e in zip(got, expected):
    assert g.shape == e.shape and g.dtype == np.float32
    diffs.append(np.abs(g - e).max(axis=(1, 2)))
  return np.max(diffs, axis=0)


@pytest.fixture(scope="module")
def reference(any_fixture):
  return numpy_reference.ReferenceElmo(str(any_fixture.options), str(any_fixture.weights))


@pytest.fixture(scope="module")
def stateless(elmo_loaded):
  """A stateless embedder of elmo_fixture."""
  return embedder_lib.ElmoEmbedder(*elmo_loaded)


def test_stateless_matches_numpy_reference(any_fixture, reference):
  embedder = embedder_lib.ElmoEmbedder.from_elmo(str(any_fixture.options),
                                                 str(any_fixture.weights))
  sentences = any_fixture.sentences
  got = embedder.embed_sentences(sentences, batch_size=7)
  diff = _max_diff_per_layer(got, reference.embed_stateless(sentences))
  print(f"{any_fixture.name} stateless max abs diff per layer: {np.array2string(diff)}")
  assert got[0].shape == (3, len(sentences[0]), 32)
  assert np.all(diff <= TOLERANCE)


def test_stateful_matches_numpy_reference_with_padding_rows(any_fixture):
  sentences = any_fixture.sentences
  reference = numpy_reference.ReferenceElmo(str(any_fixture.options), str(any_fixture.weights))
  by_rows = embedder_lib.ElmoEmbedder.from_elmo(str(any_fixture.options),
                                                str(any_fixture.weights), stateful=True)
  by_padding = embedder_lib.ElmoEmbedder(by_rows.model, by_rows.config, stateful=True)
  diff = np.zeros(3)
  start = 0
  for k, size in enumerate(STATEFUL_BATCHES):
    batch = sentences[start:start + size]
    start += size
    expected = reference.embed_stateful_batch(batch)
    got = by_rows.embed_batch(batch)
    diff = np.maximum(diff, _max_diff_per_layer(got, expected))
    # The same batch as 10 rows whose last 3 are all padding: they keep their state.
    padded = size if size >= 10 else 10
    ids = np.zeros((padded,) + by_padding.encode(batch).shape[1:], np.int32)
    ids[:size] = by_padding.encode(batch)
    reps = by_padding.embed_ids(ids)
    assert not np.any(reps[size:])
    from_padding = [reps[i, :, :len(s)] for i, s in enumerate(batch)]
    diff = np.maximum(diff, _max_diff_per_layer(from_padding, expected))
    if k > 0:  # the carried state matters: stateless results differ
      assert np.abs(reference.embed_stateless(batch[:1])[0] - got[0])[1:].max() > 1e-3
  print(f"{any_fixture.name} stateful max abs diff per layer: {np.array2string(diff)}")
  assert np.all(diff <= TOLERANCE)


def test_reset_states_starts_from_zero_again(elmo_fixture, elmo_loaded):
  embedder = embedder_lib.ElmoEmbedder(*elmo_loaded, stateful=True)
  batch = elmo_fixture.batches[0][:4]
  first = embedder.embed_batch(batch)
  assert np.abs(embedder.embed_batch(batch)[0] - first[0]).max() > 1e-3
  embedder.reset_states()
  again = embedder.embed_batch(batch)
  for a, b in zip(first, again):
    assert_float32_close(a, b)


def test_stateless_results_do_not_depend_on_batching(elmo_fixture, stateless):
  embedder = stateless
  sentences = elmo_fixture.sentences[:8]
  for a, b in zip(embedder.embed_sentences(sentences, batch_size=1),
                  embedder.embed_sentences(sentences, batch_size=8)):
    assert_float32_close(a, b)
  order = [i for i, _ in embedder.iter_embeddings(sentences, batch_size=3)]
  assert sorted(order) == list(range(8))
  assert [len(sentences[i]) for i in order] == sorted(len(s) for s in sentences)


def test_over_long_tokens_are_cut_to_48_bytes(stateless):
  embedder = stateless
  long_word = "pneumonoultramicroscopicsilicovolcanoconiosis" * 2  # 90 bytes
  got = embedder.embed_batch([["a", long_word], ["a", long_word[:48]], ["a", long_word[:47]]])
  np.testing.assert_array_equal(got[0][0], got[1][0])  # token embeddings
  assert np.abs(got[0][0, 1] - got[2][0, 1]).max() > 1e-4


def test_word_input_model_embeds_with_vocabulary():
  vocab = data_lib.Vocabulary.build([["the", "cat", "sat"], ["the", "dog"]])
  config = BiLMConfig(vocab_size=len(vocab), token_encoder="word", lstm_dim=8,
                      projection_dim=4, n_layers=2)
  model = build_bilm(config)
  with pytest.raises(ValueError, match="needs its vocabulary"):
    embedder_lib.ElmoEmbedder(model, config)
  sentences = [["the", "cat", "sat"], ["a", "dog"]]  # "a" is unknown
  ids = np.zeros((2, 5), np.int32)
  ids[0] = data_lib.encode_sentence(sentences[0], vocab)
  ids[1, :4] = data_lib.encode_sentence(sentences[1], vocab)
  expected = model(ids, training=False)["representations"].numpy()
  for stateful in (False, True):
    embedder = embedder_lib.ElmoEmbedder(model, config, vocab=vocab, stateful=stateful)
    got = embedder.embed_batch(sentences)
    assert [g.shape for g in got] == [(3, 3, 8), (3, 2, 8)]
    assert_float32_close(got[0], expected[0, :, :3])
    assert_float32_close(got[1], expected[1, :, :2])


@pytest.mark.parametrize("kwargs,message", [
    ({}, "give exactly one model.*got none"),
    ({"options_file": "o.json", "weight_file": "w.hdf5", "model_dir": "run"},
     "got options_file/weight_file, model_dir"),
    ({"options_file": "o.json"}, "weight_file is missing"),
    ({"weight_file": "w.hdf5"}, "options_file is missing"),
    ({"tflite_file": "m.tflite", "stateful": True}, "stateful embedding is not available"),
])
def test_model_source_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    embedder_lib.open_embedder(**kwargs)


def test_tflite_embedder_matches_keras(elmo_fixture, stateless, tmp_path):
  tflite = pytest.importorskip("prunelm_tf.export.tflite")
  keras_embedder = stateless
  path = str(tmp_path / "bilm.tflite")
  tflite.export_tflite(keras_embedder.model, path)
  embedder = embedder_lib.open_embedder(tflite_file=path)
  assert isinstance(embedder, embedder_lib.TFLiteElmoEmbedder) and not embedder.stateful
  sentences = elmo_fixture.sentences[:4]
  diff = _max_diff_per_layer(embedder.embed_sentences(sentences),
                             keras_embedder.embed_sentences(sentences))
  print(f"TFLite vs Keras max abs diff per layer: {np.array2string(diff)}")
  assert np.all(diff <= TOLERANCE)


def test_tflite_word_input_is_refused(tmp_path):
  tflite = pytest.importorskip("prunelm_tf.export.tflite")
  config = BiLMConfig(vocab_size=8, token_encoder="word", lstm_dim=8, projection_dim=4,
                      n_layers=1)
  path = str(tmp_path / "word.tflite")
  tflite.export_tflite(build_bilm(config), path)
  with pytest.raises(ValueError, match="takes token ids .* needs a char-id input"):
    embedder_lib.TFLiteElmoEmbedder(path)


def test_unreadable_or_missing_tflite_file(tmp_path):
  pytest.importorskip("ai_edge_litert")
  path = tmp_path / "garbage.tflite"
  path.write_bytes(b"\x00" * 100)
  with pytest.raises(ValueError, match=f"{path} is not a readable TFLite model"):
    embedder_lib.open_embedder(tflite_file=str(path))
  with pytest.raises(FileNotFoundError, match="missing.tflite"):
    embedder_lib.open_embedder(tflite_file=str(tmp_path / "missing.tflite"))


def test_tflite_with_a_fixed_time_below_three_is_refused(tmp_path):
  fn = tf.function(
      lambda char_ids: {"representations": tf.zeros([1, 2, 1, 4]) +
                        tf.reduce_sum(tf.cast(char_ids, tf.float32))},
      input_signature=[tf.TensorSpec([1, 2, 50], tf.int32, name="char_ids")])
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()],
                                                              tf.Module())
  path = tmp_path / "short.tflite"
  path.write_bytes(converter.convert())
  with pytest.raises(ValueError, match=f"{path} has a fixed time dimension of 2; a sentence "
                     "needs at least 3"):
    embedder_lib.TFLiteElmoEmbedder(str(path))
