"""Run a notebook under a profile: validate, execute with papermill, record, report.

Every run gets its own folder ``<outputs>/<profile>/<notebook>/<run-id>/`` holding
``run.json`` (status), ``params.yaml``, ``provenance.json``, the executed ``.ipynb`` (without
the copy of plotly.js plotly inlines: ``report.html`` embeds it, see :mod:`linrepro.runner.report`),
``report.html`` and whatever the notebook saved (``results.json``). ``run.json`` says
``running`` (with the pid and host running it) until the end, then ``ok``, ``failed`` with the
error, or ``interrupted`` (SIGINT, SIGTERM, SIGHUP): a failed run never looks like a success, and
a run that was killed outright is shown as interrupted once its process is gone. How a run is
recorded on a signal or a full disk: :mod:`linrepro.runner.record`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import re
import secrets
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from linrepro.runner import params as _params
from linrepro.runner import record as _record
from linrepro.runner.record import RunInterrupted
from linrepro.study.runs import process_record
from linrepro.utils import project, provenance
from linrepro.utils.io import atomic_write_text, write_json
from linrepro.utils.progress import PROGRESS_FILE, read_progress


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
    except Exception as e:
        log(f"[linrepro] could not strip plotly.js from {executed.name}: {type(e).__name__}: {e}")


class ProgressFollower:
    """Shows a recorded run's inner progress (``<run>/progress.txt``, written by
    :mod:`linrepro.utils.progress` in the kernel) in the user's terminal, above papermill's
    "Executing" bar: a line when the task changes (another model, epoch or split), and at most
    every ``every`` seconds while it runs. The kernel's stderr, and so the report, never sees it."""

    def __init__(self, run_dir: Path, notebook: str, every: float = 15.0, poll: float = 0.5, write=None):
        import threading

        self.path = Path(run_dir) / PROGRESS_FILE
        self.notebook, self.every, self.poll = notebook, every, poll
        self.write = write or _tqdm_write
        self.shown: list[str] = []
        self._last: tuple[str, str, float] | None = None  # (line, task, time shown)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="linrepro-progress", daemon=True)

    @staticmethod
    def task_of(line: str) -> str:
        """The part of a progress line before its percentage: what is being done."""
        m = re.match(r"(.*?):?\s*\d{1,3}%\|", line)
        return (m.group(1) if m else line.split(":")[0]).strip()

    def check(self, now: float | None = None) -> str | None:
        """Read the file once; the line shown, if one is due."""
        now = time.monotonic() if now is None else now
        line = read_progress(self.path.parent)
        if not line or (self._last is not None and line == self._last[0]):
            return None
        task = self.task_of(line)
        done = bool(re.search(r"\b100%\|", line))
        if self._last is None or task != self._last[1] or done or now - self._last[2] >= self.every:
            self._last = (line, task, now)
            text = f"    {self.notebook} · {line}"
            self.shown.append(text)
            self.write(text)
            return text
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            with contextlib.suppress(Exception):
                self.check()

    def __enter__(self):
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.check(now=float("inf"))  # the last state, if not shown yet
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def _tqdm_write(text: str) -> None:
    import sys

    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)  # above papermill's bar, which is redrawn below it


def prepare(notebook: str, profile: str, overrides: dict[str, Any] | None = None) -> tuple[Path, dict]:
    """Resolve and validate; raises FileNotFoundError/ParamError before anything runs."""
    nb_path = project.resolve_notebook(notebook)
    values = _params.resolve(nb_path, profile, overrides or {})
    return nb_path, values


def _what_stopped(e: BaseException, path: Path, signum: int | None) -> tuple[str, str, RunInterrupted | None]:
    """(status, error line, the interruption to raise again once recorded) for what stopped a run."""
    # a signal (RunInterrupted), a KeyboardInterrupt from elsewhere, or whatever papermill raised
    # because the signal reached the kernel first (nbclient's DeadKernelError): a stop, not a failure
    if isinstance(e, KeyboardInterrupt) or signum is not None:
        stop = e if isinstance(e, RunInterrupted) else RunInterrupted(signum or signal.SIGINT, path)
        return "interrupted", f"interrupted by {stop.signame}", stop
    if hasattr(e, "ename") and hasattr(e, "evalue"):  # papermill: the notebook's own exception
        error = f"{e.ename}: {e.evalue} (cell {getattr(e, 'exec_count', '?')})"
    else:
        error = f"{type(e).__name__}: {e}".strip()
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        error += f" (the disk holding {path} is full; the executed notebook may be cut off)"
    return "failed", error, None


