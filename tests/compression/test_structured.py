"""structured: whole cells, filters and projection dimensions removed, a smaller valid biLM."""

import os

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig
from tests.dense_reuse import compress
from prunelm_tf.compression.methods.structured import structured as lib
from prunelm_tf.compression.shared.calibration import collect_grams
from prunelm_tf.compression.methods.structured import StructuredOptions
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.compression.shared.targets import prunable_weights
from prunelm_tf.compression.shared.units import matrix_parameters, most_important
from prunelm_tf.compression.source import EVAL_BATCH_SIZE, representation_similarity
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.export.tflite import TFLiteBiLM, export_tflite, representation_parity
from prunelm_tf.models import BiLMConfig, build_bilm
from prunelm_tf.models.config import CharCNNConfig, num_parameters
from prunelm_tf.training.loop import evaluate_perplexity
from prunelm_tf.training.run_folder import load_run
from tests.compression.method_context import method_context, tiny_source
from tests.tolerance import assert_float32_close

CHAR = BiLMConfig(vocab_size=20, token_encoder="char", lstm_dim=8, projection_dim=6, n_layers=2,
                  dropout=0.0, char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 6)),
                                                      n_highway=1, max_characters_per_token=8))
WORD = BiLMConfig(vocab_size=20, token_encoder="word", lstm_dim=8, projection_dim=6, n_layers=2,
                  dropout=0.0)


def _random_model(config, seed=0):
  model = build_bilm(config)
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                     for w in model.get_weights()])
  return model


def _kill(model, config, cells, dims, filters):
  """Zeroes every weight the given units own (the module docstring's groups)."""
  d, p = config.lstm_dim, config.projection_dim
  for name in lib.lstm_names(config):
    layer = model.get_layer(name)
    kernel, bias, projection = (v.numpy() for v in (layer.kernel, layer.bias, layer.projection))
    columns = lib.gate_columns(np.asarray(cells[name]), d)
    kernel[:, columns] = 0
    bias[columns] = 0
    projection[cells[name]] = 0
    kernel[dims] = 0
    kernel[[p + k for k in dims]] = 0
    projection[:, dims] = 0
    layer.set_weights([kernel, bias, projection])
  if config.has_softmax:
    softmax = model.get_layer("softmax")
    kernel = softmax.kernel.numpy()
    kernel[dims] = 0
    softmax.kernel.assign(kernel)
  if config.token_encoder == "word":
    table = model.get_layer("word_embedding")
    values = table.embeddings.numpy()
    values[:, dims] = 0
    table.embeddings.assign(values)
    return
  flat = [int(o) + k for o, bank in zip(lib.filter_offsets(config), filters) for k in bank]
  cnn = model.get_layer("char_cnn")
  for i, bank in enumerate(filters):
    for var, index in ((cnn.kernels[i], (slice(None), slice(None), bank)),
                       (cnn.biases[i], (bank,))):
      values = var.numpy()
      values[index] = 0
      var.assign(values)
  for h in range(config.char_cnn.n_highway):
    for var in model.get_layer(f"highway_{h}").weights:
      values = var.numpy()
      values[flat] = 0
      if values.ndim == 2:
        values[:, flat] = 0
      var.assign(values)
  projection = model.get_layer("token_projection")
  kernel, bias = projection.kernel.numpy(), projection.bias.numpy()
  kernel[flat] = 0
  kernel[:, dims] = 0
  bias[dims] = 0
  projection.set_weights([kernel, bias])


def _inputs(config, rng):
  if config.token_encoder == "word":
    ids = rng.integers(1, config.vocab_size + 1, size=(2, 6)).astype(np.int32)
    ids[1, 4:] = 0
    return ids
  ids = rng.integers(1, 200, size=(2, 6, config.char_cnn.max_characters_per_token))
  ids[:, :, 5:] = 0
  ids[1, 4:] = 0
  return ids.astype(np.int32)


