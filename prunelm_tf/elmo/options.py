"""ELMo's ``options.json`` <-> ``BiLMConfig`` (docs/elmo_format.md, "options.json").

Which keys are required follows bilm-tf, the code that wrote the released
models: ``lstm.n_layers`` defaults to 1, ``lstm.cell_clip``/``lstm.proj_clip``
to no clipping and ``char_cnn.n_highway`` to no highway layers; every other
architecture key must be present. Training-only keys that bilm-tf's training
options also hold (``n_tokens_vocab``, ``dropout``, ``batch_size``,
``n_epochs``, ``unroll_steps``, ``all_clip_norm_val``,
``n_negative_samples_batch``, ...) are ignored, so the imported config keeps
``BiLMConfig``'s default dropout.

An options file is untrusted input: every key is type- and range-checked, and
the architecture must pass ``check_size`` (the size rule of configs read from
files) before anything is allocated.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional

from absl import logging

from prunelm_tf.models.config import BiLMConfig, CharCNNConfig, check_size

# Keys this module reads; anything else at the top level is training-only.
_ARCHITECTURE_SECTIONS = ("lstm", "char_cnn")
# BiLMConfig fields -> the options.json keys that hold them (for error messages).
_OPTIONS_KEYS = {
    "lstm_dim": "lstm.dim",
    "projection_dim": "lstm.projection_dim",
    "n_layers": "lstm.n_layers",
    "char_cnn.embedding_dim": "char_cnn.embedding.dim",
}
# Where the format is described; named in error messages.
FORMAT_DOC = "docs/elmo_format.md"


def _describe(source: Optional[str]) -> str:
  return f"ELMo options file {source}" if source else "ELMo options"


def _get(section: Mapping[str, Any], key: str, path: str, source: Optional[str], *,
         required: bool = True, default: Any = None) -> Any:
  if key not in section:
    if required:
      raise ValueError(
          f"{_describe(source)} lacks the required key {path!r}; an ELMo options.json "
          f"names the whole architecture (see {FORMAT_DOC}). Use the options.json that "
          "was released with the weight file.")
    return default
  return section[key]


def _int(value: Any, path: str, source: Optional[str], minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{_describe(source)}: {path} must be an integer >= {minimum}, got "
                     f"{value!r}.")
  return value


def _clip(value: Any, path: str, source: Optional[str]) -> Optional[float]:
  if value is None:
    return None
  if (isinstance(value, bool) or not isinstance(value, (int, float)) or
      not (value > 0 and math.isfinite(value))):
    raise ValueError(f"{_describe(source)}: {path} must be a finite number > 0, or null or "
                     f"absent (no clipping), got {value!r}.")
  return value


def _section(options: Mapping[str, Any], key: str, source: Optional[str]) -> Mapping[str, Any]:
  section = _get(options, key, key, source)
  if not isinstance(section, Mapping):
    raise ValueError(f"{_describe(source)}: {key!r} must be a JSON object, got "
                     f"{type(section).__name__}.")
  return section


def options_to_config(options: Mapping[str, Any], *, source: Optional[str] = None) -> BiLMConfig:
  """Maps a parsed ELMo options dict to the architecture of a char-input biLM.

  Args:
    options: the parsed ``options.json``.
    source: the file it came from, named in error messages.

  Returns:
    A ``BiLMConfig`` with ``vocab_size=0`` (no softmax: ELMo weight files
    have none) and ``token_encoder="char"``.

  Raises:
    ValueError: a required key is missing, a value has the wrong type or
      range, the architecture is one this package cannot represent
      (unidirectional, or ``projection_dim >= dim``), or it is beyond the
      size rule of ``prunelm_tf.models.config.check_size``.
  """
  if not isinstance(options, Mapping):
    raise ValueError(f"{_describe(source)} must hold a JSON object, got "
                     f"{type(options).__name__}.")
  if options.get("bidirectional", True) is not True:
    raise ValueError(f"{_describe(source)} says bidirectional={options['bidirectional']!r}; "
                     "only bidirectional ELMo models (forward and backward stacks) are "
                     "supported.")
  lstm = _section(options, "lstm", source)
  cnn = _section(options, "char_cnn", source)

  dim = _int(_get(lstm, "dim", "lstm.dim", source), "lstm.dim", source)
  projection_dim = _int(_get(lstm, "projection_dim", "lstm.projection_dim", source),
                        "lstm.projection_dim", source)
  if projection_dim >= dim:
    # bilm-tf builds such cells without a projection (and without proj_clip),
    # which LSTMWithProjection does not represent.
    raise ValueError(
        f"{_describe(source)}: lstm.projection_dim={projection_dim} must be smaller than "
        f"lstm.dim={dim}; bilm-tf drops the projection (W_P_0) otherwise, and such models "
        "are not supported.")
  n_layers = _int(_get(lstm, "n_layers", "lstm.n_layers", source, required=False, default=1),
                  "lstm.n_layers", source)
  skip = _get(lstm, "use_skip_connections", "lstm.use_skip_connections", source)
  if not isinstance(skip, bool):
    raise ValueError(f"{_describe(source)}: lstm.use_skip_connections must be true or false, "
                     f"got {skip!r}.")
  cell_clip = _clip(lstm.get("cell_clip"), "lstm.cell_clip", source)
  proj_clip = _clip(lstm.get("proj_clip"), "lstm.proj_clip", source)

  embedding = _get(cnn, "embedding", "char_cnn.embedding", source)
  if not isinstance(embedding, Mapping):
    raise ValueError(f"{_describe(source)}: char_cnn.embedding must be an object like "
                     f'{{"dim": 16}}, got {embedding!r}.')
  embedding_dim = _int(_get(embedding, "dim", "char_cnn.embedding.dim", source),
                       "char_cnn.embedding.dim", source)
  filters = _get(cnn, "filters", "char_cnn.filters", source)
  if (not isinstance(filters, list) or not filters or
      not all(isinstance(f, list) and len(f) == 2 for f in filters)):
    raise ValueError(f"{_describe(source)}: char_cnn.filters must be a non-empty list of "
                     f"[width, count] pairs, got {filters!r}.")
  filters = tuple((_int(w, "char_cnn.filters width", source),
                   _int(n, "char_cnn.filters count", source)) for w, n in filters)
  n_highway = _get(cnn, "n_highway", "char_cnn.n_highway", source, required=False)
  # null means no highway layers, as absent (bilm-tf reads it with .get()).
  n_highway = 0 if n_highway is None else _int(n_highway, "char_cnn.n_highway", source,
                                                minimum=0)
  n_characters = _int(_get(cnn, "n_characters", "char_cnn.n_characters", source),
                      "char_cnn.n_characters", source)
  max_chars = _int(_get(cnn, "max_characters_per_token", "char_cnn.max_characters_per_token",
                        source), "char_cnn.max_characters_per_token", source)
  activation = _get(cnn, "activation", "char_cnn.activation", source)
  if not isinstance(activation, str):
    raise ValueError(f"{_describe(source)}: char_cnn.activation must be a string such as "
                     f'"relu", got {activation!r}.')

  try:
    config = BiLMConfig(
        vocab_size=0, token_encoder="char", lstm_dim=dim, projection_dim=projection_dim,
        n_layers=n_layers, cell_clip=cell_clip, proj_clip=proj_clip,
        use_skip_connections=skip,
        char_cnn=CharCNNConfig(embedding_dim=embedding_dim, filters=filters,
                               n_highway=n_highway, n_characters=n_characters,
                               max_characters_per_token=max_chars, activation=activation))
  except (TypeError, ValueError) as e:
    raise type(e)(f"{_describe(source)}: {e}") from e
  check_size(config, source=_describe(source), field_name=_OPTIONS_KEYS)
  return config


def load_options(path: str | os.PathLike) -> BiLMConfig:
  """Reads an ELMo ``options.json`` into a ``BiLMConfig`` (see ``options_to_config``).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: the file is not UTF-8 JSON, or its content is invalid; the
      message names the file and the key.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"ELMo options file {path} does not exist; pass the options.json "
                            "released with the weight file.")
  try:
    with open(path, encoding="utf-8") as f:
      options = json.load(f)
  except (ValueError, RecursionError) as e:
    # ValueError: JSONDecodeError, UnicodeDecodeError, integers beyond Python's
    # digit limit; RecursionError: absurdly deep nesting.
    raise ValueError(f"ELMo options file {path} is not valid JSON ({e}); it should look like "
                     '{"lstm": {...}, "char_cnn": {...}} (see ' f"{FORMAT_DOC}).") from e
  ignored = sorted(set(options) - set(_ARCHITECTURE_SECTIONS)) if isinstance(options, dict) else []
  if ignored:
    logging.info("Ignoring training-only keys of %s: %s", path, ", ".join(ignored))
  return options_to_config(options, source=path)


