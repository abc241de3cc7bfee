"""The package's layering: a module never imports a layer above its own (the brief's data flow), and
the modules of one layer never import each other in a circle (imports inside functions included: a
function-level import hides a cycle, it does not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

import impax

#: Lowest first. A module of layer k may import layers 0..k (its own included), never above.
ORDER = ["conventions", "configs", "geometry", "data", "models", "train", "inference", "evaluation", "report",
         "stages", "demo", "commands", "cli"]
ROOT = Path(impax.__file__).parent


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "impax" and len(parts) > 1 and parts[1] in ORDER else None


def _module_name(root: Path, f: Path) -> str:
    parts = f.relative_to(root).with_suffix("").parts
    return ".".join(("impax",) + (parts[:-1] if parts[-1] == "__init__" else parts))


def _imports(path: Path, names: bool = False) -> list[tuple[str, int]]:
    """``(module, line)`` of every absolute import; with ``names``, ``from a import b`` also yields
    ``a.b`` (which is a module when ``b`` is a submodule)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
            if names:
                out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return out


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Circles of imports among the package's modules within one layer (strongly connected
    components of more than one module; Tarjan's algorithm)."""
    files = {_module_name(root, f): f for f in sorted(root.rglob("*.py"))}
    graph = {m: sorted({n for n, _ in _imports(f, names=True) if n in files and n != m
                        and _layer(n) == _layer(m)}) for m, f in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in graph:
        if m not in index:
            visit(m)
    return sorted(cycles)


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for f in sorted(root.rglob("*.py")):
        mod = _module_name(root, f)
        me = _layer(mod)
        if me is None:
            continue
        for name, line in _imports(f):
            other = _layer(name)
            if other is not None and ORDER.index(other) > ORDER.index(me):
                bad.append(f"{f.relative_to(root)}:{line} ({me}) imports {name} ({other})")
    return bad


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    pkg = tmp_path / "impax"
    (pkg / "geometry").mkdir(parents=True)
    (pkg / "geometry" / "ok.py").write_text("from impax.conventions import Transform\n")
    (pkg / "geometry" / "bad.py").write_text("def f():\n    from impax.inference.extract import extract_mesh\n")
    assert upward_imports(pkg) == ["geometry/bad.py:2 (geometry) imports impax.inference.extract (inference)"]


def test_no_import_cycles_within_a_layer():
    assert import_cycles() == []


def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "impax"
    (pkg / "inference").mkdir(parents=True)
    (pkg / "inference" / "a.py").write_text("from impax.inference.b import g\n")
    (pkg / "inference" / "b.py").write_text("def g():\n    from impax.inference import a\n")
    (pkg / "inference" / "c.py").write_text("from impax.inference.a import f\n")  # uses the circle, not in it
    assert import_cycles(pkg) == [["impax.inference.a", "impax.inference.b"]]
