"""The package's layering: a module never imports a layer above its own (the brief's data flow)."""

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


def _imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
    return out


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for f in sorted(root.rglob("*.py")):
        mod = ".".join(("impax",) + f.relative_to(root).with_suffix("").parts)
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
