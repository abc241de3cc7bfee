"""Ray-cast renders against closed-form references (analytic sphere, planes, numpy compositing)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from impax.geometry.camera import Cameras, orbit_cameras, view_cameras
from impax.geometry.render import (
    add_label,
    label_height,
    render_compare,
    tile_images,
    depth_to_points,
    dodeca_surface_samples,
    dodecahedron_cameras,
    framing,
    render_depth,
    render_depth_normals,
    render_grid,
    render_shaded,
    render_views,
    save_png,
    tile_images,
)

R = 0.4  # sphere radius: inside LDIF's GAPS box, seen whole by every dodecahedron camera


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    # Subdivision 6 (81,920 faces): the chord error r * (1 - cos(edge)) is ~1e-4 of the radius.
    return trimesh.creation.icosphere(subdivisions=6, radius=R)


def _analytic_sphere(cams: Cameras, radius: float):
    """Independent reference: pixel-centre rays built from the camera vectors, solved against
    |o + t d|^2 = r^2 with d = towards + x right + y up (so t is the z-depth)."""
    s, f = cams.size, cams.focal_px
    u = (np.arange(s) + 0.5 - s / 2) / f
    right = np.cross(cams.towards, cams.ups)
    d = (cams.towards[:, None, None, :] + u[None, None, :, None] * right[:, None, None, :]
         - u[None, :, None, None] * cams.ups[:, None, None, :])
    o = cams.positions[:, None, None, :]
    a = np.sum(d * d, -1)
    b = 2 * np.sum(d * o, -1)
    c = np.sum(o * o, -1) - radius**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    # Distance of each ray to the centre, and how far that is from the silhouette in pixels.
    closest = np.linalg.norm(np.cross(o, d), axis=-1) / np.linalg.norm(d, axis=-1)
    px_size = np.linalg.norm(o, axis=-1) / f
    return np.where(disc > 0, t, 0.0), disc > 0, np.abs(closest - radius) / px_size


def test_sphere_depth_matches_analytic(sphere):
    cams = dodecahedron_cameras()
    depth = render_depth(sphere, cams)
    assert depth.shape == (20, 224, 224) and depth.dtype == np.float32
    ref, ref_hit, px_from_edge = _analytic_sphere(cams, R)
    hit = depth > 0
    boundary = px_from_edge < 1.0
    # The silhouette matches exactly away from the boundary pixels.
    assert np.array_equal(hit[~boundary], ref_hit[~boundary])
    assert hit.sum() > 0.2 * hit.size
    both = hit & ref_hit
    assert np.max(np.abs(depth[both] - ref[both])) < 1e-3


def test_depth_is_along_optical_axis_not_ray_length():
    # A large box whose face z = 0.5 fills the view of a camera at z = 2 looking down -z.
    box = trimesh.creation.box((20.0, 20.0, 1.0))  # z in [-0.5, 0.5]
    cams = Cameras.look_at(np.array([[0.0, 0.0, 2.0]]), focal_px=20.0, size=32)
    depth = render_depth(box, cams)
    np.testing.assert_allclose(depth, 1.5, atol=1e-6)


def test_image_orientation_not_mirrored():
    # Marker spheres at +x (small) and +y (large) seen from +z with y up: +x is right, +y is top.
    mx = trimesh.creation.icosphere(2, radius=0.1).apply_translation((0.5, 0.0, 0.0))
    my = trimesh.creation.icosphere(2, radius=0.2).apply_translation((0.0, 0.5, 0.0))
    cams = Cameras.look_at(np.array([[0.0, 0.0, 3.0]]), focal_px=40.0, size=64)
    for mesh, (row_side, col_side) in ((mx, (0, 1)), (my, (-1, 0))):
        hit = render_depth(mesh, cams)[0] > 0
        rows, cols = np.nonzero(hit)
        drow, dcol = rows.mean() - 31.5, cols.mean() - 31.5
        if col_side:
            assert dcol > 4 and abs(drow) < 1  # 0.5 / 2.9 * 40 ~= 6.9 px right
        if row_side:
            assert drow < -4 and abs(dcol) < 1
    img = render_shaded([(mx, (1, 0, 0), 1.0), (my, (0, 0, 1), 1.0)], 0.0, 0.0, size=64, supersample=1)
    red = (img[..., 0] > 150) & (img[..., 2] < 100)
    blue = (img[..., 2] > 150) & (img[..., 0] < 100)
    assert np.nonzero(red)[1].mean() > np.nonzero(blue)[1].mean() + 5  # red (+x) to the right
    assert np.nonzero(blue)[0].mean() < np.nonzero(red)[0].mean() - 5  # blue (+y) above


def test_back_projected_points_lie_on_sphere_with_outward_normals(sphere):
    cams = dodecahedron_cameras(96)
    depth, normals = render_depth_normals(sphere, cams)
    pts, nrm = depth_to_points(depth, cams, normals)
    assert len(pts) == int((depth > 0).sum()) and pts.dtype == np.float32
    radial = np.linalg.norm(pts.astype(np.float64), axis=1)
    assert np.max(np.abs(radial - R)) < 1e-3
    outward = np.sum(nrm * pts, axis=1) / radial
    assert np.min(outward) > 0.99  # exact face normals
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-5)
    # Without normal images, normals come from the depth image's finite differences.
    pts2, nrm2 = depth_to_points(depth, cams)
    np.testing.assert_array_equal(pts2, pts)
    cos2 = np.sum(nrm2 * pts2, axis=1) / radial
    assert np.min(cos2) > 0.0 and np.median(cos2) > 0.999 and np.mean(cos2 > 0.95) > 0.97
    # Every point projects back to the centre of the pixel it came from.
    first = np.nonzero(depth > 0)[0] == 0  # points of view 0
    pix, _ = cams.project(pts.astype(np.float64))
    rows, cols = np.nonzero(depth[0] > 0)
    np.testing.assert_allclose(pix[0, first], np.stack([cols + 0.5, rows + 0.5], 1), atol=1e-3)


def test_dodeca_surface_samples(sphere):
    pts, nrm = dodeca_surface_samples(sphere, n=5000, rng=np.random.default_rng(1), size=64)
    assert pts.shape == (5000, 3) and nrm.shape == (5000, 3)
    assert np.max(np.abs(np.linalg.norm(pts, axis=1) - R)) < 1e-3
    assert np.min(np.sum(nrm * pts, axis=1)) > 0
    # A sphere is seen from all sides: samples spread over every octant.
    octant = (pts > 0) @ np.array([1, 2, 4])
    assert len(np.unique(octant)) == 8


def _chair() -> trimesh.Trimesh:
    parts = [trimesh.creation.box((0.5, 0.06, 0.5))]
    for x in (-0.22, 0.22):
        for z in (-0.22, 0.22):
            parts.append(trimesh.creation.box((0.05, 0.45, 0.05)).apply_translation((x, -0.25, z)))
    parts.append(trimesh.creation.box((0.5, 0.5, 0.05)).apply_translation((0, 0.27, -0.225)))
    m = trimesh.util.concatenate(parts)
    m.apply_translation(-m.bounds.mean(0))
    return m.apply_scale(1.0 / np.linalg.norm(m.extents))


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3 x 3 dilation over the last two axes (boundary pixels of anti-aliased edges)."""
    out = mask.copy()
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            out |= np.roll(np.roll(mask, dr, axis=-2), dc, axis=-1)
    return out


