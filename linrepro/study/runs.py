"""The notebook side of a run: where to write, and writing results atomically.

The runner sets ``LINREPRO_RUN_DIR`` for the kernel. In JupyterLab (no runner) results go to
``outputs/interactive/<notebook>/``, so exploring never touches a recorded run.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from linrepro.utils import project
from linrepro.utils.io import atomic_write_text, read_json, write_json  # noqa: F401 - notebooks import them from here


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
    """Call at the top of a notebook, right after its parameters cell: plotly renders in JupyterLab
    and in offline HTML reports, and in a JupyterLab session the git-ignored ``interactive.yaml``
    overlay (:func:`interactive_overlay`) sets parameters without touching the committed defaults."""
    import plotly.io as pio

    __import__("linrepro.utils.plotting", fromlist=["activate"]).activate()  # template, palette, 3-s.f. tables
    if os.environ.get("LINREPRO_RUN_DIR"):
        # a recorded run: mimetype for JupyterLab, 'notebook' (connected=False) adds each figure's
        # HTML for nbconvert and inlines plotly.js once; the stored .ipynb drops that copy and its
        # report.html embeds plotly.js itself (linrepro.runner.report). The default renderer makes
        # nbconvert drop figures.
        pio.renderers.default = "plotly_mimetype+notebook"
        return
    # JupyterLab (or plain papermill): JupyterLab draws the figures from their plotly JSON, so the
    # saved .ipynb carries no 4.8 MB copy of plotly.js
    pio.renderers.default = "plotly_mimetype"
    stem = _session_notebook()
    if stem:
        import sys

        applied = interactive_overlay(stem, sys._getframe(1).f_globals)
        if applied:
            print(applied)


# --------------------------------------------------------------------------- interactive parameters
INTERACTIVE_FILE = "interactive.yaml"


def _session_notebook() -> str | None:
    """The notebook a JupyterLab kernel runs (jupyter_server gives its path as ``JPY_SESSION_NAME``),
    as a stem of notebooks/; None outside a Jupyter session (papermill, nbmake, python) or for
    another file."""
    name = os.environ.get("JPY_SESSION_NAME")
    if not name:
        return None
    stem = Path(name).stem
    return stem if stem in project.list_notebooks() else None


def _parameter_types(stem: str) -> dict[str, type | None]:
    """{name: type of its default} for the notebook's parameters cell; None for a parameter whose
    type is a quoted annotation ("ScoreScale", "OptionalStr", ...) or whose default is None."""
    import ast

    import jupytext

    nb = jupytext.read(project.notebooks_dir() / f"{stem}.py")
    src = next((c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])), "")
    out: dict[str, type | None] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = type(ast.literal_eval(node.value))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = None
    return {k: (None if t is type(None) else t) for k, t in out.items()}


def _check_value(where: str, key: str, value, t: type | None):
    if t is None:
        return value
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not t:
        raise ValueError(f"{where}: parameter {key!r} must be {t.__name__}, got {type(value).__name__} {value!r}")
    return value


def interactive_overlay(stem: str, namespace: dict, path: Path | None = None) -> str:
    """Set the notebook's parameters in ``namespace`` from ``interactive.yaml`` at the project root
    (git-ignored; only JupyterLab sessions read it, never ``linrepro run``/``reproduce`` or papermill)::

        profile: smoke            # optional: start from params/smoke/<notebook>.yaml
        01_kernel_derivation:     # optional: then these values, for this notebook only
          n_queries: 8

    Returns one line saying what was set ('' when the file is absent or sets nothing here). An
    unknown profile or parameter, a profile without this notebook, or a value of the wrong type
    raises ValueError naming it. Ranges are not checked here (``linrepro run -p`` checks them)."""
    import difflib

    import yaml

    path = Path(path) if path else project.root() / INTERACTIVE_FILE
    if not path.exists():
        return ""
    try:
        overlay = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(overlay, dict):
        raise ValueError(f"{path}: expected a mapping (profile: NAME and/or NOTEBOOK: {{param: value}})")
    values: dict = {}
    sources = []
    profile = overlay.get("profile")
    if profile is not None:
        pfile = project.params_dir() / str(profile) / f"{stem}.yaml"
        if not isinstance(profile, str) or profile not in project.list_profiles():
            raise ValueError(f"{path}: unknown profile {profile!r}; profiles: {', '.join(project.list_profiles())}")
        if not pfile.exists():
            raise ValueError(f"{path}: profile {profile!r} has no parameter file for {stem} ({pfile} is missing)")
        values.update(yaml.safe_load(pfile.read_text()) or {})
        sources.append(f"profile {profile}")
    mine = overlay.get(stem) or {}
    if not isinstance(mine, dict):
        raise ValueError(f"{path}: {stem}: expected a mapping of parameter: value, got {mine!r}")
    if mine:
        values.update(mine)
        sources.append(f"{stem}: {', '.join(mine)}")
    if not values:
        return ""
    types = _parameter_types(stem)
    checked = {}
    for key, value in values.items():
        if key not in types:
            close = difflib.get_close_matches(key, list(types), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{path}: {stem} has no parameter {key!r}.{hint} Parameters: {', '.join(types)}")
        checked[key] = _check_value(f"{path}", key, value, types[key])
    changed = {k: v for k, v in checked.items() if namespace.get(k) != v}
    namespace.update(checked)
    shown = ", ".join(f"{k} = {v!r}" for k, v in changed.items()) or "no value differs from the cell"
    return f"{path.name} ({'; '.join(sources)}) sets {shown}"


def outputs_root() -> Path:
    """The outputs folder of the current run (the runner's ``--out`` included), else the project's."""
    env = os.environ.get("LINREPRO_RUN_DIR")
    if env and len(Path(env).parents) >= 3:
        return Path(env).parents[2]
    return project.outputs_dir()


def current_profile(default: str = "cpu") -> str:
    return os.environ.get("LINREPRO_PROFILE") or default


# --------------------------------------------------------------------------- the state of a run
def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3… of ``/proc/<pid>/stat`` (state first), or None where there is no /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def process_record() -> dict:
    """Who runs a run, for its run.json: pid and host, and where Linux tells them the process's
    start time and the boot, so that :func:`run_status` can tell a dead process from a reused pid."""
    rec: dict = {"pid": os.getpid(), "host": socket.gethostname()}
    stat = _proc_stat(os.getpid())
    if stat is not None:
        rec["pid_started"] = int(stat[19])  # field 22: start time, clock ticks after boot
    boot = _boot_id()
    if boot:
        rec["boot_id"] = boot
    return rec


def _process_gone(meta: dict) -> bool | None:
    """Whether the process a run.json names has ended; None where this machine cannot tell."""
    pid, host = meta.get("pid"), meta.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool) or not host or host != socket.gethostname():
        return None
    boot = _boot_id()
    if meta.get("boot_id") and boot and meta["boot_id"] != boot:
        return True  # the machine restarted since
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # someone else's process: it exists
    except OSError:
        return None
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] in ("Z", "X"):
            return True
        if meta.get("pid_started") is not None and int(stat[19]) != meta["pid_started"]:
            return True  # the pid now belongs to another process
    return False


def status_of(meta: dict) -> tuple[str, str | None]:
    """(status, note) of a run from its run.json: as recorded, except that a run still marked
    ``running`` whose process is gone (killed, or its machine went down) is ``interrupted``.
    The site and :func:`find_run` both decide with this."""
    status = meta.get("status") or "unknown"
    if status != "running":
        return status, None
    gone = _process_gone(meta)
    if gone:
        return "interrupted", (
            f"process {meta['pid']} on {meta['host']} is gone: it ended without recording a status "
            "(killed, or the machine went down)"
        )
    if gone is None and meta.get("host") and meta.get("host") != socket.gethostname():
        return "running", f"on {meta['host']}: cannot check its process from here"
    return "running", None


def run_status(run: Path) -> tuple[str, str | None]:
    """:func:`status_of` for a run folder; ``unreadable`` (with the error) if its run.json is, and
    ``unknown`` if it has none."""
    path = Path(run) / "run.json"
    if not path.exists():
        return "unknown", f"{path} does not exist"
    try:
        meta = read_json(path, f"{_label(Path(run))}: run.json")
    except (OSError, ValueError) as e:
        return "unreadable", str(e)
    if not isinstance(meta, dict):
        return "unreadable", f"{path} is not a JSON object"
    return status_of(meta)


def _label(run: Path) -> str:
    """``<notebook> run <run-id>``, from the folder layout ``<profile>/<notebook>/<run-id>``."""
    run = Path(run)
    return f"{run.parent.name} run {run.name}"


def finished_runs(parent: Path) -> list[Path]:
    """Run folders under ``parent`` whose run.json says ``ok`` and that have a results.json, oldest
    first (run ids start with a timestamp)."""
    done = []
    for d in sorted(Path(parent).iterdir()) if Path(parent).is_dir() else []:
        try:
            ok = json.loads((d / "run.json").read_text()).get("status") == "ok"
        except (OSError, ValueError, AttributeError):
            ok = False
        if ok and (d / "results.json").is_file():
            done.append(d)
    return done


def find_run(notebook: str, run: str | None = None, profile: str | None = None) -> Path:
    """A finished run folder of ``notebook``: ``run`` if given (a path), else the latest one with
    status ``ok`` under ``outputs/<profile>/<notebook>/`` (profile: this run's, else ``cpu``).
    A run whose run.json says anything but ``ok`` (running, interrupted, failed) is refused; a
    folder without run.json (copied or published results) is taken on its results.json."""
    if run:
        p = Path(run)
        p = p if p.is_absolute() else project.root() / p
        if (p / "run.json").exists():
            status, note = run_status(p)
            if status != "ok":
                raise FileNotFoundError(
                    f"{p} is not a finished {notebook} run: it is {status}" + (f" ({note})" if note else "")
                )
        if not (p / "results.json").is_file():
            raise FileNotFoundError(f"{p} is not a finished {notebook} run (it has no results.json)")
        return p
    profile = profile or current_profile()
    parent = outputs_root() / profile / notebook
    done = finished_runs(parent)
    if not done:
        latest = sorted(d for d in parent.iterdir() if d.is_dir())[-1:] if parent.is_dir() else []
        why = ""
        for d in latest:
            status, note = run_status(d)
            why = f" (the latest run there, {d.name}, is {status}" + (f": {note}" if note else "") + ")"
        raise FileNotFoundError(
            f"no finished {notebook} run under {parent}{why}. Run `linrepro run {notebook} --profile {profile}` "
            f"first, or pass the folder of one as a parameter."
        )
    return done[-1]


def load_results(run: Path) -> dict:
    """A run's results.json; a missing, truncated or corrupt one raises an error naming the file and the run."""
    return read_json(Path(run) / "results.json", f"{_label(Path(run))}: results.json")
