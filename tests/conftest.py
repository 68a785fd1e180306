import os

# No GPU in CI: the Triton kernels run under the interpreter. It must be set before triton
# is imported anywhere, so it is set here, at collection time.
try:
    import torch

    _cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _cuda = False
if not _cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_outputs(tmp_path_factory):
    """``linrepro reproduce --profile smoke`` once, through the real CLI, into a fresh outputs folder:
    every notebook in order (later ones read earlier runs), then the site."""
    out = tmp_path_factory.mktemp("smoke-outputs")
    env = dict(os.environ, LINREPRO_OUTPUTS=str(out))
    r = subprocess.run(
        [sys.executable, "-m", "linrepro", "reproduce", "--profile", "smoke", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1500,
    )
    return {"dir": out, "returncode": r.returncode, "log": r.stdout[-6000:] + r.stderr[-6000:]}
