"""``make lab``: JupyterLab for linrepro, served from the project root.

* installs ``lab/overrides.json`` as JupyterLab default settings of this environment
  (``<app dir>/settings/overrides.d/linrepro.json``): a double-click on a notebook's ``.py``, or its
  ``/lab/tree/notebooks/NN_topic.py`` URL, opens it as a Jupytext notebook, and the news pop-up is off.
  They are defaults: a user's own settings still win;
* serves the project root (so ``notebooks/01_…`` is where the README says, and jupytext finds its
  ``[tool.jupytext]`` config in ``pyproject.toml``), with ``--allow-root`` when run as root;
* prints the URL to open (JupyterLab prints it with its token once it has started).

Any argument is passed on to ``jupyter lab`` (e.g. ``--port 8899 --no-browser``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = Path(__file__).resolve().parent / "overrides.json"
START = "lab/tree/notebooks"


def install_settings() -> Path:
    from jupyterlab.commands import get_app_dir

    dest = Path(get_app_dir()) / "settings" / "overrides.d" / "linrepro.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.read_bytes() != OVERRIDES.read_bytes():
        shutil.copyfile(OVERRIDES, dest)
    return dest


def lab_args(argv: list[str]) -> list[str]:
    args = [f"--ServerApp.root_dir={ROOT}", f"--LabApp.default_url=/{START}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")
    return args + argv


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    dest = install_settings()
    print(
        f"linrepro: JupyterLab serves {ROOT} (settings: {dest}).\n"
        f"linrepro: open the URL ending in /{START}?token=... that JupyterLab prints below;\n"
        "linrepro: double-click a notebook there (e.g. 01_kernel_derivation.py) to open it as a notebook.\n"
        "linrepro: parameters for this session only go in interactive.yaml (README, 'JupyterLab').",
        flush=True,
    )
    os.chdir(ROOT)
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter) if jupyter.exists() else "jupyter", "lab", *lab_args(argv)]
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
