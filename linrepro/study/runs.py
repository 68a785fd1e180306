"""The notebook side of a run: where to write, and writing results atomically.

The runner sets ``LINREPRO_RUN_DIR`` for the kernel. In JupyterLab (no runner) results go to
``outputs/interactive/<notebook>/``, so exploring never touches a recorded run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from linrepro.utils import project
from linrepro.utils.io import atomic_write_text, write_json  # noqa: F401 - notebooks import them from here


def run_dir(notebook: str = "interactive") -> Path:
    env = os.environ.get("LINREPRO_RUN_DIR")
    d = Path(env) if env else project.outputs_dir() / "interactive" / notebook
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_results(results: dict, notebook: str = "interactive") -> Path:
    """Write ``results.json`` into this run's folder and return its path."""
    path = run_dir(notebook) / "results.json"
    write_json(path, results)
    return path


def setup_notebook() -> None:
    """Call at the top of a notebook: plotly renders in JupyterLab and in offline HTML reports."""
    import plotly.io as pio

    # mimetype for JupyterLab, 'notebook' (connected=False) adds each figure's HTML for nbconvert
    # and inlines plotly.js once; a recorded run's stored .ipynb drops that copy and its report.html
    # embeds plotly.js itself (linrepro.runner.report). The default renderer makes nbconvert drop figures.
    pio.renderers.default = "plotly_mimetype+notebook"


def outputs_root() -> Path:
    """The outputs folder of the current run (the runner's ``--out`` included), else the project's."""
    env = os.environ.get("LINREPRO_RUN_DIR")
    if env and len(Path(env).parents) >= 3:
        return Path(env).parents[2]
    return project.outputs_dir()


def current_profile(default: str = "cpu") -> str:
    return os.environ.get("LINREPRO_PROFILE") or default


def finished_runs(parent: Path) -> list[Path]:
    """Run folders under ``parent`` whose run.json says ``ok`` and that have a results.json, oldest
    first (run ids start with a timestamp)."""
    done = []
    for d in sorted(Path(parent).iterdir()) if Path(parent).is_dir() else []:
        try:
            ok = json.loads((d / "run.json").read_text()).get("status") == "ok"
        except (OSError, ValueError):
            ok = False
        if ok and (d / "results.json").is_file():
            done.append(d)
    return done


def find_run(notebook: str, run: str | None = None, profile: str | None = None) -> Path:
    """A finished run folder of ``notebook``: ``run`` if given (a path), else the latest one with
    status ``ok`` under ``outputs/<profile>/<notebook>/`` (profile: this run's, else ``cpu``)."""
    if run:
        p = Path(run)
        p = p if p.is_absolute() else project.root() / p
        if not (p / "results.json").is_file():
            raise FileNotFoundError(f"{p} is not a finished {notebook} run (it has no results.json)")
        return p
    profile = profile or current_profile()
    parent = outputs_root() / profile / notebook
    done = finished_runs(parent)
    if not done:
        raise FileNotFoundError(
            f"no finished {notebook} run under {parent}. Run `linrepro run {notebook} --profile {profile}` "
            f"first, or pass the folder of one as a parameter."
        )
    return done[-1]


def load_results(run: Path) -> dict:
    return json.loads((Path(run) / "results.json").read_text())
