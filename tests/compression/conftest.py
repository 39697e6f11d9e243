"""A tiny trained run folder shared by the compression tests."""

import pytest

from prunelm_tf.models import BiLMConfig
from prunelm_tf.training import train as train_lib
from prunelm_tf.training.config import DataConfig, TrainConfig, TrainingRunConfig


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