def execute(
    nb_path: Path,
    values: dict,
    profile: str,
    out_root: Path | None = None,
    progress: bool = True,
    log=print,
    into: Path | None = None,
) -> Run:
    """Run the notebook in a new run folder, or (``into``, see :func:`resume`) again in that existing
    one, keeping its run id, params.yaml and provenance.json, with ``LINREPRO_RESUME=1`` set."""
    stem = nb_path.stem
    path = None
    try:  # an outputs folder that cannot be written to (read-only, a file, a full disk) fails here, before anything runs
        if into is None:
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
        else:
            path = Path(into)
            run_id = path.name
        started = time.time()
        meta = {
            "notebook": stem,
            "profile": profile,
            "run_id": run_id,
            "status": "running",
            "started": provenance.now_utc(),
            "source": str(nb_path),
            "fingerprint": fingerprint(nb_path, values),
            **process_record(),
        }
        if into is not None:
            meta = _resumed_meta(path, meta)
        earlier = float(meta.get("earlier_s") or 0.0)  # a resumed run's time so far: duration_s adds up
        write_json(path / "run.json", meta)
        reserve = _record.reserve_space(path)  # given back just before the final record
        if into is None:
            atomic_write_text(path / "params.yaml", yaml.safe_dump(values, sort_keys=False))
            write_json(path / "provenance.json", provenance.collect())
    except OSError as e:
        where = path if path is not None else (out_root / profile / stem if into is None else Path(into))
        if into is None and path is not None:
            shutil.rmtree(path, ignore_errors=True)  # the folder this call made, half written
        raise _params.ParamError(f"cannot write a run folder in {where}: {e.strerror or e}") from None
    log(f"[linrepro] {stem} · profile {profile} → {path}" + (" (resumed)" if into is not None else ""))

    src = path / f".{stem}.input.ipynb"
    executed = path / f"{stem}.ipynb"
    status, error = "ok", None
    interrupted: RunInterrupted | None = None

    def on_signal(signum: int) -> None:  # the first signal: run.json says so before anything else happens
        meta.update(status="interrupted", error=f"interrupted by {RunInterrupted(signum).signame}")
        meta.update(finished=provenance.now_utc(), duration_s=round(time.time() - started + earlier, 2))
        _record.write_record(path, meta)

    try:
        with _record.signals_interrupt(path, on_signal) as stop:
            try:
                import papermill as pm

                _to_ipynb(nb_path, src)
                follow = ProgressFollower(path, stem) if progress else contextlib.nullcontext()
                with (
                    follow,
                    _env(
                        LINREPRO_RUN_DIR=str(path),
                        LINREPRO_PROFILE=profile,
                        LINREPRO_NOTEBOOK=stem,
                        LINREPRO_RESUME="1" if into is not None else "0",
                        PYDEVD_DISABLE_FILE_VALIDATION="1",
                    ),
                ):
                    pm.execute_notebook(
                        str(src),
                        str(executed),
                        parameters=values,
                        kernel_name="python3",
                        cwd=str(project.root()),
                        progress_bar=progress,
                        request_save_on_cell_execute=True,
                        kernel_manager_class=_record.kernel_manager_class(path / "kernel.log", stop),
                    )
            except BaseException as e:
                tb = traceback.format_exc()
                status, error, interrupted = _what_stopped(e, path, stop.signum)
                meta.update(status=status, error=error, finished=provenance.now_utc())
                meta.update(duration_s=round(time.time() - started + earlier, 2))
                _record.write_record(path, meta, reserve, tb)  # before anything large: a full disk keeps it
            finally:
                with contextlib.suppress(OSError):
                    src.unlink(missing_ok=True)
                _strip_plotlyjs(executed, log)
            if executed.exists():
                try:
                    from linrepro.runner.report import notebook_to_html

                    notebook_to_html(executed, path / "report.html", title=f"{stem} · {profile}")
                except Exception as e:
                    if status == "ok":
                        status, error = "failed", f"report: {type(e).__name__}: {e}"
            if status == "ok" and not (path / "results.json").exists():
                status, error = "failed", "the notebook finished but wrote no results.json"
            duration = time.time() - started
            meta.update(status=status, error=error, finished=provenance.now_utc())
            meta.update(
                duration_s=round(duration + earlier, 2),
                executions_s=[*meta.get("executions_s", []), round(duration, 2)],
            )
            _record.write_record(path, meta, reserve)
    finally:
        reserve.release()  # however the run ended (a second signal cuts the report short)
    if interrupted is not None:
        raise interrupted
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


