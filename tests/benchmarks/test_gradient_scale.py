"""benchmarks.gradient_scale: the KD gradients that Adam's epsilon is set against."""

import numpy as np
import pytest

from benchmarks import gradient_scale
from prunelm_tf import data as data_lib
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.training.run_folder import load_run


def _batches(tiny_text, vocab):
  sentences = load_corpus(tiny_text, what="--train")
  return data_lib.make_dataset(sentences, vocab, batch_size=4, char_inputs=False,
                               shuffle=True, seed=0).take(3)


def test_a_pruned_copy_has_real_gradients_and_the_dense_copy_almost_none(tiny_run_dir,
                                                                        tiny_text):
  teacher, config, vocab = load_run(tiny_run_dir)
  pruned = gradient_scale.gradient_scale(
      gradient_scale.pruned_student(teacher, config, 0.9), teacher, _batches(tiny_text, vocab))
  dense = gradient_scale.gradient_scale(
      gradient_scale.pruned_student(teacher, config, 0.0), teacher, _batches(tiny_text, vocab))
  assert pruned["num_batches"] == dense["num_batches"] == 3
  assert pruned["kd_kl"] > 1e-4 and dense["kd_kl"] < 1e-6  # the dense copy is its teacher
  assert "softmax/kernel" not in pruned["matrices"]  # the softmax stays dense
  kernel = teacher.get_layer("forward_lstm_0").kernel
  stats = pruned["matrices"]["forward_lstm_0/kernel"]
  assert stats["kept"] == int(np.prod(kernel.shape)) - round(0.9 * np.prod(kernel.shape))
  assert 0 <= stats["rms_p10"] <= stats["rms_p50"] <= stats["rms_p90"] and stats["rms_p50"] > 0
  assert 0 <= stats["sign_agreement_p50"] <= 1
  # Distilled from itself, the dense model's gradient is rounding noise only, orders of
  # magnitude below the pruned copy's (and below Adam's default epsilon, 1e-7).
  assert dense["matrices"]["forward_lstm_0/kernel"]["rms_p90"] < 1e-7 < stats["rms_p50"]


def test_no_batches_is_refused(tiny_run_dir):
  teacher, config, _ = load_run(tiny_run_dir)
  with pytest.raises(ValueError, match="at least one batch"):
    gradient_scale.gradient_scale(teacher, teacher, [])
