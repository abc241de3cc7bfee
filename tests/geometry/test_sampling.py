"""sampling: area weighting, normals, uniform boxes, near-surface offsets, seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from impax.geometry.sampling import NEAR_SURFACE_SIGMA, near_surface_samples, surface_samples, uniform_samples


def _box(ext):
    return trimesh.creation.box(extents=ext)


def test_surface_samples_lie_on_faces_with_outward_normals_and_area_weights():
    ext = np.array([1.0, 2.0, 3.0])
    n = 40000
    pts, nrm = surface_samples(_box(ext), n, np.random.default_rng(0))
    assert pts.dtype == np.float32 and nrm.dtype == np.float32 and pts.shape == nrm.shape == (n, 3)
    on = np.abs(np.abs(pts) - ext / 2) < 1e-6  # which face each point is on
    assert np.all(on.sum(axis=1) >= 1)
    axis = np.argmax(on, axis=1)
    # normal = the face's outward axis
    expected = np.zeros_like(nrm)
    expected[np.arange(n), axis] = np.sign(pts[np.arange(n), axis])
    np.testing.assert_allclose(nrm, expected, atol=1e-6)
    # fraction per face pair ~ area share: x faces 2*(2*3), y 2*(1*3), z 2*(1*2) of 22
    share = np.bincount(axis, minlength=3) / n
    expected_share = np.array([6.0, 3.0, 2.0]) / 11.0
    sd = np.sqrt(expected_share * (1 - expected_share) / n)
    assert np.all(np.abs(share - expected_share) < 5 * sd)
    # uniform within a face: the +z face (1 x 2) has mean 0 and variance L^2/12 per axis
    top = pts[(axis == 2) & (pts[:, 2] > 0)].astype(np.float64)
    assert np.all(np.abs(top[:, :2].mean(axis=0)) < 0.02)
    np.testing.assert_allclose(top[:, :2].var(axis=0), np.array([1.0, 4.0]) / 12.0, rtol=0.05)


def test_surface_normals_outward_even_with_flipped_faces():
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    f = ball.faces.copy()
    f[::2] = f[::2, ::-1]
    broken = trimesh.Trimesh(ball.vertices, f, process=False)
    pts, nrm = surface_samples(broken, 5000, np.random.default_rng(1))
    radial = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    assert np.all(np.einsum("ij,ij->i", nrm, radial) > 0.95)
    _, raw = surface_samples(broken, 5000, np.random.default_rng(1), orient=False)
    assert np.mean(np.einsum("ij,ij->i", raw, radial) < 0) > 0.3  # the file's own winding is broken


def test_seeded_and_independent_of_global_numpy_state():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = surface_samples(mesh, 1000, np.random.default_rng(42))
    b = near_surface_samples(mesh, 1000, None, np.random.default_rng(42))
    c = uniform_samples(1000, 0.5, np.random.default_rng(42))
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(a[0], surface_samples(mesh, 1000, np.random.default_rng(42))[0])
    np.testing.assert_array_equal(b, near_surface_samples(mesh, 1000, None, np.random.default_rng(42)))
    np.testing.assert_array_equal(c, uniform_samples(1000, 0.5, np.random.default_rng(42)))
    assert not np.array_equal(c, uniform_samples(1000, 0.5, np.random.default_rng(43)))


def test_uniform_samples_box_moments():
    half, n = 0.7, 50000
    p = uniform_samples(n, half, np.random.default_rng(0))
    assert p.dtype == np.float32 and p.shape == (n, 3)
    assert p.min() >= -half and p.max() <= half
    np.testing.assert_allclose(p.mean(axis=0), 0.0, atol=5 * half / np.sqrt(3 * n))
    np.testing.assert_allclose(p.var(axis=0), (2 * half) ** 2 / 12.0, rtol=0.03)


@pytest.mark.parametrize("sigma", [None, 0.005])
def test_near_surface_offsets_are_gaussian(sigma):
    r = 0.4
    ball = trimesh.creation.icosphere(subdivisions=5, radius=r)
    p = near_surface_samples(ball, 40000, sigma, np.random.default_rng(3)).astype(np.float64)
    s = NEAR_SURFACE_SIGMA if sigma is None else sigma
    radial = np.linalg.norm(p, axis=1) - r  # ≈ the normal component of the offset (sigma << r)
    assert abs(radial.mean()) < 0.05 * s + 1e-4
    assert radial.std() == pytest.approx(s, rel=0.05)
    assert NEAR_SURFACE_SIGMA == pytest.approx(0.04 / np.sqrt(5))
