"""Where the project's notebooks, params and outputs live."""

from __future__ import annotations

import os
from pathlib import Path

PROFILES_DOC = {
    "smoke": "CI: seconds per notebook, tiny shapes",
    "cpu": "default: minutes on a 2-core laptop CPU (one seed: exploratory)",
    "study": "the recorded study: 4 sizes x 3 seeds, about 90 min on 2 cores",
    "h200": "one H200 GPU: the paper's timing setup",
    "paper": "the paper's training setup (LAION-400M, 4 GPUs)",
}


def root() -> Path:
    """The project root: $LINREPRO_ROOT, else the checkout holding this package, else the cwd."""
    env = os.environ.get("LINREPRO_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]  # linrepro/utils/project.py -> the checkout
    if (here / "notebooks").is_dir() and (here / "params").is_dir():
        return here
    cwd = Path.cwd().resolve()
    for p in (cwd, *cwd.parents):
        if (p / "notebooks").is_dir() and (p / "params").is_dir():
            return p
    raise FileNotFoundError(
        "cannot find the linrepro project root (a folder with notebooks/ and params/); "
        "run from the checkout or set LINREPRO_ROOT"
    )


def notebooks_dir() -> Path:
    return root() / "notebooks"


def params_dir() -> Path:
    return root() / "params"


def outputs_dir() -> Path:
    return Path(os.environ.get("LINREPRO_OUTPUTS", root() / "outputs")).resolve()


#: the claims ledger cites every other notebook's run, so it runs after them whatever its number
LAST = ("07_claims_ledger",)


def list_notebooks() -> list[str]:
    """Stems of notebooks/NN_*.py in order, the claims ledger last."""
    stems = sorted(p.stem for p in notebooks_dir().glob("[0-9][0-9]_*.py"))
    return sorted(stems, key=lambda s: s in LAST)


def list_profiles() -> list[str]:
    return sorted(p.name for p in params_dir().iterdir() if p.is_dir())


def resolve_notebook(name: str) -> Path:
    """A stem (``01_kernel_derivation``), a prefix (``01``) or a path to a ``.py``/``.ipynb``."""
    p = Path(name)
    if p.suffix in (".py", ".ipynb") and p.exists():
        return p.resolve()
    stems = list_notebooks()
    stem = p.stem if p.suffix in (".py", ".ipynb") else name
    if stem in stems:
        return notebooks_dir() / f"{stem}.py"
    matches = [s for s in stems if s.startswith(stem)]
    if len(matches) == 1:
        return notebooks_dir() / f"{matches[0]}.py"
    import difflib

    close = difflib.get_close_matches(stem, stems, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FileNotFoundError(f"no notebook {name!r}.{hint} Available: {', '.join(stems)}")
