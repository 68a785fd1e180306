"""Progress bars for long work, in a terminal, in JupyterLab and inside a recorded run."""

from __future__ import annotations

import os


def progress(total: int, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar; use as a context manager and call ``update()``.

    Interactively it is tqdm's notebook/terminal bar. Inside a recorded run (the runner sets
    ``LINREPRO_RUN_DIR``) it is a plain text bar on stderr, so the saved report shows the bar's
    final state, not a widget frozen at 0%.
    """
    if os.environ.get("LINREPRO_RUN_DIR"):
        import sys

        from tqdm.std import tqdm

        return tqdm(
            total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, mininterval=2.0, ascii=True
        )
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled)
