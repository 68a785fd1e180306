from linrepro.runner.report import remote_resources
from linrepro.utils.mathml import latex_to_mathml


def test_latex_becomes_mathml():
    out = latex_to_mathml(r"Inline $\hat q \cdot \hat k$ and display $$O(N^2 D)$$ and a price \$5.")
    assert out.count("<math") == 2 and "$" not in out.replace(r"\$", "")
    assert 'display="block"' in out


def test_remote_resources_are_found():
    html = (
        '<script src="https://cdn.example/require.js"></script><script>var a=1</script>'
        '<link rel="stylesheet" href="//fonts.example/x.css">'
    )
    assert len(remote_resources(html)) == 2
    assert remote_resources("<script>inline()</script><script src='local.js'></script>") == []


# ------------------------------------------------------------------ plotly.js: once per run, in the report
def _plotly_notebook():
    """A notebook whose outputs are what `plotly_mimetype+notebook` writes: one output inlining
    plotly.js (the renderer's activate step), then the figure (plotly JSON + HTML)."""
    import nbformat
    import plotly.graph_objects as go
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    init = (
        f"<script>\nwindow.PlotlyConfig = {{MathJaxConfig: 'local'}};\n</script>\n<script>{get_plotlyjs()}</script>\n"
    )
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0, 1, 4]))
    bundle = {**pio.renderers["plotly_mimetype"].to_mimebundle(fig), **pio.renderers["notebook"].to_mimebundle(fig)}
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig.show()")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": init}),
        nbformat.v4.new_output("display_data", data=bundle),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# plots"), cell]
    return nb


def test_stored_notebook_drops_plotlyjs_and_keeps_the_figure(tmp_path):
    import nbformat

    from linrepro.runner.report import PLOTLYJS_PLACEHOLDER, strip_plotlyjs_file

    p = tmp_path / "nb.ipynb"
    nbformat.write(_plotly_notebook(), p)
    assert p.stat().st_size > 3_000_000 and p.read_text().count("plotly.js v") == 1
    assert strip_plotlyjs_file(p) == 1
    text = p.read_text()
    assert "plotly.js v" not in text and p.stat().st_size < 100_000
    init, out = nbformat.read(p, as_version=4).cells[1].outputs
    assert init.data["text/html"].count(PLOTLYJS_PLACEHOLDER.split("{")[0]) == 1
    assert out.data["application/vnd.plotly.v1+json"]["data"][0]["y"] == [0, 1, 4]  # JupyterLab still draws it
    assert "Plotly.newPlot" in out.data["text/html"]
    assert strip_plotlyjs_file(p) == 0  # idempotent


def test_report_embeds_plotlyjs_once_before_the_figures(tmp_path):
    """From a stripped notebook and from one that still inlines plotly.js alike: exactly one copy,
    in <head>, so the report alone (copied anywhere) draws its figures with no network."""
    import nbformat

    from linrepro.runner.report import notebook_to_html, strip_plotlyjs

    full, stripped = _plotly_notebook(), _plotly_notebook()
    strip_plotlyjs(stripped)
    for name, nb in (("full", full), ("stripped", stripped)):
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
        html = notebook_to_html(tmp_path / f"{name}.ipynb", tmp_path / f"{name}.html").read_text()
        assert html.count("plotly.js v") == 1, name
        assert html.index("plotly.js v") < html.index("</head>") < html.index("Plotly.newPlot"), name
        assert remote_resources(html) == [] and "<script src" not in html, name
    no_plots = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("text only")])
    nbformat.write(no_plots, tmp_path / "text.ipynb")
    assert "plotly.js v" not in notebook_to_html(tmp_path / "text.ipynb", tmp_path / "text.html").read_text()


# ------------------------------------------------------------------ published reports are articles
import json  # noqa: E402
import re  # noqa: E402


def _run_folder(root, layout=("smoke", "01_demo", "20260101-000000-abcdef")):
    """A run folder as the runner leaves it (run.json, params.yaml, provenance.json, results.json)
    and an executed notebook with what made reports read like dumps: the parameters cells, stderr
    (a warning and a tqdm bar), an absolute path, a `saved …/results.json` line, math in a
    heading and in a displayed Markdown output."""
    import nbformat
    import yaml

    run = root.joinpath(*layout)
    run.mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps(
            {"notebook": "01_demo", "profile": "smoke", "status": "running", "started": "2026-01-01T00:00:00+00:00"}
        )
    )
    (run / "params.yaml").write_text(yaml.safe_dump({"seed": 7, "n_queries": 16, "train_run": str(root / "x")}))
    (run / "provenance.json").write_text(
        json.dumps(
            {
                "git": {"commit": "0123456789abcdef", "dirty": False},
                "python": "3.11.7",
                "versions": {"torch": "2.0", "open_clip_torch": "3.3.0"},
                "device": {"cpu": "Test CPU 9000", "cpu_count": 2, "cuda": None},
            }
        )
    )
    (run / "results.json").write_text(
        json.dumps({"takeaway": "The weight decays as $N^{-0.99}$ [0.9, 1.1].", "n": {"queries": 16}})
    )
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell("# Parameters\nseed = 7\n", metadata={"tags": ["injected-parameters"]})
    work = nbformat.v4.new_code_cell("do_work()")
    work.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="WARNING:root:No pretrained weights loaded\n"),
        nbformat.v4.new_output(
            "stream", name="stderr", text="csv val @32px:  40%|####      | 40/100 [00:01<00:02, 30.0img/s]\r"
        ),
        nbformat.v4.new_output("stream", name="stdout", text=f"data in {run / 'data'}\nsaved {run / 'results.json'}\n"),
        nbformat.v4.new_output("display_data", data={"text/markdown": "slope $N^{-0.52}$", "text/plain": "x"}),
    ]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · Demo\n\nIntro."),
        params,
        injected,
        nbformat.v4.new_markdown_cell("## 6 · FLOPs: $O(N^2 D)$ against $O(N D^2)$"),
        work,
        nbformat.v4.new_markdown_cell("### A subsection"),
    ]
    nbformat.write(nb, run / "01_demo.ipynb")
    return run


