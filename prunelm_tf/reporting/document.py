"""A report as a list of blocks, rendered as Markdown and as one self-contained HTML page.

Both renderings come from the same blocks, so ``report.md`` and ``report.html``
show the same table, targets and failures. Text may use two inline marks,
``**bold**`` and ```code```; the HTML page escapes everything else. Images are
PNG files beside the report: Markdown links them, HTML embeds them (base64), so
the page needs no other file and loads nothing from the network.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
import re
from typing import List, Sequence, Tuple

from prunelm_tf.reporting.text import cell
from prunelm_tf.utils import files

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; white-space: nowrap; }
th { background: #eee; position: sticky; top: 0; }
tr:nth-child(even) td { background: #f7f7f7; }
.table { overflow-x: auto; max-width: 100%; }
blockquote { border-left: 4px solid #ccc; margin-left: 0; padding-left: 1em; color: #555; }
code { background: #f0f0f0; padding: 0 0.2em; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


@dataclasses.dataclass(frozen=True)
class _Block:
  kind: str  # heading, paragraph, quote, bullets, table, image
  text: Tuple[str, ...] = ()
  level: int = 2
  header: Tuple[str, ...] = ()
  rows: Tuple[Tuple[str, ...], ...] = ()


class Document:
  """Blocks of a report, in order; see the module docstring."""

  def __init__(self, title: str):
    self.title = title
    self.blocks: List[_Block] = []

  def heading(self, text: str, level: int = 2) -> "Document":
    self.blocks.append(_Block("heading", (text,), level=level))
    return self

  def paragraph(self, *lines: str) -> "Document":
    """One paragraph; each line ends with a line break."""
    self.blocks.append(_Block("paragraph", tuple(lines)))
    return self

  def quote(self, text: str) -> "Document":
    self.blocks.append(_Block("quote", (text,)))
    return self

  def bullets(self, items: Sequence[str]) -> "Document":
    self.blocks.append(_Block("bullets", tuple(items)))
    return self

  def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> "Document":
    """A table; every row has one cell per header column.

    Raises:
      ValueError: a row has another number of cells.
    """
    for row in rows:
      if len(row) != len(header):
        raise ValueError(f"a table row has {len(row)} cells for {len(header)} columns: {row}")
    self.blocks.append(_Block("table", header=tuple(header),
                              rows=tuple(tuple(str(c) for c in r) for r in rows)))
    return self

  def image(self, file_name: str, alt: str) -> "Document":
    """A PNG file, relative to the folder the report is written to."""
    self.blocks.append(_Block("image", (file_name, alt)))
    return self

  def markdown(self) -> str:
    lines = [f"# {self.title}", ""]
    for b in self.blocks:
      if b.kind == "heading":
        lines.append("#" * b.level + " " + b.text[0])
      elif b.kind == "paragraph":
        lines += [line + "  " for line in b.text[:-1]] + list(b.text[-1:])
      elif b.kind == "quote":
        lines.append("> " + b.text[0])
      elif b.kind == "bullets":
        lines += [f"- {item}" for item in b.text]
      elif b.kind == "table":
        lines.append("| " + " | ".join(cell(c) for c in b.header) + " |")
        lines.append("|" + "---|" * len(b.header))
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows]
      elif b.kind == "image":
        lines.append(f"![{b.text[1]}]({b.text[0]})")
      lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"

  def html(self, base_dir: str) -> str:
    """The page, with every image read from ``base_dir`` and embedded.

    Raises:
      FileNotFoundError: an image is not in ``base_dir``.
    """
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(self.title)}</title>", f"<style>{_STYLE}</style>", "</head>",
           "<body>", f"<h1>{_inline(self.title)}</h1>"]
    for b in self.blocks:
      if b.kind == "heading":
        out.append(f"<h{b.level}>{_inline(b.text[0])}</h{b.level}>")
      elif b.kind == "paragraph":
        out.append("<p>" + "<br>\n".join(_inline(line) for line in b.text) + "</p>")
      elif b.kind == "quote":
        out.append(f"<blockquote>{_inline(b.text[0])}</blockquote>")
      elif b.kind == "bullets":
        out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.text) + "</ul>")
      elif b.kind == "table":
        head = "".join(f"<th>{_inline(c)}</th>" for c in b.header)
        body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                       for row in b.rows)
        out.append(f'<div class="table"><table><thead><tr>{head}</tr></thead>'
                   f"<tbody>{body}</tbody></table></div>")
      elif b.kind == "image":
        path = os.path.join(base_dir, b.text[0])
        with open(path, "rb") as f:
          data = base64.b64encode(f.read()).decode("ascii")
        alt = html.escape(b.text[1], quote=True)
        out.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{_inline(b.text[1])}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _inline(text: str) -> str:
  """Escaped text with ``**bold**`` and ```code``` marks as HTML."""
  escaped = html.escape(str(text), quote=False)
  escaped = re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)
  return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def write(document: Document, out_dir: str, stem: str = "report") -> List[str]:
  """Writes ``stem.md`` and ``stem.html`` into ``out_dir``, each atomically.

  The images the document names must already be in ``out_dir``.

  Returns:
    The two file names, relative to ``out_dir``.
  """
  os.makedirs(out_dir, exist_ok=True)
  md_name, html_name = f"{stem}.md", f"{stem}.html"
  page = document.html(out_dir)  # before writing anything: a missing image fails cleanly
  files.write_text(os.path.join(out_dir, md_name), document.markdown())
  files.write_text(os.path.join(out_dir, html_name), page)
  return [md_name, html_name]
