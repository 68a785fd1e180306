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


def externalise_plotlyjs(html: str, src: str) -> tuple[str, list[str]]:
    """``html`` with every inlined copy of plotly.js replaced by ``<script src="{src}">`` (a path
    relative to the report, so it still loads offline from ``file://``), and the copies taken out
    (their script text, in order). Recorded runs share one plotly.js this way
    (``scripts/record_study.py``) instead of ~4.8 MB in every report."""
    import html as _html

    found: list[str] = []

    def sub(m: re.Match) -> str:
        body = m.group(0)
        found.append(body[body.index(">") + 1 : -len("</script>")])
        return f'<script charset="utf-8" src="{_html.escape(src)}" data-linrepro-plotlyjs="{m.group(1)}"></script>'

    return _PLOTLYJS.sub(sub, html), found


# --------------------------------------------------------------------------- the published article
# A report is an article, the executed notebook stays the record. From the notebook:
#   * the parameters cell and papermill's injected one are left out (the parameters are listed in
#     the provenance footer, from the run's params.yaml);
#   * each code cell's source is folded into a <details> ("code"), closed by default;
#   * stderr (warnings, logging, progress bars) leaves the article: progress-bar lines are dropped,
#     the rest goes to a closed "run log" at the end; absolute paths become paths relative to the
#     outputs folder or the project (the run log included);
#   * the takeaway (``results.json["takeaway"]``, markdown written by the notebook from its own
#     results) is a box under the title; a table of contents follows it, a link back to the site's
#     index comes first, and a provenance footer (hardware, seeds, n, parameters, commit) ends it.
TAKEAWAY_KEY = "takeaway"  # results.json: markdown, computed from the run's results
N_KEY = "n"  # results.json: sample sizes behind the numbers ({label: count}, a count, or a sentence)
HIDDEN_TAGS = ("parameters", "injected-parameters", "remove-cell")

_ARTICLE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block input_group -%}
<details class="lr-code"><summary>code</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""

