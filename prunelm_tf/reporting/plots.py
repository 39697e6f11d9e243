"""Report figures of measurement entries: a metric vs size, a metric vs sparsity, as PNG.

Matplotlib is an optional dependency (``pip install 'prunelm-tf[plots]'``);
it is imported when a figure is made, so a missing install raises ImportError
there and the caller can skip its plots. Colours follow the entry's group,
markers its quantization, the same in every figure of one report (`Styles`).
Points whose values are missing or not finite are skipped; a figure without
any point says so.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from prunelm_tf.reporting import entries as E
from prunelm_tf.reporting.text import MB
from prunelm_tf.utils import files

ValueOf = Callable[[Mapping], Optional[float]]

_COLOURS = ("tab:orange", "tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown",
            "tab:pink", "tab:olive", "tab:cyan")
_MARKERS = {"none": "o", "dynamic": "s", "float16": "^", "int8": "D"}
_EXTRA_MARKERS = ("v", "P", "X", "*", "h")


@dataclasses.dataclass(frozen=True)
class Reference:
  """A horizontal line: the dense value or a target band."""
  value: Optional[float]
  label: str
  dashed: bool = True  # dashed for the reference itself, dotted for a band


@dataclasses.dataclass
class Styles:
  """Colour per group (dense black) and marker per quantization, stable across figures."""
  colours: Dict[str, str]
  markers: Dict[str, str]

  @classmethod
  def of(cls, entries: Sequence[Mapping]) -> "Styles":
    colours, markers = {E.DENSE: "black"}, dict(_MARKERS)
    for entry in entries:
      group = E.DENSE if E.is_dense(entry) else E.group(entry)
      if group not in colours:
        colours[group] = _COLOURS[(len(colours) - 1) % len(_COLOURS)]
      quant = E.quantization(entry)
      if quant not in markers:
        markers[quant] = _EXTRA_MARKERS[(len(markers) - len(_MARKERS)) % len(_EXTRA_MARKERS)]
    return cls(colours, markers)

  def colour(self, entry: Mapping) -> str:
    return self.colours[E.DENSE if E.is_dense(entry) else E.group(entry)]


def finite_positive(*values: Optional[float]) -> bool:
  return all(v is not None and math.isfinite(v) and v > 0 for v in values)


def new_figure():
  """(figure, axes) on an Agg canvas of this figure only (no pyplot, no global backend)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(7.5, 5.0), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  ax.margins(x=0.1, y=0.08)  # room for the point labels
  ax.grid(True, which="major", alpha=0.4)
  ax.grid(True, which="minor", alpha=0.15)
  return fig, ax


def _no_data(ax, what: str) -> None:
  ax.text(0.5, 0.5, f"no data: {what}", transform=ax.transAxes, ha="center", va="center",
          color="gray")


