"""Architecture configuration of the biLM (validated, frozen, JSON round-trip).

Two levels of checks: the constructors check types, ranges and cross-field
rules of every config; ``check_size`` adds the size rule that a config *read
from a file* (an ELMo options.json, a run folder's config.json) must also meet,
so that a corrupt or hostile size is refused by name before anything is built.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

TOKEN_ENCODERS = ("word", "char")
CHAR_ACTIVATIONS = ("relu", "tanh")

# Size limits of a config read from a file (``check_size``). They are far above
# every released ELMo ("Original": 93,600,848 parameters = 374 MB, 37 weight
# tensors, 50 characters per token) and above a word-input model whose
# embedding and softmax cover the whole 1B Word Benchmark vocabulary
# (2 x 793,471 x 512 + LSTMs: ~890M parameters), yet low enough that a size
# such as lstm dim 10**9 fails at load time, naming the field, instead of in an
# out-of-memory error while the model is built.
# Parameters of the whole model: 2**30 float32 values = 4 GiB.
MAX_PARAMETERS = 2**30
# Weight tensors (each one Keras variable; LSTM layers, highway layers and
# filter banks add them): bounds the time spent building the model.
MAX_WEIGHT_TENSORS = 1000
# Characters per token: every token's char-id row and CNN activations scale with it.
MAX_CHARACTERS_PER_TOKEN = 1024


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(name: str, value: Any) -> None:
  if not _is_int(value):
    raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")


def _check_filters(filters: Any) -> Tuple[Tuple[int, int], ...]:
  """``filters`` as (width, count) int pairs, or a TypeError that shows it."""
  if isinstance(filters, (str, bytes, Mapping)) or not hasattr(filters, "__iter__"):
    raise TypeError(f"char_cnn.filters must be a list of (width, count) pairs, got "
                    f"{filters!r} ({type(filters).__name__}).")
  pairs = []
  for f in filters:
    if (isinstance(f, (str, bytes, Mapping)) or not hasattr(f, "__len__") or len(f) != 2
        or not all(_is_int(v) for v in f)):
      raise TypeError(f"char_cnn.filters entries must be (width, count) pairs of integers, "
                      f"got {f!r}.")
    pairs.append((int(f[0]), int(f[1])))
  return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class CharCNNConfig:
  """ELMo character CNN (docs/elmo_format.md, "Character CNN")."""

  # Width of each character embedding (ELMo "Original": 16).
  embedding_dim: int = 16
  # Filter banks as (width, count) pairs, in weight-file order.
  filters: Tuple[Tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128))
  # Highway layers after the CNN (relu inside, whatever `activation` is).
  n_highway: int = 1
  # Character vocabulary at run time; the weight file has n_characters-1 rows.
  # options.json may say 261 or 262; run time always uses 262.
  n_characters: int = 262
  # Characters per token including begin/end-of-word markers.
  max_characters_per_token: int = 50
  # Activation applied after max-pooling each filter bank.
  activation: str = "relu"

  def __post_init__(self):
    for name in ("embedding_dim", "n_highway", "n_characters", "max_characters_per_token"):
      _check_int(f"char_cnn.{name}", getattr(self, name))
    object.__setattr__(self, "filters", _check_filters(self.filters))
    if self.embedding_dim < 1:
      raise ValueError(f"char_cnn.embedding_dim must be >= 1, got {self.embedding_dim}.")
    if not self.filters:
      raise ValueError("char_cnn.filters must name at least one (width, count) bank.")
    for f in self.filters:
      if len(f) != 2 or f[0] < 1 or f[1] < 1:
        raise ValueError(
            f"char_cnn.filters entries must be (width >= 1, count >= 1); got {f}.")
      if f[0] > self.max_characters_per_token:
        raise ValueError(
            f"char_cnn filter width {f[0]} exceeds max_characters_per_token="
            f"{self.max_characters_per_token}; use narrower filters.")
    if self.n_highway < 0:
      raise ValueError(f"char_cnn.n_highway must be >= 0, got {self.n_highway}.")
    if self.n_characters not in (261, 262):
      raise ValueError(
          f"char_cnn.n_characters must be 261 or 262 (ELMo options), got {self.n_characters}.")
    if self.max_characters_per_token < 3:
      raise ValueError("char_cnn.max_characters_per_token must be >= 3, got "
                       f"{self.max_characters_per_token}.")
    if self.activation not in CHAR_ACTIVATIONS:
      raise ValueError(f"char_cnn.activation must be one of {CHAR_ACTIVATIONS}, "
                       f"got {self.activation!r}.")

  @property
  def n_filters(self) -> int:
    """Total CNN output width (sum of the bank counts)."""
    return sum(count for _, count in self.filters)


@dataclasses.dataclass(frozen=True)
class BiLMConfig:
  """A bidirectional LSTM language model with ELMo's structure."""

  # Size of the output vocabulary (softmax rows). 0 = no softmax (imported
  # ELMo weight files never contain one); in a training config, 0 = take the
  # vocabulary's size. A word-input model cannot be built with 0.
  vocab_size: int = 0
  # "char": ELMo character CNN; "word": a word-embedding table (small, fast).
  token_encoder: str = "char"
  # LSTM cell width (ELMo "Original": 4096).
  lstm_dim: int = 512
  # LSTM output projection width = token embedding width (ELMo: 512).
  projection_dim: int = 128
  # LSTM layers per direction.
  n_layers: int = 2
  # Clip the cell state to +-cell_clip; None = no clipping.
  cell_clip: Optional[float] = 3.0
  # Clip the projected output to +-proj_clip; None = no clipping.
  proj_clip: Optional[float] = 3.0
  # Add each layer's input to its output for layers above the first.
  use_skip_connections: bool = True
  # Dropout rate on the token embeddings, between layers and before the
  # softmax (training only).
  dropout: float = 0.1
  # Character CNN settings; used when token_encoder == "char".
  char_cnn: CharCNNConfig = dataclasses.field(default_factory=CharCNNConfig)
  # Low-rank factorized matrices as ((matrix name, rank), ...): each named
  # matrix W [m, n] is held as two factors A [m, rank] @ B [rank, n] and run as
  # two smaller matmuls; 1 <= rank < min(m, n). Names are those of
  # `factorizable_matrices` (e.g. "forward_lstm_0/input_kernel", "softmax/kernel").
  # () = every matrix dense (the ELMo layout).
  ranks: Tuple[Tuple[str, int], ...] = ()

  def __post_init__(self):
    if isinstance(self.char_cnn, Mapping):
      known = {f.name for f in dataclasses.fields(CharCNNConfig)}
      unknown = sorted(set(self.char_cnn) - known)
      if unknown:
        raise ValueError(f"unknown char_cnn config keys {unknown}; known: {sorted(known)}.")
      object.__setattr__(self, "char_cnn", CharCNNConfig(**self.char_cnn))
    if not isinstance(self.char_cnn, CharCNNConfig):
      raise TypeError(f"char_cnn must be a CharCNNConfig or a mapping of its fields, got "
                      f"{self.char_cnn!r} ({type(self.char_cnn).__name__}).")
    for name in ("vocab_size", "lstm_dim", "projection_dim", "n_layers"):
      _check_int(name, getattr(self, name))
    for name in ("cell_clip", "proj_clip", "dropout"):
      value = getattr(self, name)
      if value is not None and not _is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    if not isinstance(self.use_skip_connections, bool):
      raise TypeError(f"use_skip_connections must be true or false, got "
                      f"{self.use_skip_connections!r}.")
    if self.token_encoder not in TOKEN_ENCODERS:
      raise ValueError(f"token_encoder must be one of {TOKEN_ENCODERS}, got "
                       f"{self.token_encoder!r}.")
    if self.vocab_size < 0:
      raise ValueError(f"vocab_size must be >= 0 (0 = no softmax), got {self.vocab_size}.")
    if self.token_encoder == "word" and 0 < self.vocab_size < 4:
      raise ValueError(
          "a word-input biLM needs its vocabulary size (>= 4: <S>, </S>, <UNK> "
          f"and one word) to size the embedding table; got vocab_size={self.vocab_size}.")
    for name in ("lstm_dim", "projection_dim", "n_layers"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    for name in ("cell_clip", "proj_clip"):
      value = getattr(self, name)
      if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0 or None (no clipping), got "
                         f"{value}.")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
    object.__setattr__(self, "ranks", _check_ranks(self))

  @property
  def has_softmax(self) -> bool:
    return self.vocab_size > 0

  @property
  def output_dim(self) -> int:
    """Width of every representation layer: 2 * projection_dim."""
    return 2 * self.projection_dim

  def rank_of(self, name: str) -> Optional[int]:
    """The rank of factorized matrix ``name``, or None when it is dense."""
    return dict(self.ranks).get(name)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any], *, source: Optional[str] = None,
                prefix: str = "") -> "BiLMConfig":
    """The config of a parsed JSON object, checked as one read from a file.

    Unlike the constructor, this also applies ``check_size``.

    Args:
      d: the fields, e.g. the "model" object of a run folder's config.json.
      source: the file ``d`` came from, named in errors.
      prefix: where ``d`` sits in that file, e.g. "model." (names fields in
        errors as ``model.lstm_dim``).

    Raises:
      TypeError: ``d`` is not a mapping, or a field has the wrong type.
      ValueError: an unknown key, a value out of range, or a size beyond
        ``check_size``'s limits. Messages start with ``source``.
    """
    where = f"{source}: " if source else ""
    section = f"{prefix.rstrip('.')} " if prefix else ""
    if not isinstance(d, Mapping):
      raise TypeError(f"{where}the biLM config {section}must be a JSON object of its fields, "
                      f"got {type(d).__name__}.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"{where}unknown biLM config keys {sorted(unknown)} in {section or 'it'}"
                       f"; known: {sorted(known)}.")
    try:
      config = cls(**d)
    except (TypeError, ValueError) as e:
      raise type(e)(f"{where}{prefix}{e}" if prefix else f"{where}{e}") from None
    check_size(config, source=source, field_name=lambda f: prefix + f)
    return config


