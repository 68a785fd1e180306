"""Progress for long work, where the user is looking, and never in a published report.

* Interactively (JupyterLab, a terminal): tqdm's notebook or terminal bar.
* Inside a recorded run (the runner sets ``LINREPRO_RUN_DIR``): the kernel's stderr ends up in the
  report, and the user is watching the runner's terminal. So the bar is written, as one line,
  to ``<run>/progress.txt`` (:data:`PROGRESS_FILE`), and the runner
  (:mod:`linrepro.runner.execute`) follows that file and prints its line in the terminal under
  its own "Executing" bar. Nothing goes to the kernel's stderr.

:func:`progress` is a tqdm bar; :func:`status` is for loops that have no bar (a trainer's steps):
``status("tiny-B/eq7 epoch 3/14", step, total_steps)`` writes the same kind of line, with the
rate and the time left, to the same file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROGRESS_FILE = "progress.txt"


def progress_path() -> Path | None:
    """``<run>/progress.txt`` inside a recorded run, else None."""
    run = os.environ.get("LINREPRO_RUN_DIR")
    return Path(run) / PROGRESS_FILE if run else None


def _publish(line: str) -> None:
    path = progress_path()
    if path is None or not line.strip():
        return
    tmp = path.with_name(f".{PROGRESS_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(line.strip() + "\n")
        os.replace(tmp, path)
    except OSError:  # progress is never worth failing a run for
        pass


class _ProgressFile:
    """A file for tqdm that keeps only the bar's latest line, in ``progress.txt``."""

    def __init__(self) -> None:
        self._buf = ""

    def write(self, s: str) -> int:
        self._buf += s
        parts = self._buf.replace("\r", "\n").split("\n")
        self._buf = parts[-1]
        done = [p for p in parts[:-1] if p.strip()]
        if done:
            _publish(done[-1])
        return len(s)

    def flush(self) -> None:
        if self._buf.strip():
            _publish(self._buf)


def progress(total: int, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar; use as a context manager and call ``update()``.

    Interactively it is tqdm's notebook/terminal bar. Inside a recorded run its line goes to
    ``<run>/progress.txt`` for the runner to show in the terminal, not to stderr (which the
    report would show).
    """
    if progress_path() is not None:
        from tqdm.std import tqdm

        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=not enabled,
            file=_ProgressFile(),
            mininterval=2.0,
            ascii=True,
            dynamic_ncols=False,
            ncols=100,
        )
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled)


_started: dict[str, tuple[float, int]] = {}


def status(desc: str, done: int, total: int | None = None, unit: str = "step", key: str | None = None) -> str:
    """One progress line for a loop without a bar (``"tiny-B/eq7 epoch 3/14: 45%|… 120/266 [00:40<00:50]"``),
    published to ``<run>/progress.txt`` in a recorded run; returns the line. The rate and time
    left are measured from the first call with the same ``key`` (default: ``desc``)."""
    from tqdm.std import tqdm

    k = key or desc
    now = time.monotonic()
    t0, n0 = _started.setdefault(k, (now, done))
    line = tqdm.format_meter(done, total, now - t0, ncols=100, prefix=desc, ascii=True, unit=unit, initial=n0)
    _publish(line)
    return line


def read_progress(run_dir: Path) -> str | None:
    """The latest progress line of a run (what the runner shows), or None."""
    try:
        return (Path(run_dir) / PROGRESS_FILE).read_text().strip() or None
    except OSError:
        return None
