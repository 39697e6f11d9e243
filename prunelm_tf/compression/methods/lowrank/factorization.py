"""Low-rank factorization of one matrix, and ranks allocated from a parameter budget.

A Keras kernel ``W`` (in × out) is replaced by ``A B`` with ``A`` (in × r) and
``B`` (r × out): r (in + out) parameters instead of in · out.

* Plain truncated SVD (`spectrum` without ``gram``): ``W = U S Vᵀ``,
  ``A = U_r S_r``, ``B = V_rᵀ`` minimises ``‖W − AB‖_F`` (Eckart–Young).
* Data-aware (`spectrum` with ``gram``): minimises ``‖X W − X A B‖_F`` for the
  inputs ``X`` the matrix really sees (calibration text), which depends on ``X``
  only through ``H = XᵀX / N``. With ``H + λ I = L Lᵀ`` (Cholesky, dampened as
  SparseGPT dampens it, λ a fraction of the mean diagonal), ``‖XD‖²/N ≈
  ‖LᵀD‖²``, so the SVD ``LᵀW = U S Vᵀ`` gives the optimum ``A = L⁻ᵀ U_r S_r``,
  ``B = V_rᵀ`` (Hsu et al. 2022's FWSVD and ASVD weight by a diagonal; the full
  H is the exact whitening).

`allocate_ranks` spends a budget of kept parameters over several matrices:
greedily, the next singular value with the largest share of its matrix's
energy (``s_i² / Σ s²``) per parameter it costs (in + out), or the same
fraction in every matrix ("uniform"). The math runs in float64 (NumPy);
hand-written because TensorFlow and tfmot offer no factorization of Keras
layers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from prunelm_tf.compression.shared.layerwise import reconstruction_error

ALLOCATIONS = ("energy", "uniform")


def max_saving_rank(shape: Tuple[int, int]) -> int:
  """The largest rank whose factors hold fewer parameters than the matrix (0 = none).

  ``r (m + n) < m n`` and ``r < min(m, n)``.
  """
  m, n = int(shape[0]), int(shape[1])
  return max(0, min(min(m, n) - 1, math.ceil(m * n / (m + n)) - 1))


@dataclasses.dataclass(frozen=True)
class Spectrum:
  """The SVD a factorization is cut from; `factors(rank)` gives ``(A, B)``."""
  # Singular values, float64 [k], decreasing.
  singular_values: np.ndarray
  # U [in, k] and Vᵀ [k, out] of the (whitened) matrix.
  u: np.ndarray
  vt: np.ndarray
  # Lᵀ (upper triangular, [in, in]) of the data-aware criterion; None for plain SVD.
  lt: Optional[np.ndarray] = None

  @property
  def energy(self) -> np.ndarray:
    """Each singular value's share of the total energy ``s_i² / Σ s²``, float64 [k]."""
    e = self.singular_values ** 2
    total = e.sum()
    return e / total if total > 0 else np.zeros_like(e)

  def factors(self, rank: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(A [in, rank], B [rank, out])`` as float32."""
    if not 1 <= rank <= len(self.singular_values):
      raise ValueError(f"rank must be in [1, {len(self.singular_values)}], got {rank}.")
    a = self.u[:, :rank] * self.singular_values[:rank]
    if self.lt is not None:
      a = np.linalg.solve(self.lt, a)  # L⁻ᵀ U_r S_r
    return a.astype(np.float32), self.vt[:rank].astype(np.float32)


def spectrum(weight: np.ndarray, gram: Optional[np.ndarray] = None, *,
             damp: float = 0.01) -> Spectrum:
  """The spectrum of ``weight`` [in, out], plain or weighted by the input Gram matrix.

  Args:
    weight: float Keras kernel [in, out].
    gram: optional ``H = XᵀX / N`` float [in, in] of its calibration inputs;
      None = plain truncated SVD.
    damp: λ as a fraction of H's mean diagonal (>= 0), added to its diagonal so
      that the Cholesky factor exists when inputs are rank-deficient.

  Raises:
    ValueError: bad shapes, non-finite values, or an H that is not positive
      definite even after dampening (raise ``damp``).
  """
  w = np.asarray(weight, np.float64)
  if w.ndim != 2 or not np.isfinite(w).all():
    raise ValueError(f"spectrum needs a finite matrix [in, out], got shape {w.shape}.")
  if gram is None:
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    return Spectrum(s, u, vt)
  h = np.asarray(gram, np.float64)
  if h.shape != (w.shape[0],) * 2 or not np.isfinite(h).all():
    raise ValueError(f"the Gram matrix must be finite [{w.shape[0]}, {w.shape[0]}], got "
                     f"shape {h.shape}.")
  if not damp >= 0:
    raise ValueError(f"damp must be >= 0, got {damp}.")
  lam = damp * float(np.mean(np.diag(h)))
  if lam <= 0:
    lam = 1e-8  # an all-zero H (dead inputs): every factorization is equally exact
  try:
    l = np.linalg.cholesky(h + lam * np.eye(h.shape[0]))
  except np.linalg.LinAlgError as e:
    raise ValueError(f"the calibration Gram matrix is not positive definite after dampening "
                     f"by {damp} of its mean diagonal; raise the dampening.") from e
  u, s, vt = np.linalg.svd(l.T @ w, full_matrices=False)
  return Spectrum(s, u, vt, lt=l.T)


def errors(weight: np.ndarray, a: np.ndarray, b: np.ndarray,
           gram: Optional[np.ndarray] = None) -> Dict[str, float]:
  """Relative errors of ``A B`` against ``weight``.

  Returns:
    ``{"weight_error": ‖W − AB‖²_F / ‖W‖²_F}``, plus ``"calibration_error"``
    (``‖X(W − AB)‖² / ‖XW‖²``, from ``gram``) when ``gram`` is given.
  """
  w = np.asarray(weight, np.float64)
  diff = w - np.asarray(a, np.float64) @ np.asarray(b, np.float64)
  norm = float(np.sum(w * w))
  out = {"weight_error": float(np.sum(diff * diff)) / norm if norm > 0 else 0.0}
  if gram is not None:
    out["calibration_error"] = reconstruction_error(
        w, np.asarray(a, np.float64) @ np.asarray(b, np.float64), gram)
  return out


def min_kept_fraction(shapes: Mapping[str, Tuple[int, int]]) -> float:
  """The smallest fraction of the parameters of ``shapes`` that rank-1 factors keep."""
  total = sum(m * n for m, n in shapes.values())
  return sum(m + n for m, n in shapes.values()) / total


def allocate_ranks(energies: Mapping[str, np.ndarray], shapes: Mapping[str, Tuple[int, int]],
                   removed: float, allocation: str = "energy") -> Dict[str, Optional[int]]:
  """Ranks that keep at most ``(1 - removed)`` of the matrices' parameters.

  Args:
    energies: ``{name: Spectrum.energy}`` (decreasing shares of each matrix's
      energy); unused by "uniform".
    shapes: ``{name: (in, out)}``; every matrix must have `max_saving_rank` >= 1.
    removed: the fraction of their parameters to remove, in (0, 1).
    allocation: "energy": every matrix starts at rank 1, then the next singular
      value of largest energy share per parameter (in + out) is added while the
      budget allows (never a zero one: the budget is an upper bound); a matrix that reaches its `max_saving_rank` stays dense if
      what is left of the budget pays for that. "uniform": every matrix keeps
      at most ``1 - removed`` of its own parameters (at least rank 1).

  Returns:
    ``{name: rank}``, None for a matrix that stays dense.

  Raises:
    ValueError: ``removed`` outside (0, 1), an unknown allocation, a matrix
      that no factorization makes smaller, or a budget below rank 1 everywhere.
  """
  if allocation not in ALLOCATIONS:
    raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}.")
  if not 0.0 < removed < 1.0:
    raise ValueError(f"the fraction of parameters removed must be in (0, 1), got {removed}.")
  names = list(shapes)
  for name in names:
    if max_saving_rank(shapes[name]) < 1:
      raise ValueError(f"{name} {shapes[name]}: no factorization holds fewer parameters.")
  cost = {n: shapes[n][0] + shapes[n][1] for n in names}
  size = {n: shapes[n][0] * shapes[n][1] for n in names}
  cap = {n: max_saving_rank(shapes[n]) for n in names}
  if allocation == "uniform":
    return {n: min(cap[n], max(1, math.floor((1.0 - removed) * size[n] / cost[n])))
            for n in names}
  budget = (1.0 - removed) * sum(size.values())
  ranks: Dict[str, Optional[int]] = {n: 1 for n in names}
  kept = sum(cost.values())
  if kept > budget + 1e-9:
    raise ValueError(f"removing {removed} of the parameters leaves less than rank 1 of every "
                     f"matrix needs (at most {1 - min_kept_fraction(shapes):.4f} can be removed).")
  candidates = []
  for order, n in enumerate(names):
    e = np.asarray(energies[n], np.float64)
    for i in range(1, cap[n]):  # the (i+1)-th singular value raises the rank to i + 1
      share = float(e[i]) if i < len(e) else 0.0
      if share > 1e-12:  # a zero singular value costs parameters and restores nothing
        candidates.append((-share / cost[n], order, i, n))
  blocked = set()
  for _, _, i, n in sorted(candidates):
    if n in blocked or ranks[n] != i:
      continue
    if kept + cost[n] > budget + 1e-9:
      blocked.add(n)  # its later values cost the same and are worth less
      continue
    ranks[n] += 1
    kept += cost[n]
  for n in names:  # factors at the cap save little: dense if the budget allows
    if ranks[n] == cap[n] and kept - ranks[n] * cost[n] + size[n] <= budget + 1e-9:
      kept += size[n] - ranks[n] * cost[n]
      ranks[n] = None
  return ranks