def factorizable_matrices(config: BiLMConfig) -> Dict[str, Tuple[int, int]]:
  """The matrices ``ranks`` may factorize, ``{name: (rows, columns)}``, in forward order.

  Names are ``<layer>/<matrix>``: ``highway_{k}/carry_kernel``,
  ``highway_{k}/transform_kernel``, ``token_projection/kernel`` (char input),
  per LSTM layer ``{direction}_lstm_{l}/input_kernel`` and ``/recurrent_kernel``
  (the two halves of ELMo's ``kernel``: rows of x_t and of h_{t-1}) and
  ``/projection``, and ``softmax/kernel`` (with a softmax). The character
  convolutions and the word embedding are not factorizable.
  """
  p, d = config.projection_dim, config.lstm_dim
  out: Dict[str, Tuple[int, int]] = {}
  if config.token_encoder == "char":
    width = config.char_cnn.n_filters
    for k in range(config.char_cnn.n_highway):
      out[f"highway_{k}/carry_kernel"] = (width, width)
      out[f"highway_{k}/transform_kernel"] = (width, width)
    out["token_projection/kernel"] = (width, p)
  for direction in ("forward", "backward"):
    for l in range(config.n_layers):
      out[f"{direction}_lstm_{l}/input_kernel"] = (p, 4 * d)
      out[f"{direction}_lstm_{l}/recurrent_kernel"] = (p, 4 * d)
      out[f"{direction}_lstm_{l}/projection"] = (d, p)
  if config.has_softmax:
    out["softmax/kernel"] = (p, config.vocab_size)
  return out


