"""The compression run: ``compress(config, run_dir)``.

Run folder::

  config.json, flags.txt
  dense/                     the input model's own exports (the reference)
  variants/<name>/           saved_model/, saved_model.zip, bilm_<mode>.tflite,
                             elmo/ (options.json + weights.hdf5, if asked),
                             checkpoints/ (retraining), metrics.json
  tensorboard/               retraining scalars; hparams/ one session per
                             (variant, quantization mode)
  metrics.json, summary.md   the report (see the issue for the schema)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from prunelm_tf import data as data_lib
from prunelm_tf.compression import report
from prunelm_tf.compression.allocation import (allocate_sparsity, predicted_cost,
                                               sensitivity_curves)
from prunelm_tf.compression.config import CompressConfig
from prunelm_tf.compression.retrain import strip, wrap_for_pruning
from prunelm_tf.compression.targets import (measure_sparsity, overridden_names, prunable_weights,
                                            resolve_targets)
from prunelm_tf.compression.threshold import prune_by_threshold
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.export.sizes import gzip_bytes, path_bytes, zip_directory
from prunelm_tf.export.tflite import ConverterCrashed, TFLiteBiLM, export_tflite
from prunelm_tf.models.bilm import build_bilm, input_name
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.training.loop import (LearningRate, LossSpec, Trainer, evaluate_perplexity,
                                      model_input)
from prunelm_tf.training.train import load_corpus, load_run, run_training
from prunelm_tf.utils import files

keras = tf.keras


@dataclasses.dataclass
class Source:
  """The dense input model and what it needs."""
  model: keras.Model
  config: BiLMConfig
  vocab: Optional[data_lib.Vocabulary]  # None for ELMo imports (char input, no softmax)
  description: str


def load_source(config: CompressConfig) -> Source:
  """Loads the input model; errors name the flag to fix."""
  if config.model_dir:
    try:
      model, model_config, vocab = load_run(config.model_dir)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"--model_dir: {e}") from e
    return Source(model, model_config, vocab, f"run folder {config.model_dir}")
  from prunelm_tf.elmo import load_elmo  # h5py only when needed
  model, model_config = load_elmo(config.options_file, config.weight_file)
  return Source(model, model_config, None, f"ELMo {config.weight_file}")


def check_corpus_fits(sentences, vocab: data_lib.Vocabulary, flag: str,
                      max_oov_rate: float = 0.2) -> float:
  """Rejects a corpus most of whose tokens the model's vocabulary does not know."""
  tokens = [t for s in sentences for t in s]
  known = sum(1 for t in tokens if t in vocab)
  oov = 1.0 - known / max(len(tokens), 1)
  if oov > max_oov_rate:
    raise ValueError(
        f"{flag}: {oov:.1%} of the corpus tokens are not in the model's vocabulary "
        f"({len(vocab)} tokens; more than {max_oov_rate:.0%} allowed), so this corpus does not "
        "fit the model (another tokenization, casing or language?). Use text tokenized like the "
        "model's training corpus.")
  return oov


def _copy_model(source: Source) -> keras.Model:
  model = build_bilm(source.config)
  model.set_weights(source.model.get_weights())
  return model


def _dataset(source: Source, sentences, batch_size: int, *, shuffle: bool, seed: int = 0):
  vocab = source.vocab or data_lib.Vocabulary(["<S>", "</S>", "<UNK>"])
  return data_lib.make_dataset(
      sentences, vocab, batch_size=batch_size,
      char_inputs=source.config.token_encoder == "char",
      max_characters_per_token=source.config.char_cnn.max_characters_per_token,
      shuffle=shuffle, seed=seed)


