"""TensorBoard HParams of compression results: the same columns for every variant of every run.

The columns come from the method registry: ``method``, every key of every
registered method's ``hparam_domains`` (a key of another method reads "n/a"),
``target_sparsity`` and ``quantization``. One *session* per (variant,
quantization mode) holds those values and its scalars at step 0. Both the
compression pipeline and the benchmarks write through `write_hparams`;
`read_hparams` reads a log folder back (to check a dashboard before showing it).
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import metadata as hp_metadata

from prunelm_tf.export.tflite import QUANTIZATION_MODES
from prunelm_tf.reporting import entries as E
from prunelm_tf.reporting.entries import DENSE, num
from prunelm_tf.reporting.text import DASH
from prunelm_tf.utils import files

NOT_APPLICABLE = "n/a"


def _registry():
  # Imported when used: the compression pipeline imports this module, so a module-level
  # import of the compression package would be circular.
  from prunelm_tf.compression.methods.registry import REGISTRY  # pylint: disable=import-outside-toplevel
  return REGISTRY


def hparam_domains() -> Dict[str, List[str]]:
  """Every HParams key of every registered method, with its values (and "n/a").

  The same keys on every run, so all variants of all runs compare side by
  side; a key of another method reads "n/a".
  """
  registry = _registry()
  domains: Dict[str, List[str]] = {"method": [DENSE] + sorted(registry)}
  for method in registry.values():
    for key, values in method.hparam_domains.items():
      domains.setdefault(key, [NOT_APPLICABLE])
      domains[key] += [v for v in values if v not in domains[key]]
  return domains


def method_hparams(record: Mapping) -> Dict[str, str]:
  """The recorded method's own HParams (its ``hparams(options)``); {} for dense or unknown."""
  method = _registry().get(record.get("method") or DENSE)
  if method is None:
    return {}
  return dict(method.hparams(method.options_from_dict(record.get("method_options"))))


def options_text(record: Mapping) -> str:
  """The method's own HParams as "key=value, ..." (a table cell), "—" if it has none."""
  found = method_hparams(record)
  return ", ".join(f"{k}={v}" for k, v in found.items()) or DASH


def hparams_of(record: Mapping) -> Dict[str, object]:
  """The HParams values of a variant record or entry (dense: method "dense", the rest "n/a")."""
  values: Dict[str, object] = {key: NOT_APPLICABLE for key in hparam_domains()}
  values["method"] = record.get("method") or DENSE
  values.update(method_hparams(record))
  values["target_sparsity"] = float(num(record.get("target_sparsity")) or 0.0)
  return values


def hparams_list() -> List[hp.HParam]:
  """The HParam definitions: method keys, target sparsity, quantization."""
  out = [hp.HParam(key, hp.Discrete(values)) for key, values in hparam_domains().items()]
  return out + [hp.HParam("target_sparsity", hp.RealInterval(0.0, 1.0)),
                hp.HParam("quantization", hp.Discrete(list(QUANTIZATION_MODES)))]


@dataclasses.dataclass(frozen=True)
class Session:
  """One HParams session: a (variant, quantization mode) and its scalars."""
  # Unique in the log folder; "/" becomes "-" (the sub-folder and the trial id shown).
  trial_id: str
  # What made it: "method", "method_options", "target_sparsity" (a variant record or entry).
  record: Mapping[str, Any]
  quantization: str
  # Scalar name -> value; None (not measured) is not written.
  scalars: Mapping[str, Optional[float]]

  @property
  def folder(self) -> str:
    return self.trial_id.replace("/", "-")


