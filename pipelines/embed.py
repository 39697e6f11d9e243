r"""Writes the ELMo layers of every line of a text file to HDF5 (like `allennlp elmo --all`).

  python -m pipelines.embed --options_file=options.json --weight_file=weights.hdf5 \
      --input_file=sentences.txt --output_file=elmo.hdf5 [--stateful]
  python -m pipelines.embed --model_dir=saved_models/train --input_file=... --output_file=...
  python -m pipelines.embed --tflite_file=bilm.tflite --input_file=... --output_file=...

The output holds one float32 dataset per input line, named by its 0-based
index, of shape (n_layers + 1, n_tokens, 2 * projection_dim), and a
"sentence_to_index" JSON map. Empty input lines are refused.
"""

from absl import app
from absl import flags

import pipelines  # noqa: F401  (Keras 2 before TensorFlow)
from pipelines import cli
from prunelm_tf.elmo.embedding_file import embed_text_file

_OPTIONS = flags.DEFINE_string(
    "options_file", "", "The options.json of a released ELMo model. Give it together with "
    "--weight_file, and give neither --model_dir nor --tflite_file.")
_WEIGHTS = flags.DEFINE_string(
    "weight_file", "", "The HDF5 weight file of a released ELMo model, loaded with "
    "--options_file. It must match the options exactly, or nothing is embedded.")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", "", "A run folder written by pipelines.train (config.json and "
    "model_weights.h5), or a variant folder of pipelines.compress (RUN/variants/NAME or "
    "RUN/dense). Word-input models map tokens to ids with the folder's vocab.txt.")
_TFLITE = flags.DEFINE_string(
    "tflite_file", "", "A TFLite export whose input is character ids. It runs one sentence "
    "at a time and cannot be combined with --stateful.")
_INPUT = flags.DEFINE_string(
    "input_file", None, "UTF-8 text with one whitespace-tokenized sentence per line. Empty "
    "lines are refused before any work, because output datasets are named by line index.",
    required=True)
_OUTPUT = flags.DEFINE_string(
    "output_file", None, "The HDF5 file to write. It is written under a temporary name and "
    "replaces an existing file only once complete.", required=True)
_BATCH = flags.DEFINE_integer(
    "batch_size", 64, "Sentences per batch. With --stateful it also decides which sentences "
    "share LSTM state rows, so keep it equal to the reference run you compare with.",
    lower_bound=1)
_STATEFUL = flags.DEFINE_bool(
    "stateful", False, "Carry each batch row's LSTM states into the next batch, as allennlp "
    "elmo and bilm-tf do. The default starts every sentence from a zero state, so a "
    "sentence's embedding does not depend on the sentences before it.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  count = embed_text_file(
      _INPUT.value, _OUTPUT.value, options_file=_OPTIONS.value, weight_file=_WEIGHTS.value,
      model_dir=_MODEL_DIR.value, tflite_file=_TFLITE.value, batch_size=_BATCH.value,
      stateful=_STATEFUL.value)
  print(f"wrote {count} sentence embeddings to {_OUTPUT.value}")


if __name__ == "__main__":
  cli.run(main)
