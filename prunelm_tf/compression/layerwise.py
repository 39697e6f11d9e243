"""Layer-wise, data-aware one-shot pruning of one matrix: SparseGPT (OBS) and Wanda.

For a linear map with Keras kernel ``W`` (in × out) and calibration inputs ``X``
(N tokens × in), each method looks for a ``Ŵ`` with the required zeros that keeps
``XŴ`` close to ``XW``. The loss ``‖X(W − Ŵ)‖²`` depends on the data only through
the Gram matrix ``H = XᵀX / N`` (in × in), so callers accumulate ``H`` batch by
batch (`GramAccumulator`) and never keep ``X``.

* `prune_obs`: SparseGPT (Frantar & Alistarh, 2023), the Optimal Brain Surgeon
  update applied input row by input row with a Cholesky factor of ``H⁻¹``; the
  mask of each block of input rows is chosen adaptively from the weights as
  already updated.
* `prune_wanda`: Wanda (Sun et al., 2023), ``|W_jk| · ‖x_j‖`` compared within
  each output unit, no update.
* `prune_magnitude`: the data-free baseline (smallest ``|W_jk|`` over the matrix).
* `reconstruction_error`: ``‖X(W − Ŵ)‖² / ‖XW‖²`` from ``H``.

Every function reaches exactly ``round(sparsity · size)`` zeros per matrix, is
deterministic (ties are broken by position; nothing is random), and leaves its
inputs unchanged. The math runs in float64 (NumPy); results have the weight's
dtype. Hand-written because neither tfmot nor any TensorFlow library offers
data-aware one-shot pruning; the reference implementations are PyTorch-only and
target transformer linear layers.
"""

from __future__ import annotations

from typing import Optional

from absl import logging
import numpy as np


