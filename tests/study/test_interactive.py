"""JupyterLab sessions: the interactive.yaml overlay and the plotly renderer of setup_notebook.

The overlay sets parameters for a notebook opened in JupyterLab (jupyter_server names it in
``JPY_SESSION_NAME``) without touching the committed defaults; a recorded run (``LINREPRO_RUN_DIR``)
or papermill never reads it. The browser test (tests/runner/test_lab_browser.py) runs it for real."""

import shutil
from pathlib import Path

import pytest

from linrepro.study import runs

ROOT = Path(__file__).resolve().parents[2]
NB = "01_kernel_derivation"


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    shutil.copytree(ROOT / "params", root / "params")
    (root / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / f"{NB}.py", root / "notebooks")
    monkeypatch.setenv("LINREPRO_ROOT", str(root))
    monkeypatch.setenv("LINREPRO_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.delenv("LINREPRO_RUN_DIR", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    return root


def _defaults() -> dict:
    """The notebook's parameters cell, executed: what the kernel's namespace holds before setup_notebook()."""
    import jupytext

    nb = jupytext.read(ROOT / "notebooks" / f"{NB}.py")
    ns: dict = {}
    exec(next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])), ns)
    ns.pop("__builtins__")
    return ns


def test_no_file_changes_nothing(project):
    ns = _defaults()
    assert runs.interactive_overlay(NB, ns) == ""
    assert ns == _defaults()


def test_profile_then_per_notebook_values(project):
    import yaml

    (project / "interactive.yaml").write_text(f"profile: smoke\n{NB}:\n  n_queries: 8\n  seed: 3\n")
    ns = _defaults()
    msg = runs.interactive_overlay(NB, ns)
    smoke = yaml.safe_load((project / "params" / "smoke" / f"{NB}.yaml").read_text())
    expected = {**_defaults(), **smoke, "n_queries": 8, "seed": 3}
    assert ns == expected
    assert msg.startswith(f"interactive.yaml (profile smoke; {NB}: n_queries, seed) sets ")
    assert "n_queries = 8" in msg and f"check_ns = {smoke['check_ns']!r}" in msg
    # an int where the default is a float is taken as a float; the notebook file is untouched
    (project / "interactive.yaml").write_text(f"{NB}:\n  score_scale: 1\n")
    ns = _defaults()
    runs.interactive_overlay(NB, ns)
    assert ns["score_scale"] == 1.0 and isinstance(ns["score_scale"], float)
    assert (project / "notebooks" / f"{NB}.py").read_text() == (ROOT / "notebooks" / f"{NB}.py").read_text()


def test_another_notebooks_section_is_left_alone(project):
    (project / "interactive.yaml").write_text("02_attention_timing:\n  heads: 2\n")
    ns = _defaults()
    assert runs.interactive_overlay(NB, ns) == "" and ns == _defaults()


@pytest.mark.parametrize(
    "text, match",
    [
        (f"{NB}:\n  n_querys: 8\n", "has no parameter 'n_querys'. Did you mean 'n_queries'"),
        (f"{NB}:\n  n_queries: eight\n", "parameter 'n_queries' must be int, got str 'eight'"),
        (f"{NB}:\n  check_ns: 7\n", "parameter 'check_ns' must be list, got int 7"),
        ("profile: nope\n", "unknown profile 'nope'; profiles: cpu, h200, paper, smoke"),
        ("profile: h200\n", f"profile 'h200' has no parameter file for {NB}"),
        (f"{NB}: [1, 2]\n", "expected a mapping of parameter: value"),
        ("profile: [smoke\n", "malformed YAML"),
        ("- smoke\n", "expected a mapping"),
    ],
)
def test_a_bad_overlay_names_what_is_wrong(project, text, match):
    (project / "interactive.yaml").write_text(text)
    ns = _defaults()
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")) as e:
        runs.interactive_overlay(NB, ns)
    assert str(project / "interactive.yaml") in str(e.value)
    assert ns == _defaults()  # nothing applied


def _setup_in(namespace: dict) -> None:
    exec("from linrepro.study.runs import setup_notebook\nsetup_notebook()", namespace)


def test_setup_notebook_in_jupyterlab_applies_the_overlay_and_inlines_no_plotlyjs(project, monkeypatch, capsys):
    import plotly.io as pio

    (project / "interactive.yaml").write_text(f"{NB}:\n  n_queries: 8\n")
    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    monkeypatch.setenv("JPY_SESSION_NAME", f"notebooks/{NB}.py")  # what jupyter_server gives the kernel
    ns = _defaults()
    _setup_in(ns)
    assert ns["n_queries"] == 8
    assert "interactive.yaml" in capsys.readouterr().out
    assert pio.renderers.default == "plotly_mimetype"  # JupyterLab draws from the plotly JSON

    # papermill, nbmake or python: no Jupyter session, the overlay is not read
    monkeypatch.delenv("JPY_SESSION_NAME")
    ns = _defaults()
    _setup_in(ns)
    assert ns["n_queries"] == _defaults()["n_queries"]
    # a session of a notebook that is not one of notebooks/ (a scratch notebook)
    monkeypatch.setenv("JPY_SESSION_NAME", "scratch/Untitled.ipynb")
    ns = _defaults()
    _setup_in(ns)
    assert ns["n_queries"] == _defaults()["n_queries"]


def test_a_recorded_run_never_reads_the_overlay_and_keeps_offline_figures(project, monkeypatch, tmp_path):
    import plotly.io as pio

    (project / "interactive.yaml").write_text(f"{NB}:\n  n_queries: 8\n")
    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    monkeypatch.setenv("JPY_SESSION_NAME", f"notebooks/{NB}.py")
    monkeypatch.setenv("LINREPRO_RUN_DIR", str(tmp_path / "run"))
    ns = _defaults()
    _setup_in(ns)
    assert ns["n_queries"] == _defaults()["n_queries"]
    # each figure's HTML too, for the report (linrepro.runner.report embeds plotly.js once)
    assert pio.renderers.default == "plotly_mimetype+notebook"