_MATRIX_NAME = re.compile(r"(highway_(\d+)/(carry|transform)_kernel|token_projection/kernel|"
                          r"(forward|backward)_lstm_(\d+)/(input_kernel|recurrent_kernel|projection)"
                          r"|softmax/kernel)")


def _matrix_position(config: BiLMConfig, name: str) -> Optional[Tuple[Tuple[int, int], tuple]]:
  """``(shape, order key)`` of factorizable matrix ``name``, or None; no enumeration.

  Arithmetic on the name, so that a config read from a file with an absurd
  ``n_layers`` is not enumerated before ``check_size`` refuses it.
  """
  m = _MATRIX_NAME.fullmatch(name)
  if m is None:
    return None
  p, d = config.projection_dim, config.lstm_dim
  char = config.token_encoder == "char"
  if m.group(2) is not None:
    k = int(m.group(2))
    if not char or k >= config.char_cnn.n_highway or m.group(2) != str(k):
      return None
    width = config.char_cnn.n_filters
    return (width, width), (0, k, m.group(3) == "transform")
  if name == "token_projection/kernel":
    return ((config.char_cnn.n_filters, p), (1,)) if char else None
  if m.group(5) is not None:
    l = int(m.group(5))
    if l >= config.n_layers or m.group(5) != str(l):
      return None
    which = ("input_kernel", "recurrent_kernel", "projection").index(m.group(6))
    shape = (d, p) if which == 2 else (p, 4 * d)
    return shape, (2, m.group(4) == "backward", l, which)
  return ((p, config.vocab_size), (3,)) if config.has_softmax else None


