"""The README's plain-papermill lines, run exactly as printed, from a copy of the project root:
they write under ``outputs/`` only and leave a small executed notebook with its figures."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _readme_papermill_block() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**Plain papermill**")
    m = re.compile(r"```bash\n(.*?)```", re.S).search(readme, start)
    assert m, "no bash block after 'Plain papermill' in the README"
    return m.group(1)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_the_readme_block_is_papermill_into_outputs():
    block = _readme_papermill_block()
    assert "papermill " in block and "jupytext " in block, block
    notebooks = re.findall(r"\S+\.ipynb", block)  # every .ipynb it reads or writes lives under outputs/
    assert notebooks and all(p.startswith("outputs/") for p in notebooks), notebooks


@pytest.mark.notebook
def test_the_readme_papermill_lines_run_as_printed(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "pyproject.toml", root)
    for d in ("notebooks", "params"):
        shutil.copytree(ROOT / d, root / d, ignore=shutil.ignore_patterns("*.ipynb", ".*"))
    before = _files(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINREPRO_", "JPY_"))}
    # "in the venv": its jupytext and papermill first on PATH; linrepro finds this copy as the project
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", LINREPRO_ROOT=str(root))
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _readme_papermill_block()],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    after = _files(root)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, changed
    assert new and all(p.startswith("outputs/") for p in new), new
    executed = root / "outputs" / "papermill" / "01_kernel_derivation.smoke.ipynb"
    assert str(executed.relative_to(root)) in new
    nb = json.loads(executed.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "n_queries = 16" in "".join(injected[0]["source"])  # params/smoke/01_kernel_derivation.yaml
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    assert executed.stat().st_size < 1_000_000, executed.stat().st_size  # no inlined plotly.js
