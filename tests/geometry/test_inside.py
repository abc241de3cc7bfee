"""inside: winding-number labels and signed distance against analytic shapes, incl. imperfect meshes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import trimesh

from impax.geometry.inside import occupancy, prepare_mesh, signed_distance, unsigned_distance, winding_number
from impax.geometry.sampling import near_surface_samples, uniform_samples


# ----------------------------------------------------------------------------- analytic shapes
# Fine tessellations (~82k faces): near-surface labels can only agree with the analytic shape up
# to the mesh's own deviation from it ("band"), so the facets must sag much less than sigma.
def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@functools.lru_cache(maxsize=None)
def sphere_case():
    c, r = np.array([0.05, -0.03, 0.02]), 0.35
    mesh = trimesh.creation.icosphere(subdivisions=6, radius=r)
    mesh.apply_translation(c)
    tri = mesh.triangles
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    band = r - np.min(np.abs(np.einsum("ij,ij->i", n, tri[:, 0] - c)))  # deepest facet sag, closed form
    return mesh, (lambda p: np.linalg.norm(p - c, axis=1) - r), band


def box_sdf(p, c, half, rot=np.eye(3)):
    q = np.abs((p - c) @ rot) - half
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)


@functools.lru_cache(maxsize=None)
def box_case():
    half, c, rot = np.array([0.3, 0.2, 0.35]), np.array([0.02, 0.04, -0.03]), _rotation(3)
    mesh = trimesh.creation.box(extents=2 * half)
    mesh.vertices = mesh.vertices @ rot.T + c
    return mesh, (lambda p: box_sdf(p, c, half, rot)), 1e-9  # the mesh is the exact box


@functools.lru_cache(maxsize=None)
def torus_case():
    big, small = 0.3, 0.1
    mesh = trimesh.creation.torus(major_radius=big, minor_radius=small, major_sections=320, minor_sections=128)

    def sdf(p):  # trimesh's torus lies around the z axis
        ring = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - big
        return np.sqrt(ring**2 + p[:, 2] ** 2) - small
    band = 1.5 * np.max(np.abs(sdf(mesh.triangles.mean(axis=1))))  # facet sag at face centres
    return mesh, sdf, band


CASES = {"sphere": sphere_case, "box": box_case, "torus": torus_case}


def _queries(mesh, n, seed, sigma=0.02):
    rng = np.random.default_rng(seed)
    return uniform_samples(n, 0.5, rng).astype(np.float64), near_surface_samples(mesh, n, sigma, rng).astype(np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_labels_agree_with_analytic_shape(name):
    mesh, sdf, band = CASES[name]()
    uni, near = _queries(mesh, 20000, seed=1)
    for pts in (uni, near):
        truth = sdf(pts) < 0
        got = occupancy(mesh, pts)
        assert got.dtype == bool and got.shape == (len(pts),)
        assert np.mean(got == truth) >= 0.999
        off_band = np.abs(sdf(pts)) > band  # beyond the mesh's own deviation from the shape
        assert np.all(got[off_band] == truth[off_band])


@pytest.mark.parametrize("name", list(CASES))
def test_signed_distance_error_near_surface(name):
    mesh, sdf, band = CASES[name]()
    _, near = _queries(mesh, 20000, seed=2)
    got = signed_distance(mesh, near)
    assert got.dtype == np.float32
    err = np.abs(got - sdf(near))
    assert err.max() <= 0.01  # 1% of the unit box
    assert err.max() <= band + 1e-5  # and in fact no worse than the tessellation error
    np.testing.assert_allclose(unsigned_distance(mesh, near), np.abs(got), atol=1e-7)


def test_winding_number_closed_forms():
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    w = winding_number(cube, np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.1, -0.2, 0.3]]))
    np.testing.assert_allclose(w, [1.0, 0.0, 1.0], atol=1e-3)
    # remove the +x face: from the centre the hole subtends exactly 1/6 of the sphere of directions
    open_cube = trimesh.Trimesh(cube.vertices, cube.faces[cube.face_normals[:, 0] < 0.5], process=False)
    w = winding_number(open_cube, np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))
    np.testing.assert_allclose(w, [5.0 / 6.0, 0.0], atol=2e-3)


# ----------------------------------------------------------------------------- imperfect meshes
def _accuracy(mesh, sdf, seed=5):
    uni, near = _queries(mesh, 20000, seed=seed)
    pts = np.concatenate([uni, near])
    return float(np.mean(occupancy(mesh, pts) == (sdf(pts) < 0)))


def test_cube_with_one_face_deleted():
    half = np.array([0.3, 0.3, 0.3])
    cube = trimesh.creation.box(extents=2 * half).subdivide().subdivide()
    holed = trimesh.Trimesh(cube.vertices, cube.faces[cube.face_normals[:, 0] < 0.5], process=False)
    assert not holed.is_watertight
    assert _accuracy(holed, lambda p: box_sdf(p, 0.0, half)) >= 0.99


def test_half_of_the_faces_flipped():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.35)
    rng = np.random.default_rng(0)
    f = mesh.faces.copy()
    flip = rng.permutation(len(f))[: len(f) // 2]
    f[flip] = f[flip][:, ::-1]
    broken = trimesh.Trimesh(mesh.vertices, f, process=False)
    assert not broken.is_winding_consistent
    sphere = lambda p: np.linalg.norm(p, axis=1) - 0.35  # noqa: E731
    assert _accuracy(broken, sphere) >= 0.99
    # and the fully inverted mesh (all normals inward) too
    inverted = trimesh.Trimesh(mesh.vertices, mesh.faces[:, ::-1], process=False)
    assert _accuracy(inverted, sphere) >= 0.99


def test_two_overlapping_closed_parts_give_the_union():
    h1, c1 = np.array([0.3, 0.1, 0.1]), np.array([0.0, 0.0, 0.0])
    h2, c2 = np.array([0.1, 0.3, 0.15]), np.array([0.15, 0.1, 0.05])
    a = trimesh.creation.box(extents=2 * h1)
    b = trimesh.creation.box(extents=2 * h2)
    b.apply_translation(c2)
    both = trimesh.util.concatenate([a, b])
    union = lambda p: np.minimum(box_sdf(p, c1, h1), box_sdf(p, c2, h2))  # noqa: E731
    assert _accuracy(both, union) >= 0.99
    overlap = np.array([[0.12, 0.05, 0.05]])  # inside both: winding number 2, still "inside"
    assert winding_number(both, overlap)[0] == pytest.approx(2.0, abs=1e-3)
    assert occupancy(both, overlap)[0]


def test_duplicate_faces_any_winding():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.35)
    f = np.vstack([mesh.faces, mesh.faces[:200], mesh.faces[200:400, ::-1]])
    dup = trimesh.Trimesh(mesh.vertices, f, process=False)
    assert len(prepare_mesh(dup).faces) == len(mesh.faces)
    assert _accuracy(dup, lambda p: np.linalg.norm(p, axis=1) - 0.35) >= 0.99
    pts = np.random.default_rng(7).uniform(-0.5, 0.5, (5000, 3))
    np.testing.assert_array_equal(occupancy(dup, pts), occupancy(mesh, pts))


def test_inner_cavity_wall_is_kept():
    outer = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    inner = trimesh.creation.icosphere(subdivisions=4, radius=0.25)
    inner = trimesh.Trimesh(inner.vertices, inner.faces[:, ::-1], process=False)  # faces the cavity
    shell = trimesh.util.concatenate([outer, inner])
    r = lambda p: np.linalg.norm(p, axis=1)  # noqa: E731
    hollow = lambda p: np.maximum(r(p) - 0.4, 0.25 - r(p))  # noqa: E731
    assert _accuracy(shell, hollow) >= 0.99
    assert not occupancy(shell, np.zeros((1, 3)))[0]