@pytest.mark.parametrize("importance", ["norm", "obs"])
@pytest.mark.parametrize("config", [CHAR, WORD], ids=["char", "word"])
def test_removing_dead_units_changes_no_output(config, importance):
  model = _random_model(config)
  dead_cells = {n: [i, (i + 3) % 8] for i, n in enumerate(lib.lstm_names(config))}
  dead_dims = [1, 4]
  dead_filters = [[2], [0, 5]] if config.token_encoder == "char" else []
  _kill(model, config, dead_cells, dead_dims, dead_filters)
  x = _inputs(config, np.random.default_rng(1))
  if importance == "norm":
    norms = lib.group_norms(model, config)
  else:  # dead units read by nobody: zero OBS saliency
    grams = collect_grams(model, lib.saliency_matrices(config), [x])
    norms = lib.obs_saliencies(model, config, grams, damp=0.01)
  for n, dead in dead_cells.items():
    assert np.all(norms["cells"][n][dead] == 0) and np.all(np.delete(norms["cells"][n], dead) > 0)
  kept_dims = most_important(norms["projection"], 4)
  assert kept_dims == [0, 2, 3, 5]
  cells = {n: most_important(s, 6) for n, s in norms["cells"].items()}
  filters = ([most_important(s, len(s) - len(d)) for s, d in zip(norms["filters"],
                                                                 dead_filters)]
             if dead_filters else None)
  small, small_config = lib.slice_bilm(model, config, cells=cells, projection=kept_dims,
                                       filters=filters)
  assert (small_config.lstm_dim, small_config.projection_dim) == (6, 4)
  if filters:
    assert small_config.char_cnn.filters == ((1, 3), (2, 4))
  assert small.count_params() == num_parameters(small_config)
  dense, out = model(x), small(x)
  width = [k + s for s in (0, config.projection_dim) for k in kept_dims]
  assert_float32_close(out["representations"].numpy(),
                       dense["representations"].numpy()[..., width])
  for key in ("forward_logits", "backward_logits"):
    assert_float32_close(out[key].numpy(), dense[key].numpy())
  assert np.abs(dense["representations"].numpy()[..., [1, 7]]).max() == 0  # really dead


def test_choose_counts_meets_the_fraction_and_refuses_removing_every_unit():
  model = build_bilm(CHAR)
  names = list(prunable_weights(model))
  total = matrix_parameters(CHAR, names)
  for fraction in (0.0, 0.3, 0.5):
    counts, achieved = lib.choose_counts(CHAR, fraction, ("cells", "filters"), names)
    smaller = counts.config(CHAR)
    assert achieved == pytest.approx(1 - matrix_parameters(smaller, names) / total)
    assert abs(achieved - fraction) < 0.03, (fraction, achieved, counts)
    assert smaller.projection_dim == CHAR.projection_dim  # not an enabled group
  most = lib.removable_fraction(CHAR, ("cells",), names)
  counts, achieved = lib.choose_counts(CHAR, most, ("cells",), names)
  assert counts.cells == 1 and achieved == pytest.approx(most)  # boundary: one cell kept
  with pytest.raises(ValueError, match="would remove every unit of a layer"):
    lib.choose_counts(CHAR, most + 0.01, ("cells",), names)
  with pytest.raises(ValueError, match=r"in \[0, 1\)"):
    lib.choose_counts(CHAR, 1.0, lib.GROUPS, names)
  with pytest.raises(ValueError, match="non-empty subset"):
    lib.choose_counts(CHAR, 0.5, ("heads",), names)


def test_slice_refuses_empty_layers_and_unequal_counts():
  model = build_bilm(WORD)
  cells = {n: [0, 1] for n in lib.lstm_names(WORD)}
  with pytest.raises(ValueError, match="removing every unit"):
    lib.slice_bilm(model, WORD, cells={**cells, "backward_lstm_1": []})
  with pytest.raises(ValueError, match="same number of cells"):
    lib.slice_bilm(model, WORD, cells={**cells, "backward_lstm_1": [0, 1, 2]})
  with pytest.raises(ValueError, match="removing every unit"):
    lib.slice_bilm(model, WORD, projection=[])
  with pytest.raises(ValueError, match="distinct and in"):
    lib.slice_bilm(model, WORD, projection=[0, 6])
  with pytest.raises(ValueError, match="no character CNN"):
    lib.slice_bilm(model, WORD, filters=[[0]])


