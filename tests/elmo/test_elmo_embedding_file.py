"""The `allennlp elmo --all` file layout: input checks, output datasets, atomic writes."""

import json
import os

import h5py
import numpy as np
import pytest

from prunelm_tf import data as data_lib
from prunelm_tf.elmo import embedder as embedder_lib
from prunelm_tf.elmo import embedding_file
from tests.elmo.run_dir import make_word_run_dir
from tests.tolerance import assert_float32_close


def _write_lines(tmp_path, data, name="input.txt"):
  path = tmp_path / name
  path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
  return str(path)


def test_read_sentence_file_strips_and_handles_line_ends(tmp_path):
  path = _write_lines(tmp_path, "  a b \r\nc\td\re  \nf\n")
  assert embedding_file.read_sentence_file(path) == ["a b", "c\td", "e", "f"]


def test_non_utf8_input_names_file_and_line(tmp_path):
  path = _write_lines(tmp_path, b"good line\nanother\ncaf\xe9 au lait\n")
  with pytest.raises(ValueError, match=f"{path}, line 3: not UTF-8 .*byte 0xe9"):
    embedding_file.read_sentence_file(path)


def test_empty_lines_are_refused_with_their_numbers(tmp_path):
  path = _write_lines(tmp_path, "a b\n\nc\n   \nd\n")
  with pytest.raises(ValueError, match=r"2 empty line\(s\), at line number\(s\) 2, 4\."):
    embedding_file.read_sentence_file(path)


def test_empty_file_is_refused(tmp_path):
  with pytest.raises(ValueError, match="holds no sentences"):
    embedding_file.read_sentence_file(_write_lines(tmp_path, ""))


def test_input_is_checked_before_the_model_is_loaded(elmo_fixture, tmp_path):
  path = _write_lines(tmp_path, "a b\n\nc\n")
  with pytest.raises(ValueError, match="line number"):  # not FileNotFoundError
    embedding_file.embed_text_file(path, str(tmp_path / "out.hdf5"),
                                   options_file=str(elmo_fixture.options),
                                   weight_file=str(tmp_path / "missing.hdf5"))
  assert sorted(os.listdir(tmp_path)) == ["input.txt"]


def test_output_that_is_a_directory_is_refused_before_any_work(tmp_path, monkeypatch):
  path = _write_lines(tmp_path, "a b\n")
  (tmp_path / "out").mkdir()
  monkeypatch.setattr(embedding_file, "open_embedder",
                      lambda **kw: pytest.fail("the model was loaded"))
  with pytest.raises(ValueError, match=f"output_file {tmp_path / 'out'} is an existing directory; "
                     "it must name the HDF5 file to write, e.g. .*elmo_embeddings.hdf5"):
    embedding_file.embed_text_file(path, str(tmp_path / "out"), tflite_file="m.tflite")
  assert os.listdir(tmp_path / "out") == []


def test_output_below_a_file_is_refused(tmp_path):
  path = _write_lines(tmp_path, "a b\n")
  with pytest.raises(ValueError, match="input.txt is a file, not a directory"):
    embedding_file.embed_text_file(path, os.path.join(path, "sub", "out.hdf5"),
                                   tflite_file="m.tflite")


def test_output_in_a_folder_still_to_be_created_passes_the_check(tmp_path):
  embedding_file.check_output_file(str(tmp_path / "new" / "deeper" / "out.hdf5"))


def test_output_must_not_be_an_input(elmo_fixture, tmp_path):
  path = _write_lines(tmp_path, "a b\n")
  with pytest.raises(ValueError, match="is or holds the input --input_file"):
    embedding_file.embed_text_file(path, path, options_file=str(elmo_fixture.options),
                                   weight_file=str(elmo_fixture.weights))
  assert (tmp_path / "input.txt").read_text() == "a b\n"


