"""Opening and saving a notebook in JupyterLab leaves the committed ``.py`` as it is.

JupyterLab reads a text notebook through jupytext's contents manager and saves it back through it,
after its kernel has set the notebook's ``kernelspec`` (as the installed kernel names itself) and
``language_info``. Done here without a browser, on a copy of ``notebooks/`` under a root holding
``pyproject.toml`` (jupytext reads its ``[tool.jupytext]`` config from there, as it does from the
project root that ``make lab`` serves). The browser test (test_lab_browser.py) does it for real.
"""

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def _kernel_metadata() -> dict:
    """The metadata a running python3 kernel gives a notebook in JupyterLab."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    return {
        "kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": "python3"},
        "language_info": {
            "codemirror_mode": {"name": "ipython", "version": 3},
            "file_extension": ".py",
            "mimetype": "text/x-python",
            "name": "python",
            "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3",
            "version": ".".join(map(str, sys.version_info[:3])),
        },
    }


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("*.ipynb", ".*"))
    return root


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 7, NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_open_and_save_leaves_the_py_unchanged(lab_root, name):
    import jupytext

    committed = (ROOT / "notebooks" / name).read_text()
    cm = jupytext.TextFileContentsManager(root_dir=str(lab_root))
    path = f"notebooks/{name}"
    model = cm.get(path)
    assert model["type"] == "notebook", f"{name} does not open as a notebook: {model['type']}"
    nb = model["content"]
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{name}: no parameters cell"
    nb.metadata.update(_kernel_metadata())
    cm.save({"type": "notebook", "content": nb}, path)

    saved = (lab_root / path).read_text()
    if saved != committed:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(True), saved.splitlines(True), f"committed {name}", "saved by jupytext"
            )
        )
        pytest.fail(f"saving {name} unchanged rewrote it:\n{diff[:3000]}")
    # the pairing worked: an .ipynb beside it (git-ignored, see test_lab_browser.py and .gitignore)
    assert (lab_root / path).with_suffix(".ipynb").exists()
    # and reopening the saved pair gives the same cells
    again = cm.get(path)["content"]
    assert [c.source for c in again.cells] == [c.source for c in nb.cells]
