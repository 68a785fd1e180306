"""A run's record, however the run ends: a signal, a full disk, a process killed outright.

* **Signals.** SIGINT (Ctrl-C), SIGTERM (``timeout``, a batch scheduler) and SIGHUP (a dropped SSH
  session) all stop a run the same way (:func:`signals_interrupt`): the first one writes
  ``run.json`` as ``interrupted`` at once, before anything else can go wrong, then raises
  :class:`RunInterrupted`; the kernel is killed with its whole process group (a training it
  started goes with it, :func:`kernel_manager_class`); the partial notebook still gets its
  report; the command prints one line naming the folder and exits with 128 + the signal's number.
  A signal the caller ignores (SIGHUP under ``nohup``) stays ignored.
* **A process killed outright** (SIGKILL, a power cut) cannot write anything: run.json keeps
  ``running`` with the pid and host it was started with (:func:`linrepro.study.runs.process_record`),
  and :func:`linrepro.study.runs.status_of` shows it as ``interrupted`` once that process is gone.
* **A full disk.** A run sets space aside when it starts (:class:`linrepro.utils.io.SpaceReserve`)
  and gives it back just before writing its record (:func:`write_record`), which comes before
  anything large (the report); run.json is rewritten in place if even that fails.
* **The kernel's own log** (its stderr: start-up warnings, tracebacks of its message loop when it is
  shut down mid-cell, a crash) goes to ``kernel.log`` in the run folder, not to the terminal;
  what the notebook prints is in the notebook as always.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from linrepro.utils.io import SpaceReserve, atomic_write_text, write_json_or_overwrite

SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
RESERVE = ".linrepro-reserve"  # the space a run sets aside, in its folder while it runs
ERROR_TAIL = 64 * 1024  # error.txt keeps at most this much of a traceback's end


class RunInterrupted(KeyboardInterrupt):
    """A signal stopped a run; ``path`` is the run's folder (None before there was one)."""

    def __init__(self, signum: int, path: Path | None = None):
        self.signum = int(signum)
        self.signame = signal.Signals(signum).name
        self.path = path
        super().__init__(self.signame)


class Stop:
    """Which signal stopped the run, once one has (read by the kernel manager)."""

    signum: int | None = None


@contextlib.contextmanager
def signals_interrupt(path: Path, on_first: Callable[[int], None]) -> Iterator[Stop]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP raise :class:`RunInterrupted`; the first
    one calls ``on_first(signum)`` (which records the run) before raising. Outside the main thread
    (where Python cannot set handlers) nothing changes."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.signum is None:
            stop.signum = signum
            with contextlib.suppress(Exception):
                on_first(signum)
        raise RunInterrupted(signum, path)

    old = {}
    for s in SIGNALS:
        if signal.getsignal(s) is signal.SIG_IGN:  # nohup: the caller wants the run to outlive a hangup
            continue
        old[s] = signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def kernel_manager_class(log_path: Path, stop: Stop):
    """A jupyter kernel manager (papermill's ``kernel_manager_class``) whose kernel writes its stderr
    to ``log_path``, and which, once ``stop`` has a signal, kills the kernel at once with its process
    group (the kernel runs in a session of its own, so subprocesses it started are in that group)."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        _log_file = None

        async def start_kernel(self, **kw):  # type: ignore[override]
            if "stderr" not in kw:
                self._log_file = open(log_path, "ab")
                kw["stderr"] = self._log_file
            return await super().start_kernel(**kw)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False):  # type: ignore[override]
            pgid = getattr(self.provisioner, "pgid", None)
            try:
                await super().shutdown_kernel(now=now or stop.signum is not None, restart=restart)
            finally:
                if stop.signum is not None and pgid and hasattr(os, "killpg"):
                    with contextlib.suppress(OSError):
                        os.killpg(pgid, signal.SIGKILL)  # whatever the kernel left in its group
                if self._log_file is not None:
                    self._log_file.close()
                    self._log_file = None

    return RunKernelManager


def reserve_space(path: Path) -> SpaceReserve:
    return SpaceReserve(Path(path) / RESERVE)


def write_record(path: Path, meta: dict, reserve: SpaceReserve | None = None, tb: str | None = None) -> None:
    """error.txt (the end of ``tb``), then run.json. The reserve is given back first, so that a
    disk the run filled has room for both; run.json is rewritten in place if even that fails."""
    if reserve is not None:
        reserve.release()
    if tb:
        with contextlib.suppress(OSError):  # run.json below carries the error line regardless
            text = tb if len(tb) <= ERROR_TAIL else "…(start cut)\n" + tb[-ERROR_TAIL:]
            atomic_write_text(Path(path) / "error.txt", text)
    write_json_or_overwrite(Path(path) / "run.json", meta)
