"""Run a notebook under a profile: validate, execute with papermill, record, report.

Every run gets its own folder ``<outputs>/<profile>/<notebook>/<run-id>/`` holding
``run.json`` (status), ``params.yaml``, ``provenance.json``, the executed ``.ipynb`` (without
the copy of plotly.js plotly inlines: ``report.html`` embeds it, see :mod:`linrepro.runner.report`),
``report.html`` and whatever the notebook saved (``results.json``). ``run.json`` says
``running`` until the end, then ``ok`` or ``failed`` with the error: a failed run
never looks like a success.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import secrets
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from linrepro.runner import params as _params
from linrepro.utils import project, provenance
from linrepro.utils.io import atomic_write_text, write_json


@dataclass
class Run:
    notebook: str
    profile: str
    run_id: str
    path: Path
    status: str
    error: str | None = None
    duration_s: float | None = None


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@contextlib.contextmanager
def _env(**kw: str):
    old = {k: os.environ.get(k) for k in kw}
    os.environ.update(kw)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _to_ipynb(src: Path, dest: Path) -> None:
    import jupytext
    import nbformat

    nb = jupytext.read(src) if src.suffix == ".py" else nbformat.read(src, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, dest)


def _strip_plotlyjs(executed: Path, log=print) -> None:
    """The stored notebook keeps its figures (plotly JSON and HTML) but not plotly.js itself."""
    if not executed.exists():
        return
    try:
        from linrepro.runner.report import strip_plotlyjs_file

        strip_plotlyjs_file(executed)
    except Exception as e:  # noqa: BLE001 - a larger notebook is no reason to fail a run
        log(f"[linrepro] could not strip plotly.js from {executed.name}: {type(e).__name__}: {e}")


def prepare(notebook: str, profile: str, overrides: dict[str, Any] | None = None) -> tuple[Path, dict]:
    """Resolve and validate; raises FileNotFoundError/ParamError before anything runs."""
    nb_path = project.resolve_notebook(notebook)
    values = _params.resolve(nb_path, profile, overrides or {})
    return nb_path, values


def execute(
    nb_path: Path, values: dict, profile: str, out_root: Path | None = None, progress: bool = True, log=print
) -> Run:
    stem = nb_path.stem
    out_root = Path(out_root) if out_root else project.outputs_dir()
    parent = out_root / profile / stem
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id()
        path = parent / run_id
        try:
            path.mkdir()
            break
        except FileExistsError:  # pragma: no cover - two runs in one second with the same token
            continue
    started = time.time()
    meta = {
        "notebook": stem,
        "profile": profile,
        "run_id": run_id,
        "status": "running",
        "started": provenance.now_utc(),
        "source": str(nb_path),
    }
    write_json(path / "run.json", meta)
    atomic_write_text(path / "params.yaml", yaml.safe_dump(values, sort_keys=False))
    write_json(path / "provenance.json", provenance.collect())
    log(f"[linrepro] {stem} · profile {profile} → {path}")

    import papermill as pm

    src = path / f".{stem}.input.ipynb"
    executed = path / f"{stem}.ipynb"
    status, error = "ok", None
    try:
        _to_ipynb(nb_path, src)
        with _env(
            LINREPRO_RUN_DIR=str(path),
            LINREPRO_PROFILE=profile,
            LINREPRO_NOTEBOOK=stem,
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        ):
            pm.execute_notebook(
                str(src),
                str(executed),
                parameters=values,
                kernel_name="python3",
                cwd=str(project.root()),
                progress_bar=progress,
                request_save_on_cell_execute=True,
            )
    except BaseException as e:  # noqa: BLE001 - record every failure, KeyboardInterrupt too
        status = "failed"
        if hasattr(e, "ename") and hasattr(e, "evalue"):  # papermill: the notebook's own exception
            error = f"{e.ename}: {e.evalue} (cell {getattr(e, 'exec_count', '?')})"
        else:
            error = f"{type(e).__name__}: {e}".strip()
        if not isinstance(e, Exception):
            error = f"interrupted ({type(e).__name__})"
        (path / "error.txt").write_text(traceback.format_exc())
        if isinstance(e, KeyboardInterrupt):
            meta.update(status=status, error=error, finished=provenance.now_utc())
            write_json(path / "run.json", meta)
            raise
    finally:
        src.unlink(missing_ok=True)
        _strip_plotlyjs(executed, log)
    if executed.exists():
        try:
            from linrepro.runner.report import notebook_to_html

            notebook_to_html(executed, path / "report.html", title=f"{stem} · {profile}")
        except Exception as e:  # noqa: BLE001
            if status == "ok":
                status, error = "failed", f"report: {type(e).__name__}: {e}"
    if status == "ok" and not (path / "results.json").exists():
        status, error = "failed", "the notebook finished but wrote no results.json"
    duration = time.time() - started
    meta.update(status=status, error=error, finished=provenance.now_utc(), duration_s=round(duration, 2))
    write_json(path / "run.json", meta)
    log(f"[linrepro] {stem} · {status} in {duration:.1f} s" + (f": {error.splitlines()[0][:300]}" if error else ""))
    return Run(stem, profile, run_id, path, status, error, duration)


def run(
    notebook: str,
    profile: str = "cpu",
    overrides: dict | None = None,
    out_root: Path | None = None,
    progress: bool = True,
    log=print,
) -> Run:
    nb_path, values = prepare(notebook, profile, overrides)
    return execute(nb_path, values, profile, out_root, progress, log)


def profile_notebooks(profile: str) -> list[str]:
    """Notebooks, in order, that have a parameter file in this profile."""
    pdir = project.params_dir() / profile
    if not pdir.is_dir():
        raise _params.ParamError(f"unknown profile {profile!r}. Profiles: {', '.join(project.list_profiles())}")
    return [s for s in project.list_notebooks() if (pdir / f"{s}.yaml").exists()]


def reproduce(profile: str = "cpu", out_root: Path | None = None, progress: bool = True, log=print) -> list[Run]:
    """Every notebook of the profile in order (all validated first), then the site."""
    stems = profile_notebooks(profile)
    if not stems:
        raise _params.ParamError(f"profile {profile!r} has no parameter files in params/{profile}/")
    prepared = [prepare(s, profile) for s in stems]  # validate everything before running anything
    runs = []
    t0 = time.time()
    for i, (nb_path, values) in enumerate(prepared, 1):
        log(f"[linrepro] ({i}/{len(prepared)}) {nb_path.stem}")
        runs.append(execute(nb_path, values, profile, out_root, progress, log))
    from linrepro.runner.site import build_site

    index = build_site(out_root)
    log(
        f"[linrepro] reproduce · {profile}: {sum(r.status == 'ok' for r in runs)}/{len(runs)} ok "
        f"in {time.time() - t0:.0f} s"
    )
    for r in runs:
        log(f"    {r.notebook:<28} {r.status:<7} {r.duration_s:7.1f} s  {r.path}")
    log(f"[linrepro] site: {index}")
    return runs