def representation_similarity(model, reference, dataset) -> Dict[str, float]:
  """Mean cosine similarity per layer between two models' representations."""
  sums, count = None, 0.0
  for batch in dataset:
    ids = model_input(model, batch)
    a = model(ids, training=False)["representations"].numpy()
    b = reference(ids, training=False)["representations"].numpy()
    mask = (batch["token_ids"].numpy()[:, 2:] > 0)  # word positions
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(-1) / np.maximum(na * nb, 1e-12)  # [batch, layers, words]
    layer_sums = (cos * mask[:, None, :]).sum(axis=(0, 2))
    sums = layer_sums if sums is None else sums + layer_sums
    count += mask.sum()
  return {f"layer_{k}": float(v / max(count, 1.0)) for k, v in enumerate(sums)}


def export_variant(model: keras.Model, out_dir: str, config: CompressConfig,
                   parity_inputs: List[np.ndarray], seconds: Dict[str, float],
                   model_config: BiLMConfig) -> Dict:
  """SavedModel, zip, TFLite per mode (reloaded and compared), ELMo HDF5; sizes."""
  sizes: Dict = {"tflite": {}}
  t = time.time()
  sm_dir = os.path.join(out_dir, "saved_model")
  export_saved_model(model, sm_dir)
  sizes["saved_model_bytes"] = path_bytes(sm_dir)
  sizes["saved_model_zip_bytes"] = zip_directory(sm_dir, os.path.join(out_dir, "saved_model.zip"))
  seconds["export_saved_model"] = time.time() - t
  diffs = {}
  errors = {}
  # The Keras reference of each parity sentence, once for all modes.
  expected = [model(x, training=False)["representations"].numpy() for x in parity_inputs]
  for mode in config.tflite_quantization:
    t = time.time()
    path = os.path.join(out_dir, f"bilm_{mode}.tflite")
    try:
      export_tflite(model, path, mode, saved_model_dir=sm_dir,
                    representative_inputs=(lambda: iter(parity_inputs)) if mode == "int8" else None)
    except ConverterCrashed as e:
      # Recorded, not fatal: the other modes and variants are still worth having.
      logging.error("%s: %s", out_dir, e)
      errors[mode] = str(e)
      continue
    sizes["tflite"][mode] = {"bytes": path_bytes(path), "gzip_bytes": gzip_bytes(path)}
    runner = TFLiteBiLM(path)
    diffs[mode] = max(float(np.abs(runner(x) - e).max())
                      for x, e in zip(parity_inputs, expected))
    seconds[f"export_tflite_{mode}"] = time.time() - t
  if config.export_elmo:
    from prunelm_tf.elmo import export_elmo
    t = time.time()
    elmo_dir = os.path.join(out_dir, "elmo")
    os.makedirs(elmo_dir, exist_ok=True)
    export_elmo(model, model_config, os.path.join(elmo_dir, "options.json"),
                os.path.join(elmo_dir, "weights.hdf5"))
    sizes["elmo_hdf5_bytes"] = path_bytes(os.path.join(elmo_dir, "weights.hdf5"))
    sizes["elmo_hdf5_gzip_bytes"] = gzip_bytes(os.path.join(elmo_dir, "weights.hdf5"))
    seconds["export_elmo"] = time.time() - t
  info = {"sizes": sizes, "tflite_max_abs_diff": diffs}
  if errors:
    info["tflite_errors"] = errors
  return info


