r"""Trains a dense ELMo-style biLM on text into one run folder.

  python -m pipelines.train --flagfile=pipelines/flags/ptb_small.flags

Flags after --flagfile override it. Started again with the same --run_dir,
training resumes from the last checkpoint.
"""

import os

from absl import app
from absl import flags

import pipelines  # noqa: F401  (Keras 2 before TensorFlow)
from pipelines import cli
from prunelm_tf.models.config import BiLMConfig, CharCNNConfig
from prunelm_tf.training.config import DataConfig, TrainConfig, TrainingRunConfig
from prunelm_tf.training.train import train_and_evaluate

# Data.
_TRAIN = flags.DEFINE_string("train", None, "Training text: a file glob (one tokenized sentence "
                             "per line) or tfds:NAME/SPLIT such as tfds:lm1b/train.", required=True)
_VALID = flags.DEFINE_string("valid", "", "Validation text (same forms); evaluated after every "
                             "epoch. Empty = none.")
_TEST = flags.DEFINE_string("test", "", "Test text (same forms); evaluated once at the end. "
                            "Empty = no test perplexity in metrics.json.")
_VOCAB = flags.DEFINE_string("vocab_file", "", "ELMo vocabulary file (one token per line, must "
                             "hold <S>, </S>, <UNK>). Empty = build one from --train.")
_MAX_VOCAB = flags.DEFINE_integer("max_vocab_size", 0, "When building the vocabulary, keep the "
                                  "most frequent tokens up to this size (specials included); "
                                  "0 = all.", lower_bound=0)
_MIN_COUNT = flags.DEFINE_integer("min_count", 1, "When building the vocabulary, drop rarer "
                                  "tokens.", lower_bound=1)
_BATCH = flags.DEFINE_integer("batch_size", 64, "Sentences per batch.", lower_bound=1)
_MAX_LEN = flags.DEFINE_integer("max_length", 0, "Truncate sentences to this many tokens "
                                "(<S> and </S> included); 0 = never.", lower_bound=0)
_MAX_SENT = flags.DEFINE_integer("max_sentences", 0, "Read at most this many sentences of each "
                                 "corpus (quick runs); 0 = all.", lower_bound=0)
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", "", "TFDS data directory; empty = default.")
# Model.
_ENCODER = flags.DEFINE_enum("token_encoder", "char", ["char", "word"], "Token encoder: ELMo's "
                             "character CNN, or a word-embedding table (smaller, faster).")
_LSTM_DIM = flags.DEFINE_integer("lstm_dim", 512, "LSTM cell width.", lower_bound=1)
_PROJ = flags.DEFINE_integer("projection_dim", 128, "LSTM projection width = token embedding "
                             "width; representations are twice this wide.", lower_bound=1)
_LAYERS = flags.DEFINE_integer("n_layers", 2, "LSTM layers per direction.", lower_bound=1)
_CELL_CLIP = flags.DEFINE_float("cell_clip", 3.0, "Clip the LSTM cell state; 0 = no clipping.",
                                lower_bound=0)
_PROJ_CLIP = flags.DEFINE_float("proj_clip", 3.0, "Clip the LSTM projection; 0 = no clipping.",
                                lower_bound=0)
_SKIP = flags.DEFINE_bool("use_skip_connections", True, "Residual connections between LSTM layers.")
_DROPOUT = flags.DEFINE_float("dropout", 0.1, "Dropout on embeddings, between layers and before "
                              "the softmax.", lower_bound=0, upper_bound=0.99)
_CHAR_DIM = flags.DEFINE_integer("char_embedding_dim", 16, "Character embedding width.",
                                 lower_bound=1)
_CHAR_FILTERS = flags.DEFINE_string("char_filters", "1:32,2:32,3:64,4:128",
                                    "Character CNN filter banks as width:count pairs.")
_HIGHWAY = flags.DEFINE_integer("n_highway", 1, "Highway layers after the character CNN.",
                                lower_bound=0)
# Optimisation.
_EPOCHS = flags.DEFINE_float("num_epochs", 1.0, "Passes over --train.", lower_bound=0)
_MAX_STEPS = flags.DEFINE_integer("max_steps", 0, "Stop after this many steps; 0 = run "
                                  "--num_epochs.", lower_bound=0)
