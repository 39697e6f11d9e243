"""train_and_evaluate: artifacts, resume after interrupt, bad input before any work."""

import dataclasses
import json
import os

import numpy as np
import pytest

from prunelm_tf.models import BiLMConfig
from prunelm_tf.training import train as train_lib
from prunelm_tf.training.config import DataConfig, TrainConfig, TrainingRunConfig
from prunelm_tf.training.loop import Trainer
from prunelm_tf.training.run_folder import load_run
from tests.tolerance import assert_float32_close


def tiny_run_config(shared_data, **train_kw) -> TrainingRunConfig:
  """The shrunk default, as pipelines/flags/tiny.flags."""
  text = str(shared_data / "bilm_tf_fixture/train/data.txt")
  train = dict(num_epochs=10, learning_rate=0.02, lr_schedule="linear", log_every_steps=1,
               checkpoint_every_steps=2)
  train.update(train_kw)
  return TrainingRunConfig(
      model=BiLMConfig(vocab_size=0, token_encoder="word", lstm_dim=16, projection_dim=8,
                       n_layers=2, dropout=0.0),
      data=DataConfig(train=text, valid=text, test=text, batch_size=2),
      train=TrainConfig(**train))


def test_run_folder_artifacts_and_metrics(shared_data, tmp_path):
  run_dir = str(tmp_path / "run")
  metrics = train_lib.train_and_evaluate(tiny_run_config(shared_data), run_dir, flags_text="--x\n")
  for name in ("config.json", "flags.txt", "vocab.txt", "checkpoints", "tensorboard",
               "model_weights.h5", "saved_model", "metrics.json"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  saved = json.load(open(os.path.join(run_dir, "metrics.json")))
  assert saved == json.loads(json.dumps(metrics))
  for split in ("valid", "test"):
    ppl = saved["perplexity"][split]
    assert set(ppl) >= {"forward", "backward", "mean"}
    # 5 sentences, 134 words: 139 predictions per direction.
    assert ppl["num_predictions"] == 139
  model, model_config, vocab = load_run(run_dir)
  config = json.load(open(os.path.join(run_dir, "config.json")))
  # vocab_size is taken from the vocabulary built from the 5 training lines.
  assert config["model"]["vocab_size"] == model_config.vocab_size == len(vocab) > 50
  for split in ("valid", "test"):  # learnt something: better than uniform
    assert 1.0 < saved["perplexity"][split]["forward"] < 0.75 * len(vocab)
  assert saved["tokens_per_second"] > 0
  # The SavedModel serves representations without this package's classes.
  import tensorflow as tf
  served = tf.saved_model.load(os.path.join(run_dir, "saved_model"))
  ids = tf.constant([[1, 5, 6, 2]], tf.int32)
  out = served.signatures["serving_default"](token_ids=ids)["representations"]
  assert_float32_close(out.numpy(), model(ids)["representations"].numpy())


def test_resume_after_interrupt_matches_uninterrupted_run(shared_data, tmp_path, monkeypatch):
  config = tiny_run_config(shared_data, lr_schedule="constant", num_epochs=2)
  reference_dir = str(tmp_path / "reference")
  train_lib.train_and_evaluate(config, reference_dir)
  reference, _, _ = load_run(reference_dir)

  run_dir = str(tmp_path / "interrupted")
  original_step = Trainer.step
  calls = {"n": 0}

  def crashing_step(self, batch):
    calls["n"] += 1
    if calls["n"] == 4:  # after the checkpoint of step 2, mid-epoch 1
      raise KeyboardInterrupt("simulated interrupt")
    return original_step(self, batch)

  monkeypatch.setattr(Trainer, "step", crashing_step)
  with pytest.raises(KeyboardInterrupt):
    train_lib.train_and_evaluate(config, run_dir)
  assert not os.path.exists(os.path.join(run_dir, "model_weights.h5"))
  with pytest.raises(FileNotFoundError, match="did not finish"):
    load_run(run_dir)
  monkeypatch.setattr(Trainer, "step", original_step)
  metrics = train_lib.train_and_evaluate(config, run_dir)
  assert metrics["resumed_from_step"] == 2
  resumed, _, _ = load_run(run_dir)
  for a, b in zip(reference.weights, resumed.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.name)


def test_missing_corpus_fails_before_anything_is_written(shared_data, tmp_path):
  config = tiny_run_config(shared_data)
  config = dataclasses.replace(config, data=dataclasses.replace(
      config.data, valid=str(tmp_path / "nope*.txt")))
  with pytest.raises(FileNotFoundError, match="data.valid"):
    train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_empty_corpus_is_rejected(shared_data, tmp_path):
  empty = tmp_path / "empty.txt"
  empty.write_text("\n  \n\n")
  config = tiny_run_config(shared_data)
  config = dataclasses.replace(config, data=dataclasses.replace(config.data, train=str(empty)))
  with pytest.raises(ValueError, match="no sentences"):
    train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_vocabulary_that_does_not_match_the_model_is_rejected(shared_data, tmp_path):
  config = tiny_run_config(shared_data)
  config = dataclasses.replace(
      config, model=dataclasses.replace(config.model, vocab_size=100),
      data=dataclasses.replace(config.data,
                               vocab_file=str(shared_data / "bilm_tf_fixture/train/vocab.txt")))
  with pytest.raises(ValueError, match="vocab_size=100 but the vocabulary has 32"):
    train_lib.train_and_evaluate(config, str(tmp_path / "run"))


def test_run_folder_of_a_different_run_is_refused_unless_overwrite(shared_data, tmp_path):
  run_dir = str(tmp_path / "run")
  train_lib.train_and_evaluate(tiny_run_config(shared_data, num_epochs=1), run_dir)
  other = tiny_run_config(shared_data, num_epochs=1, learning_rate=0.03)
  with pytest.raises(ValueError, match="holds a different run.*train.learning_rate"):
    train_lib.train_and_evaluate(other, run_dir)
  assert os.path.exists(os.path.join(run_dir, "model_weights.h5"))  # nothing lost
  train_lib.train_and_evaluate(other, run_dir, overwrite=True)
  assert json.load(open(os.path.join(run_dir, "config.json")))["train"]["learning_rate"] == 0.03


def test_overwrite_with_other_training_text_builds_its_own_vocabulary(shared_data, tmp_path):
  run_dir = str(tmp_path / "run")
  train_lib.train_and_evaluate(tiny_run_config(shared_data, num_epochs=1), run_dir)
  other_text = tmp_path / "other.txt"
  other_text.write_text("zebra quagga okapi .\nokapi zebra .\n")
  other = tiny_run_config(shared_data, num_epochs=1)
  other = dataclasses.replace(other, data=dataclasses.replace(
      other.data, train=str(other_text), valid=str(other_text), test=str(other_text)))
  train_lib.train_and_evaluate(other, run_dir, overwrite=True)
  words = open(os.path.join(run_dir, "vocab.txt")).read().split()
  assert "zebra" in words and len(words) == 4 + 3  # <S> </S> <UNK> (+ padding id) and 4 words
  assert json.load(open(os.path.join(run_dir, "config.json")))["model"]["vocab_size"] == 7


def test_foreign_non_empty_folder_is_refused(shared_data, tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="not a run folder"):
    train_lib.train_and_evaluate(tiny_run_config(shared_data), str(tmp_path))
  assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("kw,match", [
    (dict(num_epochs=0), "num_epochs"), (dict(learning_rate=0), "learning_rate"),
    (dict(lr_schedule="step"), "lr_schedule"), (dict(log_every_steps=0), "log_every_steps")])
def test_invalid_train_config(kw, match):
  with pytest.raises(ValueError, match=match):
    TrainConfig(**kw)


@pytest.mark.parametrize("kw,match", [
    (dict(train=""), "data.train"), (dict(batch_size=0), "batch_size"),
    (dict(max_vocab_size=3), "max_vocab_size"), (dict(max_length=2), "max_length")])
def test_invalid_data_config(kw, match):
  with pytest.raises(ValueError, match=match):
    DataConfig(**{"train": "x.txt", **kw})


def test_data_config_boundaries_pass():
  DataConfig(train="x.txt", max_vocab_size=4, max_length=3, batch_size=1)
  TrainConfig(num_epochs=0, max_steps=1)
