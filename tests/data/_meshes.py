"""Small good and bad mesh files for the preparation tests (written with trimesh / by hand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

#: Bad inputs: relative path → the words the failure reason must contain.
BAD = {
    "bad/empty.obj": "empty",
    "bad/garbage.ply": "unreadable",
    "bad/cloud.ply": "no faces",
    "bad/nan.obj": "non-finite",
    "bad/flat.obj": "zero volume",
    "bad/sheet.obj": "encloses no volume",
}


def write_good(root: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    meshes = {
        "chair/ball.ply": trimesh.creation.icosphere(subdivisions=2, radius=0.7),
        "chair/box.obj": trimesh.creation.box(extents=(1.0, 0.6, 0.4)),
        "table/cyl.off": trimesh.creation.cylinder(radius=0.3, height=1.2, sections=24),
        "table/caps.stl": trimesh.creation.capsule(height=0.8, radius=0.25, count=(12, 12)),
        "plane/torus.ply": trimesh.creation.torus(0.5, 0.2, major_sections=24, minor_sections=12),
        "plane/cone.obj": trimesh.creation.cone(radius=0.5, height=0.9, sections=24),
    }
    for rel, m in meshes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        m.export(root / rel)
    return sorted(meshes)


def write_bad(root: Path) -> None:
    d = root / "bad"
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.obj").write_bytes(b"")
    (d / "garbage.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\n" + bytes(range(256)) * 3)
    pts = np.random.default_rng(0).normal(size=(50, 3))
    (d / "cloud.ply").write_bytes(trimesh.PointCloud(pts).export(file_type="ply"))
    (d / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 nan 1\nv 0 1 0\nf 1 2 3\nf 1 3 4\nf 1 2 4\nf 2 3 4\n")
    (d / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3\nf 1 3 4\n")
    (d / "sheet.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 1\nf 1 2 3\n")  # open: no inside


def without_measurements(rel: str, data: bytes) -> bytes:
    """``report.json`` with its per-shape measurements (seconds, peak memory: they differ from run
    to run) reduced to the ids measured; any other file as it is."""
    if rel != "report.json" and not rel.endswith("/report.json"):
        return data
    import json

    rep = json.loads(data)
    rep["shapes"] = sorted(rep.get("shapes", {}))
    return json.dumps(rep, sort_keys=True).encode()


def all_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path → bytes; see :func:`without_measurements`)."""
    return {rel: without_measurements(rel, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() for rel in [p.relative_to(root).as_posix()]}