def test_compensation_recovers_a_removed_input_that_the_kept_ones_span():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 4))
  x[:, 3] = x[:, 0] - 2 * x[:, 1]  # the removed input is a combination of kept ones
  w = rng.normal(size=(4, 5)).astype(np.float32)
  h = x.T @ x / len(x)
  kept = np.array([0, 1, 2])
  updated = lib.compensate_rows(w, h, kept, damp=0.0)
  np.testing.assert_allclose(x[:, kept] @ updated, x @ w, atol=1e-4)
  assert np.abs(x[:, kept] @ w[kept] - x @ w).max() > 0.1  # without it, an error
  saliency = lib.obs_row_saliency(np.eye(3), np.diag([1.0, 2.0, 4.0]))
  np.testing.assert_allclose(saliency, [1.0, 0.5, 0.25])


def test_options_and_checks_refuse_bad_input_before_any_work(tiny_run_dir, tiny_text, tmp_path):
  with pytest.raises(ValueError, match="at least one kind of unit"):
    StructuredOptions(cells=False, filters=False, projection=False)
  run_dir = str(tmp_path / "r")
  base = dict(model_dir=tiny_run_dir, eval=tiny_text, method="structured",
              tflite_quantization=())
  with pytest.raises(ValueError, match="--params_removed_sweep value 0.95: .*every unit of a layer"):
    compress(CompressConfig(**base, sparsity_sweep=(0.5, 0.95)), run_dir)
  with pytest.raises(ValueError, match="--structured_filters alone removes nothing"):
    compress(CompressConfig(**base, method_options={"cells": False}), run_dir)
  with pytest.raises(ValueError, match="drop --layer_sparsity"):
    compress(CompressConfig(**base, layer_sparsity=(("softmax", 0.0),)), run_dir)
  with pytest.raises(ValueError, match="measures on --calibration"):
    CompressConfig(**base, method_options={"importance": "obs"})
  assert not os.path.exists(run_dir)


def test_obs_with_projection_dims_on_the_tiny_model(tiny_run_dir, tiny_text, tmp_path):
  """A word model with a softmax: obs importance, every group, TFLite parity."""
  source = tiny_source(tiny_run_dir)
  options = StructuredOptions(importance="obs", projection=True)
  method = REGISTRY["structured"]
  done = method.compress(options, method_context(
      source, tmp_path, target=0.5, calibration=tiny_text,
      max_sentences=CompressConfig(model_dir="m").calibration_sentences))
  v = done.metrics
  dense_config = load_run(tiny_run_dir)[1]
  record = v["structured"]
  assert method.variant_name(options, 0.5) == "structured_obs_50"
  assert record["groups"] == ["cells", "projection"]
  assert abs(v["removed_fraction"] - 0.5) < 0.05
  assert record["lstm_dim"] < dense_config.lstm_dim
  assert record["projection_dim"] < dense_config.projection_dim
  assert done.config.lstm_dim == record["lstm_dim"]  # the variant's own architecture
  assert done.config.projection_dim == record["projection_dim"]
  assert done.model.count_params() == num_parameters(done.config)
  assert done.model.count_params() < source.model.count_params()
  sentences = load_corpus(tiny_text, what="--eval")
  # TFLite parity with its own shapes, on two sentences as compress() checks it.
  path = str(tmp_path / "bilm_none.tflite")
  export_tflite(done.model, path, "none")
  runner = TFLiteBiLM(path)
  inputs = [next(iter(source.dataset([s], 1, shuffle=False)))["token_ids"].numpy()
            for s in sentences[:2]]
  parity = representation_parity([runner(x) for x in inputs],
                                 [done.model(x)["representations"].numpy() for x in inputs])
  assert parity["max_abs_diff"] <= 1e-5
  dataset = source.dataset(sentences, EVAL_BATCH_SIZE, shuffle=False)
  assert evaluate_perplexity(done.model, dataset)["mean"] > 1
  # Narrower representations: not comparable with the dense model's.
  assert representation_similarity(done.model, source.model, dataset) == {}