def _retrain(source: Source, config: CompressConfig, targets: Dict[str, float], final: float,
             train_sentences, variant_dir: str, tb_dir: str) -> keras.Model:
  schedule = dataclasses.replace(config.schedule, final_sparsity=final)
  pruned = wrap_for_pruning(source.model, schedule, targets)
  r = config.retrain
  lm = r.objective in ("lm", "lm+distill")
  distill = r.objective in ("distill", "lm+distill")
  loss = LossSpec(lm_weight=1.0 if lm else 0.0, distill_weight=r.distill_weight if distill else 0.0,
                  teacher=source.model if distill else None)
  learning_rate = LearningRate(r.learning_rate, r.num_steps, schedule=r.lr_schedule)
  trainer = Trainer(pruned, keras.optimizers.Adam(learning_rate), loss, clip_norm=r.clip_norm,
                    seed=config.seed)
  steps_per_epoch = max(1, sum(1 for _ in _dataset(source, train_sentences, r.batch_size,
                                                   shuffle=False)))
  weights = prunable_weights(pruned)
  sizes = {n: int(np.prod(w.shape)) for n, w in weights.items()}

  def sparsity_scalars(step):
    zeros = {n: sizes[n] - np.count_nonzero(w.numpy()) for n, w in weights.items()}
    out = {f"sparsity/{n}": zeros[n] / sizes[n] for n in weights}
    out["sparsity/overall"] = sum(zeros.values()) / sum(sizes.values())
    return out

  os.makedirs(variant_dir, exist_ok=True)
  run_training(
      trainer, lambda epoch: _dataset(source, train_sentences, r.batch_size, shuffle=True,
                                      seed=config.seed + epoch),
      run_dir=variant_dir, steps_per_epoch=steps_per_epoch, total_steps=r.num_steps,
      log_every_steps=r.log_every_steps, checkpoint_every_steps=r.checkpoint_every_steps,
      callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], extra_scalars=sparsity_scalars,
      tensorboard_dir=tb_dir)
  return strip(pruned)


def _sensitivity(source: Source, names, config: CompressConfig, sentences, run_dir: str) -> Dict:
  """Per-weight sensitivity curves on the calibration corpus (cached in the run folder).

  The loss is the mean LM NLL of both directions for models with a softmax,
  otherwise 1 - the mean cosine similarity of the representations to the
  dense model's (imported ELMo models have no softmax).
  """
  path = os.path.join(run_dir, "sensitivity.json")
  if os.path.exists(path):
    return files.read_json(path)
  t = time.time()
  model = _copy_model(source)
  if source.config.has_softmax:
    def loss_fn(m):
      dataset = _dataset(source, sentences, 64, shuffle=False)
      return math.log(evaluate_perplexity(m, dataset)["mean"])
  else:
    def loss_fn(m):
      sims = representation_similarity(m, source.model,
                                       _dataset(source, sentences, 64, shuffle=False))
      return 1.0 - sum(sims.values()) / len(sims)
  result = sensitivity_curves(model, names, loss_fn)
  result["seconds"] = time.time() - t
  result["num_sentences"] = len(sentences)
  files.write_json(path, result)
  return result


