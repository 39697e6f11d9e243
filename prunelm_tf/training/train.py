"""Dense biLM training into one run folder: ``train_and_evaluate(config, run_dir)``.

Run folder layout::

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

import dataclasses
import json
import os
import time
from typing import Dict, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.training.config import TrainingRunConfig
from prunelm_tf.training.loop import (LearningRate, LossSpec, Trainer,
                                      evaluate_perplexity)
from prunelm_tf.utils import files

keras = tf.keras

WEIGHTS_FILE = "model_weights.h5"


def load_corpus(spec: str, max_sentences: int = 0, tfds_data_dir: str = "", *, what: str):
  """Reads a corpus into memory; errors name the config field ``what``."""
  try:
    corpus = data_lib.open_corpus(spec, max_sentences=max_sentences or None,
                                  data_dir=tfds_data_dir or None)
    return data_lib.read_sentences(corpus)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f"{what}: {e}") from e


def resolve_vocabulary(config: TrainingRunConfig, train_sentences, run_dir: str):
  """The run's vocabulary: the run folder's, the given file, or built from train."""
  saved = os.path.join(run_dir, "vocab.txt")
  if os.path.exists(saved):
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


def load_run(run_dir: str) -> Tuple[keras.Model, BiLMConfig, "data_lib.Vocabulary"]:
  """Loads the final model of a training run folder.

  The folder's files are checked before the model is built: config.json
  must hold a valid "model" architecture within the size rule of
  ``BiLMConfig.from_dict`` (so an absurd size fails here, naming the field,
  not as an out-of-memory error), and vocab.txt must have
  ``model.vocab_size`` tokens.

  Raises:
    FileNotFoundError: the folder has no config.json or no final weights.
    TypeError, ValueError: config.json, vocab.txt or the weights are
      invalid or do not match; the message names the file and the field.
  """
  config_path = os.path.join(run_dir, "config.json")
  weights_path = os.path.join(run_dir, WEIGHTS_FILE)
  vocab_path = os.path.join(run_dir, "vocab.txt")
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f"{run_dir} has no config.json, so it is not a run folder of pipelines.train.")
  if not os.path.exists(weights_path):
    raise FileNotFoundError(
        f"{run_dir} holds no model ({WEIGHTS_FILE} is missing): the training run did not "
        "finish. Run pipelines.train again with the same --run_dir to resume it.")
  fix = (f"The run folder was changed or is not one of pipelines.train: restore {config_path} "
         "(its flags.txt holds the flags that wrote it) or choose another run folder.")
  d = files.read_config_json(config_path)
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
  resumed = files.prepare_run_dir(run_dir, config.to_json(), overwrite=overwrite, inputs={
      "--train": config.data.train, "--valid": config.data.valid, "--test": config.data.test,
      "--vocab_file": config.data.vocab_file})
  if not resumed:
    vocab.save(os.path.join(run_dir, "vocab.txt"))
    files.write_text(os.path.join(run_dir, "config.json"), config.to_json() + "\n")
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


def run_training(trainer: Trainer, make_epoch_dataset, *, run_dir: str, steps_per_epoch: int,
                 total_steps: int, log_every_steps: int, checkpoint_every_steps: int,
                 eval_fn=None, callbacks=(), extra_scalars=None,
                 tensorboard_dir: Optional[str] = None) -> Dict:
  """The resumable step loop over epochs; returns throughput figures.

  Args:
    trainer: the model, optimizer and loss.
    make_epoch_dataset: ``epoch -> tf.data.Dataset``, deterministic per epoch
      so that a resumed run skips exactly the batches already trained on.
    run_dir: holds ``checkpoints/`` and ``tensorboard/``.
    steps_per_epoch, total_steps: loop length.
    log_every_steps, checkpoint_every_steps: cadence of scalars and checkpoints.
    eval_fn: ``() -> {"forward", "backward", "mean"}`` run at each epoch end.
    callbacks: Keras callbacks driven as for a custom loop (tfmot's
      ``UpdatePruningStep``): ``on_train_begin``, ``on_train_batch_begin``,
      ``on_epoch_end``, and ``on_epoch_end`` once more after the last step.
    extra_scalars: ``step -> {name: value}`` written with each log (e.g. sparsity).
    tensorboard_dir: where scalars go; default ``run_dir/tensorboard``.
  """
  model, optimizer = trainer.model, trainer.optimizer
  step = tf.Variable(0, dtype=tf.int64, name="global_step")
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, "checkpoints"),
                                       max_to_keep=2)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("Resumed from %s at step %d.", manager.latest_checkpoint, int(step))
  resumed_from = int(step)
  writer = tf.summary.create_file_writer(tensorboard_dir or os.path.join(run_dir, "tensorboard"))
  for cb in callbacks:
    cb.set_model(model)
    cb.on_train_begin()

  trained_tokens = 0
  train_seconds = 0.0
  window = {"loss": 0.0, "fwd": 0.0, "bwd": 0.0, "count": 0.0, "tokens": 0, "t0": time.time()}
  epoch = int(step) // steps_per_epoch
  while int(step) < total_steps:
    skip = int(step) - epoch * steps_per_epoch
    steps_this_epoch = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
    progbar = keras.utils.Progbar(steps_this_epoch, stateful_metrics=["ppl_fwd", "ppl_bwd", "lr"])
    progbar.update(skip)
    for batch in make_epoch_dataset(epoch).skip(skip).take(steps_this_epoch - skip):
      t0 = time.time()
      for cb in callbacks:
        cb.on_train_batch_begin(batch=int(step))
      terms = trainer.step(batch)
      step.assign_add(1)
      loss = float(terms["loss"])
      if not np.isfinite(loss):
        raise FloatingPointError(f"the training loss became {loss} at step {int(step)}; "
                                 "lower --learning_rate or set --clip_norm.")
      dt = time.time() - t0
      tokens = int(tf.math.count_nonzero(batch["token_ids"]))
      trained_tokens += tokens
      train_seconds += dt
      window["loss"] += loss
      window["tokens"] += tokens
      if "num_predictions" in terms:
        window["fwd"] += float(terms["forward_nll"])
        window["bwd"] += float(terms["backward_nll"])
        window["count"] += float(terms["num_predictions"])
      s = int(step)
      values = [("loss", loss)]
      if s % log_every_steps == 0 or s == total_steps:
        elapsed = max(time.time() - window["t0"], 1e-9)
        with writer.as_default(step=s):
          tf.summary.scalar("train/loss", window["loss"] / log_every_steps)
          tf.summary.scalar("train/learning_rate", float(optimizer.learning_rate(s - 1))
                            if callable(optimizer.learning_rate) else float(optimizer.learning_rate))
          tf.summary.scalar("train/tokens_per_second", window["tokens"] / elapsed)
          if window["count"]:
            tf.summary.scalar("train/perplexity_forward", np.exp(window["fwd"] / window["count"]))
            tf.summary.scalar("train/perplexity_backward", np.exp(window["bwd"] / window["count"]))
          for name, value in (extra_scalars(s) if extra_scalars else {}).items():
            tf.summary.scalar(name, value)
        if window["count"]:
          values += [("ppl_fwd", np.exp(window["fwd"] / window["count"])),
                     ("ppl_bwd", np.exp(window["bwd"] / window["count"]))]
        window = {"loss": 0.0, "fwd": 0.0, "bwd": 0.0, "count": 0.0, "tokens": 0,
                  "t0": time.time()}
      progbar.update(s - epoch * steps_per_epoch, values=values)
      if s % checkpoint_every_steps == 0:
        manager.save(checkpoint_number=s)
    for cb in callbacks:
      cb.on_epoch_end(epoch)
    manager.save(checkpoint_number=int(step))
    if eval_fn is not None:
      ppl = eval_fn()
      logging.info("epoch %d step %d: valid perplexity forward %.2f backward %.2f mean %.2f",
                   epoch + 1, int(step), ppl["forward"], ppl["backward"], ppl["mean"])
      with writer.as_default(step=int(step)):
        for k in ("forward", "backward", "mean"):
          tf.summary.scalar(f"valid/perplexity_{k}", ppl[k])
    epoch += 1
  writer.flush()
  return {"tokens_per_second": trained_tokens / train_seconds if train_seconds else None,
          "train_seconds": train_seconds, "resumed_from_step": resumed_from}