def _visible(html):
    """The report without its scripts and style sheets: what a reader can see (and select)."""
    return re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)


def test_report_is_an_article(tmp_path):
    from linrepro.runner.report import ABSOLUTE_PATH, notebook_to_html

    run = _run_folder(tmp_path / "outputs")
    html = notebook_to_html(run / "01_demo.ipynb", run / "report.html", title="01_demo · smoke").read_text()
    seen = _visible(html)
    # parameters: not shown as code, listed in the footer
    assert "# Parameters" not in seen and "seed = 0" not in seen
    assert "seed = <code>7</code>" in seen and "n_queries = <code>16</code>" in seen
    # stderr: no stderr block, no progress bar; the warning kept in a closed run log
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html
    assert "40/100" not in html and "img/s" not in html
    log = re.search(r"<details class=lr-log>.*?</details>", html, re.S).group(0)
    assert "No pretrained weights loaded" in log and "open" not in log.split(">")[0]
    # no absolute path anywhere a reader sees (the params' train_run included), no "saved …" line
    assert ABSOLUTE_PATH.findall(seen) == [] and str(tmp_path) not in seen
    assert "saved" not in seen and "outputs/smoke/01_demo/20260101-000000-abcdef/data" in seen
    # code folded away
    assert re.search(r'<details class="lr-code"><summary>code</summary>\s*<div class="jp-Cell-inputWrapper"', html)
    # the takeaway box under the title, then the contents, then the sections
    take = seen.index("lr-takeaway")
    assert seen.index("<h1") < take < seen.index('class="lr-toc"') < seen.index('<h2 id="6')
    assert "What this run found." in seen and "<msup>" in seen[take : seen.index('class="lr-toc"')]
    toc = re.search(r'<nav class="lr-toc">.*?</nav>', seen, re.S).group(0)
    assert 'href="#6' in toc and "A subsection" in toc
    # computed Markdown outputs get MathML too
    assert "$N^{-0.52}$" not in seen
    # the back link goes to the site's index, the footer says where the numbers came from
    assert '<a href="../../../site/index.html">' in seen
    foot = seen[seen.index('<footer class="lr-footer"') :]
    for text in ("Test CPU 9000, 2 cores, no GPU", "0123456789", "queries: 16", "01_demo.ipynb", "smoke profile"):
        assert text in foot, text


def test_heading_math_keeps_its_superscripts(tmp_path):
    """nbconvert writes a heading's MathML as <ns0:math>, which an HTML page shows as 'O(N2D)'."""
    from linrepro.runner.report import notebook_to_html

    run = _run_folder(tmp_path / "outputs")
    for article in (True, False):
        html = notebook_to_html(run / "01_demo.ipynb", run / f"r{article}.html", article=article).read_text()
        head = re.search(r'<h2 id="6.*?</h2>', html, re.S).group(0)
        assert (
            "ns0:" not in html
            and head.count("<msup>") == 2
            and '<math xmlns="http://www.w3.org/1998/Math/MathML"' in head
        )


def test_recorded_reference_run_links_back_to_the_index(tmp_path):
    from linrepro.runner.report import notebook_to_html, site_index_of

    run = _run_folder(tmp_path / "outputs", ("reference", "cpu", "01_demo", "20260101-000000-abcdef"))
    html = notebook_to_html(run / "01_demo.ipynb", run / "report.html").read_text()
    assert '<a href="../../../../site/index.html">' in html
    assert site_index_of(run) == (tmp_path / "outputs" / "site" / "index.html")
    assert site_index_of(tmp_path) is None  # not a run folder: no back link to guess


def test_progress_lines_are_recognised():
    from linrepro.runner.report import is_progress_line

    assert is_progress_line("Executing:  35%|███▌      | 6/17 [00:02<00:04,  2.07cell/s]")
    assert is_progress_line("throughput: 100%|##########| 8/8 [00:03<00:00,  2.50it/s]")
    assert not is_progress_line("WARNING:root:No pretrained weights loaded")
    assert not is_progress_line("top-1 improved by 35% | 6 of 17 domains")


def test_plotlyjs_can_be_shared_by_a_relative_script(tmp_path):
    from linrepro.runner.report import externalise_plotlyjs, plotlyjs_script

    inline = plotlyjs_script()  # the real library, as every report embeds it
    page = f"<html><head>{inline}</head><body><script>Plotly.newPlot('x', [])</script></body></html>"
    new, found = externalise_plotlyjs(page, "../../plotly.min.js")
    assert len(found) == 1 and found[0].startswith("/**") and "plotly.js v" in found[0][:40]
    assert len(new) < 1000 and '<script charset="utf-8" src="../../plotly.min.js"' in new
    assert "window.PlotlyConfig" in new and "Plotly.newPlot('x', [])" in new
    assert not remote_resources(new)  # a relative file, nothing from the network
    assert externalise_plotlyjs(new, "x.js") == (new, [])  # nothing left to take out
