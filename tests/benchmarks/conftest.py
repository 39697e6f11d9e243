"""A tiny benchmarks.elmo_ptb folder: every kind of group's layout, no model trained."""

import json
import os

import pytest

from prunelm_tf.compression.run_folder import CompressionRunFolder
from prunelm_tf.models.config import BiLMConfig

TINY = BiLMConfig(vocab_size=50, token_encoder="word", lstm_dim=16, projection_dim=8,
                  n_layers=1, dropout=0.0)


def _json(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(value, f)


def write_compression_run(path, method, variants, *, finished=True, dense_ppl=100.0):
  """A compression run folder: config.json, its dense entry and ``variants`` ({name: ppl}),
  each described (config.json with the tiny architecture) with a none TFLite file and, when
  ``finished``, its metrics.json (the dense entry is always finished)."""
  folder = CompressionRunFolder(path)
  _json(folder.config_json, {"method": method, "sparsity_sweep": [0.5]})
  for entry, ppl, done in [(folder.dense, dense_ppl, True)] + [
      (folder.variant(name), ppl, finished) for name, ppl in variants.items()]:
    entry.write_description(TINY, None, {"method": "dense" if entry.name == "dense" else method})
    with open(entry.tflite("none"), "wb") as f:
      f.write(b"tflite")
    if done:
      _json(entry.metrics_json, {"name": entry.name, "perplexity": {"mean": ppl}})
  return folder


def write_recipe_run(run_dir, methods, finished=True):
  """A recipe run of several stages (``methods``); the last stage's variant is "finetune".
  Unfinished: no metrics.json at the run's top (what staged.run_recipe writes last)."""
  stages = [{"method": m} for m in methods]
  _json(os.path.join(run_dir, "config.json"),
        {"recipe": "r", "recipe_config": {"stages": stages}, "inputs": {}})
  dirs = [os.path.join("stages", f"{k + 1}_{m}") for k, m in enumerate(methods)]
  for k, (method, d) in enumerate(zip(methods, dirs)):
    name = "finetune" if k == len(methods) - 1 else f"{method}_30"
    write_compression_run(os.path.join(run_dir, d), method, {name: 104.0 + k},
                          finished=finished or k == 0)
  if finished:
    _json(os.path.join(run_dir, "metrics.json"), {"stages": [{"run_dir": d} for d in dirs]})


@pytest.fixture
def bench_dir(tmp_path):
  """DIR of benchmarks.elmo_ptb with a method group (obs), a combination that sorts first
  (lowrank_data_cluster: its "dense" is the variant it compressed), a recipe group of two
  stages finished at 30 and unfinished at 50 (structured_obs_ft), a one-stage recipe group
  (a dense control), and the folders that are no group (downstream, int8, report.md)."""
  out = str(tmp_path)
  write_compression_run(os.path.join(out, "obs"), "obs", {"obs_50": 101.0})
  write_compression_run(os.path.join(out, "obs"), "obs", {"obs_70": 0.0}, finished=False)
  write_compression_run(os.path.join(out, "lowrank_data_cluster"), "cluster",
                        {"cluster_8": 105.0}, dense_ppl=102.0)
  write_recipe_run(os.path.join(out, "structured_obs_ft", "30"), ["structured", "finetune"])
  write_recipe_run(os.path.join(out, "structured_obs_ft", "50"), ["structured", "finetune"],
                   finished=False)
  write_compression_run(os.path.join(out, "retrain_kd_dense_control_nodrop_lr10", "0"),
                        "finetune", {"finetune": 99.0})
  _json(os.path.join(out, "downstream", "dense", "dense", "none", "evaluation.json"), {})
  _json(os.path.join(out, "int8", "obs", "obs_50", "result.json"), {"gzip_bytes": 1})
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write("# report\n")
  return out
