"""Cameras: LDIF's 20 dodecahedron cameras, orbit framing, 3D-R2N2-like view cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest

from impax.geometry.camera import (
    Cameras,
    dodecahedron_cameras,
    focal_from_fov,
    orbit_cameras,
    view_angles,
    view_cameras,
)

# Three lines of google/ldif ldif/data/dodeca_cameras.cam (viewpoint, towards, up), one per
# vertex family, as reference values for the order and orientation of the cameras.
LDIF_ROWS = {
    0: ([0.6, 0.6, 0.6], [-0.57735, -0.57735, -0.57735], [-0.408248, 0.816497, -0.408248]),
    9: ([0, 0.97082, -0.37082], [0, -0.934172, 0.356822], [0, 0.356822, 0.934172]),
    13: ([0.37082, 0, -0.97082], [-0.356822, 0, 0.934172], [0, 1, 0]),
    18: ([-0.97082, 0.37082, 0], [0.934172, -0.356822, 0], [0.356822, 0.934172, 0]),
}


def test_dodeca_radius_focal_and_look_at_origin():
    cams = dodecahedron_cameras()
    assert len(cams) == 20 and cams.size == 224
    pos = cams.positions
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1), 0.6 * math.sqrt(3.0), atol=1e-5)
    # Optical axis goes through the origin; the origin is at depth |eye| on the axis.
    np.testing.assert_allclose(cams.towards, -pos / np.linalg.norm(pos, axis=1, keepdims=True), atol=1e-6)
    origin_cam = cams.world2cam[:, :3, 3].astype(np.float64)
    np.testing.assert_allclose(origin_cam[:, :2], 0.0, atol=1e-6)
    np.testing.assert_allclose(-origin_cam[:, 2], np.linalg.norm(pos, axis=1), atol=1e-5)
    # GAPS half-angle xfov 0.5 at 224 px: f = 112 / tan(0.5) ~= 205.
    assert cams.focal_px == pytest.approx(112.0 / math.tan(0.5), rel=1e-9)
    assert cams.focal_px == pytest.approx(205.0, abs=0.1)
    assert cams.half_fov == pytest.approx(0.5, abs=1e-12)
    pix, depth = cams.project(np.zeros((1, 3)))
    np.testing.assert_allclose(pix[:, 0], 112.0, atol=1e-4)


def test_dodeca_pairwise_angles_are_a_regular_dodecahedron():
    u = dodecahedron_cameras().positions
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    g = u @ u.T
    s5 = math.sqrt(5.0) / 3.0
    # Per vertex, the other 19 have cosines sqrt5/3 (x3 edges), 1/3 (x6), -1/3 (x6), -sqrt5/3 (x3), -1 (x1).
    expected = sorted([s5] * 3 + [1 / 3] * 6 + [-1 / 3] * 6 + [-s5] * 3 + [-1.0])
    for i in range(20):
        others = np.sort(np.delete(g[i], i))
        np.testing.assert_allclose(others, expected, atol=1e-6)
    # Edge angle of the regular dodecahedron seen from its centre: arccos(sqrt5/3) ~= 41.81 deg.
    nearest = np.degrees(np.arccos(np.clip(np.sort(g - 2 * np.eye(20), axis=1)[:, -1], -1, 1)))
    np.testing.assert_allclose(nearest, 41.8103, atol=1e-3)


@pytest.mark.parametrize("row", sorted(LDIF_ROWS))
def test_dodeca_matches_ldif_cam_file_rows(row):
    cams = dodecahedron_cameras()
    eye, towards, up = (np.asarray(v) for v in LDIF_ROWS[row])
    np.testing.assert_allclose(cams.positions[row], eye, atol=1e-5)
    np.testing.assert_allclose(cams.towards[row], towards, atol=1e-5)
    np.testing.assert_allclose(cams.ups[row], up, atol=1e-5)


def test_rotation_is_right_handed_opengl_frame():
    cams = dodecahedron_cameras()
    r = cams.world2cam[:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-6)
    # Camera frame: x = right = towards x up, z = -towards.
    c2w = cams.cam2world
    np.testing.assert_allclose(c2w[:, :3, 0], np.cross(cams.towards, cams.ups), atol=1e-6)
    np.testing.assert_allclose(c2w[:, :3, 2], -cams.towards, atol=1e-6)


def test_pixel_centre_rays_project_back_to_pixel_centres():
    cams = dodecahedron_cameras(32)
    d = cams.pixel_directions()  # camera frame, z = -1
    c2w = cams.cam2world[3]
    pts = (d.reshape(-1, 3) * 0.7) @ c2w[:3, :3].T + c2w[:3, 3]
    pix, depth = cams[3].project(pts)
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    np.testing.assert_allclose(pix[0, :, 0], cols.reshape(-1) + 0.5, atol=1e-4)
    np.testing.assert_allclose(pix[0, :, 1], rows.reshape(-1) + 0.5, atol=1e-4)
    np.testing.assert_allclose(depth, 0.7, atol=1e-5)


def test_orbit_cameras_frame_the_bounds():
    bounds = np.array([[-0.3, -0.1, -0.2], [0.5, 0.4, 0.3]])
    corners = np.array([[x, y, z] for x in bounds[:, 0] for y in bounds[:, 1] for z in bounds[:, 2]])
    cams = orbit_cameras([0.0, 45.0, 200.0], [10.0, 30.0, -20.0], size=100, bounds=bounds, margin=1.05)
    pix, depth = cams.project(corners)
    assert np.all(depth > 0)
    assert np.all((pix > 0) & (pix < 100))
    # The centre of the box projects to the image centre; azimuth 0 / elevation 0 sits on +z.
    pix_c, _ = cams.project(bounds.mean(0, keepdims=True))
    np.testing.assert_allclose(pix_c[:, 0], 50.0, atol=1e-3)
    c0 = orbit_cameras(0.0, 0.0, 64)
    np.testing.assert_allclose(c0.positions[0] / np.linalg.norm(c0.positions[0]), [0, 0, 1], atol=1e-9)
    c90 = orbit_cameras(90.0, 0.0, 64)
    np.testing.assert_allclose(c90.positions[0] / np.linalg.norm(c90.positions[0]), [1, 0, 0], atol=1e-9)


def test_view_cameras_are_deterministic_and_in_r2n2_ranges():
    a, b, c = view_cameras(24, seed=3), view_cameras(24, seed=3), view_cameras(24, seed=4)
    np.testing.assert_array_equal(a.world2cam, b.world2cam)
    assert not np.allclose(a.world2cam, c.world2cam)
    assert a.size == 137 and a.focal_px == pytest.approx(focal_from_fov(25.0, 137))
    p = a.positions
    el = np.degrees(np.arcsin(p[:, 1] / np.linalg.norm(p, axis=1)))
    az = np.degrees(np.arctan2(p[:, 0], p[:, 2])) % 360.0
    az_ref, el_ref = view_angles(24, seed=3)
    np.testing.assert_allclose(el, el_ref, atol=1e-4)
    np.testing.assert_allclose(az, az_ref, atol=1e-4)
    assert np.all((el >= 25.0 - 1e-4) & (el <= 30.0 + 1e-4))
    assert np.all((az_ref >= 0) & (az_ref < 360))


def test_cameras_validation_and_resize():
    with pytest.raises(ValueError):
        Cameras(np.eye(3), 10.0, 16)
    with pytest.raises(ValueError):
        Cameras(np.eye(4), -1.0, 16)
    with pytest.raises(ValueError):
        Cameras.look_at(np.array([[0.0, 2.0, 0.0]]))  # up parallel to the view direction
    c = dodecahedron_cameras()
    r = c.resized(112)
    assert r.size == 112 and r.half_fov == pytest.approx(c.half_fov)
    assert len(c[2:5]) == 3 and len(c[0]) == 1