def _check_ranks(config: BiLMConfig) -> Tuple[Tuple[str, int], ...]:
  """``config.ranks`` as (name, rank) pairs of known matrices in model order; raises otherwise."""
  ranks = config.ranks
  if isinstance(ranks, Mapping):
    ranks = tuple(ranks.items())
  if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
    raise TypeError(f"ranks must be a list of (matrix name, rank) pairs, got {ranks!r}.")
  pairs = []
  for item in ranks:
    if (isinstance(item, (str, bytes, Mapping)) or not hasattr(item, "__len__")
        or len(item) != 2 or not isinstance(item[0], str) or not _is_int(item[1])):
      raise TypeError(f"ranks entries must be (matrix name, integer rank) pairs, got {item!r}.")
    pairs.append((item[0], int(item[1])))
  if not pairs:
    return ()
  names = [n for n, _ in pairs]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"ranks names {repeated} more than once; give one rank per matrix.")
  keys = {}
  for name, rank in pairs:
    position = _matrix_position(config, name)
    if position is None:
      raise ValueError(
          f"ranks names {name!r}, which is not a factorizable matrix of this architecture "
          "(highway_K/carry_kernel, highway_K/transform_kernel, token_projection/kernel for "
          "char input; forward|backward_lstm_L/input_kernel, /recurrent_kernel, /projection; "
          "softmax/kernel with a softmax).")
    shape, keys[name] = position
    full = min(shape)
    if not 1 <= rank < full:
      raise ValueError(
          f"ranks: {name} {shape} has full rank {full}, so its rank must be in "
          f"[1, {full - 1}]; got {rank}. Leave a matrix out of ranks to keep it dense.")
  return tuple(sorted(pairs, key=lambda p: keys[p[0]]))


def _factor_shapes(name: str, shape: Tuple[int, int], rank: Optional[int], fields):
  """Keras weights holding matrix ``name``: itself, or its two factors ``_a``, ``_b``."""
  if rank is None:
    return [(name, shape, fields)]
  return [(f"{name}_a", (shape[0], rank), fields + ("ranks",)),
          (f"{name}_b", (rank, shape[1]), fields + ("ranks",))]


