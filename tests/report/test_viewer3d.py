"""The report's 3D viewer files: the glb writer (read back by trimesh), the face cap, the base64
script beside each glb, and the vendored three.js bundle shipped with the package."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import trimesh

from impax.report import viewer3d as v3

REPO = Path(__file__).resolve().parents[2]


def _sorted_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = np.asarray(vertices)[np.asarray(faces)]
    return tri[np.lexsort(tri.reshape(len(tri), -1).T[::-1])]


def test_glb_reads_back_with_trimesh_small_and_large_index_types():
    for subdivisions in (3, 7):  # icospheres of 642 vertices (uint16 indices) and 163842 (uint32)
        mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
        data = v3.glb_bytes(mesh.vertices, mesh.faces)
        assert data[:4] == b"glTF" and len(data) % 4 == 0
        doc = json.loads(data[20:20 + int.from_bytes(data[12:16], "little")])
        assert doc["accessors"][0]["componentType"] == (5123 if len(mesh.vertices) <= 65535 else 5125)
        back = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
        assert len(back.faces) == len(mesh.faces)
        np.testing.assert_allclose(_sorted_faces(back.vertices, back.faces),
                                   _sorted_faces(mesh.vertices.astype(np.float32), mesh.faces), atol=1e-6)


def test_big_meshes_are_capped_closed_ones_by_edge_collapse_others_by_clustering():
    closed = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces, watertight
    v, f, method = v3.simplify(closed, 4000)
    assert method == "quadric edge collapse" and 0 < len(f) <= 4000
    r = np.linalg.norm(v, axis=1)
    assert abs(r.mean() - 1) < 0.02  # still the unit sphere
    holed = closed.copy()
    holed.update_faces(np.arange(len(holed.faces)) % 7 != 0)  # not watertight
    v, f, method = v3.simplify(holed, 4000)
    assert method == "vertex clustering" and 0 < len(f) <= 4000 and f.max() < len(v)
    assert abs(np.linalg.norm(v, axis=1).mean() - 1) < 0.05
    v, f, method = v3.simplify(closed, 10 ** 6)
    assert method == "" and len(f) == len(closed.faces)


def test_write_glb_writes_the_glb_and_a_script_registering_the_same_bytes(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    info = v3.write_glb(mesh, tmp_path, "3d/00-a/gt.glb", max_faces=2000)
    glb = (tmp_path / "3d/00-a/gt.glb").read_bytes()
    js = (tmp_path / "3d/00-a/gt.glb.js").read_text()
    m = re.fullmatch(r'\(window\.IMPAX_GLB=window\.IMPAX_GLB\|\|\{\}\)\["3d/00-a/gt\.glb"\]="([A-Za-z0-9+/=]+)";\n', js)
    assert m and base64.b64decode(m.group(1)) == glb
    assert info["faces"] <= 2000 and info["original_faces"] == 5120 and info["method"]
    assert info["bytes"] == len(glb) + len(js)
    assert v3.safe_name("chair/../x y") == "chair_.._x_y" and v3.safe_name("///") == "shape"


def test_the_vendored_bundle_its_licence_and_checksum_ship_with_the_package():
    bundle = v3.VENDOR / v3.BUNDLE
    text = bundle.read_text(encoding="utf-8")
    assert text.startswith("(()=>{") and "window.IMPAX_THREE=" in text  # one classic script
    assert "import " not in text[:200] and "export " not in text[-400:]
    for name in ("OrbitControls", "GLTFLoader", "WebGLRenderer"):
        assert f"{name}:" in text
    assert 'REVISION:"' + v3.THREE_VERSION.split(".")[1] + '"' in text
    digest = (v3.VENDOR / "impax-three.min.js.sha256").read_text().split()[0]
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == digest
    assert "MIT License" in (v3.VENDOR / "LICENSE").read_text()
    readme = (v3.VENDOR / "README.md").read_text()
    assert v3.THREE_VERSION in readme and "scripts/build_three_bundle.sh" in readme
    build = (REPO / "scripts" / "build_three_bundle.sh").read_text()
    assert f"THREE_VERSION={v3.THREE_VERSION}" in build
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["impax.report"]
    pkg = Path(v3.__file__).parent
    for needed in ("viewer3d.js", "vendor/impax-three.min.js", "vendor/LICENSE"):
        assert any(Path(pkg / needed).match(str(pkg / g)) for g in data), needed
