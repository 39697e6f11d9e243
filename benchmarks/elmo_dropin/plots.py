"""The track's figure: drop-in NER F1 against how many times smaller, one line per group.

Without matplotlib no figure is written (plots are optional).
"""

from __future__ import annotations

import os

from prunelm_tf.reporting import plots as plots_lib
from benchmarks.elmo_dropin.targets import DROPIN_TARGETS

PLOT_FILE = "ner_dropin_vs_size.png"


def dropin_points(rows):
  """{group: [(size ratio, drop-in NER F1 in points)]} of the drop-in rows that have both."""
  out = {}
  for r in rows:
    f1 = (r.get("downstream") or {}).get("ner_dropin_test_f1")
    if r["group"] == "dense" or not r["dropin"] or r["size_ratio"] is None or f1 is None:
      continue
    out.setdefault(r["group"], []).append((r["size_ratio"], f1 * 100))
  return {g: sorted(p) for g, p in out.items()}


def plot_dropin(rows, out_dir: str) -> str:
  """Writes DIR/ner_dropin_vs_size.png and returns its path ("" when nothing was drawn)."""
  points = dropin_points(rows)
  dense = (rows[0].get("downstream") or {}).get("ner_test_f1") if rows else None
  if not points:
    return ""
  try:
    fig, ax = plots_lib.new_figure()
  except ImportError:
    return ""
  fig.set_size_inches(10.0, 5.5)
  import matplotlib  # pylint: disable=import-outside-toplevel
  ax.set_prop_cycle(color=matplotlib.colormaps["tab20"].colors)
  if dense is not None:
    ax.axhline(dense * 100, color="black", lw=1, label="dense (tagger seeds 0, 1, 2)")
    for ratio, limit in DROPIN_TARGETS:
      ax.axhline((dense - limit) * 100, color="gray", lw=0.8, ls="--")
      ax.axvline(ratio, color="gray", lw=0.8, ls=":")
      ax.plot([ratio], [(dense - limit) * 100], marker="s", color="gray", ms=5,
              label=f"target: {ratio:g}x within {limit * 100:g}")
  for group, pts in sorted(points.items()):
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=group)
  ax.set_xscale("log")
  ax.set_xlabel("dense float32 embedder SavedModel / zipped dynamic-range TFLite (x smaller)")
  ax.set_ylabel("CoNLL-2003 NER test F1, drop-in (dense taggers, mean of 3 seeds)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  path = os.path.join(out_dir, PLOT_FILE)
  plots_lib.save_png(fig, path)
  return path