def weight_shapes(config: BiLMConfig) -> List[Tuple[str, Tuple[int, ...], Tuple[str, ...]]]:
  """Every weight tensor of ``build_bilm(config)``, without building it.

  Returns:
    ``(keras weight name, shape, config fields that set the shape)`` per
    tensor, e.g. ``("forward_lstm_0/kernel", (32, 256), ("projection_dim",
    "lstm_dim"))``. Field names are ``BiLMConfig`` attributes, with
    "char_cnn." before the CharCNNConfig ones. Enumerates every layer: check
    ``_num_weight_tensors`` first for configs from files.
  """
  p, d = config.projection_dim, config.lstm_dim
  shapes = []
  if config.token_encoder == "char":
    cnn = config.char_cnn
    emb = ("char_cnn.embedding_dim",)
    # 261 stored rows whatever n_characters says (char_cnn.py, CharCNN.build).
    shapes.append(("char_cnn/char_embedding", (261, cnn.embedding_dim), emb))
    for i, (w, n) in enumerate(cnn.filters):
      fields = ("char_cnn.filters", "char_cnn.embedding_dim")
      shapes.append((f"char_cnn/kernel_{i}", (w, cnn.embedding_dim, n), fields))
      shapes.append((f"char_cnn/bias_{i}", (n,), ("char_cnn.filters",)))
    width = cnn.n_filters
    for k in range(cnn.n_highway):
      for name in ("carry_kernel", "carry_bias", "transform_kernel", "transform_bias"):
        full = f"highway_{k}/{name}"
        if name.endswith("kernel"):
          shapes += _factor_shapes(full, (width, width), config.rank_of(full),
                                   ("char_cnn.filters",))
        else:
          shapes.append((full, (width,), ("char_cnn.filters",)))
    shapes += _factor_shapes("token_projection/kernel", (width, p),
                             config.rank_of("token_projection/kernel"),
                             ("char_cnn.filters", "projection_dim"))
    shapes.append(("token_projection/bias", (p,), ("projection_dim",)))
  else:
    shapes.append(("word_embedding/embeddings", (config.vocab_size + 1, p),
                   ("vocab_size", "projection_dim")))
  for direction in ("forward", "backward"):
    for l in range(config.n_layers):
      layer = f"{direction}_lstm_{l}"
      fields = ("projection_dim", "lstm_dim")
      halves = [config.rank_of(f"{layer}/{h}") for h in ("input_kernel", "recurrent_kernel")]
      if halves == [None, None]:
        shapes.append((f"{layer}/kernel", (2 * p, 4 * d), fields))
      else:  # the halves are separate weights once either is factorized
        for half, rank in zip(("input_kernel", "recurrent_kernel"), halves):
          shapes += _factor_shapes(f"{layer}/{half}", (p, 4 * d), rank, fields)
      shapes.append((f"{layer}/bias", (4 * d,), ("lstm_dim",)))
      shapes += _factor_shapes(f"{layer}/projection", (d, p), config.rank_of(f"{layer}/projection"),
                               ("lstm_dim", "projection_dim"))
  if config.has_softmax:
    shapes += _factor_shapes("softmax/kernel", (p, config.vocab_size),
                             config.rank_of("softmax/kernel"), ("projection_dim", "vocab_size"))
    shapes.append(("softmax/bias", (config.vocab_size,), ("vocab_size",)))
  return shapes


def num_parameters(config: BiLMConfig) -> int:
  """Parameters of ``build_bilm(config)`` (its ``count_params()``), without building it."""
  return sum(math.prod(shape) for _, shape, _ in weight_shapes(config))