def log_scale(ax, axis: str) -> None:
  """Log scale with ticks at 1, 2, 5 x 10^k labelled as plain numbers (not 2x10^0)."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
  target = ax.yaxis if axis == "y" else ax.xaxis
  target.set_major_locator(ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
  target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  target.set_minor_formatter(ticker.NullFormatter())


def _log_if_spread(ax, values: Sequence[float], factor: float = 10.0) -> None:
  values = [v for v in values if finite_positive(v)]
  if values and max(values) / min(values) >= factor:
    log_scale(ax, "y")


def _references(ax, references: Sequence[Reference]) -> List[float]:
  drawn = []
  for ref in references:
    if ref.value is not None and math.isfinite(ref.value):
      ax.axhline(ref.value, color="black" if ref.dashed else "gray",
                 linestyle="--" if ref.dashed else ":", linewidth=1, label=ref.label)
      drawn.append(ref.value)
  return drawn


def _legend(ax, styles: Styles, groups: Sequence[str], quants: Sequence[str]) -> None:
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  handles, labels = ax.get_legend_handles_labels()
  for group in groups:
    handles.append(Line2D([], [], color=styles.colours[group], marker="o", linestyle="None"))
    labels.append(f"group: {group}")
  for quant in quants:
    handles.append(Line2D([], [], color="gray", marker=styles.markers[quant], linestyle="None"))
    labels.append(f"quantization: {quant}")
  if handles:
    ax.legend(handles, labels, fontsize=8, loc="best", framealpha=0.85)


def scatter_vs_size(entries: Sequence[Mapping], y_of: ValueOf, styles: Styles, *, ylabel: str,
                    title: str, what: str, references: Sequence[Reference] = (),
                    log_y: str = "spread"):
  """``y_of(entry)`` vs zipped TFLite size (MB, log), dense highlighted, each point labelled.

  Args:
    what: the missing value, for the "no data" text, e.g. "a mean perplexity".
    log_y: "spread" (log when values span 10x or more) or "never".
  """
  fig, ax = new_figure()
  plotted = []
  for entry in entries:
    x, y = E.size(entry, "tflite_zip_bytes"), y_of(entry)
    if not finite_positive(x, y):
      continue
    dense = E.is_dense(entry)
    ax.scatter([x / MB], [y], color=styles.colour(entry), marker=styles.markers[E.quantization(entry)],
               s=110 if dense else 45, edgecolors="gold" if dense else "none",
               linewidths=2.0 if dense else 0.0, zorder=4 if dense else 3)
    # Alternate above / below so neighbouring labels overlap less.
    offset = (5, 5) if len(plotted) % 2 == 0 else (5, -11)
    ax.annotate(entry["name"], (x / MB, y), xytext=offset, textcoords="offset points",
                fontsize=7, fontweight="bold" if dense else "normal")
    plotted.append(entry)
  if plotted:
    log_scale(ax, "x")
    ys = [y_of(e) for e in plotted] + _references(ax, references)
    if log_y == "spread":
      _log_if_spread(ax, ys)
  else:
    _no_data(ax, f"no entry has both {what} and a zipped TFLite size")
  ax.set_xlabel("zipped TFLite model size (MB = 10^6 bytes, log scale)")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  groups = list(dict.fromkeys(E.DENSE if E.is_dense(e) else E.group(e) for e in plotted))
  quants = list(dict.fromkeys(E.quantization(e) for e in plotted))
  _legend(ax, styles, groups, quants)
  return fig


def lines_vs_sparsity(entries: Sequence[Mapping], y_of: ValueOf, styles: Styles, *, ylabel: str,
                      title: str, what: str, references: Sequence[Reference] = (),
                      log_y: bool = False):
  """One line per group of pruned, unquantized entries: ``y_of`` vs measured sparsity (%)."""
  fig, ax = new_figure()
  pruned = [e for e in entries if not E.is_dense(e) and E.quantization(e) == "none"]
  ys, plotted = [], False
  for group in dict.fromkeys(E.group(e) for e in pruned):
    points = sorted((E.num(e.get("sparsity")) * 100, y_of(e)) for e in pruned
                    if E.group(e) == group and E.num(e.get("sparsity")) is not None
                    and y_of(e) is not None and math.isfinite(y_of(e)))
    if not points:
      continue
    ax.plot([p[0] for p in points], [p[1] for p in points], color=styles.colours[group],
            marker=styles.markers["none"], label=group)
    ys += [p[1] for p in points]
    plotted = True
  ys += _references(ax, references)
  if not plotted:
    _no_data(ax, f"no pruned, unquantized entry has a measured sparsity and {what}")
  elif log_y and all(finite_positive(y) for y in ys):
    log_scale(ax, "y")
  ax.set_xlabel("measured sparsity of the pruned weights (%)")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
  return fig


def save_png(fig, path: str) -> None:
  """Writes ``fig`` to ``path`` (dpi 120) under a temporary name, then renames it."""
  fig.tight_layout()
  with files.atomic_path(path) as tmp:
    # The temporary name has no .png suffix, so the format is given explicitly.
    fig.savefig(tmp, format="png", dpi=120)
  fig.clear()


def write_figures(makers: Mapping[str, Callable[[], object]], out_dir: str) -> List[str]:
  """Makes and writes each ``{file_name: make_figure}`` in order; returns the names written."""
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for file_name, make in makers.items():
    save_png(make(), os.path.join(out_dir, file_name))
    written.append(file_name)
  return written
