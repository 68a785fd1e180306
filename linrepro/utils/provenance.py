"""Where a number came from: commit, versions, device, date."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import platform
import subprocess
from pathlib import Path

from linrepro.utils import project


def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return None


def git_commit() -> dict:
    try:
        cwd = project.root()
    except FileNotFoundError:
        return {"commit": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {
            "commit": sha.stdout.strip() or None,
            "dirty": bool(dirty.stdout.strip()) if sha.returncode == 0 else None,
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    info = {"cpu": cpu_name(), "cpu_count": __import__("os").cpu_count(), "cuda": None}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = {
                "name": torch.cuda.get_device_name(0),
                "count": torch.cuda.device_count(),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                "cuda_version": torch.version.cuda,
            }
    except ImportError:
        pass
    return info


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def collect() -> dict:
    """A JSON-able record of this process's environment."""
    return {
        "date": now_utc(),
        "git": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            d: _version(d)
            for d in (
                "linrepro",
                "torch",
                "triton",
                "open_clip_torch",
                "numpy",
                "scipy",
                "papermill",
                "nbconvert",
                "plotly",
            )
        },
        "device": device_info(),
    }


#: The files whose content decides what a training run computes: the data, the models, the
#: attention forms and kernels, the trainer (relative to the package root's parent). Evaluation
#: code (zero-shot, retrieval) is not among them: a finished model is re-evaluated, not retrained.
TRAINING_CODE = (
    "linrepro/data",
    "linrepro/clip/__init__.py",
    "linrepro/clip/released.py",
    "linrepro/clip/train.py",
    "linrepro/clip/model_configs",
    "linrepro/attention",
    "kernels",
)


def _normalised_source(f: Path) -> bytes:
    """What a ``.py`` file computes, without what it says: its syntax tree with docstrings dropped
    (comments never reach the tree), so editing prose does not change a digest. A file that does
    not parse is taken byte for byte."""
    import ast

    raw = f.read_bytes()
    try:
        tree = ast.parse(raw)
    except (SyntaxError, ValueError):
        return raw
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def code_digest(paths=None) -> str:
    """A SHA-256 over every ``.py`` and ``.json`` file under ``paths`` (default: the whole package
    and its kernels), in sorted order with their relative names: equal digests, same code. A
    ``.py`` file counts by its syntax tree without docstrings or comments
    (:func:`_normalised_source`): a corrected docstring or comment does not make a trained model
    "other code"."""
    import hashlib

    base = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for p in paths or ("linrepro", "kernels"):
        root = base / p
        files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.suffix in (".py", ".json"))
        for f in files:
            if "__pycache__" in f.parts:
                continue
            body = _normalised_source(f) if f.suffix == ".py" else f.read_bytes()
            h.update(f.relative_to(base).as_posix().encode() + b"\0" + body + b"\0")
    return h.hexdigest()[:16]
