"""Offline HTML reports from executed notebooks (nbconvert), readable with no network.

* plotly figures: the notebook renders with ``plotly_mimetype+notebook``: every figure has its
  ``application/vnd.plotly.v1+json`` data (JupyterLab draws it) and an HTML version (the report
  shows it), and the ``notebook`` renderer inlines plotly.js (~4.8 MB) once per notebook.
  The runner takes that copy out of the stored ``.ipynb`` (:func:`strip_plotlyjs_file`: a
  short placeholder script stays), and :func:`notebook_to_html` embeds plotly.js, from the
  installed ``plotly`` package, once in the report's ``<head>``. So a run folder stores plotly.js
  once, not twice, and its ``report.html`` stays self-contained: copied anywhere on its own, it
  still draws every figure offline.
* math: LaTeX in markdown cells is converted to MathML (``latex2mathml``) before export,
  so no MathJax is fetched; browsers render MathML natively.
* every ``<script src="http…">`` nbconvert's template would add (require.js, MathJax) is
  removed, and the result is checked to load nothing from the network.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from linrepro.utils.mathml import latex_to_mathml

_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>\s*</script>", re.I)
_REMOTE_LINK = re.compile(r"<link[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>", re.I)
# the inlined library as plotly's notebook renderer writes it: <script>/**\n* plotly.js vX.Y.Z\n…</script>
_PLOTLYJS = re.compile(r"<script[^>]*>\s*/\*\*?\s*\*?\s*plotly\.js v([0-9][\w.+-]*).*?</script>", re.S)
PLOTLYJS_PLACEHOLDER = (
    '<script data-linrepro-plotlyjs="{version}">/* plotly.js {version} is left out of the '
    "stored notebook: report.html embeds it, and JupyterLab draws the figures from their "
    "application/vnd.plotly.v1+json data (linrepro.runner.report.strip_plotlyjs) */</script>"
)
_PLOTLY_MIME = "application/vnd.plotly.v1+json"


def remote_resources(html: str) -> list[str]:
    """Script or stylesheet tags that would load from the network."""
    return _REMOTE_SCRIPT.findall(html) + _REMOTE_LINK.findall(html)


def _html_outputs(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if "text/html" in data:
                yield out, data


def strip_plotlyjs(nb) -> int:
    """Replace every inlined copy of plotly.js in the notebook's HTML outputs with a short
    placeholder script (in place). The figures' own outputs, their plotly JSON included, are
    untouched. Returns the number of copies removed."""
    n = 0
    for _, data in _html_outputs(nb):
        html = data["text/html"]
        if isinstance(html, list):
            html = "".join(html)
        if "plotly.js v" not in html:
            continue
        new, k = _PLOTLYJS.subn(lambda m: PLOTLYJS_PLACEHOLDER.format(version=m.group(1)), html)
        if k:
            data["text/html"] = new
            n += k
    return n


def strip_plotlyjs_file(nb_path: Path) -> int:
    """:func:`strip_plotlyjs` on a stored notebook, rewritten in place (atomically) if it held any."""
    from linrepro.utils.io import atomic_write_text

    nb = nbformat.read(nb_path, as_version=4)
    n = strip_plotlyjs(nb)
    if n:
        atomic_write_text(Path(nb_path), nbformat.writes(nb))
    return n


def has_plotly_figures(nb) -> bool:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if _PLOTLY_MIME in data or "Plotly.newPlot" in str(data.get("text/html", "")):
                return True
    return False


def plotlyjs_script() -> str:
    """plotly.js from the installed ``plotly`` package, with the config plotly's notebook renderer sets."""
    from plotly.offline import get_plotlyjs

    return (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script charset="utf-8">{get_plotlyjs()}</script>\n'
    )


def notebook_to_html(nb_path: Path, html_path: Path, title: str | None = None) -> Path:
    """The report: plotly.js once in ``<head>`` (if the notebook has plotly figures) whether or not
    the notebook still inlines it, MathML for LaTeX, nothing loaded from the network."""
    from nbconvert import HTMLExporter

    from linrepro.utils.io import atomic_write_text

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = latex_to_mathml(cell.source)
    strip_plotlyjs(nb)  # a notebook not stripped yet (JupyterLab, older runs): its copy goes too
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    resources = {"metadata": {"name": title or nb_path.stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    body = _REMOTE_SCRIPT.sub("", body)
    body = _REMOTE_LINK.sub("", body)
    if has_plotly_figures(nb):  # before any figure's script runs Plotly.newPlot
        head = body.find("</head>")
        body = (body[:head] + plotlyjs_script() + body[head:]) if head >= 0 else plotlyjs_script() + body
    left = remote_resources(body)
    if left:  # pragma: no cover - a template change would show up here
        raise RuntimeError(f"report would load from the network: {left[:3]}")
    atomic_write_text(html_path, body)
    return html_path
