"""Physically smaller biLMs: whole LSTM cells, projection dimensions, character filters.

What one unit of each kind owns (every weight indexed by it is removed with it):

* LSTM cell c of layer ``{direction}_lstm_l`` (lstm_dim d): the four gate
  columns ``c, d + c, 2d + c, 3d + c`` of ``kernel`` and ``bias``, and row c of
  ``projection``. A cell only reaches the rest of the model through its
  projection row, so a cell whose projection row is zero is dead, and removing
  it changes no output.
* Projection dimension p (projection_dim P): the token embedding's column p
  (``token_projection`` kernel column and bias, or ``word_embedding``
  column), in every LSTM layer of both directions the input row p and the
  recurrent row P + p of ``kernel`` and column p of ``projection``, and row p
  of the shared ``softmax`` kernel. Every layer's output, the skip connections
  (residual sums) and the representations are indexed by the same p, and the
  softmax is shared by both directions, so a dimension is removed everywhere
  at once; the representations shrink to 2 * (kept dimensions).
* Character filter k of bank i: ``char_cnn`` ``kernel_i[:, :, k]`` and
  ``bias_i[k]``; with j its position in the concatenated CNN output, row and
  column j of every highway kernel, entry j of their biases, and row j of
  ``token_projection``.

``BiLMConfig`` has one ``lstm_dim`` for every layer and direction, so every
LSTM keeps the same number of cells (chosen per layer); projection dimensions
are shared by construction; each filter bank keeps its own count.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from prunelm_tf.compression.shared.units import check_kept, matrix_parameters
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig

keras = tf.keras

DIRECTIONS = ("forward", "backward")
GROUPS = ("cells", "filters", "projection")


def lstm_names(config: BiLMConfig) -> List[str]:
  """``forward_lstm_0, backward_lstm_0, forward_lstm_1, ...``."""
  return [f"{d}_lstm_{l}" for l in range(config.n_layers) for d in DIRECTIONS]


def _weights(model: keras.Model, layer: str) -> Dict[str, np.ndarray]:
  """``{short weight name: value}`` of one layer (e.g. "kernel", "bias_2")."""
  return {w.name.split("/")[-1].split(":")[0]: w.numpy()
          for w in model.get_layer(layer).weights}


def _set(model: keras.Model, layer: str, values: Mapping[str, np.ndarray]) -> None:
  for w in model.get_layer(layer).weights:
    w.assign(values[w.name.split("/")[-1].split(":")[0]])


def gate_columns(cells: np.ndarray, lstm_dim: int) -> np.ndarray:
  """Columns of the four gates (i, j, f, o) of ``cells`` in an LSTM kernel of ``lstm_dim``."""
  return np.concatenate([g * lstm_dim + cells for g in range(4)])


def filter_offsets(config: BiLMConfig) -> np.ndarray:
  """Start of each filter bank in the concatenated character-CNN output."""
  counts = [n for _, n in config.char_cnn.filters]
  return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def slice_bilm(model: keras.Model, config: BiLMConfig, *,
               cells: Optional[Mapping[str, Sequence[int]]] = None,
               projection: Optional[Sequence[int]] = None,
               filters: Optional[Sequence[Sequence[int]]] = None
               ) -> Tuple[keras.Model, BiLMConfig]:
  """A new, smaller biLM holding only the kept units of ``model`` (see the module docstring).

  Args:
    model: a biLM built by ``build_bilm(config)`` (no tfmot wrappers); unchanged.
    config: its architecture.
    cells: ``{"forward_lstm_0": kept cell indices, ...}`` for every LSTM, all of
      the same length; None keeps every cell.
    projection: kept projection dimensions; None keeps all.
    filters: kept filter indices per character-CNN bank (char models); None keeps all.

  Returns:
    ``(smaller model, its BiLMConfig)``. Outputs are unchanged when only dead
    units (zero projection rows, all-zero dimensions or filters) are removed,
    except that the representations lose the removed dimensions.

  Raises:
    ValueError: a layer would keep no unit, unequal cell counts, indices out
      of range or repeated, ``filters`` on a word model or with the wrong
      number of banks.
  """
  d, p = config.lstm_dim, config.projection_dim
  names = lstm_names(config)
  if cells is None:
    cells = {n: range(d) for n in names}
  if sorted(cells) != sorted(names):
    raise ValueError(f"cells must name every LSTM layer {names}, got {sorted(cells)}.")
  kept_cells = {n: check_kept(f"cells of {n}", cells[n], d) for n in names}
  counts = {n: k.size for n, k in kept_cells.items()}
  if len(set(counts.values())) != 1:
    raise ValueError(f"every LSTM must keep the same number of cells (BiLMConfig has one "
                     f"lstm_dim), got {counts}.")
  kept_proj = check_kept("projection dimensions", range(p) if projection is None else projection,
                         p)
  char = config.token_encoder == "char"
  banks = config.char_cnn.filters
  if filters is not None and not char:
    raise ValueError("filters: a word-input biLM has no character CNN.")
  if char:
    if filters is None:
      filters = [range(n) for _, n in banks]
    if len(filters) != len(banks):
      raise ValueError(f"filters needs one list of kept filters per bank ({len(banks)}), got "
                       f"{len(filters)}.")
    kept_filters = [check_kept(f"filters of char_cnn bank {i} (width {w})", f, n)
                    for i, (f, (w, n)) in enumerate(zip(filters, banks))]
    flat = np.concatenate([o + k for o, k in zip(filter_offsets(config), kept_filters)])
    new_cnn = dataclasses.replace(config.char_cnn, filters=tuple(
        (w, int(k.size)) for (w, _), k in zip(banks, kept_filters)))
  else:
    new_cnn = config.char_cnn
  new_config = dataclasses.replace(config, lstm_dim=int(next(iter(counts.values()))),
                                   projection_dim=int(kept_proj.size), char_cnn=new_cnn)
  new = build_bilm(new_config)

  if char:
    w = _weights(model, "char_cnn")
    for i, k in enumerate(kept_filters):
      w[f"kernel_{i}"] = w[f"kernel_{i}"][:, :, k]
      w[f"bias_{i}"] = w[f"bias_{i}"][k]
    _set(new, "char_cnn", w)
    for h in range(config.char_cnn.n_highway):
      w = _weights(model, f"highway_{h}")
      _set(new, f"highway_{h}", {n: (v[np.ix_(flat, flat)] if v.ndim == 2 else v[flat])
                                 for n, v in w.items()})
    w = _weights(model, "token_projection")
    _set(new, "token_projection", {"kernel": w["kernel"][np.ix_(flat, kept_proj)],
                                   "bias": w["bias"][kept_proj]})
  else:
    w = _weights(model, "word_embedding")
    _set(new, "word_embedding", {"embeddings": w["embeddings"][:, kept_proj]})
  rows = np.concatenate([kept_proj, p + kept_proj])  # [x_t; h_{t-1}]
  for n in names:
    w = _weights(model, n)
    columns = gate_columns(kept_cells[n], d)
    _set(new, n, {"kernel": w["kernel"][np.ix_(rows, columns)], "bias": w["bias"][columns],
                  "projection": w["projection"][np.ix_(kept_cells[n], kept_proj)]})
  if config.has_softmax:
    w = _weights(model, "softmax")
    _set(new, "softmax", {"kernel": w["kernel"][kept_proj], "bias": w["bias"]})
  return new, new_config


# --- sizes ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UnitCounts:
  """How many units of each kind a structurally pruned biLM keeps."""
  # Cells per LSTM (every layer and direction).
  cells: int
  # Projection dimensions.
  projection: int
  # Filters per character-CNN bank (() for a word model).
  filters: Tuple[int, ...]

  def config(self, config: BiLMConfig) -> BiLMConfig:
    """``config`` with these sizes."""
    cnn = config.char_cnn
    if config.token_encoder == "char":
      cnn = dataclasses.replace(cnn, filters=tuple(
          (w, n) for (w, _), n in zip(cnn.filters, self.filters)))
    return dataclasses.replace(config, lstm_dim=self.cells, projection_dim=self.projection,
                               char_cnn=cnn)


def counts_for_ratio(config: BiLMConfig, keep: float, groups: Sequence[str]) -> UnitCounts:
  """Every enabled kind keeps ``round(keep * size)`` units (at least one); others keep all."""
  def kept(size, group):
    return max(1, int(round(keep * size))) if group in groups else size
  filters = (tuple(kept(n, "filters") for _, n in config.char_cnn.filters)
             if config.token_encoder == "char" else ())
  return UnitCounts(kept(config.lstm_dim, "cells"), kept(config.projection_dim, "projection"),
                    filters)


def removable_fraction(config: BiLMConfig, groups: Sequence[str], names: Sequence[str]) -> float:
  """The largest fraction of ``names``' parameters these groups can remove (one unit kept)."""
  total = matrix_parameters(config, names)
  smallest = counts_for_ratio(config, 0.0, groups).config(config)
  return 1.0 - matrix_parameters(smallest, names) / total


