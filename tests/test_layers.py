"""The package's layers import downwards only, and no two modules import each other.

    utils  <-  attention, kernels  <-  data, clip  <-  study  <-  runner  (<- linrepro/__main__)

Every ``import`` is counted, those inside functions too: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"utils": 0, "attention": 1, "kernels": 1, "data": 2, "clip": 2, "study": 3, "runner": 4}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted((ROOT / "linrepro").rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    for p in sorted((ROOT / "kernels").glob("*.py")):
        mods["linrepro.kernels" + ("" if p.stem == "__init__" else f".{p.stem}")] = p
    return mods


def _walk_runtime(node):
    """ast.walk, without the bodies of ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) == "TYPE_CHECKING":
            yield from (x for n in child.orelse for x in _walk_runtime(n))
            continue
        yield from _walk_runtime(child)


def _imports(name: str, path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(_walk_runtime(tree))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = pkg.split(".")
                base = ".".join(up[: len(up) - (n.level - 1)] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in n.names}
    mods = _modules()
    return {m for m in out if m in mods and m != name}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def test_every_import_points_down_or_sideways():
    bad = []
    for name, path in _modules().items():
        mine = _layer(name)
        if mine is None:  # linrepro/__init__ and __main__ sit above every layer
            continue
        for dep in _imports(name, path):
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                bad.append(f"{name} (layer {mine}) imports {dep} (layer {theirs})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    mods = _modules()
    graph = {m: {d for d in _imports(m, p) if d != m and not m.startswith(d + ".")} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule can fail: a data module that imports the runner is caught."""
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from linrepro.runner import params\n")
    deps = _imports("linrepro.data.x", p)
    assert "linrepro.runner.params" in deps and _layer("linrepro.runner.params") > _layer("linrepro.data.x")
