"""Run-folder bookkeeping: no input is ever deleted, corrupt config.json is named."""

import os

import pytest

from prunelm_tf.utils import files


def _make(path, text="x"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _run(tmp_path, name="run", config='{"a": 1}'):
  run_dir = str(tmp_path / name)
  _make(os.path.join(run_dir, "config.json"), config)
  return run_dir


@pytest.mark.parametrize("overwrite", [False, True])
def test_run_dir_that_is_the_input_is_refused_and_kept(tmp_path, overwrite):
  model = _run(tmp_path, "model")
  _make(os.path.join(model, "model_weights.h5"))
  with pytest.raises(ValueError, match=r"--run_dir=.* is or holds the input --model_dir"):
    files.prepare_run_dir(model, '{"b": 2}', overwrite=overwrite, inputs={"--model_dir": model})
  assert os.path.exists(os.path.join(model, "model_weights.h5"))


def test_run_dir_holding_an_input_file_or_glob_is_refused(tmp_path):
  run_dir = _run(tmp_path)
  _make(os.path.join(run_dir, "data", "train.txt"))
  for spec in (os.path.join(run_dir, "data", "train.txt"), os.path.join(run_dir, "data", "*.txt")):
    with pytest.raises(ValueError, match="is or holds the input --train"):
      files.prepare_run_dir(run_dir, '{"b": 2}', overwrite=True, inputs={"--train": spec})
  assert os.path.exists(os.path.join(run_dir, "data", "train.txt"))


def test_overwrite_inside_an_input_folder_is_refused_but_a_new_folder_there_is_allowed(tmp_path):
  model = _run(tmp_path, "model")
  inner = _run(tmp_path, os.path.join("model", "compress"))
  with pytest.raises(ValueError, match="--overwrite would delete .* inside the input --model_dir"):
    files.prepare_run_dir(inner, '{"b": 2}', overwrite=True, inputs={"--model_dir": model})
  assert os.path.exists(os.path.join(inner, "config.json"))
  fresh = os.path.join(model, "compress_2")
  assert files.prepare_run_dir(fresh, '{"b": 2}', overwrite=False,
                               inputs={"--model_dir": model}) is False


def test_symlinked_run_dir_to_the_input_is_refused(tmp_path):
  model = _run(tmp_path, "model")
  link = str(tmp_path / "link")
  os.symlink(model, link)
  with pytest.raises(ValueError, match="is or holds the input"):
    files.prepare_run_dir(link, '{"b": 2}', overwrite=True, inputs={"--model_dir": model})
  assert os.path.exists(os.path.join(model, "config.json"))


def test_overwrite_of_an_unrelated_run_still_works(tmp_path):
  model = _run(tmp_path, "model")
  other = _run(tmp_path, "other")
  assert files.prepare_run_dir(other, '{"b": 2}', overwrite=True, inputs={
      "--model_dir": model, "--train": "tfds:lm1b/train", "--eval": ""}) is False
  assert os.listdir(other) == []
  assert os.path.exists(os.path.join(model, "config.json"))


def test_sibling_with_common_prefix_is_not_inside(tmp_path):
  model = _run(tmp_path, "model")
  sibling = _run(tmp_path, "model_compressed")
  assert files.prepare_run_dir(sibling, '{"b": 2}', overwrite=True,
                               inputs={"--model_dir": model}) is False


def test_corrupt_config_json_names_the_file(tmp_path):
  run_dir = _run(tmp_path, config='{"a": ')
  with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
    files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False)