def test_writes_the_reference_layout(elmo_fixture, elmo_loaded, tmp_path):
  lines = [" ".join(s) for s in elmo_fixture.sentences[:5]]
  lines.insert(2, "x" * 60 + " token")  # over-long token
  lines.append(lines[0])  # a duplicate maps to its last index
  path = _write_lines(tmp_path, "\n".join(lines) + "\n")
  out = tmp_path / "elmo.hdf5"
  assert embedding_file.embed_text_file(
      path, str(out), options_file=str(elmo_fixture.options),
      weight_file=str(elmo_fixture.weights), batch_size=3) == len(lines)
  with h5py.File(out, "r") as f:
    assert set(f.keys()) == {str(i) for i in range(len(lines))} | {"sentence_to_index"}
    for i, line in enumerate(lines):
      assert f[str(i)].shape == (3, len(line.split()), 32) and f[str(i)].dtype == np.float32
    index = f["sentence_to_index"]
    assert index.shape == (1,) and h5py.check_string_dtype(index.dtype) is not None
    mapping = json.loads(index[0])
  expected = {line: str(i) for i, line in enumerate(lines)}
  assert mapping == expected and mapping[lines[0]] == str(len(lines) - 1)
  embeddings, read_mapping = embedding_file.read_embedding_file(out)
  assert read_mapping == mapping
  keras_embedder = embedder_lib.ElmoEmbedder(*elmo_loaded)
  for i, e in enumerate(keras_embedder.embed_sentences([l.split() for l in lines])):
    assert_float32_close(embeddings[i], e)
  assert sorted(os.listdir(tmp_path)) == ["elmo.hdf5", "input.txt"]


def test_stateful_file_follows_batches_in_input_order(elmo_fixture, elmo_loaded, tmp_path):
  lines = [" ".join(s) for s in elmo_fixture.sentences[:6]]
  path = _write_lines(tmp_path, "\n".join(lines))
  out = str(tmp_path / "elmo.hdf5")
  embedding_file.embed_text_file(path, out, options_file=str(elmo_fixture.options),
                                 weight_file=str(elmo_fixture.weights), batch_size=4,
                                 stateful=True)
  embeddings, _ = embedding_file.read_embedding_file(out)
  stateful = embedder_lib.ElmoEmbedder(*elmo_loaded, stateful=True)
  expected = (stateful.embed_batch([l.split() for l in lines[:4]]) +
              stateful.embed_batch([l.split() for l in lines[4:]]))
  for i, e in enumerate(expected):
    assert_float32_close(embeddings[i], e)


class _FailingEmbedder(embedder_lib.Embedder):

  def embed_batch(self, sentences):
    raise RuntimeError("model crashed")


def test_failure_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
  out = tmp_path / "elmo.hdf5"
  out.write_bytes(b"previous output")
  with pytest.raises(RuntimeError, match="model crashed"):
    embedding_file.write_embedding_file(_FailingEmbedder(), ["a b", "c"], str(out))
  assert os.listdir(tmp_path) == ["elmo.hdf5"]
  assert out.read_bytes() == b"previous output"


def test_word_input_run_folder(shared_data, tmp_path):
  run_dir = tmp_path / "run"
  model, vocab, sentences = make_word_run_dir(run_dir,
                                              shared_data / "bilm_tf_fixture/train/data.txt")
  lines = [" ".join(s[:6]) for s in sentences[:3]] + ["an unseen word"]
  path = _write_lines(tmp_path, "\n".join(lines))
  out = str(tmp_path / "elmo.hdf5")
  embedding_file.embed_text_file(path, out, model_dir=str(run_dir))
  embeddings, _ = embedding_file.read_embedding_file(out)
  for i, line in enumerate(lines):
    ids = data_lib.encode_sentence(line.split(), vocab)[np.newaxis]
    expected = model(ids, training=False)["representations"].numpy()[0]
    assert embeddings[i].shape == (3, len(line.split()), 8)
    assert_float32_close(embeddings[i], expected)


def test_a_compression_run_folder_as_model_dir_names_its_variants(threshold_50_run, tmp_path):
  run = threshold_50_run
  path = _write_lines(tmp_path, "a b\n")
  out = tmp_path / "elmo.hdf5"
  with pytest.raises(FileNotFoundError) as e:
    embedding_file.embed_text_file(path, str(out), model_dir=run)
  message = str(e.value)
  assert message.startswith(f"{run} is a run folder of pipelines.compress, not of pipelines.train")
  assert os.path.join(run, "variants", "threshold_50") in message
  assert "did not finish" not in message and "pipelines.train again" not in message
  assert not out.exists()