def compress(config: CompressConfig, run_dir: str, *, overwrite: bool = False,
             flags_text: Optional[str] = None, max_oov_rate: float = 0.2) -> Dict:
  """Runs every variant of ``config`` into ``run_dir``; returns the report dict.

  All inputs are checked before any work: the input model, the corpora and
  their fit to the model's vocabulary, every per-layer pattern, the run folder.
  """
  start = time.time()
  source = load_source(config)
  if (config.method == "retrain" and config.retrain.objective != "distill"
      and not source.config.has_softmax):
    raise ValueError(f"--retrain_objective={config.retrain.objective} needs a softmax, and "
                     f"{source.description} has none (ELMo weight files never do). Use "
                     "--retrain_objective=distill.")
  names = list(prunable_weights(source.model))
  for s in config.sparsity_sweep:  # patterns are checked once, before any work
    resolve_targets(names, s, config.layer_sparsity)
  eval_sentences = (load_corpus(config.eval, config.max_sentences, what="--eval")
                    if config.eval else None)
  train_sentences = (load_corpus(config.train, config.max_sentences, what="--train")
                     if config.train else None)
  sensitivity = config.threshold_allocation == "sensitivity"
  calibration_sentences = (load_corpus(config.calibration, config.calibration_sentences,
                                       what="--calibration") if sensitivity else None)
  if source.vocab is not None:
    for flag, sentences in (("--eval", eval_sentences), ("--train", train_sentences),
                            ("--calibration", calibration_sentences)):
      if sentences is not None:
        check_corpus_fits(sentences, source.vocab, flag, max_oov_rate)
  parity_source = eval_sentences or train_sentences
  if parity_source is None:
    raise ValueError("set --eval (or --train): TFLite parity and int8 calibration need sentences.")
  files.prepare_run_dir(run_dir, config.to_json(), overwrite=overwrite, inputs={
      "--model_dir": config.model_dir, "--options_file": config.options_file,
      "--weight_file": config.weight_file, "--train": config.train, "--eval": config.eval,
      "--calibration": config.calibration})
  files.write_text(os.path.join(run_dir, "config.json"), config.to_json() + "\n")
  if flags_text is not None:
    files.write_text(os.path.join(run_dir, "flags.txt"), flags_text)

  parity_inputs = [next(iter(_dataset(source, [s], 1, shuffle=False)))[input_name(source.config)]
                   .numpy() for s in parity_source[:config.num_parity_sentences]]
  eval_ds = (lambda: _dataset(source, eval_sentences, 64, shuffle=False)) if eval_sentences \
      else None
  with_ppl = source.config.has_softmax and eval_ds is not None

  def describe(model, out_dir, seconds):
    info = export_variant(model, out_dir, config, parity_inputs, seconds, source.config)
    t = time.time()
    info["perplexity"] = ({k: v for k, v in evaluate_perplexity(model, eval_ds()).items()
                           if k != "num_predictions"} if with_ppl else None)
    info["representation_similarity"] = (representation_similarity(model, source.model, eval_ds())
                                         if eval_ds else {})
    seconds["evaluate"] = time.time() - t
    info["sparsity"] = measure_sparsity(model)
    info["seconds"] = seconds
    return info

  dense_path = os.path.join(run_dir, "dense", "metrics.json")
  if os.path.exists(dense_path):
    dense = files.read_json(dense_path)
  else:
    dense = {"name": "dense", "source": source.description,
             **describe(source.model, os.path.join(run_dir, "dense"), {})}
    files.write_json(dense_path, dense)
  logging.info("dense: %s", report.one_line(dense))

  # Weights set by --layer_sparsity keep their value; the rest share the budget.
  free = [n for n in names if n not in overridden_names(names, config.layer_sparsity)]
  curves = (_sensitivity(source, free, config, calibration_sentences, run_dir)
            if sensitivity else None)
  variants = []
  for s in config.sparsity_sweep:
    name = f"{config.method}{'_sens' if sensitivity else ''}_{round(s * 100):02d}"
    vdir = os.path.join(run_dir, "variants", name)
    done = os.path.join(vdir, "metrics.json")
    if os.path.exists(done):
      logging.info("%s already complete; kept.", name)
      variants.append(files.read_json(done))
      continue
    targets = resolve_targets(names, s, config.layer_sparsity)
    extra = {}
    if sensitivity:
      sizes = {n: int(np.prod(w.shape)) for n, w in prunable_weights(source.model).items()
               if n in free}
      allocated = allocate_sparsity({n: curves["curves"][n] for n in free}, sizes, s)
      targets.update(allocated)
      extra = {"allocation": "sensitivity", "allocated_targets": allocated,
               "predicted_loss_increase": predicted_cost(curves["curves"], allocated)}
    seconds: Dict[str, float] = {}
    t = time.time()
    if config.method == "threshold":
      model = _copy_model(source)
      prune_by_threshold(model, targets, scope=config.threshold_scope)
      seconds["prune"] = time.time() - t
    else:
      model = _retrain(source, config, targets, s, train_sentences, vdir,
                       os.path.join(run_dir, "tensorboard", name))
      seconds["retrain"] = time.time() - t
    variant = {"name": name, "method": config.method, "target_sparsity": s, **extra,
               **describe(model, vdir, seconds)}
    files.write_json(done, variant)
    logging.info("%s: %s", name, report.one_line(variant))
    variants.append(variant)

  result = {"dense": dense, "variants": variants, "wall_seconds": time.time() - start}
  files.write_json(os.path.join(run_dir, "metrics.json"), result)
  table = report.markdown_table(result)
  files.write_text(os.path.join(run_dir, "summary.md"), table)
  report.write_hparams(os.path.join(run_dir, "tensorboard", "hparams"), config, result)
  return result
