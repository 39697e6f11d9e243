"""Text file in, HDF5 file of ELMo layers out, as ``allennlp elmo --all`` writes it.

Input: UTF-8 text, one whitespace-tokenized sentence per line; each line is
stripped and split on whitespace (as the reference command does).

Output (HDF5): one float32 dataset per input line, named by its 0-based index
("0", "1", ...), of shape (n_layers + 1, n_tokens, 2 * proj); plus the string
dataset ``sentence_to_index`` of shape (1,) holding a JSON map from each
stripped line to its index as a string. A sentence that occurs on several
lines maps to its last index, as in the reference.

Empty (or whitespace-only) lines are refused before any work, naming their
line numbers: the reference command refuses them too, and dropping them
silently would shift every dataset name.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence, Tuple

from absl import logging
import h5py
import numpy as np
import tqdm

from prunelm_tf.elmo.embedder import Embedder, check_model_source, open_embedder
from prunelm_tf.utils import files
from prunelm_tf.utils.files import atomic_path
from prunelm_tf.utils import progress as progress_lib

SENTENCE_TO_INDEX = "sentence_to_index"
# Line numbers listed in an error message.
_MAX_LISTED = 10


def read_sentence_file(path: str | os.PathLike) -> List[str]:
  """Reads the stripped lines of a sentence-per-line UTF-8 file.

  Line breaks are "\\n", "\\r\\n" or "\\r" (Python's universal newlines, as the
  reference reads the file); a final line break does not start a line.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: the file is not UTF-8 (names the line and byte offset), is
      empty, or has empty lines (names them).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"input file {path} does not exist.")
  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise ValueError(
        f"{path}, line {line}: not UTF-8 (byte 0x{data[e.start]:02x} at byte offset "
        f"{e.start}: {e.reason}). The input must be UTF-8 text; convert it first, e.g. "
        f"iconv -f latin1 -t utf-8.") from e
  lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
  if lines and lines[-1] == "":
    lines.pop()
  lines = [line.strip() for line in lines]
  if not lines:
    raise ValueError(f"input file {path} holds no sentences; it needs one tokenized sentence "
                     "per line.")
  blank = [i + 1 for i, line in enumerate(lines) if not line]
  if blank:
    shown = ", ".join(str(n) for n in blank[:_MAX_LISTED])
    more = f" and {len(blank) - _MAX_LISTED} more" if len(blank) > _MAX_LISTED else ""
    raise ValueError(
        f"{path} has {len(blank)} empty line(s), at line number(s) {shown}{more}. An empty "
        "sentence has no tokens to embed (allennlp elmo refuses it too); remove those lines, "
        "remembering that output datasets are named by line index.")
  return lines


def write_embedding_file(embedder: Embedder, lines: Sequence[str], output_file: str, *,
                         batch_size: int = 64) -> None:
  """Embeds ``lines`` and writes the reference layout (module docstring), atomically.

  Args:
    embedder: the model to run (its statefulness decides batching order).
    lines: stripped, non-empty sentences; each is split on whitespace.
    output_file: the HDF5 file; replaced only once complete.
    batch_size: sentences per batch.
  """
  sentences = [line.split() for line in lines]
  sentence_to_index = {line: str(i) for i, line in enumerate(lines)}
  n_tokens = sum(len(s) for s in sentences)
  logging.info("Embedding %d sentences (%d tokens) into %s, %s, batch size %d.",
               len(sentences), n_tokens, output_file,
               "stateful" if embedder.stateful else "stateless", batch_size)
  with atomic_path(output_file) as tmp:
    with h5py.File(tmp, "w") as f:
      with tqdm.tqdm(total=len(sentences), unit="sentence", desc="ELMo",
                     disable=progress_lib.bar_disabled(len(sentences) <= batch_size)) as progress:
        for index, embedding in embedder.iter_embeddings(sentences, batch_size):
          f.create_dataset(str(index), data=np.asarray(embedding, np.float32),
                           dtype=np.float32)
          progress.update(1)
      index_ds = f.create_dataset(SENTENCE_TO_INDEX, (1,), dtype=h5py.string_dtype())
      index_ds[0] = json.dumps(sentence_to_index)


def read_embedding_file(path: str | os.PathLike) -> Tuple[Dict[int, np.ndarray],
                                                          Dict[str, str]]:
  """Reads a file written by ``write_embedding_file`` (or ``allennlp elmo --all``).

  Returns:
    ``({line index: float32 [n_layers + 1, n_tokens, dim]}, sentence_to_index)``.
  """
  with h5py.File(path, "r") as f:
    embeddings = {int(k): f[k][()] for k in f.keys() if k != SENTENCE_TO_INDEX}
    raw = f[SENTENCE_TO_INDEX][0] if SENTENCE_TO_INDEX in f else b"{}"
  return embeddings, json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def check_output_file(output_file: str, flag_name: str = "output_file") -> None:
  """Checks, before any work, that ``output_file`` can be written as a file.

  Raises:
    ValueError: it names an existing directory, or a folder on its path is a
      file.
  """
  if os.path.isdir(output_file):
    raise ValueError(
        f"{flag_name} {output_file} is an existing directory; it must name the HDF5 file to "
        f"write, e.g. {os.path.join(output_file, 'elmo_embeddings.hdf5')}.")
  parent = os.path.dirname(os.path.abspath(output_file))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(f"{flag_name} {output_file} cannot be created: {parent} is a file, not a "
                     "directory. Choose another output path.")


def embed_text_file(input_file: str, output_file: str, *, options_file: str = "",
                    weight_file: str = "", model_dir: str = "", tflite_file: str = "",
                    batch_size: int = 64, stateful: bool = False) -> int:
  """Embeds every line of ``input_file`` into ``output_file`` with one model.

  The input is read and checked, and the model loaded, before anything is
  written; the output is written under a temporary name and renamed when
  complete.

  Args:
    input_file: UTF-8 text, one whitespace-tokenized sentence per line.
    output_file: HDF5 file to write (module docstring); must not be one of the
      inputs or an existing directory.
    options_file, weight_file, model_dir, tflite_file: the model; see
      ``open_embedder``.
    batch_size: sentences per batch (TFLite always runs one at a time).
    stateful: carry LSTM states across batches, as ``allennlp elmo`` does.

  Returns:
    The number of sentences written.

  Raises:
    FileNotFoundError, ValueError: bad input file, model or arguments; the
      message names the file (and line) and the fix.
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
  check_model_source(options_file=options_file, weight_file=weight_file, model_dir=model_dir,
                     tflite_file=tflite_file, stateful=stateful)
  # The output is never an input, nor inside the model folder it reads.
  files.check_output_path(output_file, {
      "--input_file": input_file, "--options_file": options_file, "--weight_file": weight_file,
      "--model_dir": model_dir, "--tflite_file": tflite_file}, flag_name="--output_file")
  check_output_file(output_file)
  lines = read_sentence_file(input_file)
  embedder = open_embedder(options_file=options_file, weight_file=weight_file,
                           model_dir=model_dir, tflite_file=tflite_file, stateful=stateful)
  write_embedding_file(embedder, lines, output_file, batch_size=batch_size)
  logging.info("Wrote %d sentence embeddings to %s.", len(lines), output_file)
  return len(lines)
