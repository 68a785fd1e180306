"""Writing files so that a failure never leaves a half-written one that looks complete."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _jsonable(x: Any) -> Any:
    """numpy/torch scalars and arrays, tuples, paths and non-finite floats made JSON-safe."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _jsonable(x.tolist())
    if hasattr(x, "to_dict") and callable(x.to_dict):  # pandas
        return _jsonable(x.to_dict(orient="records") if hasattr(x, "columns") else x.to_dict())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: Path, what: str = "file") -> Any:
    """JSON from ``path``; an unreadable or truncated file raises an error that names it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is not readable JSON (truncated or corrupt?): {e}") from None


def write_json_or_overwrite(path: Path, obj: Any) -> None:
    """:func:`write_json`; when that cannot make its temp file (a full disk), overwrite the existing
    file in place instead. A small record rewritten in place stays within the blocks it already
    holds, so a status record can still be updated on a full disk."""
    path = Path(path)
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError:
        if not path.is_file():
            raise
        with open(path, "r+") as f:
            f.write(text)
            f.truncate()


class SpaceReserve:
    """``size`` bytes set aside in ``path`` at the start of a job and given back (the file deleted)
    just before the job writes its final record: on a disk the job itself filled, that record
    still has room. The file is hidden; :meth:`release` is idempotent."""

    def __init__(self, path: Path, size: int = 512 * 1024):
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:  # pragma: no cover - macOS: written zeros take real blocks too
                os.write(fd, bytes(size))
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)

    def release(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - nothing better to do with a folder gone read-only
            pass