def choose_counts(config: BiLMConfig, fraction: float, groups: Sequence[str],
                  names: Sequence[str]) -> Tuple[UnitCounts, float]:
  """The unit counts whose removed fraction of ``names``' parameters is closest to ``fraction``.

  Every enabled kind first keeps the same share of its units
  (``counts_for_ratio``; every share that changes some count is tried), then
  each kind's count is moved on its own while that gets closer.

  Returns:
    ``(counts, achieved fraction)``; ties go to the larger model.

  Raises:
    ValueError: ``fraction`` outside [0, 1), no group, or more than the groups
      can remove while keeping one unit of each layer.
  """
  unknown = sorted(set(groups) - set(GROUPS))
  if not groups or unknown:
    raise ValueError(f"structured groups must be a non-empty subset of {GROUPS}, got "
                     f"{list(groups)}.")
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"the fraction to remove must be in [0, 1), got {fraction}.")
  most = removable_fraction(config, groups, names)
  if fraction > most + 1e-9:
    raise ValueError(
        f"removing {fraction:.1%} of the compressed matrices' parameters would remove every unit "
        f"of a layer: removing whole {', '.join(groups)} can remove at most {most:.1%} of this "
        "model while keeping one of each. Lower the --params_removed_sweep value or enable more "
        "groups.")
  sizes = [config.lstm_dim, config.projection_dim] + (
      [n for _, n in config.char_cnn.filters] if config.token_encoder == "char" else [])
  ratios = sorted({k / s for s in sizes for k in range(s + 1)})
  total = matrix_parameters(config, names)

  def scored(counts):
    achieved = 1.0 - matrix_parameters(counts.config(config), names) / total
    return (abs(achieved - fraction), achieved), counts, achieved

  best = min((scored(counts_for_ratio(config, keep, groups)) for keep in ratios),
             key=lambda b: b[0])
  # Then each kind a few units either way on its own (small models have coarse shares).
  improved = True
  while improved:
    improved = False
    for candidate in _neighbours(config, best[1], groups):
      trial = scored(candidate)
      if trial[0] < best[0]:
        best, improved = trial, True
  return best[1], best[2]


