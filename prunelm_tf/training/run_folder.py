"""The training run folder: its layout and loading its final model.

Layout::

  config.json      the TrainingRunConfig (validated)
  flags.txt        the command-line flags that produced it (if given)
  vocab.txt        the vocabulary (ELMo format)
  checkpoints/     tf.train.Checkpoint of model, optimizer and step
  tensorboard/     scalars: loss, perplexity per direction, learning rate, tokens/s
  model_weights.h5 final weights (load with ``load_run``)
  saved_model/     final Keras SavedModel, serving signature -> representations
  metrics.json     perplexity (valid/test, per direction), tokens/s, wall time
"""

from __future__ import annotations

import os
from typing import Tuple

import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.utils import files

keras = tf.keras

WEIGHTS_FILE = "model_weights.h5"


def load_run(run_dir: str) -> Tuple[keras.Model, BiLMConfig, data_lib.Vocabulary]:
  """Loads the final model of a training run folder.

  Raises:
    FileNotFoundError: the folder has no config.json or no final weights.
  """
  config_path = os.path.join(run_dir, "config.json")
  weights_path = os.path.join(run_dir, WEIGHTS_FILE)
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f"{run_dir} has no config.json, so it is not a run folder of pipelines.train.")
  if not os.path.exists(weights_path):
    raise FileNotFoundError(
        f"{run_dir} holds no model ({WEIGHTS_FILE} is missing): the training run did not "
        "finish. Run pipelines.train again with the same --run_dir to resume it.")
  d = files.read_config_json(config_path)
  model_config = BiLMConfig.from_dict(d["model"])
  model = build_bilm(model_config)
  model.load_weights(weights_path)
  vocab = data_lib.Vocabulary.load(os.path.join(run_dir, "vocab.txt"))
  return model, model_config, vocab
