"""Evaluation of compressed variants: perplexity, SST-2, NER, MRPC, CoLA, sizes and latency.

``evaluate(config, out_dir)`` evaluates every variant that ``config.target``
names (see ``variants.find_variants``) and, per variant, every TFLite
quantization mode it was exported in. Each (variant, mode) is one *entry*:

* perplexity: mode "none" with the Keras model (the float32 TFLite file
  matches it to ~1e-6, see the compression tests); other modes with an LM
  TFLite file converted in that same mode, softmax included, so the number is
  the perplexity of the quantized artifact, not of its float original;
* SST-2 dev accuracy of a frozen-feature probe (``downstream``): mode "none"
  with the Keras model, other modes with the TFLite file itself; the same
  probe config and seed for every entry;
* sizes: SavedModel (raw, zip) and the TFLite file (raw, gzip, zip);
* latency (``latency``): the TFLite file at each thread count, and, on the
  "none" entry, the SavedModel;
* throughput (``latency.measure_throughput``): words per second of the TFLite
  file embedding ``throughput_sentences`` sentences of ``throughput_corpus``
  one at a time, at each thread count.

Each entry is written to ``out_dir/<variant>/<mode>/evaluation.json`` when
done, so an interrupted evaluation resumes where it stopped; ``out_dir``
also holds the per-entry SST-2 feature caches and LM TFLite files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import numpy as np

from prunelm_tf import data as data_lib
from prunelm_tf.elmo.embedder import ElmoEmbedder, Embedder
from prunelm_tf.evaluation import cola, downstream, feature_cache, latency, mrpc, ner, perplexity
from prunelm_tf.evaluation.variants import Variant, find_variants
from prunelm_tf.export.sizes import zip_file_bytes
from prunelm_tf.export.tflite import QUANTIZATION_MODES, SentenceTooLong, TFLiteBiLM
from prunelm_tf.training.run_folder import WEIGHTS_FILE
from prunelm_tf.utils import files


# The downstream protocols (EvaluateConfig.downstream_protocol).
DOWNSTREAM_PROTOCOLS = ("retrain", "dropin")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
  """What to evaluate and how."""

  # A pipelines.compress run folder, one of its variant folders, or a
  # pipelines.train run folder.
  target: str
  # Only these variants ("" = all), e.g. ("dense", "retrain_90").
  variants: tuple = ()
  # Only these TFLite modes (those a variant has); () = all it has.
  quantization: tuple = ()
  # Corpus for perplexity (file glob or tfds:NAME/SPLIT); "" = skip.
  perplexity_corpus: str = ""
  # Read at most this many perplexity sentences; 0 = all.
  max_sentences: int = 0
  # Folder with SST-2 train.tsv and dev.tsv; "" = skip the downstream task.
  sst2_dir: str = ""
  probe: downstream.ProbeConfig = dataclasses.field(default_factory=downstream.ProbeConfig)
  # Folder with CoNLL-2003 eng.train / eng.testa / eng.testb; "" = skip NER.
  ner_dir: str = ""
  # The NER tagger and its training.
  ner: Any = None
  # Tagger seeds: two or more give NER F1 as mean ± std over them (features
  # computed once); () = the one seed of `ner`.
  ner_seeds: tuple = ()
  # Folder with GLUE MRPC train.tsv and dev.tsv; "" = skip MRPC (uses `probe`).
  mrpc_dir: str = ""
  # Folder with GLUE CoLA train.tsv and dev.tsv; "" = skip CoLA (Matthews correlation of
  # the `probe` on dev).
  cola_dir: str = ""
  # Latency measurement; measure_latency=False skips it.
  latency: latency.LatencyConfig = dataclasses.field(default_factory=latency.LatencyConfig)
  measure_latency: bool = True
  # Corpus (file glob or tfds:NAME/SPLIT) whose first `throughput_sentences`
  # sentences each TFLite file embeds, batch 1, for its words per second at
  # each latency thread count (with the latency pass); "" = skip.
  throughput_corpus: str = ""
  throughput_sentences: int = 1000
  # Threads of the LiteRT interpreter for perplexity / SST-2 (not latency).
  num_threads: int = 2
  # How the downstream models meet each entry (SST-2, CoLA, MRPC, NER): "retrain" trains
  # the probe / tagger on the entry's own features (how much information is left);
  # "dropin" trains them once (per NER seed) on the dense model's features and feeds every
  # entry's features to them unchanged, same mix and standardization (whether a user's
  # downstream model keeps working).
  downstream_protocol: tuple = ("retrain",)

  def __post_init__(self):
    object.__setattr__(self, "variants", tuple(self.variants))
    object.__setattr__(self, "downstream_protocol", tuple(self.downstream_protocol))
    protocols = self.downstream_protocol
    if not protocols or len(set(protocols)) != len(protocols) or \
        not set(protocols) <= set(DOWNSTREAM_PROTOCOLS):
      raise ValueError(f"--downstream_protocol takes one or both of "
                       f"{', '.join(DOWNSTREAM_PROTOCOLS)} (e.g. dropin,retrain), got "
                       f"{','.join(protocols) or 'nothing'}.")
    object.__setattr__(self, "quantization", tuple(self.quantization))
    object.__setattr__(self, "ner_seeds", tuple(int(s) for s in self.ner_seeds))
    if self.ner_seeds and (len(self.ner_seeds) < 2
                           or len(set(self.ner_seeds)) != len(self.ner_seeds)):
      raise ValueError(f"--ner_seeds needs at least two distinct seeds for a spread, got "
                       f"{list(self.ner_seeds)}; e.g. --ner_seeds=0,1,2 (or leave it empty).")
    if not self.target:
      raise ValueError("set the model to evaluate (a compression run folder, a variant folder "
                       "or a training run folder).")
    for mode in self.quantization:
      if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose from "
                         f"{', '.join(QUANTIZATION_MODES)}.")
    if self.max_sentences < 0 or self.num_threads < 1:
      raise ValueError("max_sentences must be >= 0 and num_threads >= 1.")
    if isinstance(self.throughput_sentences, bool) or \
        not isinstance(self.throughput_sentences, int) or self.throughput_sentences < 1:
      raise ValueError(f"throughput_sentences must be an integer >= 1, got "
                       f"{self.throughput_sentences!r}.")
    if self.ner is None:
      object.__setattr__(self, "ner", ner.NerConfig())
    for flag, folder, names in (("ner_dir", self.ner_dir, ("eng.train", "eng.testa", "eng.testb")),
                                ("mrpc_dir", self.mrpc_dir, ("train.tsv", "dev.tsv")),
                                ("cola_dir", self.cola_dir, cola.FILES)):
      for name in names if folder else ():
        if not os.path.exists(os.path.join(folder, name)):
          raise FileNotFoundError(f"--{flag}={folder} has no {name}; it must hold "
                                  f"{', '.join(names)}.")
    if self.sst2_dir:
      for split in ("train.tsv", "dev.tsv"):
        if not os.path.exists(os.path.join(self.sst2_dir, split)):
          raise FileNotFoundError(f"sst2_dir {self.sst2_dir} has no {split}; it must hold the "
                                  "GLUE SST-2 train.tsv and dev.tsv.")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


class TFLiteEmbedder(Embedder):
  """Embeds sentences with a representation TFLite file (word or char input), one at a time."""

  stateful = False

  def __init__(self, tflite_file: str, config, vocab: Optional[data_lib.Vocabulary], *,
               num_threads: int = 2):
    if config.token_encoder == "word" and vocab is None:
      raise ValueError(f"{tflite_file} takes word ids; its vocabulary is needed.")
    self._runner = TFLiteBiLM(tflite_file, num_threads=num_threads)
    self._config, self._vocab = config, vocab

  def embed_batch(self, sentences: Sequence[Sequence[str]]) -> List[np.ndarray]:
    out = []
    for tokens in sentences:
      if self._config.token_encoder == "word":
        ids = data_lib.encode_sentence(tokens, self._vocab)[np.newaxis]
      else:
        ids = data_lib.sentence_to_char_ids(
            tokens, self._config.char_cnn.max_characters_per_token)[np.newaxis]
      out.append(np.array(self._runner(ids)[0, :, :len(tokens)], np.float32))
    return out

  def _processing_order(self, sentences) -> List[int]:
    # Equal lengths in a row avoid re-allocating the interpreter's tensors.
    return sorted(range(len(sentences)), key=lambda i: len(sentences[i]))


def _entry_skeleton(variant: Variant, mode: str, group: str) -> Dict:
  m = variant.metrics
  sizes = m.get("sizes", {})
  tfl = sizes.get("tflite", {}).get(mode, {})
  record = variant.record or {}
  return {
      "name": f"{variant.name}/{mode}", "variant": variant.name, "group": group,
      # What made it, as data (never parsed back from the name).
      "method": record.get("method", "dense"),
      "method_options": record.get("method_options"),
      "target_sparsity": record.get("target_sparsity", 0.0),
      # JSON form (lists, not tuples), so a resumed entry equals a fresh one.
      "architecture": json.loads(json.dumps(variant.config.to_dict())),
      "num_parameters": m.get("num_parameters"),
      "sparsity": (m.get("sparsity") or {}).get("overall"), "quantization": mode,
      "perplexity": None, "sst2_accuracy": None, "ner_test_f1": None, "mrpc_accuracy": None,
      "mrpc_f1": None, "cola_mcc": None, "cola_accuracy": None,
      "sst2_dropin_accuracy": None, "cola_dropin_mcc": None, "ner_dropin_test_f1": None,
      "mrpc_dropin_accuracy": None, "mrpc_dropin_f1": None,
      "sizes": {"saved_model_bytes": sizes.get("saved_model_bytes"),
                "saved_model_zip_bytes": sizes.get("saved_model_zip_bytes"),
                "tflite_bytes": tfl.get("bytes"), "tflite_gzip_bytes": tfl.get("gzip_bytes"),
                "tflite_zip_bytes": (zip_file_bytes(variant.tflite[mode]) if mode in variant.tflite
                                     else None)},
      "latency": {"tflite": {}, "saved_model": {}}, "throughput": {"tflite": {}},
      "errors": {}, "seconds": {}}


def artifact_fingerprint(variant: Variant, mode: str) -> str:
  """sha256 of the files a (variant, mode) entry reads: its model, and its TFLite file.

  The Keras model (SavedModel, or a training run's weights) gives perplexity
  and the "none" entry's downstream features; a quantized entry also reads
  the TFLite file of its mode. An entry and its latency / throughput / LM
  TFLite caches belong to the artifacts they measured: a different
  fingerprint means the variant was made again. "" when there is no file.
  """
  paths = []
  if variant.saved_model:
    for root, _, names in os.walk(variant.saved_model):
      paths += [os.path.join(root, n) for n in names]
  elif variant.directory and os.path.exists(os.path.join(variant.directory, WEIGHTS_FILE)):
    paths = [os.path.join(variant.directory, WEIGHTS_FILE)]
  base = variant.saved_model or variant.directory
  parts = [os.path.relpath(p, base) + ":" + feature_cache.fingerprint_file(p)
           for p in sorted(paths)]
  if mode != "none" and mode in variant.tflite:
    parts.append(f"tflite_{mode}:" + feature_cache.fingerprint_file(variant.tflite[mode]))
  if not parts:
    return ""
  return hashlib.sha256(";".join(parts).encode()).hexdigest()


def _json_form(value: Any) -> Any:
  """``value`` as it reads back from JSON (tuples become lists), for comparing records."""
  return json.loads(json.dumps(value, sort_keys=True, default=str))


def _sentences_identity(spec: str, sentences) -> Optional[Dict]:
  """What a corpus contributed to a figure: its spec, how many sentences, their content hash."""
  if sentences is None:
    return None
  digest = hashlib.sha256("\n".join(" ".join(s) for s in sentences).encode("utf-8"))
  return {"spec": spec, "sentences": len(sentences), "sha256": digest.hexdigest()}


def _folder_identity(folder: str, names: Sequence[str]) -> Optional[Dict]:
  """A task folder's path and the content hash of each file the task reads."""
  if not folder:
    return None
  return {"dir": folder, "sha256": {n: feature_cache.fingerprint_file(os.path.join(folder, n))
                                    for n in names}}


def quality_settings(config: EvaluateConfig, ppl_sentences) -> Dict:
  """Everything that determines an entry's perplexity and downstream figures.

  An ``evaluation.json`` is reused only when it recorded exactly these
  settings (and the same artifact): another corpus, sentence limit, task
  data, probe or tagger config, seeds or thread count measures again.
  """
  return _json_form({
      "perplexity_corpus": _sentences_identity(config.perplexity_corpus, ppl_sentences),
      "max_sentences": config.max_sentences,
      "sst2": _folder_identity(config.sst2_dir, ("train.tsv", "dev.tsv")),
      "ner": _folder_identity(config.ner_dir, ("eng.train", "eng.testa", "eng.testb")),
      "mrpc": _folder_identity(config.mrpc_dir, ("train.tsv", "dev.tsv")),
      "cola": _folder_identity(config.cola_dir, cola.FILES),
      "probe": (config.probe.to_dict() if (config.sst2_dir or config.mrpc_dir or config.cola_dir)
                else None),
      "ner_config": config.ner.to_dict() if config.ner_dir else None,
      "ner_seeds": list(config.ner_seeds) if config.ner_dir else None,
      "num_threads": config.num_threads,
      "downstream_protocol": list(config.downstream_protocol),
  })


def _ids_sha256(ids) -> str:
  digest = hashlib.sha256()
  for a in ids:
    digest.update(str(a.shape).encode("ascii"))
    digest.update(np.ascontiguousarray(a, np.int32).tobytes())
  return digest.hexdigest()


def _cached(path: str, settings: Dict) -> Optional[Dict]:
  """The record at ``path`` if it was measured with ``settings``; a stale one is removed."""
  if not os.path.exists(path):
    return None
  record = files.read_json(path)
  if record.get("settings") == settings:
    return record
  logging.warning("%s was measured with other settings (%s); measuring again.", path,
                  ", ".join(sorted(k for k in set(settings) | set(record.get("settings") or {})
                                   if (record.get("settings") or {}).get(k) != settings.get(k))))
  os.remove(path)
  return None


def evaluate_variant(variant: Variant, mode: str, config: EvaluateConfig, out_dir: str, *,
                     group: str = "", ppl_sentences=None, latency_ids=None,
                     throughput_ids=None, settings: Optional[Dict] = None,
                     reference: Optional[Dict] = None) -> Dict:
  """Evaluates one (variant, quantization mode); returns its entry (cached on disk).

  Perplexity, SST-2 and sizes are cached in ``evaluation.json``, latency
  separately in ``latency.json``: latency can be measured later, in a pass of
  its own on a quiet machine (``measure_latency=False`` first, then True).
  Each cache records the settings it was measured with (``quality_settings``;
  ``settings`` is computed from ``config`` when not given) and is measured
  again when they differ. ``reference`` is `dropin_reference`'s result (drop-in protocol).
  """
  entry_dir = os.path.join(out_dir, variant.name, mode)
  done = os.path.join(entry_dir, "evaluation.json")
  artifact = artifact_fingerprint(variant, mode)
  if settings is None:
    settings = quality_settings(config, ppl_sentences)
  entry = _cached(done, settings)
  # (An entry written before entries recorded their fingerprint is taken as it is.)
  if entry is not None and entry.get("artifact_fingerprint", artifact) != artifact:
    # The variant was made again (e.g. compress --overwrite): nothing cached for the
    # old artifact may stand for the new one.
    logging.warning("%s: the %s artifact changed since it was evaluated; evaluating it again.",
                    entry_dir, mode)
    for name in ("evaluation.json", "latency.json", "throughput.json", f"lm_{mode}.tflite"):
      if os.path.exists(os.path.join(entry_dir, name)):
        os.remove(os.path.join(entry_dir, name))
    entry = None
  if entry is None:
    entry = _evaluate_quality(variant, mode, config, entry_dir, group, ppl_sentences, artifact,
                              settings, reference)
  if config.measure_latency and latency_ids is not None and not entry["errors"].get("tflite"):
    measured = _latency(variant, mode, config, entry_dir, latency_ids)
    entry["latency"] = {k: measured[k] for k in ("tflite", "saved_model")}
    for threads, message in measured.get("errors", {}).items():
      entry["errors"][f"latency_tflite_{threads}"] = message
    entry["seconds"]["latency"] = measured["seconds"]
  if config.measure_latency and throughput_ids and mode in variant.tflite and \
      not entry["errors"].get("tflite"):
    measured = _throughput(variant, mode, config, entry_dir, throughput_ids)
    entry["throughput"] = {"tflite": measured["tflite"]}
    for threads, message in measured.get("errors", {}).items():
      entry["errors"][f"throughput_tflite_{threads}"] = message
    entry["seconds"]["throughput"] = measured["seconds"]
  return entry


def _throughput(variant: Variant, mode: str, config: EvaluateConfig, entry_dir: str,
                throughput_ids) -> Dict:
  """TFLite words per second per thread count over the throughput sentences, cached."""
  path = os.path.join(entry_dir, "throughput.json")
  settings = _json_form({"threads": config.latency.threads,
                         "timeout_seconds": config.latency.timeout_seconds,
                         "corpus": config.throughput_corpus,
                         "sentences": len(throughput_ids), "ids_sha256": _ids_sha256(throughput_ids)})
  cached = _cached(path, settings)
  if cached is not None:
    return cached
  result, errors, t = {"tflite": {}, "settings": settings}, {}, time.time()
  for threads in config.latency.threads:
    try:
      result["tflite"][str(threads)] = latency.measure_throughput(
          variant.tflite[mode], throughput_ids, threads=threads,
          timeout_seconds=config.latency.timeout_seconds)
    except RuntimeError as e:  # recorded, not fatal
      errors[str(threads)] = str(e)
  if errors:
    result["errors"] = errors
  result["seconds"] = time.time() - t
  files.write_json(path, result)
  return result


def encode_sentences(sentences, config, vocab) -> List[np.ndarray]:
  """Model ids [1, time(, chars)] per sentence, as ``TFLiteEmbedder`` feeds them."""
  if config.token_encoder == "word":
    return [data_lib.encode_sentence(tokens, vocab)[np.newaxis] for tokens in sentences]
  return [data_lib.sentence_to_char_ids(tokens, config.char_cnn.max_characters_per_token)
          [np.newaxis] for tokens in sentences]


def _latency(variant: Variant, mode: str, config: EvaluateConfig, entry_dir: str,
             latency_ids) -> Dict:
  """TFLite latency per thread count (and the SavedModel's on the "none" entry), cached."""
  path = os.path.join(entry_dir, "latency.json")
  settings = _json_form({"latency": dataclasses.asdict(config.latency),
                         "ids_sha256": _ids_sha256([latency_ids])})
  cached = _cached(path, settings)
  if cached is not None:
    return cached
  lat, errors = config.latency, {}
  result = {"tflite": {}, "saved_model": {}, "settings": settings}
  t = time.time()
  for threads in lat.threads:
    if mode in variant.tflite:
      try:
        result["tflite"][str(threads)] = latency.measure_latency(
            "tflite", variant.tflite[mode], latency_ids, threads=threads, warmup=lat.warmup,
            runs=lat.runs, timeout_seconds=lat.timeout_seconds)
      except RuntimeError as e:  # e.g. a delegate crash: recorded, not fatal
        errors[str(threads)] = str(e)
    if mode == "none" and variant.saved_model:
      result["saved_model"][str(threads)] = latency.measure_latency(
          "saved_model", variant.saved_model, latency_ids, threads=threads,
          warmup=lat.warmup, runs=lat.runs, timeout_seconds=lat.timeout_seconds)
  if errors:
    result["errors"] = errors
  result["seconds"] = time.time() - t
  files.write_json(path, result)
  return result


def _evaluate_quality(variant: Variant, mode: str, config: EvaluateConfig, entry_dir: str,
                      group: str, ppl_sentences, artifact: str, settings: Dict,
                      reference: Optional[Dict] = None) -> Dict:
  """Perplexity, SST-2 and sizes of one entry, written to evaluation.json."""
  done = os.path.join(entry_dir, "evaluation.json")
  os.makedirs(entry_dir, exist_ok=True)
  entry = _entry_skeleton(variant, mode, group)
  entry["artifact_fingerprint"] = artifact  # `artifact_fingerprint` of (variant, mode)
  entry["settings"] = settings  # `quality_settings`: what the figures were measured with
  conversion_error = variant.metrics.get("tflite_errors", {}).get(mode)
  if conversion_error:  # e.g. int8: the converter crashed; nothing to run
    entry["errors"]["tflite"] = conversion_error
    files.write_json(done, entry)
    return entry
  model = None
  if variant.saved_model:
    from prunelm_tf.export.saved_model import load_saved_model
    model = load_saved_model(variant.saved_model)
  elif variant.directory and variant.name == "dense" and variant.metrics == {}:
    from prunelm_tf.training.run_folder import load_run  # a training run folder
    model = load_run(variant.directory)[0]

  t = time.time()
  if ppl_sentences is not None and variant.config.has_softmax and model is not None:
    if mode == "none":
      from prunelm_tf.training.loop import evaluate_perplexity
      ds = data_lib.make_dataset(ppl_sentences, variant.vocab, batch_size=64,
                                 char_inputs=variant.config.token_encoder == "char",
                                 max_characters_per_token=(
                                     variant.config.char_cnn.max_characters_per_token),
                                 shuffle=False)
      ppl = evaluate_perplexity(model, ds)
    else:
      lm_path = os.path.join(entry_dir, f"lm_{mode}.tflite")
      try:
        if not os.path.exists(lm_path):
          perplexity.export_lm_tflite(model, lm_path, mode)
        ppl = perplexity.tflite_perplexity(lm_path, ppl_sentences, variant.vocab,
                                           num_threads=config.num_threads)
      except ValueError as e:  # e.g. int8: the converter cannot do it
        entry["errors"]["perplexity"] = str(e)
        ppl = None
    if ppl is not None:
      entry["perplexity"] = {k: ppl[k] for k in ("forward", "backward", "mean")}
  entry["seconds"]["perplexity"] = time.time() - t

  t = time.time()
  # Downstream tasks read the artifact that ships: the Keras model for "none",
  # the TFLite file of the mode otherwise.
  embedder: Optional[Embedder] = None
  fingerprint = ""
  if config.sst2_dir or config.ner_dir or config.mrpc_dir or config.cola_dir:
    if mode == "none" and model is not None:
      embedder = ElmoEmbedder(model, variant.config, vocab=variant.vocab)
      fingerprint = "keras:" + feature_cache.fingerprint_weights(model)
    elif mode in variant.tflite:
      embedder = TFLiteEmbedder(variant.tflite[mode], variant.config, variant.vocab,
                                num_threads=config.num_threads)
      fingerprint = "tflite:" + feature_cache.fingerprint_file(variant.tflite[mode])
  # A fixed-length (int8) file refuses sentences longer than its length: that
  # task is recorded as not measurable for this entry, the others still run.
  retrain = "retrain" in config.downstream_protocol
  if config.sst2_dir and retrain:
    if embedder is not None:
      try:
        result = downstream.evaluate_sst2(
            embedder, os.path.join(config.sst2_dir, "train.tsv"),
            os.path.join(config.sst2_dir, "dev.tsv"), cache_dir=os.path.join(entry_dir, "sst2"),
            probe=config.probe, model_fingerprint=fingerprint)
        entry["sst2_accuracy"] = result["accuracy"]
        entry["sst2"] = {k: result[k] for k in ("train_accuracy", "scalar_mix_weights", "gamma",
                                                "num_train", "num_dev", "majority_baseline")}
      except SentenceTooLong as e:
        entry["errors"]["sst2"] = str(e)
  entry["seconds"]["sst2"] = time.time() - t
  if config.ner_dir and embedder is not None and retrain:
    t = time.time()
    try:
      if config.ner_seeds:
        result = ner.ner_f1_spread(embedder, config.ner_dir, os.path.join(entry_dir, "ner"),
                                   fingerprint, config.ner, seeds=config.ner_seeds)
        entry["ner"] = result
        entry["ner_test_f1"] = result["test_f1"]["mean"]
        entry["ner_test_f1_std"] = result["test_f1"]["std"]
      else:
        result = ner.evaluate_ner(embedder, config.ner_dir, os.path.join(entry_dir, "ner"),
                                  fingerprint, config.ner)
        entry["ner"] = result
        entry["ner_test_f1"] = result["test_f1"]
    except SentenceTooLong as e:
      entry["errors"]["ner"] = str(e)
    entry["seconds"]["ner"] = time.time() - t
  if config.mrpc_dir and embedder is not None and retrain:
    t = time.time()
    try:
      result = mrpc.evaluate_mrpc(embedder, os.path.join(config.mrpc_dir, "train.tsv"),
                                  os.path.join(config.mrpc_dir, "dev.tsv"),
                                  cache_dir=os.path.join(entry_dir, "mrpc"),
                                  model_fingerprint=fingerprint, probe=config.probe)
      entry["mrpc"] = result
      entry["mrpc_accuracy"], entry["mrpc_f1"] = result["accuracy"], result["f1"]
    except SentenceTooLong as e:
      entry["errors"]["mrpc"] = str(e)
    entry["seconds"]["mrpc"] = time.time() - t
  if config.cola_dir and embedder is not None and retrain:
    t = time.time()
    try:
      result = cola.evaluate_cola(embedder, os.path.join(config.cola_dir, "train.tsv"),
                                  os.path.join(config.cola_dir, "dev.tsv"),
                                  cache_dir=os.path.join(entry_dir, "cola"),
                                  model_fingerprint=fingerprint, probe=config.probe)
      entry["cola"] = {k: result[k] for k in ("train_accuracy", "scalar_mix_weights", "gamma",
                                              "num_train", "num_dev", "majority_baseline")}
      entry["cola_mcc"], entry["cola_accuracy"] = result["matthews_corrcoef"], result["accuracy"]
    except SentenceTooLong as e:
      entry["errors"]["cola"] = str(e)
    entry["seconds"]["cola"] = time.time() - t
  if "dropin" in config.downstream_protocol and embedder is not None and reference:
    t = time.time()
    _dropin(entry, variant, embedder, fingerprint, config, entry_dir, reference)
    entry["seconds"]["dropin"] = time.time() - t

  files.write_json(done, entry)
  logging.info("evaluated %s: ppl %s  sst2 %s", entry["name"],
               entry["perplexity"] and round(entry["perplexity"]["mean"], 2),
               entry["sst2_accuracy"])
  return entry


def _ner_seeds(config: EvaluateConfig) -> List[int]:
  return list(config.ner_seeds) or [config.ner.seed]


def _representation_shape(config) -> tuple:
  """[n_layers + 1, 2 * projection] of a biLM's representations."""
  return (config.n_layers + 1, 2 * config.projection_dim)


def dropin_reference(dense: Variant, config: EvaluateConfig, out_dir: str,
                     settings: Dict) -> Dict:
  """The downstream models of the drop-in protocol, trained once on the dense model.

  SST-2, CoLA and MRPC probes (``config.probe``) and one NER tagger per seed are trained on the
  dense Keras model's features (cached in ``out_dir/dense/none/<task>``, the dense entry's
  own caches) and saved in ``out_dir/dropin/`` (``feature_cache.save_frozen_model``), with
  ``reference.json`` naming the dense artifact and the settings; a reference of another
  model or other settings is trained again.

  Returns:
    {"shape": [n_layers + 1, dim], "sst2": path, "cola": path, "ner": {seed: path}} for the
    tasks configured.
  """
  folder = os.path.join(out_dir, "dropin")
  record_path = os.path.join(folder, "reference.json")
  record = {"dense_artifact": artifact_fingerprint(dense, "none"),
            "settings": {k: settings[k] for k in ("sst2", "cola", "mrpc", "ner", "probe",
                                                  "ner_config", "ner_seeds")}}
  paths = {"shape": list(_representation_shape(dense.config))}
  if config.sst2_dir:
    paths["sst2"] = os.path.join(folder, "sst2_probe.npz")
  if config.cola_dir:
    paths["cola"] = os.path.join(folder, "cola_probe.npz")
  if config.mrpc_dir:
    paths["mrpc"] = os.path.join(folder, "mrpc_probe.npz")
  if config.ner_dir:
    paths["ner"] = {s: os.path.join(folder, f"ner_tagger_seed{s}.npz") for s in _ner_seeds(config)}
  wanted = [p for k, p in paths.items() if k in ("sst2", "cola", "mrpc")] + list(
      paths.get("ner", {}).values())
  if os.path.exists(record_path) and files.read_json(record_path) == _json_form(record) and \
      all(os.path.exists(p) for p in wanted):
    return paths
  from prunelm_tf.export.saved_model import load_saved_model
  if dense.saved_model:
    model = load_saved_model(dense.saved_model)
  else:
    from prunelm_tf.training.run_folder import load_run
    model = load_run(dense.directory)[0]
  embedder = ElmoEmbedder(model, dense.config, vocab=dense.vocab)
  fingerprint = "keras:" + feature_cache.fingerprint_weights(model)
  dense_dir = os.path.join(out_dir, dense.name, "none")
  logging.info("drop-in: training the downstream models once on the dense model's features.")
  # The tasks' own evaluation, on the dense model's cached features, keeping the probe.
  for task, evaluate_task, task_dir in (("sst2", downstream.evaluate_sst2, config.sst2_dir),
                                        ("cola", cola.evaluate_cola, config.cola_dir),
                                        ("mrpc", mrpc.evaluate_mrpc, config.mrpc_dir)):
    if task_dir:
      evaluate_task(embedder, os.path.join(task_dir, "train.tsv"),
                    os.path.join(task_dir, "dev.tsv"), cache_dir=os.path.join(dense_dir, task),
                    model_fingerprint=fingerprint, probe=config.probe, save_frozen=paths[task])
  if config.ner_dir:
    splits = ner.split_features(embedder, config.ner_dir, os.path.join(dense_dir, "ner"),
                                fingerprint, config.ner, ("train", "dev"))
    for seed, path in paths["ner"].items():
      ner.train_tagger(*splits["train"], *splits["dev"],
                       config=dataclasses.replace(config.ner, seed=seed), save_frozen=path)
  files.write_json(record_path, _json_form(record))
  return paths


def _dropin(entry: Dict, variant: Variant, embedder: Embedder, fingerprint: str,
            config: EvaluateConfig, entry_dir: str, reference: Dict) -> None:
  """The entry's features fed to the dense model's downstream models, unchanged."""
  shape = list(_representation_shape(variant.config))
  if shape != reference["shape"]:
    entry["dropin"] = {"not_dropin": (
        f"representations of [n_layers + 1, dim] = {shape}, the dense model's are "
        f"{reference['shape']}: a downstream model trained on the dense model cannot read "
        "them")}
    return
  result: Dict[str, Any] = {}
  try:
    for task, read, cache_name in (("sst2", downstream.read_sentence_labels, downstream.DEV_CACHE),
                                   ("cola", cola.read_cola, cola.DEV_CACHE)):
      if task not in reference:
        continue
      task_dir = config.sst2_dir if task == "sst2" else config.cola_dir
      sentences, labels = read(os.path.join(task_dir, "dev.tsv"))
      features = downstream.pooled_features(
          embedder, sentences, cache_path=os.path.join(entry_dir, task, cache_name),
          model_fingerprint=fingerprint)
      result[task] = downstream.score_frozen_probe(reference[task], features, labels,
                                                   config.probe)
    if "mrpc" in reference:
      pairs, labels = mrpc.read_mrpc(os.path.join(config.mrpc_dir, "dev.tsv"))
      first, second = mrpc.pair_features(
          embedder, pairs, cache_path=os.path.join(entry_dir, "mrpc", mrpc.DEV_CACHE),
          model_fingerprint=fingerprint)
      result["mrpc"] = mrpc.score_frozen_pair_probe(reference["mrpc"], first, second, labels,
                                                    config.probe)
    if "ner" in reference:
      splits = ner.split_features(embedder, config.ner_dir, os.path.join(entry_dir, "ner"),
                                  fingerprint, config.ner, ("dev", "test"))
      runs = {str(seed): {split: ner.score_frozen_tagger(path, *splits[split], config.ner)
                          ["overall"]["f1"] for split in ("dev", "test")}
              for seed, path in reference["ner"].items()}
      test = [r["test"] for r in runs.values()]
      result["ner"] = {"seeds": runs, "test_f1_mean": float(np.mean(test)),
                       "test_f1_std": float(np.std(test, ddof=1)) if len(test) > 1 else 0.0}
  except SentenceTooLong as e:
    entry["errors"]["dropin"] = str(e)
  entry["dropin"] = result
  if "sst2" in result:
    entry["sst2_dropin_accuracy"] = result["sst2"]["accuracy"]
  if "cola" in result:
    entry["cola_dropin_mcc"] = result["cola"]["matthews_corrcoef"]
  if "mrpc" in result:
    entry["mrpc_dropin_accuracy"] = result["mrpc"]["accuracy"]
    entry["mrpc_dropin_f1"] = result["mrpc"]["f1"]
  if "ner" in result:
    entry["ner_dropin_test_f1"] = result["ner"]["test_f1_mean"]
    entry["ner_dropin_test_f1_std"] = result["ner"]["test_f1_std"]


def evaluate(config: EvaluateConfig, out_dir: str, *, group: str = "",
             skip: Sequence[str] = ()) -> List[Dict]:
  """Evaluates every (variant, mode) of ``config.target`` into ``out_dir``; returns the entries.

  Args:
    skip: variant names not to evaluate (e.g. "dense" when another run's
      dense model was evaluated already).
  """
  variants = find_variants(config.target)
  dense = next((v for v in variants if v.name == "dense"), None)
  dropin = "dropin" in config.downstream_protocol and bool(
      config.sst2_dir or config.cola_dir or config.mrpc_dir or config.ner_dir)
  if dropin and dense is None:
    raise ValueError(f"--downstream_protocol=dropin feeds every variant to downstream models "
                     f"trained on the dense model, and {config.target} holds no dense model; "
                     "pass the compression run folder as --target (with --variants to choose).")
  if config.variants:
    unknown = set(config.variants) - {v.name for v in variants}
    if unknown:
      raise ValueError(f"variants {sorted(unknown)} are not in {config.target}; it has "
                       f"{[v.name for v in variants]}.")
    variants = [v for v in variants if v.name in config.variants]
  variants = [v for v in variants if v.name not in skip]
  ppl_sentences = None
  if config.perplexity_corpus:
    from prunelm_tf.data.corpus import load_corpus
    ppl_sentences = load_corpus(config.perplexity_corpus, config.max_sentences,
                                what="perplexity corpus")
  throughput_sentences = None
  if config.throughput_corpus and config.measure_latency:
    from prunelm_tf.data.corpus import load_corpus
    throughput_sentences = load_corpus(config.throughput_corpus, config.throughput_sentences,
                                       what="throughput corpus")
  check_out_dir(config, out_dir)
  for v in variants:  # a foreign SavedModel is refused before anything is written
    if v.saved_model:
      from prunelm_tf.export.saved_model import check_saved_model
      check_saved_model(v.saved_model)
  settings = quality_settings(config, ppl_sentences)
  created = not os.path.exists(out_dir)
  try:
    # One process per evaluation folder: a second one is refused, not interleaved.
    with files.run_dir_lock(out_dir, flag_name="evaluation folder"):
      files.mark_run_dir(out_dir)
      reference = dropin_reference(dense, config, out_dir, settings) if dropin else None
      entries = _evaluate_locked(config, out_dir, variants, group, ppl_sentences,
                                 throughput_sentences, settings, reference)
      # Written last: it describes what the entries above were measured with.
      files.write_json(os.path.join(out_dir, "evaluate_config.json"),
                       _json_form({"config": config.to_dict(), "inputs": settings}))
      return entries
  except BaseException:
    if created:  # a refused or failed evaluation leaves no empty folder behind
      files.remove_unused_run_dir(out_dir)
    raise


def check_out_dir(config: EvaluateConfig, out_dir: str) -> None:
  """Refuses an evaluation folder that is or holds an input, or a foreign non-empty folder.

  ``out_dir`` may lie inside ``config.target`` (the default ``TARGET/evaluation``);
  it may be an existing folder only if an evaluation made it.
  """
  files.check_output_path(
      out_dir, {"--target": config.target, "--perplexity_corpus": config.perplexity_corpus,
                "--sst2_dir": config.sst2_dir, "--ner_dir": config.ner_dir,
                "--mrpc_dir": config.mrpc_dir, "--throughput_corpus": config.throughput_corpus},
      flag_name="--out_dir", may_lie_inside=("--target",))
  if os.path.isdir(out_dir) and not files.is_project_run_dir(out_dir):
    # An evaluation folder of a version before the marker holds evaluate_config.json.
    foreign = [e for e in os.listdir(out_dir) if e not in (files.LOCK_FILE,
                                                           "evaluate_config.json")]
    if foreign and not os.path.exists(os.path.join(out_dir, "evaluate_config.json")):
      raise ValueError(f"--out_dir={out_dir} is not empty and is not an evaluation folder of this "
                       "tool; choose a new --out_dir.")


def _evaluate_locked(config: EvaluateConfig, out_dir: str, variants, group: str,
                     ppl_sentences, throughput_sentences, settings: Dict,
                     reference: Optional[Dict] = None) -> List[Dict]:
  entries = []
  for v in variants:
    modes = list(v.tflite) + [m for m in v.metrics.get("tflite_errors", {})
                              if m not in v.tflite]
    modes = sorted(modes, key=QUANTIZATION_MODES.index) or ["none"]
    if config.quantization:
      modes = [m for m in modes if m in config.quantization]
    ids = None
    if config.measure_latency:
      ids = latency.latency_input(
          v.config.token_encoder == "char", num_tokens=config.latency.num_tokens,
          max_characters_per_token=v.config.char_cnn.max_characters_per_token,
          vocab_size=len(v.vocab) if v.vocab is not None else None)
    throughput_ids = (encode_sentences(throughput_sentences, v.config, v.vocab)
                      if throughput_sentences else None)
    for mode in modes:
      entries.append(evaluate_variant(v, mode, config, out_dir, group=group,
                                      ppl_sentences=ppl_sentences, latency_ids=ids,
                                      throughput_ids=throughput_ids, settings=settings,
                                      reference=reference))
  return entries