def _neighbours(config: BiLMConfig, counts: UnitCounts, groups: Sequence[str], reach: int = 3):
  """``counts`` with one enabled kind (or one filter bank) changed by up to ``reach`` units."""
  for delta in range(-reach, reach + 1):
    if not delta:
      continue
    if "cells" in groups and 1 <= counts.cells + delta <= config.lstm_dim:
      yield dataclasses.replace(counts, cells=counts.cells + delta)
    if "projection" in groups and 1 <= counts.projection + delta <= config.projection_dim:
      yield dataclasses.replace(counts, projection=counts.projection + delta)
    if "filters" in groups:
      for i, (_, n) in enumerate(config.char_cnn.filters if counts.filters else ()):
        if 1 <= counts.filters[i] + delta <= n:
          filters = list(counts.filters)
          filters[i] += delta
          yield dataclasses.replace(counts, filters=tuple(filters))


# --- importance ----------------------------------------------------------------------------


def _sq(x: np.ndarray, axis) -> np.ndarray:
  return np.sum(np.square(x.astype(np.float64)), axis=axis)


def group_norms(model: keras.Model, config: BiLMConfig) -> Dict:
  """L2 norm of every weight a unit owns (see the module docstring), per unit.

  Returns:
    ``{"cells": {lstm name: float64 [lstm_dim]}, "projection": float64 [proj],
    "filters": [float64 [count_i] per bank] (empty for word models)}``.
  """
  d, p = config.lstm_dim, config.projection_dim
  cells = {}
  projection = np.zeros(p)
  for n in lstm_names(config):
    w = _weights(model, n)
    gates = lambda x: x.reshape(x.shape[:-1] + (4, d))  # noqa: E731
    cells[n] = (_sq(gates(w["kernel"]), (0, 1)) + _sq(gates(w["bias"]), 0)
                + _sq(w["projection"], 1))
    projection += _sq(w["kernel"][:p], 1) + _sq(w["kernel"][p:], 1) + _sq(w["projection"], 0)
  filters = []
  if config.token_encoder == "char":
    w = _weights(model, "token_projection")
    projection += _sq(w["kernel"], 0) + np.square(w["bias"].astype(np.float64))
    flat = _sq(w["kernel"], 1)
    for h in range(config.char_cnn.n_highway):
      for v in _weights(model, f"highway_{h}").values():
        flat = flat + (_sq(v, 0) + _sq(v, 1) if v.ndim == 2 else np.square(v.astype(np.float64)))
    cnn = _weights(model, "char_cnn")
    for i, o in enumerate(filter_offsets(config)):
      n = config.char_cnn.filters[i][1]
      filters.append(_sq(cnn[f"kernel_{i}"], (0, 1)) + np.square(cnn[f"bias_{i}"]) +
                     flat[o:o + n])
  else:
    projection += _sq(_weights(model, "word_embedding")["embeddings"], 0)
  if config.has_softmax:
    projection += _sq(_weights(model, "softmax")["kernel"], 1)
  return {"cells": {n: np.sqrt(v) for n, v in cells.items()}, "projection": np.sqrt(projection),
          "filters": [np.sqrt(v) for v in filters]}


