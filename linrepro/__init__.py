"""linrepro: notebook-driven reproduction of linear attention in CLIP-style transformers."""

from pathlib import Path as _Path

try:  # the one place the version is written is pyproject.toml; an uninstalled tree reads it there
    from importlib.metadata import PackageNotFoundError as _NotFound
    from importlib.metadata import version as _version

    __version__ = _version("linrepro")
except _NotFound:  # pragma: no cover - a copied, uninstalled tree (e.g. on a bare GPU image)
    __version__ = "0+uninstalled"

# ``kernels/`` sits at the top level of the checkout (the design card) and is installed as
# ``linrepro.kernels`` through setuptools' package-dir. An uninstalled copy of the tree (a bare
# GPU image, ``python3 -m linrepro.runner.bench`` from the repository root) has no such mapping, so the
# checkout root joins this package's search path: ``import linrepro.kernels`` then finds
# ``<root>/kernels/`` by the ordinary path finder, lazily (triton is imported only on use).
_here = _Path(__file__).resolve().parent
if not (_here / "kernels").is_dir() and (_here.parent / "kernels" / "__init__.py").is_file():
    __path__.append(str(_here.parent))
