"""load_run on run folders from elsewhere: config.json, vocab.txt, weights checked first."""

import json
import os

import numpy as np
import pytest

from prunelm_tf import data as data_lib
from prunelm_tf.models import BiLMConfig, build_bilm
from prunelm_tf.models.config import check_size
from prunelm_tf.training import run_folder
from prunelm_tf.training.run_folder import WEIGHTS_FILE, load_run
from prunelm_tf.training.config import DataConfig, TrainConfig, TrainingRunConfig

VOCAB = data_lib.Vocabulary(["<S>", "</S>", "<UNK>", "a", "b"])
MODEL = BiLMConfig(vocab_size=len(VOCAB), token_encoder="word", lstm_dim=8, projection_dim=4,
                   n_layers=1, dropout=0.0)


def _run_dir(tmp_path, model_dict=None, *, weights=True):
  """A run folder as pipelines.train writes it, with the "model" entry replaced if given."""
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  config = TrainingRunConfig(model=MODEL, data=DataConfig(train="train.txt"),
                             train=TrainConfig()).to_dict()
  if model_dict is not None:
    config["model"] = model_dict
  (run_dir / "config.json").write_text(json.dumps(config))
  VOCAB.save(run_dir / "vocab.txt")
  if weights:
    build_bilm(MODEL).save_weights(str(run_dir / WEIGHTS_FILE))
  else:
    (run_dir / WEIGHTS_FILE).write_bytes(b"not hdf5")
  return str(run_dir)


def test_a_valid_run_folder_loads(tmp_path):
  model, config, vocab = load_run(_run_dir(tmp_path))
  assert config == MODEL and vocab == VOCAB
  assert model.count_params() > 0


def test_absurd_lstm_dim_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
  run_dir = _run_dir(tmp_path, {**MODEL.to_dict(), "lstm_dim": 10**9})
  monkeypatch.setattr(run_folder, "build_bilm", lambda config: pytest.fail("model was built"))
  with pytest.raises(ValueError) as e:
    load_run(run_dir)
  message = str(e.value)
  assert message.startswith(os.path.join(run_dir, "config.json") + ": ")
  assert "model.projection_dim=4, model.lstm_dim=1000000000 give a model of" in message
  assert "restore" in message


@pytest.mark.parametrize("text,found", [("[1, 2]", "list"), ('{"data": {}}', r"\['data'\]")])
def test_config_without_a_model_object_is_refused(tmp_path, text, found):
  run_dir = _run_dir(tmp_path)
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    f.write(text)
  with pytest.raises(ValueError, match=rf"config.json must be a JSON object with a \"model\" "
                     rf"entry.*found {found}"):
    load_run(run_dir)


@pytest.mark.parametrize("vocab_size", [6, 0])
def test_vocab_size_disagreeing_with_vocab_txt_is_refused(tmp_path, vocab_size):
  run_dir = _run_dir(tmp_path, {**MODEL.to_dict(), "vocab_size": vocab_size})
  with pytest.raises(ValueError, match=rf"model.vocab_size={vocab_size} but .*vocab.txt has 5 "
                     "tokens"):
    load_run(run_dir)


def test_weights_that_are_not_hdf5_are_named(tmp_path):
  run_dir = _run_dir(tmp_path, weights=False)
  with pytest.raises(ValueError, match=f"{WEIGHTS_FILE} cannot be loaded into the "
                     "model of"):
    load_run(run_dir)


# --- fuzz: every field of config.json's "model" replaced or dropped -------------

_FUZZ_VALUES = ("<dropped>", None, True, "8", "", 0, -1, 2.5, float("nan"), 10**9, 10**30, [],
                {}, [[1, 2]])
_FIELDS = sorted(MODEL.to_dict()) + [f"char_cnn.{f}" for f in sorted(MODEL.to_dict()["char_cnn"])]
_FUZZ_CASES = [(encoder, field, value) for encoder in ("word", "char") for field in _FIELDS
               for value in _FUZZ_VALUES]


def test_fuzz_case_count():
  # 11 model fields (ranks: the low-rank factors) + 6 char_cnn fields.
  assert len(_FUZZ_CASES) == 2 * (11 + 6) * len(_FUZZ_VALUES) == 476


@pytest.mark.parametrize("case", _FUZZ_CASES,
                         ids=[f"{e}-{f}={str(v)[:10]}" for e, f, v in _FUZZ_CASES])
def test_fuzzed_model_config_is_refused_cleanly_or_within_the_size_rule(case):
  encoder, field, value = case
  d = json.loads(json.dumps(MODEL.to_dict()))
  d["token_encoder"] = encoder
  parent, key = (d["char_cnn"], field[9:]) if field.startswith("char_cnn.") else (d, field)
  if value == "<dropped>":
    del parent[key]  # the dataclass default, a legitimate value
  else:
    parent[key] = value
  try:
    config = BiLMConfig.from_dict(d, source="run/config.json", prefix="model.")
  except (TypeError, ValueError) as e:
    assert str(e).startswith("run/config.json: ")
    return
  # Whatever loads is a config within the size rule, so building it cannot be absurd.
  check_size(config)
  assert isinstance(config.char_cnn.filters, tuple)
  assert all(isinstance(v, int) for f in config.char_cnn.filters for v in f)
  assert np.isfinite(config.dropout)


def test_an_unfinished_compression_run_of_elmo_files_is_named_with_its_fix(tmp_path):
  run_dir = tmp_path / "compressed"
  run_dir.mkdir()
  (run_dir / "config.json").write_text(json.dumps(
      {"method": "threshold", "sparsity_sweep": [0.5], "model_dir": "",
       "options_file": "o.json", "weight_file": "w.hdf5"}))
  with pytest.raises(FileNotFoundError) as e:
    load_run(str(run_dir))
  message = str(e.value)
  assert message.startswith(f"{run_dir} is a run folder of pipelines.compress")
  assert "no finished variant yet" in message and str(run_dir / "flags.txt") in message
  assert "options_file o.json with weight_file w.hdf5" in message
  assert "did not finish" not in message