def write_hparams(log_dir: str, sessions: Sequence[Session],
                  metrics: Sequence[str] = ()) -> None:
  """Writes ``log_dir``: the HParams config and one sub-folder per session.

  Every session has every column of `hparams_list` (values "n/a" where a key
  is another method's). The metrics are ``metrics`` (in that order) and every
  other scalar name a session has. The folder is written under a temporary
  name and renamed, so a rerun replaces the sessions instead of adding
  duplicate event files, and a reader never sees half of them.

  Raises:
    ValueError: two sessions share a folder name.
  """
  folders = [s.folder for s in sessions]
  duplicates = sorted({f for f in folders if folders.count(f) > 1})
  if duplicates:
    raise ValueError(f"HParams sessions must have distinct trial ids; repeated: {duplicates}.")
  hparams = hparams_list()
  names = list(dict.fromkeys(list(metrics) + [k for s in sessions for k, v in s.scalars.items()
                                              if num(v) is not None]))
  with files.atomic_path(log_dir) as tmp:
    os.makedirs(tmp)
    writer = tf.summary.create_file_writer(tmp)
    with writer.as_default():
      hp.hparams_config(hparams=hparams, metrics=[hp.Metric(m) for m in names])
    writer.close()  # flushed before the folder is renamed
    for s in sessions:
      values = {**hparams_of(s.record), "quantization": s.quantization}
      writer = tf.summary.create_file_writer(os.path.join(tmp, s.folder))
      with writer.as_default():
        hp.hparams({h: values[h.name] for h in hparams}, trial_id=s.folder)
        for name, value in s.scalars.items():
          if num(value) is not None:
            tf.summary.scalar(name, num(value), step=0)
      writer.close()


# The scalars of an evaluation entry (``evaluation.evaluate``), in this order.
EVALUATION_METRICS = (
    "perplexity/mean", "perplexity/forward", "perplexity/backward", "sst2/accuracy",
    "ner/test_f1", "mrpc/accuracy", "mrpc/f1", "cola/mcc", "sparsity/overall",
    "size/tflite_zip_bytes",
    "size/saved_model_zip_bytes", "latency/tflite_p50_ms_1_thread",
    "latency/tflite_p50_ms_2_threads", "latency/saved_model_p50_ms_1_thread")


def evaluation_sessions(entries: Sequence[Mapping]) -> List[Session]:
  """One session per evaluation entry (a variant in one quantization mode)."""
  sessions = []
  for e in entries:
    values = [E.perplexity(e, "mean"), E.perplexity(e, "forward"), E.perplexity(e, "backward"),
              E.score(e, "sst2_accuracy"), E.score(e, "ner_test_f1"),
              E.score(e, "mrpc_accuracy"), E.score(e, "mrpc_f1"), E.score(e, "cola_mcc"),
              num(e.get("sparsity")),
              E.size(e, "tflite_zip_bytes"), E.size(e, "saved_model_zip_bytes"),
              E.latency(e, "tflite", 1), E.latency(e, "tflite", 2),
              E.latency(e, "saved_model", 1)]
    sessions.append(Session(trial_id=e["name"], record=e, quantization=E.quantization(e),
                            scalars=dict(zip(EVALUATION_METRICS, values))))
  return sessions


def read_hparams(log_dir: str) -> Dict[str, Any]:
  """What TensorBoard will find in ``log_dir`` (written by `write_hparams`).

  Returns:
    ``{"columns": [hparam names of the config], "metrics": [metric tags of the
    config], "sessions": {folder: {"hparams": {name: value}, "scalars": [tags]}}}``.

  Raises:
    FileNotFoundError: no event file in ``log_dir``.
  """
  def events(folder: str):
    paths = sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*")))
    for path in paths:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          yield value
    if not paths:
      raise FileNotFoundError(f"{folder} has no TensorBoard event file; write the HParams "
                              "first (pipelines.compress or benchmarks.run).")

  columns, metric_tags = [], []
  for value in events(log_dir):
    if value.metadata.plugin_data.plugin_name != hp_metadata.PLUGIN_NAME:
      continue
    if value.tag == hp_metadata.EXPERIMENT_TAG:
      experiment = hp_metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
      columns = [h.name for h in experiment.hparam_infos]
      metric_tags = [m.name.tag for m in experiment.metric_infos]
  sessions = {}
  for folder in sorted(d for d in glob.glob(os.path.join(log_dir, "*")) if os.path.isdir(d)):
    hparams, scalars = {}, []
    for value in events(folder):
      plugin = value.metadata.plugin_data.plugin_name
      if plugin == hp_metadata.PLUGIN_NAME and value.tag == hp_metadata.SESSION_START_INFO_TAG:
        start = hp_metadata.parse_session_start_info_plugin_data(
            value.metadata.plugin_data.content)
        for key, v in start.hparams.items():
          kind = v.WhichOneof("kind")
          hparams[key] = getattr(v, kind) if kind else None
      elif plugin == "scalars":
        scalars.append(value.tag)
    sessions[os.path.basename(folder)] = {"hparams": hparams, "scalars": sorted(set(scalars))}
  return {"columns": columns, "metrics": metric_tags, "sessions": sessions}
