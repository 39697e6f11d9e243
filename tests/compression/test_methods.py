"""The method interface: test-only methods go through the whole product without any
other file knowing them (registry, compress, export, evaluation, latency, embed)."""

import dataclasses
import os

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig, prunable_weights
from tests.dense_reuse import compress
from prunelm_tf.compression.methods import (REGISTRY, CompressedModel, CompressionMethod,
                                            registered)
from prunelm_tf.compression.options import option, option_flags
from prunelm_tf.compression.run_folder import CompressionRunFolder
from prunelm_tf.elmo import ElmoEmbedder, load_elmo
from prunelm_tf.elmo.embedding_file import embed_text_file, read_embedding_file
from prunelm_tf.evaluation import LatencyConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.evaluation.variants import find_variants
from prunelm_tf.models import build_bilm
from prunelm_tf.training.run_folder import load_run
from tests.tolerance import assert_float32_close


@dataclasses.dataclass(frozen=True)
class RandomOptions:
  # Seed of the random masks.
  mask_seed: int = option(0, "Seed of the random masks.")


class RandomPruning(CompressionMethod):
  """Zeroes an exact random fraction of every targeted matrix."""
  name = "test_random"
  summary = "random pruning (test only)"
  Options = RandomOptions
  hparam_domains = {"random_kind": ("uniform",)}

  def compress(self, options, context):
    model = context.copy_source()
    rng = np.random.default_rng(options.mask_seed)
    for name, weight in prunable_weights(model).items():
      target = context.targets[name]
      values = weight.numpy()
      flat = values.reshape(-1)
      flat[rng.permutation(flat.size)[:int(round(target * flat.size))]] = 0.0
      weight.assign(values)
    return CompressedModel(model, context.source.config, metrics={"mask_seed": options.mask_seed})

  def hparams(self, options):
    return {"random_kind": "uniform"}


@dataclasses.dataclass(frozen=True)
class SliceOptions:
  pass


class SliceUnits(CompressionMethod):
  """Keeps the first (1 - target) of every LSTM's cells: a physically smaller biLM."""
  name = "test_slice"
  summary = "drop LSTM cells (test only)"
  Options = SliceOptions

  def compress(self, options, context):
    source = context.source
    old = source.config.lstm_dim
    keep = max(1, int(round(old * (1 - context.target_sparsity))))
    config = dataclasses.replace(source.config, lstm_dim=keep)
    model = build_bilm(config)
    for layer in model.layers:
      weights = source.model.get_layer(layer.name).get_weights()
      if layer.name.endswith(tuple(f"lstm_{l}" for l in range(config.n_layers))):
        kernel, bias, projection = weights
        gates = np.concatenate([np.arange(g * old, g * old + keep) for g in range(4)])
        weights = [kernel[:, gates], bias[gates], projection[:keep]]
      layer.set_weights(weights)
    return CompressedModel(model, config, metrics={"kept_cells": keep})


def test_registry_lists_every_method_and_the_test_ones_only_while_registered():
  assert {"threshold", "retrain"} <= set(REGISTRY)
  with registered(RandomPruning()):
    assert "test_random" in REGISTRY
    with pytest.raises(ValueError, match="already registered"):
      with registered(RandomPruning()):
        pass
  assert "test_random" not in REGISTRY
  with pytest.raises(ValueError, match="not a compression method; choose from"):
    CompressConfig(model_dir="m", eval="e", method="test_random")


def test_option_flags_come_from_the_options_and_shared_names_once():
  specs = {s.name: s for s in option_flags(list(REGISTRY.values()))}
  assert specs["threshold_scope"].choices == ("layer", "global")
  assert specs["end_step"].targets == (("retrain", ("schedule", "end_step")),)
  assert "final_sparsity" not in specs  # the target is the sweep value, one name
  # An option that defaults to None carries its flag's type; unset, the option stays None.
  dropout = specs["retrain_dropout"]
  assert dropout.kind is float and dropout.default is None and dropout.lower == 0
  assert {m for m, _ in dropout.targets} == {"retrain", "lowrank", "structured", "layers",
                                              "cluster"}
  assert specs["warmup_steps"].kind is int
  # Every method that trains takes the same Adam epsilon under one flag.
  epsilon = specs["adam_epsilon"]
  assert epsilon.kind is float and epsilon.default == 1e-7
  assert {m for m, _ in epsilon.targets} == {m for m, _ in dropout.targets}
  average = specs["retrain_average_last"]
  assert average.kind is float and average.default == 0.0
  assert {m for m, _ in average.targets} == {m for m, _ in dropout.targets}
  frozen = specs["retrain_frozen"]
  assert frozen.kind is str and frozen.default == ""
  assert {m for m, _ in frozen.targets} == {m for m, _ in dropout.targets}
  optimizer, momentum = specs["retrain_optimizer"], specs["retrain_momentum"]
  assert optimizer.choices == ("adam", "sgd") and optimizer.default == "adam"
  assert momentum.kind is float and (momentum.lower, momentum.upper) == (0, 1)
  assert ({m for m, _ in optimizer.targets} == {m for m, _ in momentum.targets}
          == {m for m, _ in dropout.targets})
  with pytest.raises(ValueError, match="defaults to None: give its kind"):
    option(None, "no type", flag="nothing")