_LR = flags.DEFINE_float("learning_rate", 2e-3, "Peak Adam learning rate.", lower_bound=0)
_SCHEDULE = flags.DEFINE_enum("lr_schedule", "linear", ["constant", "linear", "cosine"],
                              "Learning-rate decay to zero at the last step (or constant).")
_WARMUP = flags.DEFINE_integer("warmup_steps", 0, "Linear warm-up steps.", lower_bound=0)
_CLIP = flags.DEFINE_float("clip_norm", 5.0, "Global gradient-norm clipping; 0 = none.",
                           lower_bound=0)
_SAMPLED = flags.DEFINE_integer("num_sampled", 0, "Sampled-softmax samples for training large "
                                "vocabularies; 0 = full softmax. Evaluation always uses the "
                                "full softmax.", lower_bound=0)
_LOG_EVERY = flags.DEFINE_integer("log_every_steps", 50, "TensorBoard scalars every N steps.",
                                  lower_bound=1)
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every_steps", 500, "Checkpoint every N steps "
                                   "(and at every epoch end).", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed for initialisation, dropout and shuffling.")
# Run folder.
_RUN_DIR = flags.DEFINE_string("run_dir", os.path.join("saved_models", "train"),
                               "Run folder. An existing one holding this same run is resumed; "
                               "one holding a different run is refused unless --overwrite.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete a --run_dir that holds a different "
                               "run and start over; its checkpoints are lost. Only a run folder "
                               "this project made (its .prunelm_tf_run marker) is deleted, and "
                               "never one that is, holds or lies inside an input, holds the "
                               "current directory or a git work tree: those are refused.")


def _parse_filters(text: str):
  try:
    return tuple(tuple(int(v) for v in pair.split(":")) for pair in text.split(","))
  except ValueError as e:
    raise app.UsageError(f"--char_filters must look like 1:32,2:32 (width:count); got {text!r}.") from e


def config_from_flags() -> TrainingRunConfig:
  model = BiLMConfig(
      vocab_size=0, token_encoder=_ENCODER.value, lstm_dim=_LSTM_DIM.value,
      projection_dim=_PROJ.value, n_layers=_LAYERS.value,
      cell_clip=_CELL_CLIP.value or None, proj_clip=_PROJ_CLIP.value or None,
      use_skip_connections=_SKIP.value, dropout=_DROPOUT.value,
      char_cnn=CharCNNConfig(embedding_dim=_CHAR_DIM.value,
                             filters=_parse_filters(_CHAR_FILTERS.value),
                             n_highway=_HIGHWAY.value))
  data = DataConfig(train=_TRAIN.value, valid=_VALID.value, test=_TEST.value,
                    vocab_file=_VOCAB.value, max_vocab_size=_MAX_VOCAB.value,
                    min_count=_MIN_COUNT.value, batch_size=_BATCH.value,
                    max_length=_MAX_LEN.value, max_sentences=_MAX_SENT.value,
                    tfds_data_dir=_TFDS_DIR.value)
  train = TrainConfig(num_epochs=_EPOCHS.value, max_steps=_MAX_STEPS.value,
                      learning_rate=_LR.value, lr_schedule=_SCHEDULE.value,
                      warmup_steps=_WARMUP.value, clip_norm=_CLIP.value,
                      num_sampled=_SAMPLED.value, log_every_steps=_LOG_EVERY.value,
                      checkpoint_every_steps=_CKPT_EVERY.value, seed=_SEED.value)
  return TrainingRunConfig(model=model, data=data, train=train)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_from_flags()
  # model.vocab_size stays 0 here: train_and_evaluate takes it from the vocabulary.
  metrics = train_and_evaluate(config, _RUN_DIR.value, overwrite=_OVERWRITE.value,
                               flags_text=flags.FLAGS.flags_into_string())
  for split, ppl in metrics["perplexity"].items():
    print(f"{split} perplexity: forward {ppl['forward']:.2f}  backward {ppl['backward']:.2f}  "
          f"mean {ppl['mean']:.2f}")
  # No tokens/s when this process had no step left to train (a resumed, finished run).
  rate = metrics["tokens_per_second"]
  print(f"tokens/s {'—' if rate is None else format(rate, '.0f')}  "
        f"wall {metrics['wall_seconds']:.0f} s  run folder {_RUN_DIR.value}")


if __name__ == "__main__":
  cli.run(main)
