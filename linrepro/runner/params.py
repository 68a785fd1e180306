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

Ranges and choices are declared at the start of a parameter's comment, before its help text::

    epochs = 14  # [1, ...) training epochs per model
    lr = 0.001  # (0, ...) peak learning rate
    val_fraction = 0.2  # (0, 1) held-out share per domain
    check_ns = [1, 7, 64]  # non-empty [1, ...) sequence lengths
    device = "auto"  # {auto, cpu, cuda} where to time

* ``[lo, hi]``, ``(lo, hi)`` or mixed: an interval, closed at a square bracket and open at a round
  one; ``...`` leaves that side unbounded. It bounds a number, every element of a list and every
  value of a dict (a non-number there is refused); a string (``score_scale``'s ``"1/N"``) is left
  to its type's own check.
* ``{a, b, c}``: the value, or every element of a list, must be one of these (read as YAML).
* ``non-empty``, first: a list, dict or string must have at least one element.

A comment that opens with ``[`` or ``(`` and a number or ``...``, or with ``{``, is read as a
range, and one that does not parse is an error (so a typo cannot silently drop a range). No
``=`` in these comments: papermill reads the parameters cell too and trips on it. Defaults must
lie in their own range. ``linrepro params NOTEBOOK`` lists the ranges.

Float parameters take ``1e-3`` (YAML 1.1 reads an exponent without a dot as a string).
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
    # as declared: "non-empty", an interval "[1, ...)", choices "{a, b}", both, or "" (module docstring)
    range: str = ""


_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_BOUND = rf"(?:{_NUMBER}|\.\.\.)"
_INTERVAL = re.compile(rf"([\[(])\s*({_BOUND})\s*,\s*({_BOUND})\s*([\])])")
_CHOICES = re.compile(r"\{([^{}]*)\}")
_LOOKS_LIKE_RANGE = re.compile(r"[\[(]\s*[+-]?(?:\d|\.)|\{")


def _split_range(comment: str, where: str) -> tuple[str, str]:
    """(range, help) from a parameter's comment; see the module docstring."""
    rest, parts = comment.strip(), []
    m = re.match(r"non-empty\b\s*", rest)
    if m:
        parts.append("non-empty")
        rest = rest[m.end() :]
    m = _INTERVAL.match(rest) or _CHOICES.match(rest)
    if m:
        parts.append(m.group(0))
        rest = rest[m.end() :]
    elif _LOOKS_LIKE_RANGE.match(rest):
        raise ParamError(
            f"{where}: cannot read the range {rest.split(' ', 1)[0]!r}… in {comment.strip()!r}: write "
            "[lo, hi], (lo, hi) or a mix, with ... for no bound, or {a, b, c} for choices"
        )
    spec = " ".join(parts)
    if m and m.re is _INTERVAL:
        lo, hi = _bounds(spec)
        if lo is not None and hi is not None and lo > hi:
            raise ParamError(f"{where}: the range {spec!r} is empty ({lo} > {hi})")
    return spec, rest.strip()


def _bounds(spec: str) -> tuple[float | None, float | None]:
    m = _INTERVAL.search(spec)
    assert m is not None
    return (
        None if m.group(2) == "..." else float(m.group(2)),
        None if m.group(3) == "..." else float(m.group(3)),
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _range_violation(spec: str, value: Any) -> str | None:
    """Why ``value`` is outside the declared range ``spec``, or None if it is inside."""
    if not spec:
        return None
    if spec.startswith("non-empty") and isinstance(value, (list, dict, str)) and len(value) == 0:
        return "it is empty"
    items = list(value.values()) if isinstance(value, dict) else (value if isinstance(value, list) else [value])
    what = "an element" if isinstance(value, list) else ("a value" if isinstance(value, dict) else "it")
    m = _INTERVAL.search(spec)
    if m:
        lo, hi = _bounds(spec)
        for x in items:
            if not _is_number(x):
                if isinstance(value, (list, dict)):
                    return f"{what}, {x!r}, is not a number"
                continue
            if x != x:  # nan
                return f"{what} is nan"
            if lo is not None and (x < lo or (x == lo and m.group(1) == "(")):
                return f"{what}, {x!r}, is below {m.group(2)}" if x < lo else f"{what}, {x!r}, is not above {lo:g}"
            if hi is not None and (x > hi or (x == hi and m.group(4) == ")")):
                return f"{what}, {x!r}, is above {m.group(3)}" if x > hi else f"{what}, {x!r}, is not below {hi:g}"
    c = _CHOICES.search(spec)
    if c:
        allowed = [yaml.safe_load(t.strip()) for t in c.group(1).split(",") if t.strip()]
        for x in items:
            if x not in allowed:
                return f"{what}, {x!r}, is not one of {', '.join(map(str, allowed))}"
    return None


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
        line = lines[(node.end_lineno or node.lineno) - 1]  # a multi-line default: the comment ends it
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        spec, help_ = _split_range(comment, f"{path.name}: parameter {name!r}")
        why = _range_violation(spec, default)
        if why:
            raise ParamError(
                f"{path.name}: parameter {name!r}: its default {default!r} is outside its range {spec}: {why}"
            )
        out[name] = Param(name, _type_of(ann, default), default, help_, spec)
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
    value = _coerce_type(p, value, where)
    why = _range_violation(p.range, value)
    if why:
        raise ParamError(f"{where}: parameter {p.name!r} must be in its range {p.range}, got {value!r}: {why}")
    return value


def _coerce_type(p: Param, value: Any, where: str) -> Any:
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
        if isinstance(value, str) and re.fullmatch(_NUMBER, value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 as a string
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


def check_profile(profile: str) -> str:
    """A profile is the name of a folder under params/, never a path (its runs go to
    ``<outputs>/<profile>/``); ParamError otherwise."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", profile or "") or ".." in profile:
        raise ParamError(
            f"--profile takes the name of a folder under params/ ({', '.join(project.list_profiles())}), "
            f"not a path: {profile!r}"
        )
    return profile


def profile_path(profile: str, stem: str) -> Path:
    return project.params_dir() / check_profile(profile) / f"{stem}.yaml"


def load_profile(profile: str, stem: str) -> dict[str, Any]:
    """The YAML mapping of params/<profile>/<stem>.yaml; ParamError if missing or malformed."""
    pdir = project.params_dir() / check_profile(profile)
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
    # a key -p overrides is checked as -p gives it: the paper profile's LAION path need not exist then
    prof = {k: v for k, v in prof.items() if k not in overrides}
    values.update(validate(schema, prof, str(profile_path(profile, stem).relative_to(project.root()))))
    values.update(validate(schema, overrides, "-p"))
    return values