def damped_inverse(h: np.ndarray, damp: float) -> np.ndarray:
  """``(H + damp * mean(diag H) * I)^-1`` (float64); a dead input gets a large, finite entry."""
  h = np.asarray(h, np.float64)
  scale = damp * float(np.mean(np.diag(h))) if np.mean(np.diag(h)) > 0 else 1.0
  return np.linalg.inv(h + max(scale, 1e-12) * np.eye(h.shape[0]))


def obs_row_saliency(weight: np.ndarray, h_inverse: np.ndarray) -> np.ndarray:
  """OBS cost of removing each input row of ``weight`` [in, out] alone, the others updated.

  ``‖W_k‖² / [H⁻¹]_kk``: the increase of ‖XW − XŴ‖²/N when input k is
  dropped and the remaining rows absorb what they can (Optimal Brain Surgeon
  for a whole input row).
  """
  return _sq(weight, 1) / np.maximum(np.diag(h_inverse), 1e-30)


def compensate_rows(weight: np.ndarray, h: np.ndarray, kept: np.ndarray, damp: float
                    ) -> np.ndarray:
  """Rows ``kept`` of ``weight`` [in, out] updated to best replace the removed rows.

  Least squares on the calibration inputs: with K kept and S removed rows,
  ``W_K + (H_KK)⁻¹ H_KS W_S`` minimises ‖X_K W'_K − X W‖ (H damped as in
  `damped_inverse`). Returns float32 [len(kept), out].
  """
  removed = np.setdiff1d(np.arange(weight.shape[0]), kept)
  w = weight.astype(np.float64)
  if removed.size == 0:
    return weight[kept]
  inverse = damped_inverse(h[np.ix_(kept, kept)], damp)
  return (w[kept] + inverse @ h[np.ix_(kept, removed)] @ w[removed]).astype(weight.dtype)


def obs_saliencies(model: keras.Model, config: BiLMConfig, grams: Mapping, damp: float) -> Dict:
  """OBS-style saliency of every unit, from the Gram matrices of the inputs its consumers see.

  Args:
    model, config: the biLM (``build_bilm``).
    grams: ``calibration.collect_grams`` of ``saliency_matrices(config)``.
    damp: dampening of each H (fraction of its mean diagonal).

  Returns:
    The structure of `group_norms`: a cell is scored on its LSTM's projection
    (the matrix that reads it), a filter on the first highway layer (both
    kernels) or the token projection, a projection dimension summed over every
    LSTM kernel (input and recurrent row) and the softmax that read it.
  """
  p = config.projection_dim
  cells = {}
  projection = np.zeros(p)
  for n in lstm_names(config):
    w = _weights(model, n)
    cells[n] = obs_row_saliency(w["projection"],
                                damped_inverse(grams[f"{n}/projection"].gram(), damp))
    inverse = damped_inverse(grams[f"{n}/kernel"].gram(), damp)
    rows = obs_row_saliency(w["kernel"], inverse)
    projection += rows[:p] + rows[p:]
  if config.has_softmax:
    projection += obs_row_saliency(_weights(model, "softmax")["kernel"],
                                   damped_inverse(grams["softmax/kernel"].gram(), damp))
  filters = []
  if config.token_encoder == "char":
    if config.char_cnn.n_highway:
      w = _weights(model, "highway_0")
      inverse = damped_inverse(grams["highway_0/carry_kernel"].gram(), damp)
      flat = (obs_row_saliency(w["carry_kernel"], inverse)
              + obs_row_saliency(w["transform_kernel"], inverse))
    else:
      flat = obs_row_saliency(_weights(model, "token_projection")["kernel"],
                              damped_inverse(grams["token_projection/kernel"].gram(), damp))
    for i, o in enumerate(filter_offsets(config)):
      filters.append(flat[o:o + config.char_cnn.filters[i][1]])
  return {"cells": cells, "projection": projection, "filters": filters}


def saliency_matrices(config: BiLMConfig) -> List[str]:
  """The matrices whose input Grams `obs_saliencies` reads."""
  names = [f"{n}/{w}" for n in lstm_names(config) for w in ("kernel", "projection")]
  if config.has_softmax:
    names.append("softmax/kernel")
  if config.token_encoder == "char":
    names.append("highway_0/carry_kernel" if config.char_cnn.n_highway
                 else "token_projection/kernel")
  return names
