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

  The folder's files are checked before the model is built: config.json
  must hold a valid "model" architecture within the size rule of
  ``BiLMConfig.from_dict`` (so an absurd size fails here, naming the field,
  not as an out-of-memory error), and vocab.txt must have
  ``model.vocab_size`` tokens.

  Raises:
    FileNotFoundError: the folder has no config.json or no final weights, or
      it is a run folder of pipelines.compress (the message names its variant
      folders, which hold models).
    TypeError, ValueError: config.json, vocab.txt or the weights are
      invalid or do not match; the message names the file and the field.
  """
  config_path = os.path.join(run_dir, "config.json")
  weights_path = os.path.join(run_dir, WEIGHTS_FILE)
  vocab_path = os.path.join(run_dir, "vocab.txt")
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f"{run_dir} has no config.json, so it is not a run folder of pipelines.train.")
  d = files.read_config_json(config_path)
  # Imported here: prunelm_tf.compression imports this module.
  from prunelm_tf.compression.run_folder import CompressionRunFolder  # pylint: disable=import-outside-toplevel
  if isinstance(d, dict) and CompressionRunFolder.holds_compression_config(d):
    # Not "the training run did not finish": that advice would have the user
    # train (or --overwrite) into a compression run folder.
    raise FileNotFoundError(
        f"{run_dir} is a run folder of pipelines.compress, not of pipelines.train, so it holds "
        f"no single model. {CompressionRunFolder(run_dir).models_to_pass_instead(d)}")
  if not os.path.exists(weights_path):
    raise FileNotFoundError(
        f"{run_dir} holds no model ({WEIGHTS_FILE} is missing): the training run did not "
        "finish. Run pipelines.train again with the same --run_dir to resume it.")
  fix = (f"The run folder was changed or is not one of pipelines.train: restore {config_path} "
         "(its flags.txt holds the flags that wrote it) or choose another run folder.")
  if not isinstance(d, dict) or "model" not in d:
    found = sorted(d) if isinstance(d, dict) else type(d).__name__
    raise ValueError(f"{config_path} must be a JSON object with a \"model\" entry (the biLM "
                     f"architecture); found {found}. {fix}")
  try:
    model_config = BiLMConfig.from_dict(d["model"], source=config_path, prefix="model.")
  except (TypeError, ValueError) as e:
    raise type(e)(f"{e} {fix}") from None
  vocab = data_lib.Vocabulary.load(vocab_path)
  # pipelines.train always sets model.vocab_size from the vocabulary.
  if len(vocab) != model_config.vocab_size:
    raise ValueError(
        f"{config_path} says model.vocab_size={model_config.vocab_size} but {vocab_path} has "
        f"{len(vocab)} tokens; the two files come from different runs. {fix}")
  model = build_bilm(model_config)
  try:
    model.load_weights(weights_path)
  except (OSError, ValueError) as e:
    raise ValueError(f"{weights_path} cannot be loaded into the model of {config_path} ({e}); "
                     "it is corrupt or from another run. Run pipelines.train again with the "
                     "same flags into a new run folder.") from None
  return model, model_config, vocab