def config_to_options(config: BiLMConfig) -> dict:
  """The ELMo ``options.json`` content of a char-input biLM config.

  Only architecture keys are written, as in the released files; absent
  clipping (None) is written as no key.

  Raises:
    ValueError: the config is a word-input model, which ELMo's format cannot
      describe, or one with ``projection_dim >= lstm_dim``.
  """
  if config.token_encoder != "char":
    raise ValueError(f"ELMo options describe char-input models only; this config has "
                     f"token_encoder={config.token_encoder!r}. Train with "
                     "token_encoder='char' to export to ELMo's format.")
  if config.projection_dim >= config.lstm_dim:
    raise ValueError(f"ELMo's format needs projection_dim < lstm_dim (bilm-tf has no "
                     f"projection otherwise); got projection_dim={config.projection_dim}, "
                     f"lstm_dim={config.lstm_dim}.")
  lstm = {"dim": config.lstm_dim, "projection_dim": config.projection_dim,
          "n_layers": config.n_layers, "use_skip_connections": config.use_skip_connections}
  if config.cell_clip is not None:
    lstm["cell_clip"] = config.cell_clip
  if config.proj_clip is not None:
    lstm["proj_clip"] = config.proj_clip
  cnn = config.char_cnn
  return {
      "lstm": lstm,
      "char_cnn": {
          "embedding": {"dim": cnn.embedding_dim},
          "filters": [list(f) for f in cnn.filters],
          "n_highway": cnn.n_highway,
          "n_characters": cnn.n_characters,
          "max_characters_per_token": cnn.max_characters_per_token,
          "activation": cnn.activation,
      },
  }
