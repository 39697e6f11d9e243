"""Number formatting for report tables: one spelling of "missing", MB, %, ms, perplexity."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from prunelm_tf.reporting.entries import num

MB = 1e6  # bytes per MB in every table and plot
DASH = "—"  # a value that was not measured
# Characters of a failure message shown in a table cell (the full text is in the JSON).
FAILURE_CHARS = 80


def pct(fraction: Optional[float], digits: int = 1) -> str:
  """0.021 -> "+2.1 %"."""
  if fraction is None:
    return DASH
  if math.isinf(fraction):
    return "+inf %" if fraction > 0 else "-inf %"
  return f"{fraction * 100:+.{digits}f} %"


def mb(n: Optional[float], digits: int = 2) -> str:
  return DASH if n is None else f"{n / MB:.{digits}f}"


def ms(v: Optional[float]) -> str:
  if v is None:
    return DASH
  return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def perplexity(v: Optional[float]) -> str:
  if v is None:
    return DASH
  if math.isinf(v):
    return "inf"
  return f"{v:.1f}" if v < 1e5 else f"{v:.3g}"


def value(v: Any) -> str:
  v = num(v)
  return DASH if v is None else f"{v:.4g}"


def percent_with_delta(v: Optional[float], reference: Optional[float],
                       is_reference: bool) -> str:
  """A fraction as "81.0 % (-1.0)": the Δ in points vs ``reference``."""
  if v is None:
    return DASH
  if is_reference or reference is None:
    return f"{v * 100:.1f} %"
  return f"{v * 100:.1f} % ({(v - reference) * 100:+.1f})"


def failures(found: Mapping[str, str]) -> str:
  """``{what: message}`` as one cell: the first line of each message, shortened."""
  if not found:
    return DASH
  parts = []
  for key, message in found.items():
    first = (message.strip().splitlines() or [""])[0]
    if len(first) > FAILURE_CHARS:
      first = first[:FAILURE_CHARS - 1] + "…"
    parts.append(f"{key}: {first}")
  return "; ".join(parts)


def cell(text: Any) -> str:
  """A Markdown table cell: no pipes or line breaks."""
  return str(text).replace("|", "\\|").replace("\n", " ")
