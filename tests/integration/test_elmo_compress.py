"""Compressing an imported ELMo: threshold and distillation-retraining, HDF5 out, embed it."""

import os

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig, RetrainConfig, ScheduleConfig, \
    prunable_weights
from prunelm_tf.data import open_corpus, read_sentences
from prunelm_tf.elmo import ElmoEmbedder, load_elmo
from prunelm_tf.compression.methods.retrain import RetrainOptions
from prunelm_tf.export.saved_model import load_saved_model
from tests.dense_reuse import compress


@pytest.fixture
def elmo_files(shared_data):
  d = shared_data / "elmo_fixture"
  return str(d / "options.json"), str(d / "lm_weights.hdf5"), str(d / "sentences.txt")


@pytest.mark.e2e
def test_threshold_elmo_exports_hdf5_that_embeds_like_the_variant(elmo_files, tmp_path):
  options, weights, text = elmo_files
  run_dir = str(tmp_path / "c")
  result = compress(CompressConfig(options_file=options, weight_file=weights, eval=text,
                                   method="threshold", sparsity_sweep=(0.7,),
                                   tflite_quantization=(), num_parity_sentences=2,
                                   export_elmo=True), run_dir)
  v = result["variants"][0]
  assert v["perplexity"] is None  # ELMo files have no softmax
  assert 0.9 < v["representation_similarity"]["layer_0"] < 1.0
  vdir = os.path.join(run_dir, "variants", "threshold_70")
  model, config = load_elmo(os.path.join(vdir, "elmo", "options.json"),
                            os.path.join(vdir, "elmo", "weights.hdf5"))
  kernel = model.get_layer("forward_lstm_1").kernel.numpy()
  assert abs(1 - np.count_nonzero(kernel) / kernel.size - 0.7) < 0.01
  sentences = read_sentences(open_corpus(text))[:3]
  from_hdf5 = ElmoEmbedder(model, config).embed_sentences(sentences)
  variant = load_saved_model(os.path.join(vdir, "saved_model"))
  from_variant = ElmoEmbedder(variant, config).embed_sentences(sentences)
  for a, b in zip(from_hdf5, from_variant):
    np.testing.assert_array_equal(a, b)


def test_lm_objective_on_elmo_is_refused_before_training(elmo_files, tmp_path):
  options, weights, text = elmo_files
  config = CompressConfig(options_file=options, weight_file=weights, train=text, eval=text,
                          method="retrain", method_options=RetrainOptions(schedule=ScheduleConfig(end_step=2, frequency=1),
                          retrain=RetrainConfig(num_steps=2, objective="lm", batch_size=4)),
                          tflite_quantization=(), num_parity_sentences=1)
  with pytest.raises(ValueError, match="needs a softmax.*--retrain_objective=distill"):
    compress(config, str(tmp_path / "c"))
  assert not (tmp_path / "c").exists()  # refused before any work


def test_valid_perplexity_of_an_elmo_without_softmax_is_refused(elmo_files, tmp_path):
  options, weights, text = elmo_files
  config = CompressConfig(options_file=options, weight_file=weights, eval=text, valid=text,
                          tflite_quantization=(), num_parity_sentences=1)
  with pytest.raises(ValueError, match="--valid measures perplexity, which needs a softmax"):
    compress(config, str(tmp_path / "c"))
  assert not (tmp_path / "c").exists()


@pytest.mark.e2e
def test_distill_retrain_elmo(elmo_files, tmp_path):
  options, weights, text = elmo_files
  result = compress(CompressConfig(
      options_file=options, weight_file=weights, train=text, eval=text, method="retrain",
      sparsity_sweep=(0.6,), method_options=RetrainOptions(schedule=ScheduleConfig(end_step=4, frequency=1),
      retrain=RetrainConfig(num_steps=5, objective="distill", batch_size=8, learning_rate=1e-3)),
      tflite_quantization=("none",), num_parity_sentences=1), str(tmp_path / "c"))
  v = result["variants"][0]
  exported = load_saved_model(str(tmp_path / "c" / "variants" / "retrain_60" / "saved_model"))
  sizes = {n: w.numpy().size for n, w in prunable_weights(exported).items()}
  assert set(sizes) == set(v["sparsity"]["per_weight"])
  for name, value in v["sparsity"]["per_weight"].items():
    # +-0.5 %, or one element for matrices too small for that (char_cnn/kernel_0 has 16).
    assert abs(value - 0.6) <= max(0.005, 1.0 / sizes[name]), name
  assert v["tflite_max_abs_diff"]["none"] <= 1e-5
