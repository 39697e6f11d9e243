"""The whole biLM under tfmot prune_low_magnitude: target sparsity and strip_pruning."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import \
    PruneLowMagnitude

from prunelm_tf import data as data_lib
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm
from prunelm_tf.training.loop import LossSpec, Trainer

sparsity = tfmot.sparsity.keras

# name of the wrapped layer -> names of the weights that must be pruned
EXPECTED_PRUNED = {
    "word": {"word_embedding": ["embeddings"], "forward_lstm_0": ["kernel", "projection"],
             "backward_lstm_0": ["kernel", "projection"], "forward_lstm_1": ["kernel", "projection"],
             "backward_lstm_1": ["kernel", "projection"], "softmax": ["kernel"]},
    "char": {"char_cnn": ["kernel_0", "kernel_1"], "highway_0": ["carry_kernel", "transform_kernel"],
             "token_projection": ["kernel"], "forward_lstm_0": ["kernel", "projection"],
             "backward_lstm_0": ["kernel", "projection"], "forward_lstm_1": ["kernel", "projection"],
             "backward_lstm_1": ["kernel", "projection"], "softmax": ["kernel"]},
}


@pytest.mark.parametrize("encoder", ["word", "char"])
def test_prune_whole_bilm_reaches_target_and_strip_keeps_outputs(encoder, shared_data):
  tf.keras.utils.set_random_seed(0)
  sentences = data_lib.read_sentences(
      data_lib.open_corpus(str(shared_data / "bilm_tf_fixture/train/data.txt")))
  vocab = data_lib.Vocabulary.build(sentences)
  config = BiLMConfig(vocab_size=len(vocab), token_encoder=encoder, lstm_dim=16, projection_dim=8,
                      n_layers=2, dropout=0.0,
                      char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 8), (2, 8)),
                                             n_highway=1))
  dense = build_bilm(config)
  target, end_step = 0.75, 6
  schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target,
                                      begin_step=0, end_step=end_step, frequency=2)
  pruned = sparsity.prune_low_magnitude(dense, pruning_schedule=schedule)
  trainer = Trainer(pruned, tf.keras.optimizers.Adam(1e-2), LossSpec())
  callback = sparsity.UpdatePruningStep()
  callback.set_model(pruned)
  callback.on_train_begin()
  dataset = data_lib.make_dataset(sentences, vocab, batch_size=2, char_inputs=encoder == "char",
                                  shuffle=True, seed=0)
  steps = 0
  while steps < end_step + 3:  # past end_step
    for batch in dataset:
      callback.on_train_batch_begin(batch=steps)
      trainer.step(batch)
      steps += 1
  callback.on_epoch_end(0)

  checked = {}
  for layer in pruned.layers:
    if not isinstance(layer, PruneLowMagnitude):
      continue
    for weight in layer.layer.get_prunable_weights():
      values = weight.numpy()
      checked.setdefault(layer.layer.name, []).append(weight.name.split("/")[-1].split(":")[0])
      measured = 1.0 - np.count_nonzero(values) / values.size
      # tfmot rounds the number of zeros per matrix: within one element.
      assert abs(measured - target) <= 1.0 / values.size + 1e-9, (weight.name, measured)
  assert checked == EXPECTED_PRUNED[encoder]

  stripped = sparsity.strip_pruning(pruned)
  assert not any(isinstance(l, PruneLowMagnitude) for l in stripped.layers)
  batch = next(iter(dataset))
  ids = batch["char_ids" if encoder == "char" else "token_ids"]
  before = pruned(ids, training=False)
  after = stripped(ids, training=False)
  for key in before:
    np.testing.assert_array_equal(before[key].numpy(), after[key].numpy())