class GramAccumulator:
  """Accumulates ``XᵀX`` (float64) and the token count over batches of inputs.

  Attributes:
    in_dim: width of the inputs (the ``in`` axis of the kernel they feed).
    count: number of input rows (tokens) added so far, int.
  """

  def __init__(self, in_dim: int):
    in_dim = int(in_dim)
    if in_dim < 1:
      raise ValueError(f"GramAccumulator needs in_dim >= 1, got {in_dim}.")
    self.in_dim = in_dim
    self._xtx = np.zeros((in_dim, in_dim), np.float64)
    self.count = 0

  def add(self, x: np.ndarray, counts: Optional[np.ndarray] = None) -> None:
    """Adds input rows.

    Args:
      x: float [n, in_dim], one row per token (any float dtype; accumulated in
        float64).
      counts: optional int [n] >= 0, how many times each row occurs (e.g. the
        occurrences of each distinct token of a batch); None = once each.

    Raises:
      ValueError: ``x`` is not [n, in_dim], or ``counts`` is not [n] of
        non-negative integers.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != self.in_dim:
      raise ValueError(f"GramAccumulator.add needs x of shape [n, {self.in_dim}], got "
                       f"{x.shape}; reshape the inputs to one row per token.")
    x = x.astype(np.float64, copy=False)
    if counts is None:
      self._xtx += x.T @ x
      self.count += x.shape[0]
      return
    counts = np.asarray(counts)
    if (counts.shape != (x.shape[0],) or not np.issubdtype(counts.dtype, np.integer)
        or (counts < 0).any()):
      raise ValueError(f"GramAccumulator.add needs counts as non-negative integers of shape "
                       f"[{x.shape[0]}] (one per row of x), got {counts.dtype} {counts.shape}.")
    self._xtx += (x * counts[:, None]).T @ x
    self.count += int(counts.sum())

  def gram(self) -> np.ndarray:
    """The mean Gram matrix ``H = XᵀX / count``, float64 [in_dim, in_dim].

    Raises:
      ValueError: no rows were added.
    """
    if self.count == 0:
      raise ValueError("GramAccumulator.gram: no input rows were added; feed calibration "
                       "tokens with add() first.")
    return self._xtx / self.count


def _check_weight(weight: np.ndarray, what: str) -> np.ndarray:
  weight = np.asarray(weight)
  if weight.ndim != 2 or not np.issubdtype(weight.dtype, np.floating):
    raise ValueError(f"{what} needs a float Keras kernel [in, out], got {weight.dtype} "
                     f"{weight.shape}; reshape convolution kernels to [width * channels, "
                     "filters] first.")
  return weight


def _check_gram(gram: np.ndarray, in_dim: int, what: str) -> np.ndarray:
  gram = np.asarray(gram, dtype=np.float64)
  if gram.shape != (in_dim, in_dim):
    raise ValueError(f"{what} needs H over the kernel's input axis, [{in_dim}, {in_dim}] for "
                     f"this kernel; got {gram.shape}. Collect H from the inputs of this matrix.")
  if not np.isfinite(gram).all():
    raise ValueError(f"{what}: H has non-finite entries; the calibration inputs contain NaN or "
                     "inf. Check the upstream weights and the calibration data.")
  return gram


def _num_zeros(size: int, sparsity: float, what: str) -> int:
  if not 0.0 <= sparsity < 1.0:
    raise ValueError(f"{what} needs 0 <= sparsity < 1, got {sparsity}; give the fraction of "
                     "zeros (e.g. 0.5).")
  return int(round(size * sparsity))


def prune_magnitude(weight: np.ndarray, sparsity: float) -> np.ndarray:
  """Zeroes the ``round(sparsity · size)`` smallest-magnitude entries (the baseline).

  Args:
    weight: float [in, out] (or any shape: the matrix is taken as a whole).
    sparsity: fraction of zeros in [0, 1).

  Returns:
    The pruned copy, same shape and dtype; ties are broken by position.
  """
  weight = np.asarray(weight)
  k = _num_zeros(weight.size, sparsity, "prune_magnitude")
  flat = weight.reshape(-1).copy()
  if k:
    flat[np.argsort(np.abs(flat), kind="stable")[:k]] = 0
  return flat.reshape(weight.shape)


def prune_wanda(weight: np.ndarray, gram: np.ndarray, sparsity: float) -> np.ndarray:
  """Wanda: prunes the lowest ``|W_jk| · ‖x_j‖`` within each output unit, no update.

  ``‖x_j‖² = N · H_jj``; the factor N is common to all scores and dropped.
  Each output unit (a column of the Keras kernel) loses ``⌊k / out⌋`` weights;
  the ``k mod out`` remaining zeros go to the units whose next candidate has
  the lowest score, so the matrix has exactly ``k = round(sparsity · size)``
  zeros.

  Args:
    weight: float [in, out], a Keras kernel.
    gram: float [in, in], H of the kernel's inputs.
    sparsity: fraction of zeros in [0, 1).

  Returns:
    The pruned copy of ``weight`` (same dtype).
  """
  weight = _check_weight(weight, "prune_wanda")
  in_dim, out_dim = weight.shape
  gram = _check_gram(gram, in_dim, "prune_wanda")
  k = _num_zeros(weight.size, sparsity, "prune_wanda")
  pruned = weight.copy()
  if not k:
    return pruned
  norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
  score = np.abs(weight.astype(np.float64)) * norms[:, None]
  order = np.argsort(score, axis=0, kind="stable")  # [in, out], per output unit
  base, extra = divmod(k, out_dim)
  columns = np.arange(out_dim)
  for r in range(base):
    pruned[order[r], columns] = 0
  if extra:
    candidates = score[order[base], columns]
    chosen = np.argsort(candidates, kind="stable")[:extra]
    pruned[order[base, chosen], chosen] = 0
  return pruned


def _upper_inverse_cholesky(gram: np.ndarray, damp: float) -> np.ndarray:
  """Upper-triangular ``U`` with ``UᵀU = (H + damp · mean(diag H) · I)⁻¹``, float64."""
  h = gram + damp * float(np.mean(np.diag(gram))) * np.eye(gram.shape[0])
  try:
    lower = np.linalg.cholesky(h)
    lower_inv = np.linalg.inv(lower)
    h_inv = lower_inv.T @ lower_inv
    h_inv = (h_inv + h_inv.T) / 2
    return np.linalg.cholesky(h_inv).T
  except np.linalg.LinAlgError as e:
    raise ValueError(
        f"prune_obs: H + damp * mean(diag H) * I is not positive definite (damp={damp}): the "
        "calibration inputs span too few directions. Raise damp (e.g. 0.1) or calibrate on "
        "more tokens.") from e


def prune_obs(weight: np.ndarray, gram: np.ndarray, sparsity: float, *,
              block_size: int = 128, damp: float = 0.01) -> np.ndarray:
  """SparseGPT: OBS pruning with adaptive block masks and the update of remaining weights.

  Input rows (the ``in`` axis of the Keras kernel, the axis ``H`` is over) are
  processed in blocks of ``block_size``. At the start of a block its mask is
  chosen over all its entries (every block row × every output unit): the
  block's share of zeros with the smallest ``w² / [H⁻¹]_jj²`` (Cholesky form),
  from the weights as updated by the earlier blocks. Row by row, the pruned
  entries' error is then compensated on the block's later rows, and after the
  block on all later rows in one matmul.

  Dead inputs (``H_jj = 0``: an input that is zero on every calibration token)
  have their weight rows zeroed; those zeros count towards the target. The
  other zeros are shared between blocks in proportion to their live rows, with
  cumulative rounding, so the matrix has exactly ``round(sparsity · size)``
  zeros. (If the dead rows alone hold more than that, only the smallest-
  magnitude dead entries are zeroed and nothing else changes: they do not
  affect the calibration outputs.)

  Args:
    weight: float [in, out], a Keras kernel (a convolution kernel reshaped to
      [width * channels, filters]).
    gram: float [in, in], H of the kernel's inputs (`GramAccumulator.gram`).
    sparsity: fraction of zeros in [0, 1).
    block_size: input rows per block (>= 1); SparseGPT uses 128.
    damp: dampening λ >= 0: ``H + λ · mean(diag H) · I`` is inverted.

  Returns:
    The pruned and updated copy of ``weight`` (same dtype).

  Raises:
    ValueError: bad shapes or arguments, a non-finite H, or a dampened H that
      is not positive definite (the message says to raise ``damp``).
  """
  weight = _check_weight(weight, "prune_obs")
  in_dim, out_dim = weight.shape
  gram = _check_gram(gram, in_dim, "prune_obs")
  k_total = _num_zeros(weight.size, sparsity, "prune_obs")
  if int(block_size) < 1:
    raise ValueError(f"prune_obs needs block_size >= 1 input rows, got {block_size}; "
                     "SparseGPT uses 128.")
  if not (damp >= 0 and np.isfinite(damp)):
    raise ValueError(f"prune_obs needs a finite damp >= 0, got {damp}; 0.01 is usual.")
  block_size = int(block_size)
  if not k_total:
    return weight.copy()

  w = weight.astype(np.float64)  # a copy
  h = gram.copy()
  dead = np.diag(h) <= 0
  k_dead = int(dead.sum()) * out_dim
  if k_dead >= k_total:
    logging.warning("prune_obs: %d of %d inputs are zero on every calibration token; their "
                    "weights alone exceed the %d zeros asked for, so only those are pruned.",
                    int(dead.sum()), in_dim, k_total)
    flat = np.where(dead[:, None], np.abs(w), np.inf).reshape(-1)
    pruned = weight.copy().reshape(-1)
    pruned[np.argsort(flat, kind="stable")[:k_total]] = 0
    return pruned.reshape(weight.shape)
  if k_dead:
    h[dead, :] = 0
    h[:, dead] = 0
    h[dead, dead] = 1
    w[dead] = 0
  u = _upper_inverse_cholesky(h, damp)

  # Live zeros per block, by cumulative rounding of the live rows (exact total).
  k_live = k_total - k_dead
  live_rows = np.cumsum(~dead)
  n_live = int(live_rows[-1])

  def zeros_before(row: int) -> int:  # round(k_live * live rows before `row` / n_live)
    before = int(live_rows[row - 1]) if row else 0
    return (2 * k_live * before + n_live) // (2 * n_live)

  for start in range(0, in_dim, block_size):
    end = min(start + block_size, in_dim)
    k_block = zeros_before(end) - zeros_before(start)
    w1 = w[start:end].copy()
    u1 = u[start:end, start:end]
    d = np.diag(u1)
    mask = np.zeros(w1.shape, bool)
    if k_block:
      score = w1 ** 2 / (d[:, None] ** 2)
      score[dead[start:end]] = np.inf  # already zero and counted
      mask.reshape(-1)[np.argsort(score.reshape(-1), kind="stable")[:k_block]] = True
    err = np.zeros_like(w1)
    for i in range(end - start):
      row = w1[i]
      q = np.where(mask[i], 0.0, row)
      e = (row - q) / d[i]
      w1[i] = q
      if i + 1 < end - start:
        w1[i + 1:] -= np.outer(u1[i, i + 1:], e)
      err[i] = e
    w[start:end] = w1
    if end < in_dim:
      w[end:] -= u[start:end, end:].T @ err
  w[dead] = 0
  return w.astype(weight.dtype)


def reconstruction_error(weight: np.ndarray, pruned: np.ndarray, gram: np.ndarray) -> float:
  """Relative output error ``‖X(W − Ŵ)‖² / ‖XW‖²`` computed from ``H``.

  Args:
    weight: float [in, out], the dense kernel.
    pruned: float [in, out], its pruned version.
    gram: float [in, in], H of the inputs (calibration or held-out).

  Returns:
    The ratio as a float (0.0 when both are 0, inf when only ``‖XW‖`` is 0).
  """
  weight = _check_weight(weight, "reconstruction_error")
  gram = _check_gram(gram, weight.shape[0], "reconstruction_error")
  pruned = np.asarray(pruned)
  if pruned.shape != weight.shape:
    raise ValueError(f"reconstruction_error needs the pruned kernel in the dense kernel's shape "
                     f"{weight.shape}, got {pruned.shape}.")
  w = weight.astype(np.float64)
  diff = w - pruned.astype(np.float64)
  num = float(np.sum(diff * (gram @ diff)))
  den = float(np.sum(w * (gram @ w)))
  if den <= 0:
    return 0.0 if num <= 0 else float("inf")
  return max(num, 0.0) / den
