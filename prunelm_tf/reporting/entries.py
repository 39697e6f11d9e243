"""Reading measurement entries: one (variant, quantization mode) each, any value may be missing.

An *entry* is a dict as ``evaluation.evaluate`` writes it (and a compression
variant record is read the same way): ``name`` (for people), what made it as
data (``method``, ``method_options``, ``target_sparsity``), ``quantization``
and the measurements (``perplexity``, ``sizes``, ``latency``, task scores,
``errors``). Results are found by that data, never by parsing ``name``.
Missing, non-numeric and NaN values read as None.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

# The ``method`` recorded for the input model (the reference every Δ is against).
DENSE = "dense"
# Two target sparsities closer than this are the same target (JSON round trips).
_SAME_TARGET = 1e-9


def num(x: Any) -> Optional[float]:
  """``x`` as a float, or None if it is missing, not a number, or NaN (inf is kept)."""
  if isinstance(x, bool) or not isinstance(x, (int, float)):
    return None
  x = float(x)
  return None if math.isnan(x) else x


def get(d: Any, *keys: str) -> Any:
  """``d[k1][k2]...`` or None; thread-count keys may be ints or strings."""
  for key in keys:
    if not isinstance(d, Mapping):
      return None
    value = d.get(key)
    if value is None and key.isdigit():
      value = d.get(int(key))
    d = value
  return d


def quantization(entry: Mapping) -> str:
  return entry.get("quantization") or "none"


def method(entry: Mapping) -> str:
  return entry.get("method") or DENSE


def is_dense(entry: Mapping) -> bool:
  return method(entry) == DENSE


def group(entry: Mapping) -> str:
  """The entry's group (a benchmark's label for a run), else its method."""
  return entry.get("group") or method(entry)


def has_target(entry: Mapping, target_sparsity: float) -> bool:
  value = num(entry.get("target_sparsity"))
  return value is not None and abs(value - target_sparsity) <= _SAME_TARGET


def find(entries: Sequence[Mapping], *, group_name: str, target_sparsity: float,
         quantization_mode: str = "none") -> Optional[Mapping]:
  """The entry of ``group_name`` made for ``target_sparsity`` in ``quantization_mode``."""
  for entry in entries:
    if (group(entry) == group_name and not is_dense(entry) and has_target(entry, target_sparsity)
        and quantization(entry) == quantization_mode):
      return entry
  return None


def dense_entry(entries: Sequence[Mapping], quantization_mode: str = "none") -> Optional[Mapping]:
  for entry in entries:
    if is_dense(entry) and quantization(entry) == quantization_mode:
      return entry
  return None


def perplexity(entry: Optional[Mapping], which: str) -> Optional[float]:
  """``which`` in forward, backward, mean."""
  return None if entry is None else num(get(entry, "perplexity", which))


def score(entry: Optional[Mapping], key: str) -> Optional[float]:
  """A top-level score such as ``sst2_accuracy``, ``ner_test_f1`` or ``mrpc_f1``."""
  return None if entry is None else num(entry.get(key))


def size(entry: Optional[Mapping], key: str) -> Optional[float]:
  """``entry["sizes"][key]`` in bytes, e.g. ``tflite_zip_bytes``."""
  return None if entry is None else num(get(entry, "sizes", key))


def latency(entry: Optional[Mapping], runtime: str, threads: int,
            stat: str = "p50_ms") -> Optional[float]:
  return None if entry is None else num(get(entry, "latency", runtime, str(threads), stat))


def peak_rss(entry: Mapping) -> Optional[float]:
  """Largest peak RSS of the TFLite benchmark process over all thread counts."""
  per_threads = get(entry, "latency", "tflite")
  if not isinstance(per_threads, Mapping):
    return None
  values = [num(get(v, "peak_rss_bytes")) for v in per_threads.values()]
  values = [v for v in values if v is not None]
  return max(values) if values else None


def rel(value: Optional[float], reference: Optional[float]) -> Optional[float]:
  """Relative change ``value / reference - 1``, or None if either is missing."""
  if value is None or reference is None or reference <= 0 or math.isinf(reference):
    return None
  return value / reference - 1.0


def failures(entry: Mapping) -> Dict[str, str]:
  """Every failure recorded on the entry: ``{what: message}``.

  Evaluation entries keep them in ``errors`` (``tflite``, ``perplexity``,
  ``latency_tflite_<threads>``); compression variant records in
  ``tflite_errors`` (one per quantization mode, e.g. int8 whose conversion
  crashed), reported as ``tflite_<mode>``.
  """
  out: Dict[str, str] = {}
  for key, message in sorted((entry.get("errors") or {}).items()):
    if message:
      out[str(key)] = str(message)
  for mode, message in sorted((entry.get("tflite_errors") or {}).items()):
    if message:
      out[f"tflite_{mode}"] = str(message)
  return out


def any_value(entries: Sequence[Mapping], value_of) -> bool:
  """Whether ``value_of(entry)`` is not None for some entry (a column worth showing)."""
  return any(value_of(e) is not None for e in entries)


def validate(entries: Any) -> List[Mapping]:
  """``entries`` as a list of dicts with names.

  Raises:
    TypeError: not a list of dicts.
    ValueError: an entry has no name.
  """
  if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
    raise TypeError(f"entries must be a list of dicts, got {type(entries).__name__}. Pass "
                    "report['entries'].")
  for i, entry in enumerate(entries):
    if not isinstance(entry, Mapping):
      raise TypeError(f"entries[{i}] must be a dict, got {type(entry).__name__}.")
    if not entry.get("name"):
      raise ValueError(f"entries[{i}] has no 'name' (keys: {sorted(entry)}); every entry needs "
                       "a name such as 'retrain_90/dynamic'.")
  return list(entries)
