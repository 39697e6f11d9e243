"""The benchmark's figures: perplexity against the fraction removed and against size, NER F1.

Without matplotlib no figure is written (plots are optional).
"""

from __future__ import annotations

import os

from benchmarks.elmo_ptb.groups import COMBINED, DENSE_CONTROLS, ONE_SHOT, SHAPED
from benchmarks.elmo_ptb.rows import embedder_removed, pruned_and_retrained, retrained_frontier
from prunelm_tf.reporting import plots as plots_lib

# One-shot groups left out of the perplexity plot: calibration-size ablations of obs_osens.
PLOT_LEFT_OUT = ("obs_osens_cal1000", "obs_osens_cal2000")
# Each dense control's marker colour in the perplexity plot.
CONTROL_COLOURS = dict(zip(DENSE_CONTROLS, ("red", "darkorange", "purple", "brown", "olive",
                                            "teal")))


def _figure():
  """A (figure, axes) of `plots.new_figure`, or None without matplotlib."""
  try:
    return plots_lib.new_figure()
  except ImportError:
    return None


def plot_perplexity(rows, out_dir: str) -> None:
  """ppl_vs_sparsity.png: one line per one-shot or shape-changing method, the best retrained
  variant per target as one line, combinations and the dense control as markers."""
  made = _figure()
  if made is None:
    return
  fig, ax = made
  fig.set_size_inches(10.0, 5.5)
  import matplotlib  # pylint: disable=import-outside-toplevel
  ax.set_prop_cycle(color=matplotlib.colormaps["tab20"].colors)  # > 10 lines, all distinct
  dense = next(r for r in rows if r["variant"] == "dense")
  ax.axhline(dense["ppl"]["mean"], color="black", lw=1, label="dense")
  ax.axhline(dense["ppl"]["mean"] * 1.05, color="gray", lw=0.8, ls="--", label="dense +5 %")
  # Recipe groups that changed the shape (fine-tuned or not) are lines of their own.
  shaped_recipes = {r["group"] for r in rows if r.get("recipe") and r.get("removed_fraction")
                    and r["group"] not in COMBINED}
  lines = [g for g in sorted({r["group"] for r in rows})
           if g in ONE_SHOT or g in SHAPED or g in shaped_recipes]
  for group in lines:
    if group in PLOT_LEFT_OUT:
      continue
    pts = sorted((embedder_removed(r, rows), r["ppl"]["mean"]) for r in rows
                 if r["group"] == group and embedder_removed(r, rows) is not None)
    if pts:
      ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=group)
  frontier = retrained_frontier(rows)
  if frontier:
    ax.plot([p[0] for p in frontier], [p[1] for p in frontier], marker="*", ms=11, lw=2,
            color="black", label="retrained ≤ 1 epoch (best recipe per target)")
  for group in sorted({r["group"] for r in rows if r["group"] in COMBINED}):
    pts = [(embedder_removed(r, rows), r["ppl"]["mean"]) for r in rows
           if r["group"] == group and embedder_removed(r, rows) is not None]
    if pts:
      ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="D", s=30,
                 label=f"combined: {group}")
  for control, color in CONTROL_COLOURS.items():
    controls = [r for r in rows if r["group"] == control and r["ppl"]]
    if controls:
      ax.scatter([0.0], [controls[0]["ppl"]["mean"]], marker="x", s=60, color=color,
                 label=f"dense control: {control}")
  ax.set_yscale("log")
  ax.set_xlabel("fraction of the embedder's matrix parameters removed (zeros or shape)")
  ax.set_ylabel("PTB test perplexity (mean of directions)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  plots_lib.save_png(fig, os.path.join(out_dir, "ppl_vs_sparsity.png"))


def plot_size(rows, embedder_bytes: int, out_dir: str) -> None:
  """ppl_vs_size.png: perplexity against how many times smaller than the dense embedder
  SavedModel each variant's zipped dynamic TFLite is (the size target's axis), one marker
  kind per family, the +5 % and 30x target lines."""
  points = [(embedder_bytes / r["tflite_zip_bytes"]["dynamic"], r["ppl"]["mean"], r)
            for r in rows if "dynamic" in r["tflite_zip_bytes"] and r["ppl"]]
  made = _figure() if len(points) >= 2 else None
  if made is None:
    return
  fig, ax = made
  fig.set_size_inches(10.0, 5.5)
  dense = next((r for r in rows if r["variant"] == "dense"), None)
  if dense is not None:
    ax.axhline(dense["ppl"]["mean"] * 1.05, color="gray", lw=0.8, ls="--", label="dense +5 %")
  ax.axvline(30.0, color="gray", lw=0.8, ls=":", label="30x")

  def family(r):
    if r["variant"] == "dense":
      return "dense"
    if r["group"] in COMBINED:
      return f"{COMBINED[r['group']][2]} of a variant"
    if r.get("stages"):  # a recipe run: its stages
      return "retrained" if pruned_and_retrained(r) else " + ".join(r["stages"])
    return "retrained" if r["method"] == "retrain" else r["method"]
  for name in sorted({family(r) for _, _, r in points}):
    pts = [(x, y) for x, y, r in points if family(r) == name]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, label=name)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("dense float32 embedder SavedModel / zipped dynamic-range TFLite")
  ax.set_ylabel("PTB test perplexity (mean of directions)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  plots_lib.save_png(fig, os.path.join(out_dir, "ppl_vs_size.png"))


def plot_downstream(rows, embedder_bytes: int, out_dir: str) -> None:
  """ner_f1_vs_size.png: NER test F1 vs the dense embedder's size ratio (zipped dynamic
  TFLite), one point per variant."""
  points = [(embedder_bytes / r["tflite_zip_bytes"]["dynamic"], r["downstream"]["ner_test_f1"],
             r["group"]) for r in rows
            if (r.get("downstream") or {}).get("ner_test_f1") is not None
            and "dynamic" in r["tflite_zip_bytes"]]
  made = _figure() if len(points) >= 2 else None
  if made is None:
    return
  fig, ax = made
  for group in sorted({p[2] for p in points}):
    pts = sorted((x, y * 100) for x, y, g in points if g == group)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=group)
  ax.set_xscale("log")
  ax.set_xlabel("dense embedder SavedModel / zipped dynamic TFLite (x smaller)")
  ax.set_ylabel("CoNLL-2003 NER test F1")
  ax.legend(fontsize=8)
  plots_lib.save_png(fig, os.path.join(out_dir, "ner_f1_vs_size.png"))


def write_plots(rows, embedder_bytes: int, out_dir: str) -> None:
  """Every figure of the report into ``out_dir``."""
  plot_perplexity(rows, out_dir)
  plot_size(rows, embedder_bytes, out_dir)
  plot_downstream(rows, embedder_bytes, out_dir)
