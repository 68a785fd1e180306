"""A notebook's ``parameters`` cell as a schema, and validation of profiles against it.

Papermill injects any key it is given, typos included. linrepro reads the notebook's
tagged ``parameters`` cell, takes each assignment as a parameter with the type of its
default (or of its annotation), and rejects unknown keys and wrong types before
anything executes.

Annotations understood in a parameters cell::

    n_tokens: int = 1024          # int (bool is rejected)
    scale: float = 0.5            # float (an int is accepted and converted)
    data_dir: "ExistingPath" = ""  # a string; when non-empty it must name an existing path
    run_dir: "OptionalStr" = None  # a string or None
    score_scale: "ScoreScale" = 0.5  # a positive number or "1/N" (linrepro.attention.check_score_scale)

(Quote the custom annotations: Python evaluates module-level annotations.)
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from linrepro.utils import project


class ParamError(ValueError):
    """Bad parameters or profile: the CLI maps it to exit status 2."""


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # int | float | str | bool | list | dict | path | any
    default: Any
    help: str = ""


def _read_notebook(path: Path):
    import jupytext
    import nbformat

    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    return jupytext.read(path)


def _percent_parameters_cell(path: Path) -> str | None:
    """The source of the cell tagged ``parameters`` in a percent-format ``.py``, read as text.

    Used where jupytext is not installed (a bare GPU image running ``python -m linrepro.runner.bench``);
    a test checks it agrees with jupytext on every notebook."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# %%") and re.search(r"tags\s*=\s*\[[^\]]*[\"']parameters[\"']", line):
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.startswith("# %%"):
                    break
                body.append(nxt)
            return "\n".join(body).strip("\n")
    return None


def parameters_source(path: Path) -> str:
    path = Path(path)
    if path.suffix == ".py":
        try:
            import jupytext  # noqa: F401
        except ImportError:
            src = _percent_parameters_cell(path)
            if src is None:
                raise ParamError(f"{path} has no cell tagged 'parameters'") from None
            return src
    nb = _read_notebook(path)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell.source
    raise ParamError(f"{path} has no cell tagged 'parameters'")


def _type_of(annotation: ast.expr | None, default: Any) -> str:
    if annotation is not None:
        name = ast.unparse(annotation).strip("'\"")
        if name in _TYPES:
            return name
        if name == "ExistingPath":
            return "path"
        if name == "ScoreScale":
            return "score_scale"
        if name in ("OptionalStr", "str | None", "Optional[str]"):
            return "optional_str"
        return "any"
    if isinstance(default, bool):
        return "bool"
    for tname, t in _TYPES.items():
        if type(default) is t:
            return tname
    return "any"


def notebook_params(path: Path) -> dict[str, Param]:
    """Parse the parameters cell into {name: Param}, in order."""
    src = parameters_source(path)
    lines = src.splitlines()
    tree = ast.parse(src)
    out: dict[str, Param] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, ann, value = node.targets[0].id, None, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, ann, value = node.target.id, node.annotation, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except ValueError as e:
            raise ParamError(f"{path.name}: parameter {name!r} must have a literal default ({e})") from None
        line = lines[node.lineno - 1]
        help_ = line.split("#", 1)[1].strip() if "#" in line else ""
        out[name] = Param(name, _type_of(ann, default), default, help_)
    return out


def _missing_paths(value: str, limit: int = 3) -> list[str]:
    """Paths in ``value`` that do not exist. Brace patterns (webdataset shards, ``{000..999}``)
    and ``::``-joined sources are expanded; relative paths are taken from the project root."""
    from braceexpand import braceexpand

    missing = []
    for part in value.split("::"):
        for path in braceexpand(part):
            full = Path(path) if Path(path).is_absolute() else project.root() / path
            if not full.exists():
                missing.append(path)
                if len(missing) >= limit:
                    return missing
    return missing


def _coerce(p: Param, value: Any, where: str) -> Any:
    t = p.type
    bad = ParamError(f"{where}: parameter {p.name!r} must be {t}, got {type(value).__name__} {value!r}")
    if t == "any":
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if t in ("str", "path"):
        if not isinstance(value, str):
            raise bad
        if t == "path" and value:
            missing = _missing_paths(value)
            if missing:
                raise ParamError(
                    f"{where}: parameter {p.name!r} names a path that does not exist: "
                    f"{value!r} (first missing: {missing[0]})"
                )
        return value
    if t == "score_scale":
        from linrepro.attention import check_score_scale

        try:
            return check_score_scale(value)
        except ValueError as e:
            raise ParamError(f"{where}: parameter {p.name!r}: {e}") from None
    if t == "optional_str":
        if value is not None and not isinstance(value, str):
            raise bad
        return value
    if t in ("list", "dict"):
        if not isinstance(value, _TYPES[t]):
            raise bad
        return value
    raise bad  # pragma: no cover


def validate(schema: dict[str, Param], values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check keys and types; returns the coerced values. Raises ParamError naming the key."""
    out = {}
    for key, value in values.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParamError(f"{where}: unknown parameter {key!r}.{hint} Valid parameters: {', '.join(schema)}")
        out[key] = _coerce(schema[key], value, where)
    return out


def profile_path(profile: str, stem: str) -> Path:
    return project.params_dir() / profile / f"{stem}.yaml"


def load_profile(profile: str, stem: str) -> dict[str, Any]:
    """The YAML mapping of params/<profile>/<stem>.yaml; ParamError if missing or malformed."""
    pdir = project.params_dir() / profile
    if not pdir.is_dir():
        raise ParamError(
            f"unknown profile {profile!r} (no folder {pdir}). Profiles: {', '.join(project.list_profiles())}"
        )
    path = profile_path(profile, stem)
    if not path.exists():
        raise ParamError(f"profile {profile!r} has no parameter file for {stem}: {path} is missing")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of parameter: value, got {type(data).__name__}")
    return data


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings; VALUE is read as YAML (``3`` → int, ``0.5`` → float, ``[1,2]`` → list)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ParamError(f"-p expects KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def resolve(notebook: Path, profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults ← profile YAML ← -p overrides, each layer validated against the notebook."""
    schema = notebook_params(notebook)
    stem = notebook.stem
    values = {name: p.default for name, p in schema.items()}
    prof = load_profile(profile, stem)
    values.update(validate(schema, prof, str(profile_path(profile, stem).relative_to(project.root()))))
    values.update(validate(schema, overrides, "-p"))
    return values
