"""One end-to-end run per method family: compress, export, TFLite parity, evaluation, embedding.

The unit tests beside each method (tests/compression) call the method on a MethodContext;
these run the whole pipeline (minutes): `python -m pytest -m e2e`.
"""

import dataclasses
import json
import os

import numpy as np
import pytest

from prunelm_tf.compression import (CompressConfig, RetrainConfig, ScheduleConfig,
                                    prunable_weights)
from prunelm_tf.compression.methods import CompressedModel, CompressionMethod, registered
from prunelm_tf.compression.methods.lowrank import LowRankOptions
from prunelm_tf.compression.methods.retrain import RetrainOptions
from prunelm_tf.compression.pipeline import load_source
from prunelm_tf.compression.run_folder import CompressionRunFolder
from prunelm_tf.elmo import ElmoEmbedder, load_elmo
from prunelm_tf.elmo.embedding_file import embed_text_file, read_embedding_file
from prunelm_tf.evaluation import LatencyConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.evaluation.variants import find_variants
from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.models import build_bilm
from prunelm_tf.models.config import factorizable_matrices
from prunelm_tf.training.run_folder import load_run
from tests.compression.test_lowrank import _tflite_matmuls
from tests.compression.test_methods import RandomPruning
from tests.dense_reuse import compress
from tests.tolerance import assert_float32_close

pytestmark = pytest.mark.e2e


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


def _embedded_through_file(tmp_path, lines, **source):
  """pipelines.embed's library path: ``lines`` written to a text file, embedded from
  ``source`` (``model_dir=`` or ``options_file=`` + ``weight_file=``) into an HDF5 file,
  read back."""
  inp = tmp_path / "in.txt"
  inp.write_text("\n".join(lines) + "\n")
  out = str(tmp_path / "emb.hdf5")
  embed_text_file(str(inp), out, **source)
  return read_embedding_file(out)[0]


def test_retrain_reaches_target_on_every_pruned_matrix(tiny_run_dir, tiny_text, tmp_path):
  config = CompressConfig(
      model_dir=tiny_run_dir, train=tiny_text, eval=tiny_text, method="retrain",
      sparsity_sweep=(0.75,), layer_sparsity=(("softmax", 0.0),),
      method_options=RetrainOptions(schedule=ScheduleConfig(end_step=6, frequency=1),
      retrain=RetrainConfig(num_steps=8, learning_rate=0.005, batch_size=2,
                            objective="lm+distill")),
      tflite_quantization=("none", "float16", "int8"), num_parity_sentences=2,
      tflite_int8_max_tokens=16)
  result = compress(config, str(tmp_path / "r"))
  v = result["variants"][0]
  for name, value in v["sparsity"]["per_weight"].items():
    if name.startswith("softmax"):
      assert value == 0.0
    else:
      assert abs(value - 0.75) <= 0.005, (name, value)
  assert v["tflite_max_abs_diff"]["none"] <= 1e-5
  assert v["tflite_max_abs_diff"]["float16"] < 0.05
  # int8 (the fixed-length unrolled graph) converts, runs and is checked like the others.
  assert "int8" not in v.get("tflite_errors", {})
  assert v["tflite_parity"]["int8"]["sentences"] == 2
  assert v["tflite_parity"]["int8"]["min_cosine"] > 0.9
  assert v["tflite_int8_max_tokens"] == 16
  events = os.listdir(os.path.join(str(tmp_path / "r"), "tensorboard", "retrain_75"))
  assert events  # per-step loss and sparsity scalars


