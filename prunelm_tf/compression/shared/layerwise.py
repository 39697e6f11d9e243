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
* `prune_obs_affine`: the same with the layer's bias as the weight of a
  constant input, never pruned, that absorbs part of the error (a bias
  correction, as in post-training quantization).
* `prune_wanda`: Wanda (Sun et al., 2023), ``|W_jk| · ‖x_j‖`` compared within
  each output unit, no update; `bias_correction` keeps its mean output.
* `prune_magnitude`: the data-free baseline (smallest ``|W_jk|`` over the matrix).
* `reconstruction_error`: ``‖X(W − Ŵ)‖² / ‖XW‖²`` from ``H`` (and the mean
  input when the bias changed).

Every function reaches exactly ``round(sparsity · size)`` zeros per matrix, is
deterministic (ties are broken by position; nothing is random), and leaves its
inputs unchanged. The math runs in float64 (NumPy); results have the weight's
dtype. Hand-written because neither tfmot nor any TensorFlow library offers
data-aware one-shot pruning; the reference implementations are PyTorch-only and
target transformer linear layers.
"""

from __future__ import annotations

from typing import Optional, Tuple

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
    self._sum = np.zeros(in_dim, np.float64)
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
      self._sum += x.sum(axis=0)
      self.count += x.shape[0]
      return
    counts = np.asarray(counts)
    if (counts.shape != (x.shape[0],) or not np.issubdtype(counts.dtype, np.integer)
        or (counts < 0).any()):
      raise ValueError(f"GramAccumulator.add needs counts as non-negative integers of shape "
                       f"[{x.shape[0]}] (one per row of x), got {counts.dtype} {counts.shape}.")
    self._xtx += (x * counts[:, None]).T @ x
    self._sum += counts @ x
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

  def mean(self) -> np.ndarray:
    """The mean input ``Σx / count``, float64 [in_dim] (for bias updates).

    Raises:
      ValueError: no rows were added.
    """
    if self.count == 0:
      raise ValueError("GramAccumulator.mean: no input rows were added; feed calibration "
                       "tokens with add() first.")
    return self._sum / self.count


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
  pruned[order[:base], columns[None, :]] = 0
  if extra:
    candidates = score[order[base], columns]
    chosen = np.argsort(candidates, kind="stable")[:extra]
    pruned[order[base, chosen], chosen] = 0
  return pruned


def _lower_triangular_inverse(lower: np.ndarray) -> np.ndarray:
  """Inverse of a lower-triangular matrix by 2 × 2 blocks (matmuls only, ~n³/3 flops).

  NumPy has no triangular inverse; its general one took ~1.8x as long at n = 4,096.
  ``[[A, 0], [C, D]]⁻¹ = [[A⁻¹, 0], [−D⁻¹CA⁻¹, D⁻¹]]``.
  """
  n = lower.shape[0]
  if n <= 256:
    return np.linalg.inv(lower)
  m = n // 2
  a_inv = _lower_triangular_inverse(lower[:m, :m])
  d_inv = _lower_triangular_inverse(lower[m:, m:])
  out = np.zeros_like(lower)
  out[:m, :m] = a_inv
  out[m:, m:] = d_inv
  out[m:, :m] = -d_inv @ (lower[m:, :m] @ a_inv)
  return out


def _upper_inverse_cholesky(gram: np.ndarray, damp: float) -> np.ndarray:
  """Upper-triangular ``U`` with ``UᵀU = (H + damp · mean(diag H) · I)⁻¹``, float64.

  With J the reversal permutation and ``JHJ = LLᵀ`` (Cholesky), ``U = J L⁻¹ J``:
  one Cholesky and one triangular inverse, without forming ``H⁻¹``.
  """
  h = gram + damp * float(np.mean(np.diag(gram))) * np.eye(gram.shape[0])
  try:
    lower = np.linalg.cholesky(h[::-1, ::-1])
  except np.linalg.LinAlgError as e:
    raise ValueError(
        f"prune_obs: H + damp * mean(diag H) * I is not positive definite (damp={damp}): the "
        "calibration inputs span too few directions. Raise damp (e.g. 0.1) or calibrate on "
        "more tokens.") from e
  return np.triu(_lower_triangular_inverse(lower)[::-1, ::-1])


def _check_obs_options(block_size: int, damp: float, what: str) -> int:
  if int(block_size) < 1:
    raise ValueError(f"{what} needs block_size >= 1 input rows, got {block_size}; "
                     "SparseGPT uses 128.")
  if not (damp >= 0 and np.isfinite(damp)):
    raise ValueError(f"{what} needs a finite damp >= 0, got {damp}; 0.01 is usual.")
  return int(block_size)


def _sparsegpt(w: np.ndarray, h: np.ndarray, k: int, prunable: np.ndarray, block_size: int,
               damp: float) -> None:
  """SparseGPT on float64 ``w`` [rows, out] in place: ``k`` zeros among the ``prunable`` rows.

  Rows that are not prunable are never masked but receive the updates (the
  bias row of `prune_obs_affine`; dead rows, which ``h`` decouples, get none).
  """
  u = _upper_inverse_cholesky(h, damp)
  rows = w.shape[0]
  # Zeros per block, by cumulative rounding over the prunable rows (exact total).
  prunable_before = np.concatenate([[0], np.cumsum(prunable)])
  n_prunable = int(prunable_before[-1])

  def zeros_before(row: int) -> int:  # round(k * prunable rows before `row` / n_prunable)
    return (2 * k * int(prunable_before[row]) + n_prunable) // (2 * n_prunable)

  for start in range(0, rows, block_size):
    end = min(start + block_size, rows)
    k_block = zeros_before(end) - zeros_before(start)
    w1 = w[start:end].copy()
    u1 = u[start:end, start:end]
    d = np.diag(u1)
    mask = np.zeros(w1.shape, bool)
    if k_block:
      score = w1 ** 2 / (d[:, None] ** 2)
      score[~prunable[start:end]] = np.inf
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
    if end < rows:
      w[end:] -= u[start:end, end:].T @ err


def _prune_obs(weight, gram, sparsity, block_size, damp, bias, mean, what):
  weight = _check_weight(weight, what)
  in_dim, out_dim = weight.shape
  gram = _check_gram(gram, in_dim, what)
  k_total = _num_zeros(weight.size, sparsity, what)
  block_size = _check_obs_options(block_size, damp, what)
  if bias is not None:
    bias = np.asarray(bias)
    mean = np.asarray(mean, np.float64)
    if bias.shape != (out_dim,) or mean.shape != (in_dim,):
      raise ValueError(f"{what} needs bias [{out_dim}] and mean input [{in_dim}] for a kernel "
                       f"{weight.shape}; got bias {bias.shape} and mean {mean.shape}.")
    if not (np.isfinite(mean).all() and np.isfinite(bias).all()):
      raise ValueError(f"{what}: the bias or the mean input has non-finite entries; check the "
                       "weights and the calibration data.")
  new_bias = None if bias is None else bias.copy()
  if not k_total:
    return weight.copy(), new_bias

  w = weight.astype(np.float64)  # a copy
  h = gram.copy()
  dead = np.diag(h) <= 0
  k_dead = int(dead.sum()) * out_dim
  if k_dead >= k_total:
    logging.warning("%s: %d of %d inputs are zero on every calibration token; their weights "
                    "alone exceed the %d zeros asked for, so only those are pruned.", what,
                    int(dead.sum()), in_dim, k_total)
    flat = np.where(dead[:, None], np.abs(w), np.inf).reshape(-1)
    pruned = weight.copy().reshape(-1)
    pruned[np.argsort(flat, kind="stable")[:k_total]] = 0
    return pruned.reshape(weight.shape), new_bias
  if k_dead:
    h[dead, :] = 0
    h[:, dead] = 0
    h[dead, dead] = 1
    w[dead] = 0
    if mean is not None:
      mean = np.where(dead, 0.0, mean)
  prunable = ~dead
  if bias is not None:
    # The bias is the weight of a constant input 1, last so that it absorbs every update:
    # E[[x; 1][x; 1]ᵀ] = [[H, mean], [meanᵀ, 1]].
    h = np.block([[h, mean[:, None]], [mean[None, :], np.ones((1, 1))]])
    w = np.vstack([w, bias.astype(np.float64)[None]])
    prunable = np.append(prunable, False)
  _sparsegpt(w, h, k_total - k_dead, prunable, block_size, damp)
  if bias is not None:
    new_bias = w[-1].astype(bias.dtype)
    w = w[:-1]
  w[dead] = 0
  return w.astype(weight.dtype), new_bias


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
  pruned, _ = _prune_obs(weight, gram, sparsity, block_size, damp, None, None, "prune_obs")
  return pruned


def prune_obs_affine(weight: np.ndarray, bias: np.ndarray, gram: np.ndarray, mean: np.ndarray,
                     sparsity: float, *, block_size: int = 128, damp: float = 0.01
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """`prune_obs` for ``y = xW + b``, with the bias updated too (never pruned).

  The bias is the weight of a constant input 1, appended as the last input
  row, so it receives the compensation of every pruned weight: in particular
  the shift of the mean output, which the kernel alone can only absorb through
  other inputs. Dampening uses the mean diagonal of the augmented H.

  Args:
    weight: float [in, out], a Keras kernel.
    bias: float [out], its bias.
    gram: float [in, in], H of the kernel's inputs.
    mean: float [in], the mean input (`GramAccumulator.mean`).
    sparsity, block_size, damp: as for `prune_obs`; the zeros are counted on
      ``weight`` only.

  Returns:
    ``(pruned weight, updated bias)``, copies with the inputs' dtypes.
  """
  return _prune_obs(weight, gram, sparsity, block_size, damp, bias, mean, "prune_obs_affine")


def bias_correction(weight: np.ndarray, pruned: np.ndarray, bias: np.ndarray,
                    mean: np.ndarray) -> np.ndarray:
  """The bias that keeps the mean output of ``xŴ + b̂`` equal to that of ``xW + b``.

  ``b̂ = b + meanᵀ(W − Ŵ)``: the best bias for a given pruned kernel (used with
  methods that do not update the weights, e.g. Wanda).

  Args:
    weight, pruned: float [in, out], the dense and pruned kernels.
    bias: float [out]; mean: float [in], the mean input.

  Returns:
    The corrected bias, float [out] in ``bias``'s dtype.
  """
  diff = weight.astype(np.float64) - pruned.astype(np.float64)
  return (bias.astype(np.float64) + np.asarray(mean, np.float64) @ diff).astype(bias.dtype)


def reconstruction_error(weight: np.ndarray, pruned: np.ndarray, gram: np.ndarray, *,
                         mean: Optional[np.ndarray] = None,
                         bias_change: Optional[np.ndarray] = None) -> float:
  """Relative output error ``E‖x(W − Ŵ) + (b − b̂)‖² / E‖xW‖²`` computed from ``H``.

  Args:
    weight: float [in, out], the dense kernel.
    pruned: float [in, out], its pruned version.
    gram: float [in, in], H of the inputs (calibration or held-out).
    mean: float [in], the mean input; needed with ``bias_change``.
    bias_change: float [out], ``b − b̂`` if the bias was updated; None = 0.

  Returns:
    The ratio as a float (0.0 when both are 0, inf when only ``E‖xW‖²`` is 0).
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
  if bias_change is not None:
    if mean is None:
      raise ValueError("reconstruction_error needs the mean input (mean=) with bias_change.")
    delta = np.asarray(bias_change, np.float64)
    num += float(2 * np.asarray(mean, np.float64) @ diff @ delta + delta @ delta)
  den = float(np.sum(w * (gram @ w)))
  if den <= 0:
    return 0.0 if num <= 0 else float("inf")
  return max(num, 0.0) / den