def _num_weight_tensors(config: BiLMConfig) -> dict:
  """Weight tensors per config field that multiplies them (arithmetic, no enumeration)."""
  counts = {"n_layers": 2 * 3 * config.n_layers}
  if config.token_encoder == "char":
    counts["char_cnn.filters"] = 2 * len(config.char_cnn.filters) + 3  # + embedding, projection
    counts["char_cnn.n_highway"] = 4 * config.char_cnn.n_highway
  else:
    counts["vocab_size"] = 1
  if config.has_softmax:
    counts["vocab_size"] = counts.get("vocab_size", 0) + 2
  if config.ranks:  # one more tensor per factorized matrix (+1 per split LSTM kernel)
    split = {n.rsplit("/", 1)[0] for n, _ in config.ranks if n.endswith("_kernel")
             and "_lstm_" in n}
    counts["ranks"] = len(config.ranks) + len(split)
  return counts


def check_size(config: BiLMConfig, *, source: Optional[str] = None,
               field_name: Union[Mapping[str, str], Callable[[str], str], None] = None,
               max_parameters: int = MAX_PARAMETERS,
               max_weight_tensors: int = MAX_WEIGHT_TENSORS,
               max_characters_per_token: int = MAX_CHARACTERS_PER_TOKEN) -> None:
  """The size rule of a config read from a file (limits: see ``MAX_PARAMETERS``).

  Refuses, before anything is allocated, a config with more than
  ``max_characters_per_token`` characters per token (char input), more than
  ``max_weight_tensors`` weight tensors or more than ``max_parameters``
  parameters. Legitimate in-memory configs are never checked against it.

  Args:
    config: the config built from the file.
    source: the file, named in the message.
    field_name: maps ``weight_shapes``' field names to the file's own
      (e.g. "lstm_dim" -> "lstm.dim" for options.json); a mapping (missing
      names unchanged) or a function.
    max_parameters, max_weight_tensors, max_characters_per_token: the limits.

  Raises:
    ValueError: a limit is exceeded; names the file, the field(s) with their
      values and the limit.
  """
  if callable(field_name):
    rename = field_name
  else:
    mapping = field_name or {}
    rename = lambda f: mapping.get(f, f)  # noqa: E731

  def named(fields) -> str:
    parts = []
    for f in fields:
      obj, attr = (config.char_cnn, f[len("char_cnn."):]) if f.startswith("char_cnn.") else (
          config, f)
      if attr == "filters":
        parts.append(f"{rename(f)} (total count {config.char_cnn.n_filters} in "
                     f"{len(config.char_cnn.filters)} banks)")
      else:
        parts.append(f"{rename(f)}={getattr(obj, attr)}")
    return ", ".join(parts)

  where = f"{source}: " if source else ""
  fix = ("No released ELMo comes near these limits (\"Original\": 93.6M parameters, 37 "
         "weight tensors, 50 characters per token; see docs/elmo_format.md), so the file is "
         "corrupt or not the architecture you meant: correct the field, or use the file that "
         "was released or written with the weights.")
  if config.token_encoder == "char":
    chars = config.char_cnn.max_characters_per_token
    if chars > max_characters_per_token:
      raise ValueError(
          f"{where}{named(['char_cnn.max_characters_per_token'])} exceeds the limit of "
          f"{max_characters_per_token} characters per token for a model read from a file. "
          + fix)
  tensors = _num_weight_tensors(config)
  if sum(tensors.values()) > max_weight_tensors:
    field = max(tensors, key=tensors.get)
    raise ValueError(
        f"{where}{named([field])} gives a model of {sum(tensors.values()):,} weight tensors; a "
        f"model read from a file may have at most {max_weight_tensors:,}. " + fix)
  shapes = weight_shapes(config)
  total = sum(math.prod(shape) for _, shape, _ in shapes)
  if total > max_parameters:
    name, shape, fields = max(shapes, key=lambda s: math.prod(s[1]))
    raise ValueError(
        f"{where}{named(fields)} give a model of {total:,} parameters "
        f"({total * 4 / 2**30:,.1f} GiB as float32; largest matrix {name} {shape}); a model "
        f"read from a file may have at most {max_parameters:,} parameters "
        f"({max_parameters * 4 / 2**30:,.0f} GiB). " + fix)
