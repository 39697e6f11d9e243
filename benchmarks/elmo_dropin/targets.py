"""The issue's target lines (#33), each met or not met with its figures.

- a variant at least 10x smaller (zipped dynamic-range TFLite against the dense float32
  embedder SavedModel) whose drop-in NER test F1 is within 1.0 of the dense model's;
- one at least 5x smaller within 0.3 (the seed noise);
- the top layer's mean cosine to the dense model at 80 % sparsity >= 0.98.

The dense reference is its NER test F1 mean over tagger seeds 0, 1, 2 (drop-in = retrained
for the dense model); a variant's drop-in F1 is the mean of those taggers on its features.
"""

from __future__ import annotations

from typing import Any, Dict, List

# (times smaller, F1 within) of the drop-in lines; F1 as a fraction.
DROPIN_TARGETS = ((10.0, 0.01), (5.0, 0.003))
COSINE_SPARSITY, COSINE_TARGET = 0.8, 0.98
# The pruning methods whose rows count at a sparsity.
PRUNING_METHODS = ("obs", "wanda", "threshold", "retrain")


def _f1(row):
  return (row.get("downstream") or {}).get("ner_dropin_test_f1")


def _name(r) -> str:
  return f"{r['group']}/{r['variant']}"


def dropin_target(rows, ratio: float, limit: float) -> Dict[str, Any]:
  """The smallest drop-in variant at least ``ratio`` x smaller within ``limit`` of dense."""
  dense = (rows[0].get("downstream") or {}).get("ner_test_f1") if rows else None
  label = f"at least {ratio:g}x smaller with drop-in NER test F1 within {limit * 100:g} of dense"
  if dense is None:
    return {"label": label, "met": None, "text": "the dense model's NER has not been evaluated"}
  measured = [r for r in rows[1:] if r["dropin"] and r["size_ratio"] and _f1(r) is not None]
  if not measured:
    return {"label": label, "met": None, "text": "no variant's drop-in NER has been evaluated"}
  passing = [r for r in measured if r["size_ratio"] >= ratio and _f1(r) >= dense - limit - 1e-12]
  if passing:
    best = max(passing, key=lambda r: r["size_ratio"])
    return {"label": label, "met": True, "variant": _name(best),
            "text": f"{_name(best)}: {best['size_ratio']:.1f}x, drop-in F1 {_f1(best) * 100:.2f} "
                    f"({(_f1(best) - dense) * 100:+.2f} against dense {dense * 100:.2f})"}
  parts = []
  small = [r for r in measured if r["size_ratio"] >= ratio]
  if small:
    b = max(small, key=_f1)
    parts.append(f"best drop-in F1 at >= {ratio:g}x: {_name(b)} {_f1(b) * 100:.2f} "
                 f"({(_f1(b) - dense) * 100:+.2f}, {b['size_ratio']:.1f}x)")
  close = [r for r in measured if _f1(r) >= dense - limit - 1e-12]
  if close:
    b = max(close, key=lambda r: r["size_ratio"])
    parts.append(f"smallest within {limit * 100:g}: {_name(b)} {b['size_ratio']:.1f}x "
                 f"({(_f1(b) - dense) * 100:+.2f})")
  return {"label": label, "met": False,
          "text": "; ".join(parts) or "no variant measured"}


def cosine_target(rows) -> Dict[str, Any]:
  """The best top-layer mean cosine among the pruned variants at 80 % sparsity."""
  label = (f"top-layer mean cosine at {COSINE_SPARSITY:.0%} sparsity >= {COSINE_TARGET}")
  at = [r for r in rows[1:] if abs(r["amount"] - COSINE_SPARSITY) < 1e-9
        and any(m in PRUNING_METHODS for m in r["stages"]) and r["top_cosine"] is not None]
  if not at:
    return {"label": label, "met": None, "text": f"no pruned variant at {COSINE_SPARSITY:.0%}"}
  best = max(at, key=lambda r: r["top_cosine"])
  others = ", ".join(f"{_name(r)} {r['top_cosine']:.4f}"
                     for r in sorted(at, key=lambda r: -r["top_cosine"])[1:])
  return {"label": label, "met": best["top_cosine"] >= COSINE_TARGET, "variant": _name(best),
          "text": f"best {_name(best)} {best['top_cosine']:.4f} (sparsity "
                  f"{best['sparsity']:.3f})" + (f"; others: {others}" if others else "")}


def target_lines(rows) -> List[Dict[str, Any]]:
  """Every target line of the issue: {"label", "met" (True/False/None: not measured), "text"}."""
  return [dropin_target(rows, ratio, limit) for ratio, limit in DROPIN_TARGETS] + [
      cosine_target(rows)]