def test_random_method_through_compress_export_and_evaluate(shared_data, tmp_path):
  d = shared_data / "elmo_fixture"
  options, weights, text = (str(d / "options.json"), str(d / "lm_weights.hdf5"),
                            str(d / "sentences.txt"))
  run_dir = str(tmp_path / "c")
  with registered(RandomPruning()):
    result = compress(CompressConfig(
        options_file=options, weight_file=weights, eval=text, method="test_random",
        method_options={"mask_seed": 3}, sparsity_sweep=(0.5,), tflite_quantization=("none",),
        num_parity_sentences=1, export_elmo=True), run_dir)
    v = result["variants"][0]
    assert v["name"] == "test_random_50" and v["method"] == "test_random"
    assert v["method_options"] == {"mask_seed": 3} and v["mask_seed"] == 3
    for name, value in v["sparsity"]["per_weight"].items():
      assert abs(value - 0.5) < 0.01, name
    assert v["tflite_max_abs_diff"]["none"] <= 1e-5
    folder = CompressionRunFolder(run_dir).variant("test_random_50")
    reloaded, _ = load_elmo(folder.elmo_options, folder.elmo_weights)
    zeros = [float(np.mean(w.numpy() == 0)) for w in prunable_weights(reloaded).values()]
    assert min(zeros) > 0.49
    entries = evaluate(EvaluateConfig(target=run_dir, measure_latency=False),
                       str(tmp_path / "e"), group="random")
    assert [e["name"] for e in entries] == ["dense/none", "test_random_50/none"]
    assert entries[1]["method"] == "test_random"
    assert entries[1]["method_options"] == {"mask_seed": 3}
    assert entries[1]["target_sparsity"] == 0.5
    summary = open(os.path.join(run_dir, "summary.md")).read()
    assert "| test_random_50 | test_random | 0.50 |" in summary


def test_smaller_architecture_runs_through_every_stage(tiny_run_dir, tiny_text, tmp_path):
  run_dir = str(tmp_path / "s")
  with registered(SliceUnits()):
    result = compress(CompressConfig(
        model_dir=tiny_run_dir, eval=tiny_text, method="test_slice", sparsity_sweep=(0.5,),
        tflite_quantization=("none", "dynamic"), num_parity_sentences=2), run_dir)
  v = result["variants"][0]
  dense_config = load_run(tiny_run_dir)[1]
  assert v["kept_cells"] == dense_config.lstm_dim // 2
  assert v["num_parameters"] < result["dense"]["num_parameters"]
  assert v["tflite_max_abs_diff"]["none"] <= 1e-5  # TFLite parity with its own shapes
  assert v["perplexity"]["mean"] > 1
  # Evaluation and latency read the variant's own architecture: no registry needed now.
  variant = [x for x in find_variants(run_dir) if x.name == "test_slice_50"][0]
  assert variant.config.lstm_dim == dense_config.lstm_dim // 2
  entries = evaluate(EvaluateConfig(
      target=os.path.join(run_dir, "variants", "test_slice_50"), perplexity_corpus=tiny_text,
      latency=LatencyConfig(runs=2, warmup=1, threads=(1,), num_tokens=4)), str(tmp_path / "e"))
  none = [e for e in entries if e["name"] == "test_slice_50/none"][0]
  assert none["perplexity"]["forward"] == pytest.approx(v["perplexity"]["forward"], rel=1e-4)
  assert none["architecture"]["lstm_dim"] == dense_config.lstm_dim // 2
  assert none["latency"]["tflite"]["1"]["p50_ms"] > 0
  # pipelines.embed's library path on the variant folder: its own shapes and vocabulary.
  lines = ["the cat sat", "a dog"]
  inp = tmp_path / "in.txt"
  inp.write_text("\n".join(lines) + "\n")
  out = str(tmp_path / "emb.hdf5")
  embed_text_file(str(inp), out, model_dir=variant.directory)
  embedded, _ = read_embedding_file(out)
  embedder = ElmoEmbedder.from_run_dir(variant.directory)
  expected = embedder.embed_sentences([l.split() for l in lines])
  for i, e in enumerate(expected):
    assert_float32_close(embedded[i], e)
    assert e.shape == (dense_config.n_layers + 1, len(lines[i].split()),
                       2 * dense_config.projection_dim)
