"""Every notebook under the smoke profile, through the real CLI (papermill underneath)."""

import json
from pathlib import Path

import pytest

from linrepro.runner.execute import profile_notebooks
from linrepro.runner.report import remote_resources

ROOT = Path(__file__).resolve().parents[2]
SMOKE = profile_notebooks("smoke")


def test_every_notebook_has_a_smoke_and_cpu_profile():
    from linrepro.utils.project import list_notebooks

    assert list_notebooks(), "no notebooks found"
    assert SMOKE == list_notebooks()
    assert profile_notebooks("cpu") == list_notebooks()


def test_cpu_profile_matches_parameter_defaults():
    """One source for each fact: the parameters cell's defaults are the cpu profile."""
    import yaml

    from linrepro.runner.params import notebook_params

    for stem in profile_notebooks("cpu"):
        schema = notebook_params(ROOT / "notebooks" / f"{stem}.py")
        prof = yaml.safe_load((ROOT / "params" / "cpu" / f"{stem}.yaml").read_text()) or {}
        for key, value in prof.items():
            assert schema[key].default == value, f"{stem}: {key} default {schema[key].default!r} != cpu {value!r}"


@pytest.mark.notebook
@pytest.mark.parametrize("stem", SMOKE)
def test_smoke_profile_runs(stem, smoke_outputs):
    """Each notebook's run in the shared `linrepro reproduce --profile smoke` (the real CLI)."""
    runs = list((smoke_outputs["dir"] / "smoke" / stem).iterdir())
    assert len(runs) == 1, smoke_outputs["log"]
    run = runs[0]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "ok", f"{meta.get('error')}\n{smoke_outputs['log']}"
    assert json.loads((run / "results.json").read_text())
    html = (run / "report.html").read_text()
    assert "Plotly.newPlot" in html
    assert html.count("plotly.js v") == 1  # plotly.js inlined exactly once
    # ... and stored nowhere else in the run: the executed notebook keeps its figures' plotly JSON
    stored = (run / f"{stem}.ipynb").read_text()
    assert "plotly.js v" not in stored and "application/vnd.plotly.v1+json" in stored
    assert len(stored) < 2_000_000, f"{stem}.ipynb is {len(stored):,} bytes"
    assert remote_resources(html) == []
    if "$" in (ROOT / "notebooks" / f"{stem}.py").read_text():
        assert "<math" in html  # LaTeX became MathML, no MathJax needed


@pytest.mark.notebook
def test_smoke_reproduce_exits_zero_and_builds_the_site(smoke_outputs):
    assert smoke_outputs["returncode"] == 0, smoke_outputs["log"]
    assert (smoke_outputs["dir"] / "site" / "index.html").exists()


def test_papermill_reads_every_parameter(tmp_path, monkeypatch):
    """papermill's own parser trips on '=' inside a parameter's comment and then warns that the
    parameter is unknown; keep parameter cells in the form it reads."""
    import papermill as pm

    from linrepro.runner.execute import _to_ipynb
    from linrepro.runner.params import notebook_params

    monkeypatch.setenv("LINREPRO_OUTPUTS", str(tmp_path / "outputs"))  # nothing lands in the repo's outputs/
    for stem in profile_notebooks("cpu"):
        nb = ROOT / "notebooks" / f"{stem}.py"
        tmp = tmp_path / f"{stem}.inspect.ipynb"
        _to_ipynb(nb, tmp)
        seen = set(pm.inspect_notebook(str(tmp)))
        assert seen == set(notebook_params(nb)), stem
    assert not (tmp_path / "outputs").exists()