def test_render_views_deterministic_white_background_darker_shape():
    chair = _chair()
    a = render_views(chair, n_views=3, seed=7)
    b = render_views(chair, n_views=3, seed=7)
    c = render_views(chair, n_views=3, seed=8)
    assert a.shape == (3, 137, 137) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    mask = render_depth(chair, view_cameras(3, seed=7)) > 0  # same cameras, one ray per pixel
    assert np.all(a[~_dilate(mask)] == 255)  # white background
    interior = mask & ~_dilate(~mask)
    assert interior.sum() > 0.05 * mask.size
    assert np.all(a[interior] < 200)  # shape pixels darker
    assert np.all(a[0, :2, :] == 255) and np.all(a[:, :, -2:] == 255)  # framed: borders stay white


def test_render_shaded_silhouette_matches_depth_mask():
    chair = _chair()
    cam = orbit_cameras(35.0, 25.0, size=96, bounds=chair.bounds)
    mask = render_depth(chair, cam)[0] > 0
    img = render_shaded(chair, 35.0, 25.0, size=96, supersample=1, bounds=chair.bounds)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(np.any(img != 255, axis=-1), mask)
    # Explicit camera gives the same picture; anti-aliased version differs only on the boundary.
    np.testing.assert_array_equal(render_shaded(chair, camera=cam, supersample=1), img)
    aa = render_shaded(chair, 35.0, 25.0, size=96, supersample=2, bounds=chair.bounds)
    boundary = _dilate(mask) & _dilate(~mask)
    np.testing.assert_array_equal(np.any(aa != 255, axis=-1)[~boundary], mask[~boundary])
    # Lit, not flat: the shape shows a range of intensities.
    assert np.ptp(img[mask].astype(int).sum(-1)) > 60


