"""normalize: IM-NET and GAPS transforms against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from impax.geometry.normalize import (gaps_centroid, gaps_pca_variances, gaps_transform, imnet_transform,
                                      transform_mesh)


def test_imnet_transform_of_axis_aligned_box():
    ext, centre = np.array([2.0, 3.0, 6.0]), np.array([1.0, -2.0, 5.0])  # diagonal sqrt(4+9+36) = 7
    box = trimesh.creation.box(extents=ext)
    box.apply_translation(centre)
    t = imnet_transform(box)
    expected = np.eye(4)
    expected[:3, :3] /= 7.0
    expected[:3, 3] = -centre / 7.0
    np.testing.assert_allclose(t.as_matrix(), expected, atol=1e-12)
    assert (t.source, t.target) == ("original", "imnet")
    out = transform_mesh(box, t)
    np.testing.assert_allclose(out.bounds, [-ext / 14.0, ext / 14.0], atol=1e-12)
    assert np.linalg.norm(out.bounds[1] - out.bounds[0]) == pytest.approx(1.0)
    back = transform_mesh(out, t.inverse())
    np.testing.assert_allclose(back.vertices, box.vertices, atol=1e-12)


def _octahedron(a, b, c, centre):
    v = np.array([[a, 0, 0], [-a, 0, 0], [0, b, 0], [0, -b, 0], [0, 0, c], [0, 0, -c]], dtype=float)
    f = []
    for sx in (0, 1):
        for sy in (2, 3):
            for sz in (4, 5):
                tri = [sx, sy, sz]
                n = np.cross(v[sy] - v[sx], v[sz] - v[sx])
                if n @ (v[sx] + v[sy] + v[sz]) < 0:
                    tri = tri[::-1]
                f.append(tri)
    return trimesh.Trimesh(v + centre, np.array(f), process=False)


def test_gaps_transform_closed_form_octahedron():
    # 8 congruent faces, centroids (±a/3, ±b/3, ±c/3): covariance diag(a², b², c²)/9, so
    # sqrt(l_max) = max(a, b, c)/3 and the GAPS scale is 0.25 * 3 / max(a, b, c).
    a, b, c, centre = 0.4, 1.5, 0.9, np.array([2.0, -1.0, 0.5])
    octa = _octahedron(a, b, c, centre)
    np.testing.assert_allclose(gaps_pca_variances(octa), np.array([b, c, a]) ** 2 / 9.0, rtol=1e-12)
    t = gaps_transform(octa)
    s = 0.75 / b
    expected = np.eye(4)
    expected[:3, :3] *= s
    expected[:3, 3] = -s * centre
    np.testing.assert_allclose(t.as_matrix(), expected, atol=1e-12)
    assert (t.source, t.target) == ("original", "gaps")
    np.testing.assert_allclose(t.inverse().apply(t.apply(octa.vertices)), octa.vertices, atol=1e-12)


def test_gaps_centroid_is_area_weighted_not_vertex_mean():
    # a unit cube whose +x face is finely subdivided: the vertex mean moves towards +x, the
    # area-weighted face-centroid mean (GAPS R3Mesh::Centroid) stays at the cube centre.
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    plus_x = cube.face_normals[:, 0] > 0.5
    sub = trimesh.Trimesh(cube.vertices, cube.faces[plus_x], process=False)
    for _ in range(4):
        sub = sub.subdivide()
    rest = trimesh.Trimesh(cube.vertices, cube.faces[~plus_x], process=False)
    mesh = trimesh.util.concatenate([rest, sub])
    mesh.apply_translation([0.3, 0.2, -0.1])
    assert mesh.vertices.mean(axis=0)[0] > 0.3 + 0.2  # the vertex mean is far off
    np.testing.assert_allclose(gaps_centroid(mesh), [0.3, 0.2, -0.1], atol=1e-12)
    t = gaps_transform(mesh)
    np.testing.assert_allclose(t.apply(np.array([[0.3, 0.2, -0.1]])), 0.0, atol=1e-12)


def test_gaps_frame_is_equivariant_and_normalised(rng):
    mesh = trimesh.creation.capsule(height=1.0, radius=0.3, count=[16, 16])
    mesh.apply_translation([0.1, 0.0, 0.4])
    g = transform_mesh(mesh, gaps_transform(mesh))
    np.testing.assert_allclose(gaps_centroid(g), 0.0, atol=1e-12)
    assert gaps_pca_variances(g)[0] == pytest.approx(0.25**2, rel=1e-10)
    # similarity in the original frame: x -> 3.7 R x + t gives the same GAPS mesh, rotated by R
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    moved = trimesh.Trimesh(3.7 * mesh.vertices @ rot.T + [5.0, -2.0, 1.0], mesh.faces, process=False)
    g2 = transform_mesh(moved, gaps_transform(moved))
    np.testing.assert_allclose(g2.vertices, g.vertices @ rot.T, atol=1e-9)


def test_transform_mesh_keeps_orientation_under_mirror():
    from impax.conventions import Transform

    ball = trimesh.creation.icosphere(subdivisions=1)
    mirror = Transform.from_matrix(np.diag([-1.0, 1.0, 1.0, 1.0]))
    out = transform_mesh(ball, mirror)
    assert out.volume == pytest.approx(ball.volume)  # still outward, positive volume
    assert ball.vertices is not out.vertices
