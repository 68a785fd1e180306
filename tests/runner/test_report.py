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