RESUMABLE = ("03_clip_training", "09_fair_race")  # notebooks that continue where a run stopped (LINREPRO_RESUME)


def _resumed_meta(path: Path, meta: dict) -> dict:
    """run.json of a resumed run: its first start kept, each resumption listed, stale errors gone,
    and the time of the executions before (``earlier_s``, each in ``executions_s``): its
    ``duration_s`` is the total over every execution, not the last one's."""
    import json

    old = json.loads((path / "run.json").read_text())
    (path / "error.txt").unlink(missing_ok=True)
    before = old.get("executions_s") or ([old["duration_s"]] if old.get("duration_s") is not None else [])
    return {
        **meta,
        "started": old.get("started", meta["started"]),
        "resumed": [*old.get("resumed", []), meta["started"]],
        "earlier_s": float(old.get("duration_s") or 0.0),
        "executions_s": list(before),
        **({"executions_note": old["executions_note"]} if old.get("executions_note") else {}),
    }


def resume(
    run_dir: Path, notebook: str | None = None, progress: bool = True, log=print, finished_ok: bool = False
) -> Run:
    """Continue an unfinished run in its own folder with its own params.yaml: the notebook runs
    again with ``LINREPRO_RESUME=1``, so 03_clip_training reuses finished models and continues the
    others from their last checkpoint; run.json ends ``ok`` or ``failed`` as for a new run.
    ``finished_ok`` (``linrepro run --rerun``): a finished run is executed again the same way, with
    the notebook's code of today (its analysis redone, its models reused)."""
    import json

    path = Path(run_dir).absolute()
    meta_path = path / "run.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: not a run folder (it has no run.json)")
    try:
        meta = json.loads(meta_path.read_text())
        stem, profile = meta["notebook"], meta["profile"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _params.ParamError(f"--resume {run_dir}: {meta_path} cannot be read ({type(e).__name__}: {e})") from e
    if notebook and project.resolve_notebook(notebook).stem != stem:
        raise _params.ParamError(f"--resume {run_dir}: that folder is a run of {stem}, not of {notebook}")
    if stem not in RESUMABLE:
        raise _params.ParamError(f"--resume {run_dir}: a {stem} run cannot be resumed (only {', '.join(RESUMABLE)})")
    from linrepro.study.runs import status_of

    status, note = status_of(meta)
    if status == "running":  # its process is alive (or on another host): two trainings in one folder would clash
        who = note or f"process {meta.get('pid')} on {meta.get('host')}"
        raise _params.ParamError(f"--resume {run_dir}: that run is still running ({who}); stop it first")
    if status == "ok" and not finished_ok:
        raise _params.ParamError(
            f"--resume {run_dir}: that run finished (status ok); there is nothing to resume "
            "(--rerun executes it again in place, reusing its models)"
        )
    params_path = path / "params.yaml"
    if not params_path.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: the run has no params.yaml")
    try:
        stored = yaml.safe_load(params_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise _params.ParamError(f"--resume {run_dir}: {params_path} is malformed: {e}") from e
    nb_path = project.resolve_notebook(stem)
    values = _params.validate(_params.notebook_params(nb_path), stored, str(params_path))
    return execute(nb_path, values, profile, progress=progress, log=log, into=path)


def fingerprint(nb_path: Path, values: dict) -> dict:
    """What a run's results depend on, as digests: the notebook's source, its parameter values and
    the package's code (:func:`linrepro.utils.provenance.code_digest`)."""
    import hashlib

    def sha(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()[:16]

    return {
        "notebook": sha(Path(nb_path).read_bytes()),
        "params": sha(yaml.safe_dump(values, sort_keys=True).encode()),
        "code": provenance.code_digest(),
    }


def _previous(parent: Path, fp: dict, resumable: bool = False) -> tuple[Path | None, str | None]:
    """The newest run in ``parent`` with the same notebook and parameters, and ``"same"`` when it
    finished ok with the same code too, else its status. For a ``resumable`` notebook the
    parameters alone decide which run is its own (its models are reused only when their training
    code is unchanged, whatever the notebook's presentation does)."""
    import json

    from linrepro.study.runs import status_of

    for d in sorted((d for d in parent.iterdir() if d.is_dir()), reverse=True) if parent.is_dir() else []:
        try:
            meta = json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            continue
        old = meta.get("fingerprint") or {}
        if old.get("params") == fp["params"] and (resumable or old.get("notebook") == fp["notebook"]):
            status, _ = status_of(meta)
            same = old.get("code") == fp["code"] and old.get("notebook") == fp["notebook"]
            if status == "ok" and same and (d / "results.json").is_file():
                return d, "same"
            return d, status if status != "ok" else "changed since"
    return None, None


def profile_notebooks(profile: str) -> list[str]:
    """Notebooks, in order, that have a parameter file in this profile."""
    pdir = project.params_dir() / profile
    if not pdir.is_dir():
        raise _params.ParamError(f"unknown profile {profile!r}. Profiles: {', '.join(project.list_profiles())}")
    return [s for s in project.list_notebooks() if (pdir / f"{s}.yaml").exists()]


def reproduce(
    profile: str = "cpu", out_root: Path | None = None, progress: bool = True, log=print, fresh: bool = False
) -> list[Run]:
    """Every notebook of the profile in order (all validated first), then the site.

    Unless ``fresh``, finished work is reused, so that a rerun after an interruption does not start
    over: a notebook whose newest run has the same notebook source, parameters and package code
    (run.json's ``fingerprint``) and finished ``ok`` is taken as it is, as long as every notebook
    before it was too. A resumable notebook (03) with the same source and parameters whose run
    stopped, or ran with other code, is run again *in its own folder* (as ``--resume`` does): its
    finished models are reused when their training code is unchanged, the others continue from
    their last checkpoint. Everything after a notebook that ran again runs again."""
    stems = profile_notebooks(profile)
    if not stems:
        raise _params.ParamError(f"profile {profile!r} has no parameter files in params/{profile}/")
    prepared = [prepare(s, profile) for s in stems]  # validate everything before running anything
    runs = []
    t0 = time.time()
    root = Path(out_root) if out_root else project.outputs_dir()
    chain_intact = not fresh
    for i, (nb_path, values) in enumerate(prepared, 1):
        stem = nb_path.stem
        log(f"[linrepro] ({i}/{len(prepared)}) {stem}")
        prev, how = (
            _previous(root / profile / stem, fingerprint(nb_path, values), stem in RESUMABLE)
            if not fresh
            else (None, None)
        )
        if prev is not None and how == "same" and chain_intact:
            log(f"[linrepro] {stem} · reused {prev} (notebook, parameters and code unchanged)")
            runs.append(Run(stem, profile, prev.name, prev, "ok", None, 0.0))
            continue
        chain_intact = False
        if prev is not None and stem in RESUMABLE and how != "running":
            log(f"[linrepro] {stem} · continuing {prev} in place ({how}): finished models are reused")
            runs.append(execute(nb_path, values, profile, out_root, progress, log, into=prev))
            continue
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
