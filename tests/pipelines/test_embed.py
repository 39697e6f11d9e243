"""pipelines.embed end to end (a subprocess per run, as a user starts it)."""

import json
import subprocess
import sys

import h5py
import numpy as np

from prunelm_tf.elmo import embedder as embedder_lib
from tests.conftest import REPO_ROOT
from tests.elmo.run_dir import make_word_run_dir
from tests.tolerance import assert_float32_close


def _embed(*flags):
  return subprocess.run([sys.executable, "-m", "pipelines.embed", *flags], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=300)


def _check_layout(path, lines, dim):
  with h5py.File(path, "r") as f:
    assert set(f.keys()) == {str(i) for i in range(len(lines))} | {"sentence_to_index"}
    for i, line in enumerate(lines):
      assert f[str(i)].shape == (3, len(line.split()), dim)
      assert f[str(i)].dtype == np.float32
    assert json.loads(f["sentence_to_index"][0]) == {l: str(i) for i, l in enumerate(lines)}
    return [f[str(i)][()] for i in range(len(lines))]


def test_elmo_files_stateless_and_stateful(shared_data, tmp_path):
  root = shared_data / "elmo_fixture"
  lines = (root / "sentences.txt").read_text(encoding="utf-8").splitlines()[:12]
  (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
  model_flags = [f"--options_file={root / 'options.json'}",
                 f"--weight_file={root / 'lm_weights.hdf5'}",
                 f"--input_file={tmp_path / 'in.txt'}", "--batch_size=5"]
  outputs = {}
  for stateful in (False, True):
    out = tmp_path / f"stateful_{stateful}.hdf5"
    result = _embed(*model_flags, f"--output_file={out}", f"--stateful={stateful}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote 12 sentence embeddings to {out}" in result.stdout
    outputs[stateful] = _check_layout(out, lines, 32)
  sentences = [l.split() for l in lines]
  for stateful in (False, True):
    embedder = embedder_lib.ElmoEmbedder.from_elmo(str(root / "options.json"),
                                                   str(root / "lm_weights.hdf5"),
                                                   stateful=stateful)
    for got, expected in zip(outputs[stateful], embedder.embed_sentences(sentences, 5)):
      assert_float32_close(got, expected)
  # Batch 2 started from batch 1's states.
  assert np.abs(outputs[True][5] - outputs[False][5]).max() > 1e-3


def test_word_input_run_folder(shared_data, tmp_path):
  make_word_run_dir(tmp_path / "run", shared_data / "bilm_tf_fixture/train/data.txt")
  lines = ["the cat sat", "an unseen word ."]
  (tmp_path / "in.txt").write_text("\n".join(lines), encoding="utf-8")
  result = _embed(f"--model_dir={tmp_path / 'run'}", f"--input_file={tmp_path / 'in.txt'}",
                  f"--output_file={tmp_path / 'out.hdf5'}")
  assert result.returncode == 0, result.stderr[-3000:]
  _check_layout(tmp_path / "out.hdf5", lines, 8)


def test_empty_line_is_refused_before_any_work(shared_data, tmp_path):
  root = shared_data / "elmo_fixture"
  (tmp_path / "in.txt").write_text("a b\n\nc\n", encoding="utf-8")
  result = _embed(f"--options_file={root / 'options.json'}",
                  f"--weight_file={root / 'lm_weights.hdf5'}",
                  f"--input_file={tmp_path / 'in.txt'}", f"--output_file={tmp_path / 'o.hdf5'}")
  assert result.returncode != 0
  assert "empty line(s), at line number(s) 2." in result.stderr
  assert not (tmp_path / "o.hdf5").exists()


def test_tflite_with_stateful_is_refused(tmp_path):
  (tmp_path / "in.txt").write_text("a b\n", encoding="utf-8")
  result = _embed(f"--tflite_file={tmp_path / 'm.tflite'}", "--stateful",
                  f"--input_file={tmp_path / 'in.txt'}", f"--output_file={tmp_path / 'o.hdf5'}")
  assert result.returncode != 0
  assert "stateful embedding is not available with tflite_file" in result.stderr


def test_output_file_naming_a_directory_fails_before_any_work(shared_data, tmp_path):
  root = shared_data / "elmo_fixture"
  (tmp_path / "in.txt").write_text("a b\n", encoding="utf-8")
  (tmp_path / "out").mkdir()
  result = _embed(f"--options_file={root / 'options.json'}",
                  f"--weight_file={root / 'lm_weights.hdf5'}",
                  f"--input_file={tmp_path / 'in.txt'}", f"--output_file={tmp_path / 'out'}")
  assert result.returncode != 0
  assert f"output_file {tmp_path / 'out'} is an existing directory" in result.stderr
  assert "IsADirectoryError" not in result.stderr
  assert "Loaded ELMo biLM" not in result.stderr  # refused before the model was loaded
  assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out"]
  assert not list((tmp_path / "out").iterdir())
