"""layers: LD-Net-style layer selection gives a biLM with fewer layers."""

import os

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig
from tests.dense_reuse import compress
from prunelm_tf.compression.methods.layers import LayersMethod, LayersOptions
from prunelm_tf.compression.methods.layers.method import layers_to_remove
from prunelm_tf.compression.methods.layers.selection import select_layers
from prunelm_tf.models import BiLMConfig, build_bilm
from prunelm_tf.models.config import num_parameters
from tests.compression.method_context import method_context, tiny_source
from tests.tolerance import assert_float32_close

WORD = BiLMConfig(vocab_size=20, token_encoder="word", lstm_dim=8, projection_dim=6, n_layers=3,
                  dropout=0.0)


def _ids(rng):
  ids = rng.integers(1, 21, size=(2, 6)).astype(np.int32)
  ids[1, 4:] = 0
  return ids


def test_select_layers_keeps_the_kept_layers_weights_and_the_lower_outputs():
  model = build_bilm(WORD)
  x = _ids(np.random.default_rng(0))
  dense = model(x)["representations"].numpy()
  small, config = select_layers(model, WORD, [0, 1])
  assert config.n_layers == 2 and small.count_params() == num_parameters(config)
  # Layers 0 and 1 read nothing from layer 2: their representations are unchanged.
  assert_float32_close(small(x)["representations"].numpy(), dense[:, :3])
  top, _ = select_layers(model, WORD, [2])
  np.testing.assert_array_equal(top.get_layer("backward_lstm_0").get_weights()[0],
                                model.get_layer("backward_lstm_2").get_weights()[0])
  same, _ = select_layers(model, WORD, [0, 1, 2])
  assert_float32_close(same(x)["representations"].numpy(), dense)
  with pytest.raises(ValueError, match="removing every unit"):
    select_layers(model, WORD, [])
  with pytest.raises(ValueError, match="distinct and in"):
    select_layers(model, WORD, [0, 3])


def test_sweep_rounds_to_whole_layers_and_refuses_removing_all(tiny_run_dir, tiny_text,
                                                               tmp_path):
  assert [layers_to_remove(s, 2) for s in (0.0, 0.2, 0.25, 0.5, 0.74, 0.75)] == [0, 0, 1, 1, 1, 2]
  assert [layers_to_remove(s, 3) for s in (0.1, 0.2, 0.5, 0.8)] == [0, 1, 2, 2]
  run_dir = str(tmp_path / "r")
  base = dict(model_dir=tiny_run_dir, eval=tiny_text, calibration=tiny_text, method="layers")
  with pytest.raises(ValueError, match="--layers_removed_sweep value 0.8 rounds to removing all 2"):
    compress(CompressConfig(**base, sparsity_sweep=(0.5, 0.8)), run_dir)
  with pytest.raises(ValueError, match="has 2 values; a ScalarMix over .* has 3"):
    compress(CompressConfig(**base, method_options={"criterion": "scalar_mix",
                                                    "scalar_mix_weights": "1,2"}), run_dir)
  assert not os.path.exists(run_dir)
  with pytest.raises(ValueError, match="needs --scalar_mix_weights"):
    LayersOptions(criterion="scalar_mix")
  with pytest.raises(ValueError, match="read only with --layer_criterion=scalar_mix"):
    LayersOptions(scalar_mix_weights="1,2,3")
  with pytest.raises(ValueError, match="comma-separated numbers"):
    LayersOptions(criterion="scalar_mix", scalar_mix_weights="1,x,3")


def test_criteria_choose_the_cheapest_layers(tiny_run_dir, tiny_text, tmp_path):
  source = tiny_source(tiny_run_dir)
  method = LayersMethod()
  done = method.compress(LayersOptions(criterion="perplexity"),
                         method_context(source, tmp_path, target=0.5, calibration=tiny_text,
                                        max_sentences=20))
  record = done.metrics["layers"]
  assert done.config.n_layers == 1 and len(record["candidates"]) == 2
  best = min(record["candidates"], key=lambda c: c["cost"])
  assert record["kept_layers"] == best["kept_layers"] and record["removed_lstm_fraction"] == 0.5
  assert 0 < done.metrics["removed_fraction"] < 0.5  # the softmax and embedding stay
  mixed = method.compress(LayersOptions(criterion="scalar_mix", scalar_mix_weights="0,-3,2"),
                          method_context(source, tmp_path, target=0.5))
  assert mixed.metrics["layers"]["kept_layers"] == [1]
  np.testing.assert_array_equal(mixed.model.get_layer("forward_lstm_0").get_weights()[0],
                                source.model.get_layer("forward_lstm_1").get_weights()[0])
  kept = method.compress(LayersOptions(), method_context(source, tmp_path, target=0.2,
                                                         calibration=tiny_text,
                                                         max_sentences=20))
  assert kept.config.n_layers == 2 and kept.metrics["layers"]["candidates"] == []
