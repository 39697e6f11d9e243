"""Test configuration: Keras 2 for tfmot, paths to the shared data, a tiny trained run."""

import os
import pathlib

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before any TensorFlow import
import prunelm_tf  # noqa: E402,F401

import pytest  # noqa: E402

from prunelm_tf.models import BiLMConfig  # noqa: E402
from prunelm_tf.training import train as train_lib  # noqa: E402
from prunelm_tf.training.config import DataConfig, TrainConfig, TrainingRunConfig  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared data not found at {SHARED_DATA}")
  return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run_dir(shared_data, tmp_path_factory):
  text = str(shared_data / "bilm_tf_fixture/train/data.txt")
  run_dir = str(tmp_path_factory.mktemp("tiny_dense") / "run")
  config = TrainingRunConfig(
      model=BiLMConfig(vocab_size=0, token_encoder="word", lstm_dim=16, projection_dim=8,
                       n_layers=2, dropout=0.0),
      data=DataConfig(train=text, valid="", test=text, batch_size=2),
      train=TrainConfig(num_epochs=3, learning_rate=0.02, checkpoint_every_steps=100))
  train_lib.train_and_evaluate(config, run_dir)
  return run_dir


@pytest.fixture(scope="session")
def tiny_text(shared_data):
  return str(shared_data / "bilm_tf_fixture/train/data.txt")
