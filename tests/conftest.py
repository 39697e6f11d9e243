"""Test configuration: Keras 2 for tfmot, paths to the shared data, a tiny trained run and a
compression run of it."""

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


# The settings of the shared compression run: threshold 50 %, no TFLite, one parity sentence.
THRESHOLD_50 = dict(method="threshold", sparsity_sweep=(0.5,), tflite_quantization=(),
                    num_parity_sentences=1)


@pytest.fixture(scope="session")
def threshold_50_run(tiny_run_dir, tiny_text, tmp_path_factory):
  """A finished compression run of the tiny model (one variant, threshold_50), for tests that
  only read it; a test that changes a run copies it first."""
  from prunelm_tf.compression import CompressConfig, compress  # pylint: disable=import-outside-toplevel
  run_dir = str(tmp_path_factory.mktemp("threshold_50") / "c")
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, **THRESHOLD_50), run_dir)
  return run_dir
