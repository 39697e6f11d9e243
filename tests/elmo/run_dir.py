"""A tiny word-input run folder in pipelines.train's layout, without training."""

import os

from prunelm_tf import data as data_lib
from prunelm_tf.models import BiLMConfig, build_bilm
from prunelm_tf.training.config import DataConfig, TrainConfig, TrainingRunConfig
from prunelm_tf.training.run_folder import WEIGHTS_FILE


def make_word_run_dir(run_dir, train_file):
  """A minimal run folder in pipelines.train's layout (config, vocab, final weights)."""
  sentences = data_lib.read_sentences(data_lib.open_corpus(str(train_file)))
  vocab = data_lib.Vocabulary.build(sentences)
  config = TrainingRunConfig(
      model=BiLMConfig(vocab_size=len(vocab), token_encoder="word", lstm_dim=8,
                       projection_dim=4, n_layers=2, dropout=0.0),
      data=DataConfig(train=str(train_file)), train=TrainConfig())
  model = build_bilm(config.model)
  os.makedirs(run_dir)
  (run_dir / "config.json").write_text(config.to_json())
  vocab.save(run_dir / "vocab.txt")
  model.save_weights(str(run_dir / WEIGHTS_FILE))
  return model, vocab, sentences
