"""Build a throwaway Python environment that holds only what the bare GPU image holds.

The lent H200 runs a plain image (Python with torch, triton, numpy, scipy, pandas, pyyaml, tqdm,
pytest, pytest-xdist, pytest-timeout and hypothesis, and no open_clip, papermill, plotly or
jupytext), on a copy of the working tree with no ``pip install``. CI rehearses the device check
in such an environment, so a missing package or an import that only works installed fails here,
on CPU, before any device time is spent.

Nothing is downloaded: a new venv (from the base interpreter, so it sees none of the project's
venv) gets a ``.pth`` file pointing at a folder of symbolic links to the allowed distributions,
and to everything they require, as installed in the interpreter running this script.

    python scripts/bare_env.py DEST          # prints DEST/bin/python
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import venv
from pathlib import Path

# What the bare image has (see the device notes): the distributions, not import names.
IMAGE = (
    "torch",
    "triton",
    "numpy",
    "scipy",
    "pandas",
    "pyyaml",
    "tqdm",
    "pytest",
    "pytest-xdist",
    "pytest-timeout",
    "hypothesis",
)
# Never linked, even when some allowed distribution names it (none of them should).
FORBIDDEN = {"open-clip-torch", "papermill", "plotly", "jupytext", "nbformat", "nbconvert", "linrepro"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dist: md.Distribution) -> list[str]:
    """Names of the distributions ``dist`` needs (its unconditional and platform-true requirements)."""
    out = []
    for req in dist.requires or []:
        name, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        if marker.strip():
            try:
                from packaging.markers import Marker

                if not Marker(marker).evaluate():
                    continue
            except ImportError:  # pragma: no cover - packaging ships with pip's tooling
                pass
        out.append(_norm(re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0]))
    return out


def closure(roots=IMAGE) -> dict[str, md.Distribution]:
    """Every installed distribution reachable from ``roots`` through its requirements."""
    installed = {_norm(d.metadata["Name"]): d for d in md.distributions()}
    missing = [r for r in roots if _norm(r) not in installed]
    if missing:
        raise SystemExit(f"bare_env: not installed here, so the rehearsal cannot mirror the image: {missing}")
    seen: dict[str, md.Distribution] = {}
    todo = [_norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name in FORBIDDEN or name not in installed:
            continue
        seen[name] = installed[name]
        todo.extend(_requirements(installed[name]))
    return seen


def _top_levels(dist: md.Distribution) -> set[Path]:
    """Absolute paths of the top-level files and folders a distribution installed."""
    tops = set()
    for f in dist.files or []:
        parts = Path(f).parts
        if not parts or parts[0] in ("..", "__pycache__"):  # .dist-info stays: pytest finds plugins there
            continue
        if parts[0].endswith(".pth"):
            continue
        tops.add(Path(dist.locate_file(parts[0])).resolve())
    return tops


def build(dest: Path) -> Path:
    dest = Path(dest).resolve()
    venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(dest)
    py = dest / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    links = dest / "image-site"
    links.mkdir()
    names = []
    for name, dist in sorted(closure().items()):
        names.append(f"{name} {dist.version}")
        for top in _top_levels(dist):
            link = links / top.name
            if top.exists() and not link.exists():
                link.symlink_to(top)
    (site / "image.pth").write_text(str(links) + "\n")
    (dest / "IMAGE.txt").write_text("\n".join(names) + "\n")
    return py


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", help="folder for the new environment (emptied first)")
    a = ap.parse_args(argv)
    print(build(Path(a.dest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