def test_a_pruned_variant_clustered_keeps_its_zeros_and_exports(tiny_run_dir, tiny_text,
                                                                tmp_path):
  """threshold 40 %, then --method=cluster on that variant: 16 values per matrix, same zeros."""
  pruned_run = str(tmp_path / "pruned")
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.4,), layer_sparsity=(("softmax", 0.0),),
                          tflite_quantization=("none",), num_parity_sentences=1), pruned_run)
  vdir = os.path.join(pruned_run, "variants", "threshold_40")
  result = compress(CompressConfig(
      model_dir=vdir, eval=tiny_text, method="cluster", sparsity_sweep=(0.5, 0.75),
      layer_sparsity=(("softmax", 0.0),), tflite_quantization=("none", "dynamic"),
      num_parity_sentences=2), str(tmp_path / "clustered"))
  dense = result["dense"]
  by_name = {v["name"]: v for v in result["variants"]}
  assert set(by_name) == {"cluster_16", "cluster_4"}
  def variant_model(path):
    return load_source(CompressConfig(model_dir=path, method="threshold")).model

  source_model = variant_model(vdir)
  source_weights = {n: w.numpy() for n, w in prunable_weights(source_model).items()}
  for name, k in (("cluster_16", 16), ("cluster_4", 4)):
    v = by_name[name]
    assert v["sparsity"]["per_weight"] == pytest.approx(dense["sparsity"]["per_weight"])
    assert "softmax/kernel" not in v["clusters"]
    assert set(v["clusters"]) == {n for n in source_weights if n != "softmax/kernel"}
    model = variant_model(os.path.join(str(tmp_path / "clustered"), "variants", name))
    for n, w in prunable_weights(model).items():
      values = w.numpy()
      if n == "softmax/kernel":
        np.testing.assert_array_equal(values, source_weights[n])
        continue
      np.testing.assert_array_equal(values == 0, source_weights[n] == 0)
      assert len(np.unique(values[values != 0])) <= k
    assert v["tflite_max_abs_diff"]["none"] <= 1e-4
  # Fewer values cost more: 4 values are further from the source than 16.
  assert (by_name["cluster_4"]["clustering_relative_error"]
          > by_name["cluster_16"]["clustering_relative_error"] > 0)
  assert (by_name["cluster_4"]["perplexity"]["forward"]
          >= by_name["cluster_16"]["perplexity"]["forward"] * 0.99)
  with open(os.path.join(str(tmp_path / "clustered"), "config.json"), encoding="utf-8") as f:
    assert json.load(f)["method"] == "cluster"


def test_lowrank_through_compress_export_evaluate_and_embed(tiny_run_dir, tiny_text, tmp_path):
  run_dir = str(tmp_path / "lr")
  target = 0.4
  result = compress(CompressConfig(
      model_dir=tiny_run_dir, eval=tiny_text, calibration=tiny_text, method="lowrank",
      method_options=LowRankOptions(criterion="data"), sparsity_sweep=(target,),
      layer_sparsity=(("softmax", 0.0),), tflite_quantization=("none", "dynamic"),
      num_parity_sentences=2), run_dir)
  dense_config = load_run(tiny_run_dir)[1]
  shapes = factorizable_matrices(dense_config)
  low = result["variants"][0]
  assert low["name"] == "lowrank_data_40"
  # Every matrix but the softmax (excluded by --layer_sparsity softmax=0).
  assert set(low["lowrank"]) == set(shapes) - {"softmax/kernel"}
  assert target - 1e-9 <= low["removed_fraction"] < target + 0.15, low["removed_fraction"]
  kept = sum(r["parameters_kept"] for r in low["lowrank"].values())
  assert kept <= (1 - target) * sum(m * n for name, (m, n) in shapes.items()
                                    if name != "softmax/kernel") + 1e-6
  assert low["num_parameters"] < result["dense"]["num_parameters"]
  assert low["tflite_max_abs_diff"]["none"] <= 1e-5  # TFLite runs the factors too
  assert "dynamic" in low["tflite_max_abs_diff"]
  assert all(0 <= r["calibration_error"] < 1 for r in low["lowrank"].values() if r["rank"])
  assert 0.5 < low["representation_similarity"]["layer_2"] < 1.0
  # TFLite keeps every factor pair as two matmuls (the converter does not fold them), also
  # inside the LSTM WHILE loops; the representations file has no softmax.
  folder = CompressionRunFolder(run_dir)
  factorized = [n for n in low["ranks"] if n != "softmax/kernel"]
  assert (_tflite_matmuls(folder.variant("lowrank_data_40").tflite("none"))
          == _tflite_matmuls(folder.dense.tflite("none")) + len(factorized))
  # The variant folder's own architecture holds the ranks; evaluation and embed read it.
  vdir = os.path.join(run_dir, "variants", "lowrank_data_40")
  with open(os.path.join(vdir, "config.json"), encoding="utf-8") as f:
    ranks = dict(json.load(f)["model"]["ranks"])
  assert ranks == low["ranks"] and ranks
  saved = load_saved_model(os.path.join(vdir, "saved_model"))
  assert any("_a:" in w.name for w in saved.weights)  # the SavedModel holds the factors
  entries = evaluate(EvaluateConfig(target=vdir, perplexity_corpus=tiny_text, quantization=("none",),
                                    measure_latency=False), str(tmp_path / "e"))
  none = [e for e in entries if e["name"] == "lowrank_data_40/none"][0]
  assert none["perplexity"]["forward"] == pytest.approx(low["perplexity"]["forward"], rel=1e-4)
  lines = ["the cat sat", "a dog"]
  embedded = _embedded_through_file(tmp_path, lines, model_dir=vdir)
  expected = ElmoEmbedder.from_run_dir(vdir).embed_sentences([l.split() for l in lines])
  for i, e in enumerate(expected):
    assert_float32_close(embedded[i], e)


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
  embedded = _embedded_through_file(tmp_path, lines, model_dir=variant.directory)
  embedder = ElmoEmbedder.from_run_dir(variant.directory)
  expected = embedder.embed_sentences([l.split() for l in lines])
  for i, e in enumerate(expected):
    assert_float32_close(embedded[i], e)
    assert e.shape == (dense_config.n_layers + 1, len(lines[i].split()),
                       2 * dense_config.projection_dim)


