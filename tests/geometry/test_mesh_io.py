"""mesh_io: every format round-trips, scenes merge with node transforms, each MeshError reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from impax.geometry.mesh_io import MeshError, load_mesh, save_mesh


def _reference_mesh() -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.7)
    m.vertices = m.vertices * [1.0, 0.5, 0.25] + [0.1, -0.2, 0.3]  # anisotropic, off-centre
    return m


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.parametrize("suffix", [".obj", ".off", ".ply", ".stl", ".glb"])
def test_format_round_trip_written_by_trimesh(tmp_path, suffix):
    ref = _reference_mesh()
    path = tmp_path / f"m{suffix}"
    ref.export(str(path))  # written by trimesh itself, read back by load_mesh
    got = load_mesh(path)
    assert len(got.faces) == len(ref.faces)
    assert len(got.vertices) == len(ref.vertices)  # STL's per-face vertices are merged again
    np.testing.assert_allclose(_sorted_rows(got.vertices), _sorted_rows(ref.vertices), atol=1e-6)
    assert got.volume == pytest.approx(ref.volume, rel=1e-5)


def test_gltf_with_embedded_buffers(tmp_path):
    ref = _reference_mesh()
    files = trimesh.exchange.gltf.export_gltf(trimesh.Scene(ref), embed_buffers=True)
    (name, data), = files.items()
    path = tmp_path / "m.gltf"
    path.write_bytes(data)
    got = load_mesh(path)
    assert len(got.faces) == len(ref.faces)
    np.testing.assert_allclose(got.bounds, ref.bounds, atol=1e-6)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".off", ".stl", ".glb"])
def test_save_mesh_then_load(tmp_path, suffix):
    ref = _reference_mesh()
    got = load_mesh(save_mesh(ref, tmp_path / f"out{suffix}"))
    np.testing.assert_allclose(_sorted_rows(got.vertices), _sorted_rows(ref.vertices), atol=1e-6)
    assert got.area == pytest.approx(ref.area, rel=1e-6)


def test_multi_part_glb_scene_is_merged_with_node_transforms(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    ball = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="box", transform=trimesh.transformations.translation_matrix([3.0, 0, 0]))
    rot = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1])
    rot[:3, 3] = [-2.0, 1.0, 0.0]
    scene.add_geometry(ball, node_name="ball", transform=rot)
    path = tmp_path / "scene.glb"
    path.write_bytes(scene.export(file_type="glb"))
    got = load_mesh(path)
    assert len(got.faces) == len(box.faces) + len(ball.faces)
    assert got.area == pytest.approx(box.area + ball.area, rel=1e-6)
    # the box sits at x in [2.5, 3.5]; the ball's centre moved to (-2, 1, 0)
    assert got.bounds[1][0] == pytest.approx(3.5, abs=1e-6)
    ball_verts = got.vertices[got.vertices[:, 0] < 0]
    np.testing.assert_allclose(np.linalg.norm(ball_verts - [-2.0, 1.0, 0.0], axis=1), 0.5, atol=1e-6)


def _expect(path, fragment):
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    err = info.value
    assert err.path == str(path)
    assert fragment in err.reason
    assert str(err) == f"{path}: {err.reason}" and "\n" not in str(err)
    return err


def test_error_missing_and_empty_and_garbage(tmp_path):
    _expect(tmp_path / "nope.obj", "does not exist")
    empty = tmp_path / "empty.obj"
    empty.write_bytes(b"")
    _expect(empty, "empty file")
    for suffix in (".ply", ".off", ".glb"):
        bad = tmp_path / f"garbage{suffix}"
        bad.write_bytes(bytes(range(256)) * 4)
        _expect(bad, "unreadable")


def test_error_point_cloud_ply(tmp_path):
    path = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((50, 3))).export(str(path))
    _expect(path, "no faces")


def test_error_nan_vertex(tmp_path):
    path = tmp_path / "nan.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    _expect(path, "non-finite")


def test_error_zero_area_and_flat(tmp_path):
    line = tmp_path / "line.obj"
    line.write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\nf 1 1 2\n")
    _expect(line, "zero surface area")
    flat = tmp_path / "flat.off"
    flat.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n3 1 3 2\n")
    _expect(flat, "zero volume")


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({}))
    _expect(p, "unsupported")
