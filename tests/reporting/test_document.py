"""Tests for prunelm_tf.reporting.document: one set of blocks -> Markdown and a self-contained page."""

import base64
import os
import re

import pytest

from prunelm_tf.reporting import document as document_lib

PNG = base64.b64decode(  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def _doc():
  doc = document_lib.Document("Title <x>")
  doc.quote("quick mode")
  doc.paragraph("**Machine:** 2 CPUs", "**Command:** `run --a`")
  doc.heading("Results")
  doc.table(["name", "failures"], [["a/none", "—"], ["b|int8", "tflite: crashed <oom>"]])
  doc.bullets(["**MET** `t1`", "**MISSED** `t2`"])
  doc.image("fig.png", "A figure")
  return doc


def test_markdown():
  text = _doc().markdown()
  assert text.startswith("# Title <x>\n\n> quick mode\n\n**Machine:** 2 CPUs  \n**Command:**")
  assert "| name | failures |\n|---|---|\n| a/none | — |\n| b\\|int8 | tflite: crashed <oom> |" in text
  assert "- **MET** `t1`\n- **MISSED** `t2`" in text
  assert text.endswith("![A figure](fig.png)\n")


def test_html_is_self_contained_and_escaped(tmp_path):
  (tmp_path / "fig.png").write_bytes(PNG)
  page = _doc().html(str(tmp_path))
  assert page.startswith("<!DOCTYPE html>")
  assert "<title>Title &lt;x&gt;</title>" in page
  # Nothing is loaded from anywhere else: no links, scripts, or non-data image sources.
  assert not re.search(r"<(link|script|iframe)", page)
  assert not re.search(r"(href|src)=\"(?!data:)", page)
  assert not re.search(r"https?://", page)
  srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
  assert srcs == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
  assert "<td>b|int8</td><td>tflite: crashed &lt;oom&gt;</td>" in page
  assert "<strong>MET</strong> <code>t1</code>" in page
  assert "<th>failures</th>" in page


def test_write_is_atomic_and_needs_the_images(tmp_path):
  with pytest.raises(FileNotFoundError):
    document_lib.write(_doc(), str(tmp_path))
  assert os.listdir(tmp_path) == []  # nothing half-written when an image is missing
  (tmp_path / "fig.png").write_bytes(PNG)
  assert document_lib.write(_doc(), str(tmp_path), "r") == ["r.md", "r.html"]
  assert sorted(os.listdir(tmp_path)) == ["fig.png", "r.html", "r.md"]


def test_table_rows_must_match_the_header():
  with pytest.raises(ValueError, match="2 cells for 3 columns"):
    document_lib.Document("t").table(["a", "b", "c"], [["1", "2"]])
