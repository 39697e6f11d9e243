"""Dense biLM training into one run folder: ``train_and_evaluate(config, run_dir)``.

The run folder's layout and loading are `prunelm_tf.training.run_folder`; the
step loop is `prunelm_tf.training.loop.run_training`; corpora are read by
`prunelm_tf.data.corpus.load_corpus`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.training.config import TrainingRunConfig
from prunelm_tf.training.loop import (LearningRate, LossSpec, Trainer, evaluate_perplexity,
                                      run_training)
from prunelm_tf.training.run_folder import WEIGHTS_FILE
from prunelm_tf.utils import files

keras = tf.keras


def resolve_vocabulary(config: TrainingRunConfig, train_sentences, run_dir: str):
  """The run's vocabulary: the run folder's, the given file, or built from train.

  The run folder's vocab.txt is this run's only when the folder was made by a run of the
  same data settings (same corpora and vocabulary options); a run that --overwrite will
  replace, or a foreign folder, does not lend it its vocabulary.
  """
  saved = os.path.join(run_dir, "vocab.txt")
  recorded = os.path.join(run_dir, "config.json")
  if os.path.exists(saved) and os.path.isfile(recorded):
    data = files.read_config_json(recorded)
    if isinstance(data, dict) and data.get("data") == json.loads(config.to_json())["data"]:
      return data_lib.Vocabulary.load(saved)
  if config.data.vocab_file:
    return data_lib.Vocabulary.load(config.data.vocab_file)
  return data_lib.Vocabulary.build(train_sentences,
                                   max_size=config.data.max_vocab_size or None,
                                   min_count=config.data.min_count)


def with_vocab_size(config: TrainingRunConfig, vocab_size: int) -> TrainingRunConfig:
  """Fills model.vocab_size from the vocabulary, or checks that it agrees."""
  model = config.model
  if model.vocab_size in (0, vocab_size):
    return dataclasses.replace(config, model=dataclasses.replace(model, vocab_size=vocab_size))
  raise ValueError(
      f"model.vocab_size={model.vocab_size} but the vocabulary has {vocab_size} tokens; "
      "leave --vocab_size at 0 to take the vocabulary's size.")


def _datasets(config: TrainingRunConfig, vocab, sentences, *, shuffle: bool, seed: int = 0):
  d = config.data
  return data_lib.make_dataset(
      sentences, vocab, batch_size=d.batch_size,
      char_inputs=config.model.token_encoder == "char",
      max_characters_per_token=config.model.char_cnn.max_characters_per_token,
      shuffle=shuffle, seed=seed, bucket_width=d.bucket_width,
      max_length=d.max_length or None)


def train_and_evaluate(config: TrainingRunConfig, run_dir: str, *, overwrite: bool = False,
                       flags_text: Optional[str] = None) -> Dict:
  """Trains a dense biLM into ``run_dir`` (resuming if it holds this run).

  Every input is checked before the first step: corpora exist and are not
  empty, the vocabulary fits the model, the run folder is new or this run.

  Returns:
    The metrics written to ``run_dir/metrics.json``.
  """
  start_wall = time.time()
  # Inputs first: a missing corpus must fail before anything is written.
  train_sentences = load_corpus(config.data.train, config.data.max_sentences,
                                config.data.tfds_data_dir, what="data.train (--train)")
  eval_sentences = {
      split: load_corpus(spec, config.data.max_sentences, config.data.tfds_data_dir,
                         what=f"data.{split} (--{split})")
      for split, spec in (("valid", config.data.valid), ("test", config.data.test)) if spec}
  vocab = resolve_vocabulary(config, train_sentences, run_dir)
  config = with_vocab_size(config, len(vocab))
  inputs = {"--train": config.data.train, "--valid": config.data.valid,
            "--test": config.data.test, "--vocab_file": config.data.vocab_file}
  # Before the lock, which creates the folder: a refused folder is left as it was.
  files.check_run_dir(run_dir, config.to_json(), overwrite=overwrite, inputs=inputs)
  # One process per run folder: a second one is refused, not interleaved.
  with files.run_dir_lock(run_dir):
    return _train_locked(config, run_dir, inputs, overwrite, flags_text, start_wall,
                         train_sentences, eval_sentences, vocab)


def _train_locked(config, run_dir, inputs, overwrite, flags_text, start_wall, train_sentences,
                  eval_sentences, vocab) -> Dict:
  """The work of `train_and_evaluate` once its inputs are checked and the folder is locked."""
  resumed = files.prepare_run_dir(run_dir, config.to_json(), overwrite=overwrite, inputs=inputs)
  # config.json first: it is what marks the folder as this run, so a process
  # killed between the two writes leaves a folder the next start resumes
  # (rather than refusing a folder that holds only a vocabulary).
  if not resumed:
    files.write_text(os.path.join(run_dir, "config.json"), config.to_json() + "\n")
  if not os.path.exists(os.path.join(run_dir, "vocab.txt")):
    vocab.save(os.path.join(run_dir, "vocab.txt"))
  if flags_text is not None:
    files.write_text(os.path.join(run_dir, "flags.txt"), flags_text)

  tf.keras.utils.set_random_seed(config.train.seed)
  model = build_bilm(config.model)
  logging.info("biLM with %d parameters (%s encoder, %d layers, lstm %d, projection %d, vocab %d)",
               model.count_params(), config.model.token_encoder, config.model.n_layers,
               config.model.lstm_dim, config.model.projection_dim, config.model.vocab_size)

  steps_per_epoch = sum(1 for _ in _datasets(config, vocab, train_sentences, shuffle=False))
  total_steps = config.train.max_steps or int(round(config.train.num_epochs * steps_per_epoch))
  lr = LearningRate(config.train.learning_rate, total_steps, config.train.warmup_steps,
                    config.train.lr_schedule)
  optimizer = keras.optimizers.Adam(lr)
  trainer = Trainer(model, optimizer, LossSpec(num_sampled=config.train.num_sampled),
                    clip_norm=config.train.clip_norm, seed=config.train.seed)
  result = run_training(trainer, lambda epoch: _datasets(
      config, vocab, train_sentences, shuffle=True, seed=config.train.seed + epoch),
      run_dir=run_dir, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
      log_every_steps=config.train.log_every_steps,
      checkpoint_every_steps=config.train.checkpoint_every_steps,
      eval_fn=(lambda: evaluate_perplexity(model, _datasets(
          config, vocab, eval_sentences["valid"], shuffle=False)))
      if "valid" in eval_sentences else None)

  with files.atomic_path(os.path.join(run_dir, WEIGHTS_FILE)) as tmp:
    model.save_weights(tmp + ".h5")
    os.replace(tmp + ".h5", tmp)
  export_saved_model(model, os.path.join(run_dir, "saved_model"))

  perplexity = {}
  for split, sentences in eval_sentences.items():
    perplexity[split] = evaluate_perplexity(model, _datasets(config, vocab, sentences,
                                                             shuffle=False))
    logging.info("%s perplexity: forward %.2f backward %.2f mean %.2f", split,
                 perplexity[split]["forward"], perplexity[split]["backward"],
                 perplexity[split]["mean"])
  metrics = {
      "perplexity": perplexity,
      "tokens_per_second": result["tokens_per_second"],
      "train_seconds": result["train_seconds"],
      "wall_seconds": time.time() - start_wall,
      "num_train_steps": total_steps,
      "steps_per_epoch": steps_per_epoch,
      "num_parameters": int(model.count_params()),
      "resumed_from_step": result["resumed_from_step"],
  }
  files.write_json(os.path.join(run_dir, "metrics.json"), metrics)
  return metrics
