"""Issue 15, item 6: OBJ files in cp1252 or UTF-16 are read (trimesh needs charset_normalizer,
now a dependency of impax)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import trimesh
from faults.faultlib import QUICK, impax, report

import impax as impax_pkg


def test_non_utf8_obj_files_are_prepared(tmp_path):
    text = trimesh.creation.box(extents=(0.8, 0.5, 0.4)).export(file_type="obj")
    src = tmp_path / "src" / "chair"
    src.mkdir(parents=True)
    (src / "cp1252.obj").write_bytes(("# mod\u00e8le caf\u00e9 \u2013 cp1252\n" + text).encode("cp1252"))
    (src / "utf16.obj").write_bytes(("# mod\u00e8le caf\u00e9\n" + text).encode("utf-16"))
    res = impax("prepare", tmp_path / "src", tmp_path / "out", *QUICK, "--workers", "1")
    assert res.returncode == 0, res.stderr
    assert report(tmp_path / "out")["prepared"] == 2


def test_charset_normalizer_is_a_dependency():
    pyproject = Path(impax_pkg.__file__).parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert any(d.startswith("charset-normalizer") for d in deps)
