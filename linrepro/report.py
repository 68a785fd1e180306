"""Offline HTML reports from executed notebooks (nbconvert), readable with no network.

* plotly figures: the notebook renders with ``plotly_mimetype+notebook``; the ``notebook``
  renderer puts plotly.js into the first figure's HTML output, so the report carries it once.
* math: LaTeX in markdown cells is converted to MathML (``latex2mathml``) before export,
  so no MathJax is fetched; browsers render MathML natively.
* every ``<script src="http…">`` nbconvert's template would add (require.js, MathJax) is
  removed, and the result is checked to load nothing from the network.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)", re.S)
_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>\s*</script>", re.I)
_REMOTE_LINK = re.compile(r"<link[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>", re.I)


def _mathml(tex: str, display: str) -> str:
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display=display)
    except Exception:  # leave unparsable TeX visible rather than lose it
        return f"<code>{tex}</code>"


def latex_to_mathml(markdown: str) -> str:
    """Replace $$…$$ and $…$ in markdown with MathML."""
    out = _DISPLAY.sub(lambda m: "\n" + _mathml(m.group(1), "block") + "\n", markdown)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), out)


def remote_resources(html: str) -> list[str]:
    """Script or stylesheet tags that would load from the network."""
    return _REMOTE_SCRIPT.findall(html) + _REMOTE_LINK.findall(html)


def notebook_to_html(nb_path: Path, html_path: Path, title: str | None = None) -> Path:
    from nbconvert import HTMLExporter

    from linrepro.runs import atomic_write_text

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = latex_to_mathml(cell.source)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    resources = {"metadata": {"name": title or nb_path.stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    body = _REMOTE_SCRIPT.sub("", body)
    body = _REMOTE_LINK.sub("", body)
    left = remote_resources(body)
    if left:  # pragma: no cover - a template change would show up here
        raise RuntimeError(f"report would load from the network: {left[:3]}")
    atomic_write_text(html_path, body)
    return html_path
