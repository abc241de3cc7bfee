"""Reading and writing triangle meshes, with clear errors for files that cannot be used.

``load_mesh`` reads every format the pipeline meets (.obj .off .ply .stl .glb .gltf) through
trimesh. Everything is loaded as a *scene* (``trimesh.load(..., force="scene")``) and flattened:
each geometry instance is transformed by its node's world transform and the triangle meshes are
concatenated, so a multi-part glTF/GLB or an OBJ with several groups becomes one ``Trimesh``.

Cleanup is deliberately light: duplicate vertices are merged and faces with a repeated vertex
index or zero area are dropped. Face winding is *not* repaired here; :mod:`impax.geometry.inside`
is robust to inconsistent winding instead (the original pipelines, OccNet's mesh-fusion and
LDIF's GAPS tools, are likewise fed meshes "as is").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh

#: Suffixes ``load_mesh`` accepts.
MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf")
#: Suffixes ``save_mesh`` writes.
SAVE_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".glb")


class MeshError(ValueError):
    """A mesh file that cannot be used; ``str()`` is the single line ``"PATH: REASON"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")


def _flatten_scene(scene: trimesh.Scene) -> tuple[list[trimesh.Trimesh], int]:
    """World-space copies of the triangle meshes of a scene, and the number of other geometries."""
    meshes, others = [], 0
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry.get(name)
        if isinstance(geom, trimesh.Trimesh):
            m = trimesh.Trimesh(vertices=np.asarray(geom.vertices, dtype=np.float64).copy(),
                                faces=np.asarray(geom.faces, dtype=np.int64).copy(), process=False)
            if transform is not None and not np.allclose(transform, np.eye(4)):
                m.apply_transform(transform)
            meshes.append(m)
        elif geom is not None:
            others += 1
    return meshes, others


def clean_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Light cleanup (a copy): merge identical vertices, drop faces with repeated indices or
    zero area, drop unreferenced vertices. Winding is left untouched."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if len(v) and len(f):
        uniq, inverse = np.unique(v, axis=0, return_inverse=True)
        f = inverse.reshape(-1)[f]
        v = uniq
        ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
        f = f[ok]
        if len(f):
            cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
            f = f[np.linalg.norm(cross, axis=1) > 0]
        used = np.zeros(len(v), dtype=bool)
        used[f.reshape(-1)] = True
        remap = np.cumsum(used) - 1
        v, f = v[used], remap[f]
    return trimesh.Trimesh(vertices=v, faces=f, process=False)


def load_mesh(path: str | os.PathLike) -> trimesh.Trimesh:
    """Load one mesh file as a single triangle mesh (float64 vertices, int64 faces).

    Raises :class:`MeshError` with a one-line reason for: a missing or unreadable file, an empty
    file, a file without faces (e.g. a point-cloud PLY), non-finite vertex coordinates, and a mesh
    with zero surface area or a degenerate (flat in some axis, "zero volume") bounding box.
    """
    p = Path(path)
    if not p.exists():
        raise MeshError(p, "file does not exist")
    if not p.is_file():
        raise MeshError(p, "not a regular file")
    suffix = p.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(p, f"unsupported mesh format {suffix!r} (expected one of {', '.join(MESH_SUFFIXES)})")
    if p.stat().st_size == 0:
        raise MeshError(p, "empty file")
    try:
        scene = trimesh.load(str(p), force="scene", process=False)
    except Exception as e:  # trimesh raises many types for corrupt files
        raise MeshError(p, f"unreadable {suffix[1:]} file ({type(e).__name__}: {e})") from e
    meshes, others = _flatten_scene(scene)
    meshes = [m for m in meshes if len(m.faces)]
    if not meshes:
        if others:
            raise MeshError(p, "no faces: the file holds only points or lines (a point cloud?)")
        raise MeshError(p, "no geometry: the file holds no triangles")
    verts = [np.asarray(m.vertices) for m in meshes]
    if not all(np.all(np.isfinite(v)) for v in verts):
        raise MeshError(p, "non-finite vertex coordinates (NaN or inf)")
    mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    mesh = clean_mesh(mesh)
    if len(mesh.faces) == 0 or not mesh.area > 0:
        raise MeshError(p, "zero surface area: every face is degenerate")
    extent = mesh.bounds[1] - mesh.bounds[0]
    if not np.all(extent > 1e-12 * max(float(extent.max()), 1e-300)):
        raise MeshError(p, f"degenerate bounding box (zero volume), extents {extent.tolist()}")
    return mesh


def save_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike) -> Path:
    """Write ``mesh``; the format follows the suffix (.ply .obj .off .stl .glb). Returns the path.

    PLY and GLB are binary; OBJ/OFF keep full float precision so a round trip is exact to ~1e-12. An
    empty mesh (no faces) gives a valid empty PLY or OBJ. The one mesh writer of impax.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SAVE_SUFFIXES:
        raise ValueError(f"cannot save a mesh as {suffix!r}; use one of {', '.join(SAVE_SUFFIXES)}")
    p.parent.mkdir(parents=True, exist_ok=True)
    if len(mesh.faces) == 0 and suffix in (".ply", ".obj"):
        # trimesh refuses some empty exports; an empty PLY or OBJ is still a well-defined file
        if suffix == ".ply":
            p.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                          b"property float z\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n")
        else:
            p.write_text("# empty mesh (no surface)\n")
        return p
    plain = trimesh.Trimesh(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces), process=False)
    if suffix == ".obj":
        data = plain.export(file_type="obj", include_normals=False, include_texture=False, digits=17)
    elif suffix == ".off":
        data = plain.export(file_type="off", digits=17)
    elif suffix == ".ply":
        data = plain.export(file_type="ply", encoding="binary")
    else:
        data = plain.export(file_type=suffix[1:])
    mode = "w" if isinstance(data, str) else "wb"
    with open(p, mode) as fh:
        fh.write(data)
    return p
