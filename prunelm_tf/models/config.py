"""Architecture configuration of the biLM (validated, frozen, JSON round-trip)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Tuple

TOKEN_ENCODERS = ("word", "char")
CHAR_ACTIVATIONS = ("relu", "tanh")


@dataclasses.dataclass(frozen=True)
class CharCNNConfig:
  """ELMo character CNN (ELMO_FORMAT.md, steps 2-6)."""

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
    object.__setattr__(self, "filters",
                       tuple(tuple(int(v) for v in f) for f in self.filters))
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

  def __post_init__(self):
    if isinstance(self.char_cnn, Mapping):
      object.__setattr__(self, "char_cnn", CharCNNConfig(**self.char_cnn))
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
      if value is not None and value <= 0:
        raise ValueError(f"{name} must be > 0 or None (no clipping), got {value}.")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")

  @property
  def has_softmax(self) -> bool:
    return self.vocab_size > 0

  @property
  def output_dim(self) -> int:
    """Width of every representation layer: 2 * projection_dim."""
    return 2 * self.projection_dim

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "BiLMConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown biLM config keys {sorted(unknown)}; known: {sorted(known)}.")
    return cls(**d)