# tqdm's bars ("Executing:  35%|███▌  | 6/17 [00:02<00:04, 2.07cell/s]", "csv val @32px: 100%|##########| 300/300")
_PROGRESS = re.compile(r"\d{1,3}%\|.*?\|\s*\d+/\d*|\|\s*\d+/\d+\s*\[\d|\d+(?:\.\d+)?\s*(?:it|s|img|cell|step)/s\]")
_SAVED = re.compile(r"^saved\s+\S*results\.json\s*$", re.M)
_SITE_PACKAGES = re.compile(r"(?:/[^\s'\"<>:]+)*/(?:site|dist)-packages/")
_PY_LIB = re.compile(r"(?:/[^\s'\"<>:]+)*/lib/python3\.\d+/")
# absolute paths a reader should never see: POSIX roots and home folders, Windows drives
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/~-])(?:/(?:tmp|home|work|root|Users|usr|var|private|builds|github|__w)/[^\s'\"<>)]*"
    r"|[A-Z]:\\\\?[^\s'\"<>]+)"
)
_NS_MATH = re.compile(r'\s*xmlns:(ns\d+)="http://www\.w3\.org/1998/Math/MathML"')


def outputs_root_of(run_dir: Path) -> Path | None:
    """The outputs folder of a run folder ``<outputs>/<profile>/<notebook>/<run-id>`` or of a
    recorded one, ``<outputs>/reference/<profile>/<notebook>/<run-id>``; None for any other folder."""
    run_dir = Path(run_dir).absolute()
    if not (run_dir / "run.json").exists() or len(run_dir.parents) < 3:
        return None
    root = run_dir.parents[2]
    return root.parent if root.name == "reference" else root


def site_index_of(run_dir: Path) -> Path | None:
    root = outputs_root_of(run_dir)
    return None if root is None else root / "site" / "index.html"


def relativiser(run_dir: Path | None):
    """``text -> text`` with the absolute paths a run prints turned relative: the outputs folder
    becomes ``outputs`` (or its path relative to the project), the project ``.``, the home ``~``,
    site-packages ``<site-packages>/``. Longest prefix first."""
    import os

    from linrepro.utils import project

    subs: list[tuple[str, str]] = []
    root = outputs_root_of(run_dir) if run_dir is not None else None
    try:
        proj = project.root().absolute()
    except FileNotFoundError:
        proj = None
    if root is not None:
        label = "outputs"
        if proj is not None and root.resolve().is_relative_to(proj.resolve()):
            label = os.path.relpath(root.resolve(), proj.resolve())
        subs += [(str(root.resolve()), label), (str(root), label)]
    if proj is not None:
        subs += [(str(proj.resolve()), "."), (str(proj), ".")]
    home = os.path.expanduser("~")
    if home not in ("/", "~"):
        subs.append((home, "~"))
    subs = sorted(set(subs), key=lambda s: -len(s[0]))

    def rel(text: str) -> str:
        text = _SITE_PACKAGES.sub("<site-packages>/", text)
        text = _PY_LIB.sub("<python>/", text)
        for old, new in subs:
            text = text.replace(old + "/", new + "/").replace(old, new)
        return text

    return rel


def is_progress_line(line: str) -> bool:
    return bool(_PROGRESS.search(line))


def _text(x) -> str:
    return "".join(x) if isinstance(x, list) else str(x)


def article_notebook(nb, rel=lambda t: t) -> tuple[object, list[str]]:
    """The notebook as the article shows it (a copy), and the run log taken out of it (lines)."""
    import copy

    nb = copy.deepcopy(nb)
    log: list[str] = []
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & set(HIDDEN_TAGS):
            continue
        if cell.cell_type == "code":
            outs = []
            for out in cell.get("outputs", []):
                if out.output_type == "stream":
                    lines = _text(out.text).replace("\r", "\n").splitlines()
                    if out.name == "stderr":
                        log += [rel(x) for x in lines if x.strip() and not is_progress_line(x)]
                        continue
                    kept = [rel(x) for x in lines if not is_progress_line(x)]
                    text = _SAVED.sub("", "\n".join(kept)).strip("\n")
                    if text.strip():
                        out.text = text + "\n"
                        outs.append(out)
                    continue
                if out.output_type == "error":
                    out.traceback = [rel(_text(t)) for t in out.get("traceback", [])]
                    out.evalue = rel(_text(out.get("evalue", "")))
                for key, val in (out.get("data") or {}).items():
                    if key.startswith("text/"):
                        out.data[key] = rel(_text(val))
                outs.append(out)
            cell.outputs = outs
        cells.append(cell)
    nb.cells = cells
    return nb, log


def _read(path: Path, kind: str):
    import json

    import yaml

    try:
        text = path.read_text()
        return yaml.safe_load(text) if kind == "yaml" else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None


def run_context(run_dir: Path | None) -> dict:
    """What the report's header and footer read from a run folder: provenance.json, params.yaml,
    run.json, results.json (each None when missing or unreadable)."""
    if run_dir is None:
        return {}
    d = Path(run_dir)
    return {
        "provenance": _read(d / "provenance.json", "json"),
        "params": _read(d / "params.yaml", "yaml"),
        "run": _read(d / "run.json", "json"),
        "results": _read(d / "results.json", "json"),
    }


def hardware_text(prov: dict | None) -> str:
    """``AMD EPYC, 2 cores, no GPU`` / ``…, 1 × NVIDIA H200 (CUDA 12.8)`` from a provenance record."""
    if not isinstance(prov, dict):
        return "not recorded"
    dev = prov.get("device") or {}
    cores = dev.get("cpu_count")
    parts = [str(dev.get("cpu") or "CPU not recorded")]
    if cores:
        parts.append(f"{cores} core{'s' if cores != 1 else ''}")
    cuda = dev.get("cuda")
    if isinstance(cuda, dict) and cuda.get("name"):
        cnt = cuda.get("count") or 1
        parts.append(
            f"{cnt} × {cuda['name']}" + (f" (CUDA {cuda['cuda_version']})" if cuda.get("cuda_version") else "")
        )
    else:
        parts.append("no GPU")
    return ", ".join(parts)


def commit_text(prov: dict | None) -> str:
    git = (prov or {}).get("git") or {}
    sha = git.get("commit")
    if not sha:
        return "not recorded"
    return sha[:10] + (" (with uncommitted changes)" if git.get("dirty") else "")


def seeds_of(params: dict | None) -> dict:
    """The seed parameters of a run (``seed``, ``seeds``, ``*_seed``)."""
    return {k: v for k, v in (params or {}).items() if k == "seeds" or k == "seed" or k.endswith("_seed")}


def n_text(n) -> str:
    if isinstance(n, dict):
        return "; ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in n.items())
    if isinstance(n, int):
        return f"{n:,}"
    return str(n)


def _value_html(v, rel) -> str:
    import html
    import json

    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return f"<code>{html.escape(rel(text))}</code>"


def footer_html(ctx: dict, nb_name: str, rel=lambda t: t) -> str:
    import html

    prov, params, meta, res = (ctx.get(k) for k in ("provenance", "params", "run", "results"))
    versions = (prov or {}).get("versions") or {}
    ver = ", ".join(
        f"{k.replace('_torch', '')} {v}"
        for k, v in versions.items()
        if v and k in ("torch", "triton", "open_clip_torch")
    )
    seeds = seeds_of(params)
    rows = [
        ("hardware", html.escape(hardware_text(prov))),
        ("seeds", ", ".join(f"{html.escape(k)} = {_value_html(v, rel)}" for k, v in seeds.items()) or "none"),
        (
            "n",
            html.escape(n_text(res[N_KEY]))
            if isinstance(res, dict) and res.get(N_KEY) is not None
            else "see the tables",
        ),
        ("commit", f"<code>{html.escape(commit_text(prov))}</code>"),
        (
            "run",
            html.escape(
                f"{(meta or {}).get('profile', '?')} profile, started {(meta or {}).get('started', '?')}"
                + (f", python {prov['python']}" if (prov or {}).get("python") else "")
                + (f", {ver}" if ver else "")
            ),
        ),
        (
            "record",
            f'<a href="{html.escape(nb_name)}">{html.escape(nb_name)}</a> (the executed notebook: every cell, '
            "code and output)",
        ),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    plist = "".join(f"<li>{html.escape(k)} = {_value_html(v, rel)}</li>" for k, v in (params or {}).items())
    params_html = (
        f"<details class=lr-params><summary>parameters ({len(params or {})})</summary><ul>{plist}</ul></details>"
        if params
        else "<p>parameters: not recorded</p>"
    )
    return f'<footer class="lr-footer" id="provenance"><h2>Provenance</h2><table>{table}</table>{params_html}</footer>'


def toc_html(body: str) -> str:
    """A table of contents from the article's h2/h3 headings (their ids are nbconvert's anchors)."""
    import html as _html

    items = []
    for m in re.finditer(r'<h([23]) id="([^"]+)"[^>]*>(.*?)</h\1>', body, re.S):
        level, hid, inner = m.groups()
        inner = re.sub(r'<a class="anchor-link".*?</a>', "", inner, flags=re.S)
        items.append(f'<li class="lr-toc-h{level}"><a href="#{_html.escape(hid, quote=True)}">{inner}</a></li>')
    if not items:
        return ""
    return '<nav class="lr-toc"><b>Contents</b><ul>' + "".join(items) + "</ul></nav>"


ARTICLE_CSS = """
<style>
.lr-top{font:14px system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 0 .5rem 0}
.lr-takeaway{border:2px solid #0072B2;border-radius:8px;background:#f0f7fc;padding:.6rem 1rem !important;margin:.5rem 0}
.lr-toc{font:14px system-ui,-apple-system,Segoe UI,Roboto,sans-serif;border-left:3px solid #d0d7de;padding:.2rem 1rem;margin:.8rem 0}
.lr-toc ul{margin:.2rem 0;padding-left:1rem} .lr-toc li{list-style:none} .lr-toc .lr-toc-h3{margin-left:1rem;font-size:.95em}
details.lr-code>summary{cursor:pointer;color:#656d76;font:12px ui-monospace,monospace;margin:.1rem 0 .1rem 1.5rem}
details.lr-code:not([open])>summary{list-style-position:inside}
.lr-footer{font:13px system-ui,-apple-system,Segoe UI,Roboto,sans-serif;border-top:1px solid #d0d7de;margin-top:2rem;padding-top:.5rem;color:#1f2328}
.lr-footer table{border-collapse:collapse} .lr-footer th{text-align:left;padding:.15rem 1rem .15rem 0;vertical-align:top}
.lr-footer td{text-align:left;padding:.15rem 0}
details.lr-log pre{max-height:30rem;overflow:auto;background:#f6f8fa;padding:.5rem;font-size:12px}
.jp-RenderedHTMLCommon td,.jp-RenderedHTMLCommon th{text-align:left}
.jp-RenderedHTMLCommon td.num{text-align:right}
.jp-RenderedHTMLCommon table{table-layout:auto}
</style>
"""


def notebook_to_html(nb_path: Path, html_path: Path, title: str | None = None, article: bool = True) -> Path:
    """The report: plotly.js once in ``<head>`` (if the notebook has plotly figures) whether or not
    the notebook still inlines it, MathML for LaTeX, nothing loaded from the network. With
    ``article`` (the default) it is published as an article (see the comment above
    :data:`TAKEAWAY_KEY`); the context (takeaway, provenance, back link) is read from
    ``html_path``'s folder when it is a run folder."""
    import html as _html
    import os

    import jinja2
    from nbconvert import HTMLExporter

    from linrepro.utils.io import atomic_write_text

    nb = nbformat.read(nb_path, as_version=4)
    strip_plotlyjs(nb)  # a notebook not stripped yet (JupyterLab, older runs): its copy goes too
    run_dir = Path(html_path).absolute().parent
    ctx = run_context(run_dir) if article else {}
    rel = relativiser(run_dir) if article else (lambda t: t)
    log: list[str] = []
    if article:
        nb, log = article_notebook(nb, rel)
        res = ctx.get("results")
        take = res.get(TAKEAWAY_KEY) if isinstance(res, dict) else None
        first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
        extra = []
        if take:
            extra.append(
                nbformat.v4.new_markdown_cell(
                    "**What this run found.** " + rel(str(take)), metadata={"tags": ["takeaway", "lr-takeaway"]}
                )
            )
        extra.append(nbformat.v4.new_markdown_cell("<!--linrepro-toc-->"))
        nb.cells[first_md + 1 : first_md + 1] = extra
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = latex_to_mathml(cell.source)
        for out in cell.get("outputs", []):  # display(Markdown(...)): computed sentences with math
            data = out.get("data") or {}
            if "text/markdown" in data:
                data["text/markdown"] = latex_to_mathml(_text(data["text/markdown"]))
    if article:
        exporter = HTMLExporter(
            template_name="lab", extra_loaders=[jinja2.DictLoader({"linrepro_article.html.j2": _ARTICLE_TEMPLATE})]
        )
        exporter.template_file = "linrepro_article.html.j2"
    else:
        exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    resources = {"metadata": {"name": title or nb_path.stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    body = _REMOTE_SCRIPT.sub("", body)
    body = _REMOTE_LINK.sub("", body)
    body = fix_mathml_namespaces(body)
    if article:
        body = body.replace("celltag_lr-takeaway", "lr-takeaway")
        body = body.replace("<!--linrepro-toc-->", toc_html(body), 1)
        index = site_index_of(run_dir)
        top = '<div class="lr-top">'
        if index is not None:
            top += (
                f'<a href="{_html.escape(os.path.relpath(index, run_dir))}">← all reports and the claims ledger</a> · '
            )
        top += _html.escape(title or nb_path.stem) + "</div>"
        body = re.sub(r"(<main>)", lambda m: m.group(1) + top, body, count=1)
        tail = footer_html(ctx, nb_path.name, rel)
        if log:
            tail += (
                f"<details class=lr-log><summary>run log ({len(log)} lines: warnings and messages the "
                f"notebook wrote to stderr)</summary><pre>{_html.escape(chr(10).join(log))}</pre></details>"
            )
        body = body.replace("</main>", tail + "</main>", 1)
        head = body.find("</head>")
        body = body[:head] + ARTICLE_CSS + body[head:]
    if has_plotly_figures(nb):  # before any figure's script runs Plotly.newPlot
        head = body.find("</head>")
        body = (body[:head] + plotlyjs_script() + body[head:]) if head >= 0 else plotlyjs_script() + body
    left = remote_resources(body)
    if left:  # pragma: no cover - a template change would show up here
        raise RuntimeError(f"report would load from the network: {left[:3]}")
    atomic_write_text(html_path, body)
    return html_path


def fix_mathml_namespaces(body: str) -> str:
    """nbconvert re-serialises headings through ElementTree, which writes their MathML as
    ``<ns0:math xmlns:ns0=…>``: an HTML page does not know that prefix, so the heading shows
    ``O(N2D)`` with its superscripts lost. Back to plain ``<math xmlns=…>`` elements."""
    for prefix in set(_NS_MATH.findall(body)):
        body = body.replace(f' xmlns:{prefix}="http://www.w3.org/1998/Math/MathML"', "")
        body = body.replace(f"<{prefix}:math", '<math xmlns="http://www.w3.org/1998/Math/MathML"')
        body = body.replace(f"<{prefix}:", "<").replace(f"</{prefix}:", "</")
    return body