def test_elmo_with_fewer_layers_through_compress_export_and_embed(shared_data, tmp_path):
  d = shared_data / "elmo_fixture"
  text = str(d / "sentences.txt")
  run_dir = str(tmp_path / "l")
  result = compress(CompressConfig(
      options_file=str(d / "options.json"), weight_file=str(d / "lm_weights.hdf5"), eval=text,
      calibration=text, method="layers", sparsity_sweep=(0.5,), tflite_quantization=("none",),
      num_parity_sentences=1, export_elmo=True), run_dir)
  v = result["variants"][0]
  assert v["name"] == "layers_representation_50"
  assert v["layers"]["n_layers"] == 1 and v["layers"]["removed_lstm_fraction"] == 0.5
  assert v["tflite_max_abs_diff"]["none"] <= 1e-5
  assert set(v["representation_similarity"]) == {"layer_0", "top"}
  assert v["representation_similarity"]["layer_0"] == pytest.approx(1.0)
  folder = CompressionRunFolder(run_dir).variant("layers_representation_50")
  assert json.load(open(folder.elmo_options))["lstm"]["n_layers"] == 1
  reloaded, config = load_elmo(folder.elmo_options, folder.elmo_weights)
  assert config.n_layers == 1
  lines = ["the cat sat", "a dog"]
  embedded = _embedded_through_file(tmp_path, lines, options_file=folder.elmo_options,
                                    weight_file=folder.elmo_weights)
  expected = ElmoEmbedder(reloaded, config).embed_sentences([l.split() for l in lines])
  for i, e in enumerate(expected):
    assert e.shape == (2, len(lines[i].split()), 32)
    assert_float32_close(embedded[i], e)


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
    assert "| test_random_50 | test_random | sparsity 0.50 |" in summary  # its amount, named


def test_elmo_variant_is_a_valid_smaller_elmo(shared_data, tmp_path):
  """The ELMo fixture (char CNN, no softmax): options.json with the new sizes, HDF5, embed."""
  d = shared_data / "elmo_fixture"
  run_dir = str(tmp_path / "e")
  result = compress(CompressConfig(
      options_file=str(d / "options.json"), weight_file=str(d / "lm_weights.hdf5"),
      eval=str(d / "sentences.txt"), method="structured", sparsity_sweep=(0.5,),
      tflite_quantization=("none",), num_parity_sentences=1, export_elmo=True), run_dir)
  v = result["variants"][0]
  record = v["structured"]
  assert abs(v["removed_fraction"] - 0.5) < 0.02
  assert v["tflite_max_abs_diff"]["none"] <= 1e-5
  assert 0 < v["representation_similarity"]["layer_2"] < 1
  folder = CompressionRunFolder(run_dir).variant("structured_50")
  options = json.load(open(folder.elmo_options))
  assert options["lstm"]["dim"] == record["lstm_dim"] < 64
  assert options["lstm"]["projection_dim"] == 16
  assert [list(f) for f in options["char_cnn"]["filters"]] == record["filters"]
  reloaded, config = load_elmo(folder.elmo_options, folder.elmo_weights)
  embedder = ElmoEmbedder(reloaded, config)
  lines = ["the cat sat", "a dog ran home"]
  embedded = _embedded_through_file(tmp_path, lines, options_file=folder.elmo_options,
                                    weight_file=folder.elmo_weights)
  from_variant = ElmoEmbedder.from_run_dir(folder.path).embed_sentences(
      [l.split() for l in lines])
  for i, e in enumerate(embedder.embed_sentences([l.split() for l in lines])):
    assert e.shape == (3, len(lines[i].split()), 32)
    assert_float32_close(embedded[i], e)
    assert_float32_close(from_variant[i], e)