def test_default_framing_fits_the_shape_tightly():
    # The framing sphere has the largest vertex distance from the box centre as radius: for a
    # sphere mesh that is its radius 0.3, well below its bounding box's half diagonal (0.52).
    for mesh in (_chair(), trimesh.creation.icosphere(3, radius=0.3)):
        bounds, radius = framing(mesh)
        np.testing.assert_allclose(radius, np.max(np.linalg.norm(mesh.vertices - mesh.bounds.mean(0), axis=1)))
        for az, el in ((0.0, 0.0), (70.0, 35.0), (200.0, -30.0)):
            img = render_shaded(mesh, az, el, size=64, supersample=1)
            shape = np.any(img != 255, axis=-1)
            rows, cols = np.nonzero(shape)
            assert rows.min() > 0 and cols.min() > 0 and rows.max() < 63 and cols.max() < 63  # inside
            assert max(np.ptp(rows), np.ptp(cols)) > 0.55 * 64  # and fills much of the frame


def test_alpha_compositing_of_layers():
    front = trimesh.creation.icosphere(3, radius=0.25).apply_translation((0, 0, 0.3))
    back = trimesh.creation.box((0.8, 0.8, 0.1))
    bounds = np.array([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    kw = dict(size=48, supersample=1, bounds=bounds)
    a = render_shaded([(front, (1.0, 0.2, 0.1), 1.0)], 10.0, 15.0, **kw).astype(float)
    b = render_shaded([(back, (0.2, 0.8, 0.3), 1.0)], 10.0, 15.0, **kw).astype(float)
    mix = render_shaded([(back, (0.2, 0.8, 0.3), 1.0), (front, (1.0, 0.2, 0.1), 0.5)], 10.0, 15.0, **kw)
    cam = orbit_cameras(10.0, 15.0, 48, bounds)
    in_front = render_depth(front, cam)[0] > 0
    in_back = render_depth(back, cam)[0] > 0
    both = in_front & in_back
    assert both.sum() > 50
    np.testing.assert_allclose(mix[both], 0.5 * a[both] + 0.5 * b[both], atol=1.01)
    only_back = in_back & ~in_front
    np.testing.assert_array_equal(mix[only_back], b[only_back])
    # Layer order in the list does not matter: compositing sorts by depth per pixel.
    mix2 = render_shaded([(front, (1.0, 0.2, 0.1), 0.5), (back, (0.2, 0.8, 0.3), 1.0)], 10.0, 15.0, **kw)
    np.testing.assert_array_equal(mix, mix2)


def test_grid_tiles_and_png_round_trip(tmp_path):
    chair = _chair()
    grid = render_grid([chair, [(chair, (200, 200, 200), 1.0)]], (0.0, 90.0, 180.0), size=40,
                       pad=2, supersample=1)
    assert grid.shape == (2 * 40 + 3 * 2, 3 * 40 + 4 * 2, 3)
    bounds, radius = framing(chair)
    tile = render_shaded(chair, 90.0, 20.0, 40, supersample=1, bounds=bounds, radius=radius)
    np.testing.assert_array_equal(grid[2:42, 44:84], tile)
    tiles = tile_images([np.zeros((4, 5), np.uint8)] * 3, ncols=2, pad=1)
    assert tiles.shape == (11, 13) and tiles[0, 0] == 255 and tiles[1, 1] == 0
    p = save_png(grid, tmp_path / "sub" / "grid.png")
    np.testing.assert_array_equal(np.asarray(Image.open(p)), grid)


def test_rejects_meshes_without_faces():
    with pytest.raises(ValueError):
        render_depth(trimesh.Trimesh(vertices=np.zeros((3, 3)), faces=np.zeros((0, 3), int)),
                     dodecahedron_cameras(16))


def test_render_command_writes_png(tmp_path):
    from impax.cli import main

    mesh_path = tmp_path / "chair.ply"
    _chair().apply_scale(3.0).export(mesh_path)  # any scale: the command normalises
    out = tmp_path / "chair.png"
    assert main(["render", str(mesh_path), "--out", str(out), "--views", "2", "--size", "48"]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (48 + 8, 2 * 48 + 12, 3)
    assert np.all(img[0] == 255) and np.any(img[:, 4:52] < 200)
    out2 = tmp_path / "dodeca.png"
    assert main(["render", str(mesh_path), "--out", str(out2), "--dodeca"]) == 0
    dd = np.asarray(Image.open(out2)).astype(int)
    # 20 tiles of 224 px, each in a 1-px frame under a label band, 8 px of white between them
    tile, band, pad = 226, label_height(226), 8
    assert dd.shape == (4 * (tile + band) + 5 * pad, 5 * tile + 6 * pad)
    for c in range(5):
        x = pad + c * (tile + pad)
        assert np.all(dd[:, x - pad:x] == 255)  # white gutter left of every column
        for r in range(4):
            y = pad + r * (tile + band + pad)
            assert np.all(dd[y:y + band, x - pad:x] == 255)
            assert dd[y:y + band, x:x + tile].min() < 128  # the view index is drawn in its band
            frame = dd[y + band:y + band + tile, x:x + tile]
            assert np.all(frame[:, 0] == 170) and np.all(frame[0, :] == 170) and np.all(frame[-1, :] == 170)
            assert np.any(frame[1:-1, 1:-1] < 255)  # every camera sees the chair
    assert np.all(dd[-pad:] == 255)
    assert main(["render", str(tmp_path / "missing.obj"), "--out", str(out)]) == 1


def test_labels_and_frames_of_tiles():
    img = np.full((40, 60, 3), 255, np.uint8)
    lab = add_label(img, "chair_01")
    h = label_height(60)
    assert lab.shape == (40 + h, 60, 3) and np.array_equal(lab[h:], img)
    assert lab[:h].min() < 128 and np.all(lab[:, 0] == 255)  # ink in the band, centred (margins white)
    other = add_label(img, "table_02")
    assert not np.array_equal(lab[:h], other[:h])
    long = add_label(img, "a_very_long_label_that_cannot_fit_in_sixty_pixels")
    assert long.shape == lab.shape  # shortened, not widened
    gray = add_label(np.zeros((20, 30), np.uint8), "7", height=14)
    assert gray.shape == (34, 30) and gray[:14].min() < 128
    grid = tile_images([img, img], ncols=2, pad=5, labels=["a", "b"], frame=(0, 0, 255))
    assert grid.shape == (5 + h + 42 + 5, 5 + 62 + 5 + 62 + 5, 3)
    assert np.all(grid[5 + h, 5:67] == (0, 0, 255)) and np.all(grid[5 + h:, 67:72] == 255)
    with pytest.raises(ValueError):
        tile_images([img, img], labels=["a"])


def test_render_compare_keeps_relative_size(sphere):
    small = sphere.copy().apply_scale(0.5)
    img = render_compare([sphere, small], ["gt", "half"], size=64, supersample=1)
    h, pad = label_height(64), 6
    assert img.shape == (pad + h + 64 + pad, 3 * pad + 2 * 64, 3)
    area = [(img[pad + h:pad + h + 64, x:x + 64] < 250).any(axis=-1).sum() for x in (pad, 2 * pad + 64)]
    assert 0.18 < area[1] / area[0] < 0.32  # half the radius: a quarter of the silhouette
    ghost = render_compare([sphere, small, None], size=64, supersample=1, overlay=True)
    tiles = [ghost[pad + h:pad + h + 64, x:x + 64].astype(int) for x in (pad, 2 * pad + 64, 3 * pad + 128)]
    assert ((tiles[1] < 250).any(axis=-1).sum()) == ((tiles[0] < 250).any(axis=-1).sum())  # ghost of the gt
    assert np.all(tiles[2] == 255)  # a missing prediction: an empty tile
