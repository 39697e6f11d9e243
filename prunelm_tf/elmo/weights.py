"""ELMo HDF5 weight files <-> the Keras biLM (docs/elmo_format.md, "The HDF5 weight file").

``weight_layout(config)`` lists every dataset of a weight file with the Keras
layer and weight that holds it. Import reads and checks *all* datasets before
assigning anything, so a bad file leaves the model untouched; export writes
the released layout (float32, same names and shapes, no softmax) under
temporary names and renames when both files are complete.

One case the Keras model represents differently: when the char-CNN width
equals ``projection_dim`` bilm-tf has no ``CNN_proj`` datasets. Such files load
with an identity ``token_projection`` (exact in float32), and an identity
projection with zero bias is omitted again on export.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

from absl import logging
import h5py
import numpy as np
import tensorflow as tf

from prunelm_tf.elmo import options as options_lib
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.utils.files import atomic_path

keras = tf.keras

# Rows of `char_embed` in every ELMo weight file: raw character ids 0..260.
N_STORED_CHARACTERS = 261
# How many problems one error message lists.
_MAX_LISTED = 8
# tfmot's prefix for wrapped layers; such a model must be stripped first.
_PRUNE_PREFIX = "prune_low_magnitude_"


@dataclasses.dataclass(frozen=True)
class WeightSpec:
  """One dataset of an ELMo weight file and the Keras weight that holds it."""

  # HDF5 path, e.g. "CNN/W_cnn_0".
  dataset: str
  # Keras layer name, e.g. "char_cnn".
  layer: str
  # Attribute of that layer holding the variable, e.g. "kernels".
  attribute: str
  # Index into the attribute when it is a list (CharCNN kernels/biases).
  index: Optional[int]
  # Shape in the HDF5 file.
  shape: Tuple[int, ...]
  # The file has an extra leading axis of size 1 (TF conv2d kernels).
  leading_one: bool = False
  # May be absent (bilm-tf writes no CNN_proj when n_filters == projection_dim).
  optional: bool = False

  @property
  def model_shape(self) -> Tuple[int, ...]:
    return self.shape[1:] if self.leading_one else self.shape


def lstm_dataset_prefix(direction: int, layer: int) -> str:
  """HDF5 group of one LSTM layer; direction 0 = forward, 1 = backward."""
  return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"


def weight_layout(config: BiLMConfig) -> List[WeightSpec]:
  """Every dataset of the ELMo weight file of ``config``, in file-format order.

  Raises:
    ValueError: ``config`` is a word-input model (ELMo files are char-input).
  """
  if config.token_encoder != "char":
    raise ValueError(f"ELMo weight files hold char-input models only; this config has "
                     f"token_encoder={config.token_encoder!r}.")
  cnn = config.char_cnn
  width, proj, dim = cnn.n_filters, config.projection_dim, config.lstm_dim
  specs = [WeightSpec("char_embed", "char_cnn", "char_embedding", None,
                      (N_STORED_CHARACTERS, cnn.embedding_dim))]
  for i, (w, n) in enumerate(cnn.filters):
    specs.append(WeightSpec(f"CNN/W_cnn_{i}", "char_cnn", "kernels", i,
                            (1, w, cnn.embedding_dim, n), leading_one=True))
    specs.append(WeightSpec(f"CNN/b_cnn_{i}", "char_cnn", "biases", i, (n,)))
  for k in range(cnn.n_highway):
    for name, attribute, shape in (("W_carry", "carry_kernel", (width, width)),
                                   ("b_carry", "carry_bias", (width,)),
                                   ("W_transform", "transform_kernel", (width, width)),
                                   ("b_transform", "transform_bias", (width,))):
      specs.append(WeightSpec(f"CNN_high_{k}/{name}", f"highway_{k}", attribute, None, shape))
  optional_proj = width == proj
  specs.append(WeightSpec("CNN_proj/W_proj", "token_projection", "kernel", None, (width, proj),
                          optional=optional_proj))
  specs.append(WeightSpec("CNN_proj/b_proj", "token_projection", "bias", None, (proj,),
                          optional=optional_proj))
  for d, direction in enumerate(("forward", "backward")):
    for l in range(config.n_layers):
      prefix = lstm_dataset_prefix(d, l)
      layer = f"{direction}_lstm_{l}"
      specs.append(WeightSpec(f"{prefix}/W_0", layer, "kernel", None, (2 * proj, 4 * dim)))
      specs.append(WeightSpec(f"{prefix}/B", layer, "bias", None, (4 * dim,)))
      specs.append(WeightSpec(f"{prefix}/W_P_0", layer, "projection", None, (dim, proj)))
  return specs


def _is_elmo_dataset(name: str) -> bool:
  return name == "char_embed" or name.startswith(("CNN/", "CNN_high_", "CNN_proj/", "RNN_"))


def _list(items) -> str:
  items = list(items)
  shown = "; ".join(items[:_MAX_LISTED])
  return shown + (f"; ... ({len(items)} in total)" if len(items) > _MAX_LISTED else "")


def read_elmo_weights(weight_file: str | os.PathLike, config: BiLMConfig, *,
                      options_source: Optional[str] = None) -> Dict[str, np.ndarray]:
  """Reads and checks every dataset of an ELMo weight file.

  Args:
    weight_file: the HDF5 file.
    config: the architecture the file must match.
    options_source: where ``config`` came from (named in errors).

  Returns:
    ``{dataset: float32 array in the file's shape}`` for every spec of
    ``weight_layout(config)``; an optional ``CNN_proj`` that is absent comes
    back as an identity matrix and a zero bias.

  Raises:
    FileNotFoundError: ``weight_file`` does not exist.
    ValueError: the file is not readable HDF5 (truncated, corrupt), a dataset
      is missing, not floating point, not finite, or has a shape other than
      the architecture's, or the file holds ELMo datasets the architecture
      does not have. The message names the file, the datasets and expected
      vs found shapes; non-finite values are reported as a broken weight file
      (not as a mismatch with the options), with their own fix.
  """
  weight_file = os.fspath(weight_file)
  source = f"options {options_source}" if options_source else "the architecture"
  if not os.path.isfile(weight_file):
    raise FileNotFoundError(f"ELMo weight file {weight_file} does not exist.")
  specs = weight_layout(config)
  arrays: Dict[str, np.ndarray] = {}
  problems: List[str] = []  # disagreements with the architecture
  non_finite: List[str] = []  # broken values: the options are not the cause
  unreadable: List[str] = []  # corrupt datasets: the options are not the cause either
  corrupt = (f"ELMo weight file {weight_file} is not a readable HDF5 file ({{}}). It may be "
             "truncated or corrupt (compare its size with the original) or not HDF5 at all; "
             "download or copy it again.")
  try:
    with h5py.File(weight_file, "r") as f:
      present = set()
      try:
        # A corrupt name comes back as undecodable bytes: listed, never matched.
        f.visititems(lambda name, obj: present.add(
            name if isinstance(name, str) else name.decode("utf-8", "replace"))
                     if isinstance(obj, h5py.Dataset) else None)
      except KeyError as e:  # h5py: an object header that cannot be decoded
        raise ValueError(corrupt.format(e)) from e
      expected = {s.dataset for s in specs}
      # CNN_proj may be absent as a whole, never half.
      no_projection = all(s.dataset not in present for s in specs if s.optional)
      for spec in specs:
        if spec.dataset not in present:
          if not (spec.optional and no_projection):
            problems.append(f"dataset {spec.dataset!r} is missing (expected shape {spec.shape} "
                            f"from {source})")
          continue
        try:
          ds = f[spec.dataset]
          shape, dtype = tuple(ds.shape), ds.dtype
        except (KeyError, OSError, RuntimeError, ValueError) as e:  # corrupt object headers
          unreadable.append(f"dataset {spec.dataset!r} cannot be opened ({e})")
          continue
        if shape != spec.shape:
          problems.append(f"dataset {spec.dataset!r} has shape {shape} but {source} "
                          f"expects {spec.shape}")
          continue
        if dtype.kind != "f":
          problems.append(f"dataset {spec.dataset!r} has dtype {dtype}, expected float32 "
                          f"of shape {spec.shape}")
          continue
        try:
          value = ds[()]
        except (OSError, RuntimeError, ValueError) as e:
          unreadable.append(f"dataset {spec.dataset!r} cannot be read ({e})")
          continue
        if dtype != np.float32:
          logging.warning("%s: dataset %s is %s; converting to float32.", weight_file,
                          spec.dataset, dtype)
        value = np.asarray(value, np.float32)
        if not np.all(np.isfinite(value)):
          non_finite.append(f"dataset {spec.dataset!r} holds NaN or infinite values")
          continue
        arrays[spec.dataset] = value
      unexpected = sorted(n for n in present if _is_elmo_dataset(n) and n not in expected)
      if unexpected:
        problems.append(
            f"datasets {unexpected[:_MAX_LISTED]} are not part of {source} (more layers, "
            "highway layers or filter banks than it describes)")
      other = sorted(n for n in present if not _is_elmo_dataset(n))
      if other:
        logging.warning("%s: ignoring datasets outside ELMo's biLM layout: %s", weight_file,
                        ", ".join(other[:_MAX_LISTED]))
  except (OSError, RuntimeError) as e:
    # OSError: not HDF5 or truncated; RuntimeError: corrupt object headers or
    # B-trees met while listing the datasets.
    raise ValueError(corrupt.format(e)) from e
  messages = []
  if problems:
    messages.append(
        f"ELMo weight file {weight_file} does not match {source}: {_list(problems)}. Use the "
        f"options.json released with this weight file (layout: {options_lib.FORMAT_DOC}).")
  if unreadable:
    messages.append(
        f"ELMo weight file {weight_file} is corrupt: {_list(unreadable)}. Use an intact copy "
        "of it (download or copy it again), or export the model again.")
  if non_finite:
    messages.append(
        f"ELMo weight file {weight_file} holds non-finite weights: {_list(non_finite)}. The "
        "file is corrupt, or the model it was exported from diverged in training: use an "
        "intact copy of it (download or copy it again), or retrain the model and export it "
        "again.")
  if messages:
    raise ValueError(" ".join(messages))
  for spec in specs:
    if spec.dataset not in arrays:  # absent optional CNN_proj: identity, exact in float32
      arrays[spec.dataset] = (np.eye(*spec.shape, dtype=np.float32) if len(spec.shape) == 2
                              else np.zeros(spec.shape, np.float32))
  return arrays


def _check_not_wrapped(model: keras.Model) -> None:
  wrapped = [l.name for l in model.layers if l.name.startswith(_PRUNE_PREFIX)]
  if wrapped:
    raise ValueError(
        f"the model still has pruning wrappers ({', '.join(wrapped[:3])}, ...); strip them "
        "with tfmot.sparsity.keras.strip_pruning(model) first, which keeps the layer names "
        "ELMo's format maps to.")


def model_variable(model: keras.Model, spec: WeightSpec) -> tf.Variable:
  """The Keras variable of ``model`` that holds ``spec``'s dataset.

  Raises:
    ValueError: the model has no such layer or weight.
  """
  try:
    layer = model.get_layer(spec.layer)
  except ValueError as e:
    raise ValueError(
        f"the model has no layer {spec.layer!r} (which holds ELMo dataset {spec.dataset!r}); "
        "ELMo's format needs a char-input biLM from build_bilm with its layer names.") from e
  value = getattr(layer, spec.attribute, None)
  if spec.index is not None and value is not None:
    value = value[spec.index] if spec.index < len(value) else None
  if value is None:
    raise ValueError(f"layer {spec.layer!r} of the model has no weight {spec.attribute!r}"
                     f"{'' if spec.index is None else f'[{spec.index}]'} for ELMo dataset "
                     f"{spec.dataset!r}.")
  return value


def _model_variables(model: keras.Model, config: BiLMConfig) -> List[Tuple[WeightSpec,
                                                                           tf.Variable]]:
  _check_not_wrapped(model)
  pairs, problems = [], []
  for spec in weight_layout(config):
    var = model_variable(model, spec)
    if tuple(var.shape) != spec.model_shape:
      problems.append(f"{spec.layer}.{spec.attribute} has shape {tuple(var.shape)}, the "
                      f"config's {spec.dataset!r} needs {spec.model_shape}")
    pairs.append((spec, var))
  if problems:
    raise ValueError(f"the model does not match its config: {_list(problems)}. Build the "
                     "model with build_bilm(config).")
  return pairs


def assign_elmo_weights(model: keras.Model, config: BiLMConfig,
                        weight_file: str | os.PathLike, *,
                        options_source: Optional[str] = None) -> None:
  """Loads an ELMo weight file into a biLM built from ``config``.

  Every dataset is read and checked first; the model is changed only if all
  of them fit.

  Raises:
    FileNotFoundError, ValueError: see ``read_elmo_weights``; ValueError also
      when ``model`` does not have ``config``'s layers and shapes.
  """
  arrays = read_elmo_weights(weight_file, config, options_source=options_source)
  pairs = _model_variables(model, config)
  keras.backend.batch_set_value(
      [(var, arrays[spec.dataset].reshape(spec.model_shape)) for spec, var in pairs])


def load_elmo(options_file: str | os.PathLike,
              weight_file: str | os.PathLike) -> Tuple[keras.Model, BiLMConfig]:
  """Builds the biLM of an ELMo options file and loads its weights.

  Returns:
    ``(model, config)``: a char-input model without softmax
    (``config.vocab_size == 0``) whose ``representations`` are ELMo's layers.

  Raises:
    FileNotFoundError: a file does not exist.
    ValueError: malformed options, or a weight file that is unreadable or
      does not match them (see ``read_elmo_weights``).
  """
  options_file = os.fspath(options_file)
  config = options_lib.load_options(options_file)
  arrays = read_elmo_weights(weight_file, config, options_source=options_file)
  model = build_bilm(config)
  pairs = _model_variables(model, config)
  keras.backend.batch_set_value(
      [(var, arrays[spec.dataset].reshape(spec.model_shape)) for spec, var in pairs])
  logging.info("Loaded ELMo biLM from %s (%d parameters, %d layers, lstm %d, projection %d).",
               weight_file, model.count_params(), config.n_layers, config.lstm_dim,
               config.projection_dim)
  return model, config


def export_elmo(model: keras.Model, config: BiLMConfig, options_path: str | os.PathLike,
                weight_path: str | os.PathLike) -> List[str]:
  """Writes ``model`` as an ELMo ``options.json`` and HDF5 weight file.

  The layout, names, shapes and dtype (float32) are those of the released
  files, so bilm-tf and AllenNLP load the result; import -> export is
  bit-exact. The softmax of a model trained with one is not written:
  released ELMo files never hold it. A pruned model must have its pruning
  wrappers stripped first (zeros are written as they are).

  ELMo's format has no low-rank factors: a factorized model (``config.ranks``)
  is written with every factor pair multiplied back into its dense matrix (a
  warning says so, and the names are returned), so the files are a valid ELMo
  of the same function but not smaller.

  Both files are written under temporary names and renamed when complete;
  on failure neither path is created or changed.

  Returns:
    The factorized matrices that were multiplied back ([] for a dense model).

  Raises:
    ValueError: word-input model, pruning wrappers still present, the model
      does not match ``config``, or both paths are the same file.
  """
  options_path, weight_path = os.fspath(options_path), os.fspath(weight_path)
  if os.path.abspath(options_path) == os.path.abspath(weight_path):
    raise ValueError(f"options_path and weight_path are both {options_path}; give two "
                     "different files.")
  if config.token_encoder != "char":
    raise ValueError(
        "ELMo export of a word-input model is not supported: ELMo's format has no word "
        "embedding table, only the character CNN. Train with token_encoder='char'.")
  multiplied = [name for name, _ in config.ranks]
  if multiplied:
    from prunelm_tf.models.surgery import multiply_back  # pylint: disable=import-outside-toplevel
    logging.warning("ELMo's HDF5 format holds dense matrices only: the low-rank factors of %s "
                    "are multiplied back, so %s holds the dense equivalent (same outputs, not "
                    "smaller).", ", ".join(multiplied), weight_path)
    model, config = multiply_back(model, config)
  options = options_lib.config_to_options(config)
  pairs = _model_variables(model, config)
  arrays = {}
  for spec, var in pairs:
    arrays[spec.dataset] = np.asarray(var.numpy(), np.float32).reshape(spec.shape)
  if config.char_cnn.n_filters == config.projection_dim:
    kernel, bias = arrays["CNN_proj/W_proj"], arrays["CNN_proj/b_proj"]
    if np.array_equal(kernel, np.eye(*kernel.shape, dtype=np.float32)) and not np.any(bias):
      # bilm-tf's layout for n_filters == projection_dim: no projection.
      del arrays["CNN_proj/W_proj"], arrays["CNN_proj/b_proj"]
    else:
      logging.warning("The char-CNN width equals projection_dim but token_projection is not "
                      "the identity: AllenNLP reads CNN_proj, bilm-tf ignores it at this size.")
  if config.has_softmax:
    logging.info("Not exporting the softmax (%d words): ELMo weight files never hold it.",
                 config.vocab_size)
  with atomic_path(weight_path) as weight_tmp, atomic_path(options_path) as options_tmp:
    with h5py.File(weight_tmp, "w") as f:
      for name, value in arrays.items():
        f.create_dataset(name, data=value, dtype=np.float32)
    with open(options_tmp, "w", encoding="utf-8") as f:
      f.write(json.dumps(options, indent=2) + "\n")
  logging.info("Exported ELMo biLM to %s and %s.", options_path, weight_path)
  return multiplied
