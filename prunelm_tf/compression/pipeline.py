"""The compression run: ``compress(config, run_dir)``.

The run folder's layout is `prunelm_tf.compression.run_folder`; what each
method does is its folder in `prunelm_tf.compression.methods`. This module
loads and checks the inputs, asks the method for each variant of the sweep,
and exports and measures every variant the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.compression import report
from prunelm_tf.compression.amounts import amount_record
from prunelm_tf.compression.config import CompressConfig
from prunelm_tf.compression.methods import MethodContext
from prunelm_tf.compression.options import options_record
from prunelm_tf.compression.run_folder import (CompressionRunFolder, VariantFolder,
                                               check_dense_donors, locate_variant,
                                               reuse_dense_entry)
from prunelm_tf.compression.shared.finetune import frozen_layers
from prunelm_tf.compression.shared.targets import (measure_sparsity, overridden_names,
                                                   prunable_weights, resolve_targets)
from prunelm_tf.compression.source import (Source, check_corpus_fits, representation_fidelity,
                                           similarity_of)
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.export.saved_model import export_saved_model
from prunelm_tf.export.sizes import gzip_bytes, path_bytes, zip_directory
from prunelm_tf.export.tflite import (ConverterCrashed, TFLiteBiLM, export_tflite,
                                      representation_parity)
from prunelm_tf.models.bilm import build_bilm, input_name
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.reporting.hparams import write_hparams
from prunelm_tf.training.loop import evaluate_perplexity
from prunelm_tf.training.run_folder import load_run
from prunelm_tf.utils import files

keras = tf.keras


def _variant_source(folder: VariantFolder) -> Source:
  """A finished variant of an earlier compression run as the input model.

  Its own architecture (e.g. low-rank factors, fewer cells) and weights (from
  its SavedModel, layer by layer) become the source: the run's "dense" entry is
  that variant, and every figure of the run is relative to it.
  """
  from prunelm_tf.export.saved_model import load_saved_model  # pylint: disable=import-outside-toplevel
  if not folder.is_complete() or not os.path.isdir(folder.saved_model):
    raise FileNotFoundError(f"--model_dir: {folder.path} is an unfinished variant (no "
                            "metrics.json or SavedModel); run pipelines.compress again to "
                            "finish it.")
  model_config, vocab, _ = folder.read_description()
  loaded = load_saved_model(folder.saved_model)
  model = build_bilm(model_config)
  for layer in model.layers:
    if layer.weights:
      layer.set_weights(loaded.get_layer(layer.name).get_weights())
  return Source(model, model_config, vocab, f"compressed variant {folder.path}")


def load_source(config: CompressConfig) -> Source:
  """Loads the input model; errors name the flag to fix."""
  if config.model_dir:
    located = locate_variant(config.model_dir)
    if located is not None:  # a compressed variant: compress it further (a combination)
      return _variant_source(located[1])
    try:
      model, model_config, vocab = load_run(config.model_dir)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"--model_dir: {e}") from None
    return Source(model, model_config, vocab, f"run folder {config.model_dir}")
  from prunelm_tf.elmo import load_elmo  # h5py only when needed
  model, model_config = load_elmo(config.options_file, config.weight_file)
  return Source(model, model_config, None, f"ELMo {config.weight_file}")


def load_teacher(config: CompressConfig, source: Source, needs_softmax: bool,
                 needs_distill: bool):
  """The --teacher_dir model, checked against the input model; None without one."""
  if not config.teacher_dir:
    return None
  try:
    teacher = load_source(dataclasses.replace(config, model_dir=config.teacher_dir,
                                              options_file="", weight_file="", teacher_dir=""))
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--teacher_dir: {e}".replace("--model_dir: ", "")) from None
  mine, theirs = source.config, teacher.config
  problems = []
  if theirs.token_encoder != mine.token_encoder:
    problems.append(f"its tokens are {theirs.token_encoder} inputs, the input model's "
                    f"{mine.token_encoder}")
  if (source.vocab is not None and teacher.vocab is not None
      and teacher.vocab != source.vocab):
    problems.append("its vocabulary differs from the input model's")
  if needs_softmax and not theirs.has_softmax:
    problems.append("it has no softmax, and the kd objective learns its word distribution")
  if needs_distill and theirs.projection_dim != mine.projection_dim:
    problems.append(f"its representations have {2 * theirs.projection_dim} dimensions, the "
                    f"input model's {2 * mine.projection_dim} (distillation compares them)")
  if needs_distill and theirs.n_layers != mine.n_layers:
    problems.append(f"it has {theirs.n_layers} LSTM layers, the input model "
                    f"{mine.n_layers} (distillation compares every layer's representations)")
  if problems:
    raise ValueError(f"--teacher_dir={config.teacher_dir} cannot teach {source.description}: "
                     + "; ".join(problems) + ".")
  return teacher.model


def export_variant(model: keras.Model, folder: VariantFolder, config: CompressConfig,
                   parity_inputs: List[np.ndarray], seconds: Dict[str, float],
                   model_config: BiLMConfig,
                   int8_inputs: Optional[List[np.ndarray]] = None) -> Dict:
  """SavedModel, zip, TFLite per mode (reloaded and compared), ELMo HDF5; sizes.

  ``model_config`` is the variant's own architecture (it may differ from the
  source's); the ELMo export writes it into options.json. ``int8_inputs``
  calibrate the "int8" file (default: the parity inputs); both are limited to
  ``config.tflite_int8_max_tokens`` words for it (its fixed length).
  """
  sizes: Dict = {"tflite": {}}
  t = time.time()
  sm_dir = folder.saved_model
  export_saved_model(model, sm_dir)
  sizes["saved_model_bytes"] = path_bytes(sm_dir)
  sizes["saved_model_zip_bytes"] = zip_directory(sm_dir, folder.saved_model_zip)
  seconds["export_saved_model"] = time.time() - t
  diffs, parity, errors = {}, {}, {}
  # The Keras reference of each parity sentence, once for all modes.
  expected = [model(x, training=False)["representations"].numpy() for x in parity_inputs]
  int8_time = config.tflite_int8_max_tokens + 2
  for mode in config.tflite_quantization:
    t = time.time()
    path = folder.tflite(mode)
    # The int8 file has a fixed length: only sentences that fit calibrate and check it.
    fits = [k for k, x in enumerate(parity_inputs) if mode != "int8" or x.shape[1] <= int8_time]
    calibration = None
    if mode == "int8":
      calibration = [x for x in (parity_inputs if int8_inputs is None else int8_inputs)
                     if x.shape[1] <= int8_time]
    try:
      if mode == "int8" and not (fits and calibration):
        raise ConverterCrashed(
            f"no int8 TFLite: no parity or calibration sentence has at most "
            f"--tflite_int8_max_tokens={config.tflite_int8_max_tokens} words; raise it.")
      export_tflite(model, path, mode, saved_model_dir=sm_dir,
                    representative_inputs=(lambda: iter(calibration)) if calibration else None,
                    max_tokens=config.tflite_int8_max_tokens)
    except ConverterCrashed as e:
      # Recorded, not fatal: the other modes and variants are still worth having.
      logging.error("%s: %s", folder.path, e)
      errors[mode] = str(e)
      continue
    sizes["tflite"][mode] = {"bytes": path_bytes(path), "gzip_bytes": gzip_bytes(path)}
    runner = TFLiteBiLM(path)
    parity[mode] = representation_parity([runner(parity_inputs[k]) for k in fits],
                                         [expected[k] for k in fits])
    parity[mode]["sentences"] = len(fits)
    if mode == "int8":
      parity[mode]["calibration_sentences"] = len(calibration)
    diffs[mode] = parity[mode]["max_abs_diff"]
    seconds[f"export_tflite_{mode}"] = time.time() - t
  if config.export_elmo:
    from prunelm_tf.elmo import export_elmo
    t = time.time()
    os.makedirs(os.path.dirname(folder.elmo_weights), exist_ok=True)
    multiplied = export_elmo(model, model_config, folder.elmo_options, folder.elmo_weights)
    if multiplied:  # low-rank factors: ELMo's format holds their dense products
      sizes["elmo_hdf5_factors_multiplied_back"] = multiplied
    sizes["elmo_hdf5_bytes"] = path_bytes(folder.elmo_weights)
    sizes["elmo_hdf5_gzip_bytes"] = gzip_bytes(folder.elmo_weights)
    seconds["export_elmo"] = time.time() - t
  info = {"sizes": sizes, "tflite_max_abs_diff": diffs, "tflite_parity": parity}
  if "int8" in config.tflite_quantization:
    info["tflite_int8_max_tokens"] = config.tflite_int8_max_tokens
  if errors:
    info["tflite_errors"] = errors
  return info


def _check_variant_names(method, options, sweep) -> List[str]:
  names = [method.variant_name(options, s) for s in sweep]
  if len(set(names)) != len(names):
    raise ValueError(f"--{method.amount.flag if method.amount else 'sparsity_sweep'} values "
                     f"{sweep} give repeated variant names {names}; "
                     "use values that differ by at least 1 %.")
  return names


def compress(config: CompressConfig, run_dir: str, *, overwrite: bool = False,
             flags_text: Optional[str] = None, max_oov_rate: float = 0.2,
             strategy: Optional[tf.distribute.Strategy] = None,
             reuse_dense: Sequence[str] = ()) -> Dict:
  """Runs every variant of ``config`` into ``run_dir``; returns the report dict.

  All inputs are checked before any work: the input model, the corpora and
  their fit to the model's vocabulary, every per-layer pattern, the method's
  own rules, the run folder (which never overlaps an input).

  ``strategy`` (`prunelm_tf.training.distribute.strategy_from_environment`)
  makes retraining data-parallel over several workers; each worker runs this
  same call with its own ``run_dir`` and gets the same result.

  ``reuse_dense`` (--reuse_dense): other compression run folders; the first
  whose finished "dense" entry has the same settings (`run_folder.dense_settings`:
  the same input model, corpora, TFLite modes and parity sentences, whatever the
  method) is copied instead of being exported and measured again.
  """
  start = time.time()
  method, options = config.method_impl, config.method_options
  needs = method.needs(options)
  variant_names = _check_variant_names(method, options, config.sparsity_sweep)
  source = load_source(config)
  if needs.softmax and not source.config.has_softmax:
    raise ValueError(f"--method={config.method} with these options trains with an LM or KD "
                     f"loss, which needs a softmax, and {source.description} has none (ELMo "
                     "weight files never do). Use representation distillation "
                     "(--retrain_objective=distill).")
  method.check(options, config, source)
  retrain_config = getattr(options, "retrain", None)
  if retrain_config is not None:  # --retrain_frozen names layers of this model
    frozen_layers(retrain_config, source.model)
  teacher = load_teacher(config, source,
                         needs_softmax=bool(retrain_config and retrain_config.uses_kd),
                         needs_distill=bool(retrain_config and retrain_config.uses_distill))
  names = list(prunable_weights(source.model))
  for s in config.sparsity_sweep:  # patterns are checked once, before any work
    resolve_targets(names, s, config.layer_sparsity)
  eval_sentences = (load_corpus(config.eval, config.max_sentences, what="--eval")
                    if config.eval else None)
  if config.valid and not source.config.has_softmax:
    raise ValueError(f"--valid measures perplexity, which needs a softmax, and "
                     f"{source.description} has none (ELMo weight files never do); leave "
                     "--valid unset.")
  valid_sentences = (load_corpus(config.valid, config.max_sentences, what="--valid")
                     if config.valid else None)
  train_sentences = (load_corpus(config.train, config.max_sentences, what="--train")
                     if config.train and needs.train else None)
  calibration_sentences = (load_corpus(config.calibration, config.calibration_sentences,
                                       what="--calibration") if needs.calibration else None)
  # The int8 TFLite calibrates on --calibration when given (else the parity sentences).
  int8_sentences = calibration_sentences
  if "int8" in config.tflite_quantization and config.calibration and int8_sentences is None:
    int8_sentences = load_corpus(config.calibration, config.calibration_sentences,
                                 what="--calibration")
  if source.vocab is not None:
    for flag, sentences in (("--eval", eval_sentences), ("--valid", valid_sentences),
                            ("--train", train_sentences),
                            ("--calibration", int8_sentences or calibration_sentences)):
      if sentences is not None:
        check_corpus_fits(sentences, source.vocab, flag, max_oov_rate)
  parity_source = eval_sentences or train_sentences
  if parity_source is None:
    raise ValueError("set --eval (or --train): TFLite parity and int8 calibration need sentences.")
  folder = CompressionRunFolder(run_dir)
  inputs = {"--model_dir": config.model_dir, "--options_file": config.options_file,
            "--weight_file": config.weight_file, "--train": config.train, "--eval": config.eval,
            "--valid": config.valid, "--calibration": config.calibration,
            "--teacher_dir": config.teacher_dir}
  # Before the lock, which creates the folder: a refused folder is left as it was.
  files.check_run_dir(run_dir, config.to_json(), overwrite=overwrite, inputs=inputs,
                      canonical=CompressConfig.canonical_json)
  check_dense_donors(reuse_dense)
  # One process per run folder: a second one is refused, not interleaved.
  with files.run_dir_lock(run_dir):
    return _compress_locked(config, run_dir, folder, inputs, overwrite, flags_text, start, method,
                            options, variant_names, source, names, eval_sentences,
                            train_sentences, calibration_sentences, parity_source,
                            int8_sentences, strategy, teacher, valid_sentences,
                            reuse_dense=reuse_dense)


def _compress_locked(config, run_dir, folder, inputs, overwrite, flags_text, start, method,
                     options, variant_names, source, names, eval_sentences, train_sentences,
                     calibration_sentences, parity_source, int8_sentences=None,
                     strategy=None, teacher=None, valid_sentences=None,
                     reuse_dense=()) -> Dict:
  """The work of `compress` once its inputs are checked and the run folder is locked."""
  files.prepare_run_dir(run_dir, config.to_json(), overwrite=overwrite, inputs=inputs,
                        canonical=CompressConfig.canonical_json)
  files.write_text(folder.config_json, config.to_json() + "\n")
  if flags_text is not None:
    files.write_text(folder.flags_txt, flags_text)
  if reuse_dense and not folder.dense.is_complete():
    donor, refused = reuse_dense_entry(folder, json.loads(config.to_json()), reuse_dense)
    for other, why in refused.items():
      logging.warning("--reuse_dense: the dense entry of %s is not this run's (%s); not used.",
                      other, ", ".join(why))
    if donor is not None:
      logging.info("dense entry copied from %s (the same model and dense settings).", donor)

  parity_inputs = [next(iter(source.dataset([s], 1, shuffle=False)))[input_name(source.config)]
                   .numpy() for s in parity_source[:config.num_parity_sentences]]
  int8_inputs = None
  if int8_sentences is not None:
    int8_inputs = [next(iter(source.dataset([s], 1, shuffle=False)))[input_name(source.config)]
                   .numpy() for s in int8_sentences]
  eval_ds = ((lambda c, v: lambda: _model_dataset(c, v, eval_sentences)) if eval_sentences
             else None)

  def describe(model, model_config, vocab, vfolder: VariantFolder, record, seconds):
    vfolder.write_description(model_config, vocab, record)
    info = export_variant(model, vfolder, config, parity_inputs, seconds, model_config,
                          int8_inputs)
    t = time.time()
    with_ppl = model_config.has_softmax and eval_ds is not None
    info["perplexity"] = (_perplexity(model, eval_ds(model_config, vocab)())
                          if with_ppl else None)
    if valid_sentences and model_config.has_softmax:
      info["valid_perplexity"] = _perplexity(
          model, _model_dataset(model_config, vocab, valid_sentences))
    info["representation_fidelity"] = (
        representation_fidelity(model, source.model, eval_ds(source.config, source.vocab)())
        if eval_ds else {})
    info["representation_similarity"] = similarity_of(info["representation_fidelity"])
    seconds["evaluate"] = time.time() - t
    info["sparsity"] = measure_sparsity(model)
    info["num_parameters"] = int(model.count_params())
    info["seconds"] = seconds
    return info

  dense_folder = folder.dense
  if dense_folder.is_complete():
    dense = files.read_json(dense_folder.metrics_json)
  else:
    record = {"name": "dense", "method": "dense", "source": source.description}
    dense = {**record, **describe(source.model, source.config, source.vocab, dense_folder,
                                  record, {})}
    files.write_json(dense_folder.metrics_json, dense)
  logging.info("dense: %s", report.one_line(dense))

  # Weights set by --layer_sparsity keep their value; the rest are free for allocation.
  free = [n for n in names if n not in overridden_names(names, config.layer_sparsity)]
  record_options = options_record(options)
  variants = []
  for s, name in zip(config.sparsity_sweep, variant_names):
    vfolder = folder.variant(name)
    if vfolder.is_complete():
      logging.info("%s already complete; kept.", name)
      variants.append(files.read_json(vfolder.metrics_json))
      continue
    context = MethodContext(
        source=source, target_sparsity=s, targets=resolve_targets(names, s, config.layer_sparsity),
        free_weights=free, train_sentences=train_sentences,
        calibration_sentences=calibration_sentences, variant_dir=vfolder.path,
        tensorboard_dir=folder.tensorboard_dir(name), cache_dir=folder.cache_dir,
        seed=config.seed,
        make_dataset=lambda sentences, batch_size, shuffle, seed=0: source.dataset(
            sentences, batch_size, shuffle=shuffle, seed=seed),
        strategy=strategy, teacher=teacher, valid_sentences=valid_sentences)
    compressed = method.compress(options, context)
    # "amount" names the sweep value by its meaning (sparsity, params_removed, ...);
    # "target_sparsity" is the same value under the key earlier records and readers use.
    record = {"name": name, "method": config.method, "method_options": record_options,
              "target_sparsity": s}
    if method.amount is not None:
      record["amount"] = amount_record(method.amount, s)
    vocab = source.vocab if compressed.config.has_softmax or \
        compressed.config.token_encoder == "word" else None
    variant = {**record, **compressed.metrics,
               **describe(compressed.model, compressed.config, vocab, vfolder, record,
                          dict(compressed.seconds))}
    files.write_json(vfolder.metrics_json, variant)
    logging.info("%s: %s", name, report.one_line(variant))
    variants.append(variant)

  result = {"dense": dense, "variants": variants, "wall_seconds": time.time() - start}
  table = report.markdown_table(result) + report.fidelity_table(result)
  files.write_text(folder.summary_md, table)
  # write_hparams writes the folder whole and renames it: a resumed run replaces the
  # sessions instead of adding a second event file to each.
  write_hparams(folder.hparams_dir, report.hparam_sessions(result), report.METRICS)
  # Last: the run's metrics.json says that everything above is in place.
  files.write_json(folder.metrics_json, result)
  return result


def _perplexity(model, dataset) -> Dict[str, float]:
  """Forward, backward and mean perplexity of ``model`` on ``dataset`` (no counts)."""
  return {k: v for k, v in evaluate_perplexity(model, dataset).items() if k != "num_predictions"}


def _model_dataset(model_config: BiLMConfig, vocab, sentences):
  from prunelm_tf.compression.source import (  # pylint: disable=import-outside-toplevel
      EVAL_BATCH_SIZE, model_dataset)
  return model_dataset(model_config, vocab, sentences, EVAL_BATCH_SIZE, shuffle=False)
