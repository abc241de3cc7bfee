"""voxels: cell-centre occupancy grids (x, y, z order) and LDIF's coarse node SDF grid."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

import impax.geometry.voxels as voxels
from impax.conventions import imnet_grid_centres
from impax.geometry.voxels import gaps_world2grid, interpolate_grid, occupancy_grid, sdf_grid


def test_occupancy_grid_box_counts_and_axis_order():
    # box half extents (0.1, 0.2, 0.3) at 64^3 over [-0.5, 0.5]: a cell is inside exactly when its
    # centre (i + 0.5)/64 - 0.5 is inside the box (no centre lies on a face)
    half = np.array([0.1, 0.2, 0.3])
    box = trimesh.creation.box(extents=2 * half)
    g = occupancy_grid(box, 64)
    assert g.dtype == bool and g.shape == (64, 64, 64)
    truth = np.all(np.abs(imnet_grid_centres(64)) < half, axis=-1)
    np.testing.assert_array_equal(g, truth)
    counts = [np.count_nonzero(g.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)]
    c = (np.arange(64) + 0.5) / 64 - 0.5
    assert counts == [int(np.sum(np.abs(c) < h)) for h in half]
    assert counts[0] < counts[1] < counts[2]  # index order is (x, y, z)


def test_occupancy_grid_iou_against_analytic_sphere_64():
    c, r = np.array([0.05, -0.04, 0.03]), 0.33
    ball = trimesh.creation.icosphere(subdivisions=5, radius=r)
    ball.apply_translation(c)
    g = occupancy_grid(ball, 64)
    truth = np.linalg.norm(imnet_grid_centres(64) - c, axis=-1) < r
    iou = np.logical_and(g, truth).sum() / np.logical_or(g, truth).sum()
    assert iou >= 0.97
    assert iou >= 0.995  # in fact near-perfect: only cells within the facet sag can differ


def test_occupancy_grid_chunking_does_not_change_the_result(monkeypatch):
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    whole = occupancy_grid(ball, 24, half=0.4)
    monkeypatch.setattr(voxels, "CHUNK_POINTS", 24 * 24 * 5)  # 5 z-slabs per chunk, last one partial
    np.testing.assert_array_equal(occupancy_grid(ball, 24, half=0.4), whole)


def test_blocked_occupancy_grid_equals_the_per_cell_grid_on_thin_closed_shapes():
    # block evaluation (centres of 4^3 blocks, fine cells only where a triangle's bbox touches the
    # block) must give exactly the per-cell answer, including ~1-cell-thick walls (lamp shade, mug)
    from impax.geometry.normalize import imnet_transform, transform_mesh
    from impax.geometry.shapes import make_shape

    for family, seed in (("lamp", 3), ("mug", 1)):
        m = make_shape(family, seed).mesh
        m = transform_mesh(m, imnet_transform(m))
        exact = occupancy_grid(m, 96, block=1)
        blocked = occupancy_grid(m, 96, block=4)
        assert exact.sum() > 1000
        np.testing.assert_array_equal(blocked, exact)
        # the shortcut is real: most blocks are untouched by the surface
        assert voxels._touched_blocks(m, 24, 0.5).mean() < 0.3
    # a few big triangles (box: 12 faces spanning many blocks) take the per-triangle path
    box = trimesh.creation.box(extents=(0.31, 0.52, 0.7))
    box.apply_translation((0.013, -0.02, 0.031))
    np.testing.assert_array_equal(occupancy_grid(box, 128), occupancy_grid(box, 128, block=1))


def test_blocked_occupancy_grid_falls_back_to_per_cell_on_open_meshes():
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    open_ball = trimesh.Trimesh(ball.vertices, ball.faces[ball.vertices[ball.faces].mean(axis=1)[:, 1] < 0.2])
    assert not voxels._closed(open_ball) and voxels._closed(ball)
    np.testing.assert_array_equal(occupancy_grid(open_ball, 32, block=4), occupancy_grid(open_ball, 32, block=1))
    with pytest.raises(ValueError, match="does not divide"):
        occupancy_grid(ball, 30, block=4)


def test_gaps_world2grid_maps_box_corners_to_node_indices():
    m = gaps_world2grid(32, 0.7)
    assert m.dtype == np.float32 and m.shape == (4, 4)
    corners = np.array([[-0.7, -0.7, -0.7, 1.0], [0.7, 0.7, 0.7, 1.0], [0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose((corners @ m.T)[:, :3], [[0, 0, 0], [31, 31, 31], [15.5, 15.5, 15.5]], atol=1e-5)
    # the GAPS grid spacing for -spacing 0.044 over 1.4: int(1.4/0.044 + 0.5) = 32 nodes
    assert int(1.4 / 0.044 + 0.5) == 32


def test_sdf_grid_node_values_layout_and_interpolation():
    c, r = np.array([0.3, -0.1, 0.05]), 0.25
    ball = trimesh.creation.icosphere(subdivisions=5, radius=r)
    ball.apply_translation(c)
    grid, w2g = sdf_grid(ball)
    assert grid.shape == (32, 32, 32) and grid.dtype == np.float32
    nodes = np.linspace(-0.7, 0.7, 32)
    k, j, i = np.meshgrid(np.arange(32), np.arange(32), np.arange(32), indexing="ij")
    world = np.stack([nodes[i], nodes[j], nodes[k]], axis=-1)  # grid[k, j, i] sits at (x_i, y_j, z_k)
    analytic = np.linalg.norm(world - c, axis=-1) - r
    np.testing.assert_allclose(grid, analytic, atol=2e-4)  # facet sag of the icosphere
    # world2grid agrees with that layout: the node of grid[k, j, i] maps to (i, j, k)
    h = np.c_[world.reshape(-1, 3), np.ones(32**3)] @ w2g.T.astype(np.float64)
    np.testing.assert_allclose(h[:, :3], np.stack([i, j, k], -1).reshape(-1, 3), atol=1e-4)
    # trilinear interpolation (LDIF convention) recovers the sdf between nodes
    p = np.random.default_rng(0).uniform(-0.65, 0.65, (2000, 3))
    got = interpolate_grid(grid, w2g, p)
    exact = np.linalg.norm(p - c, axis=1) - r
    assert np.max(np.abs(got - exact)) < 0.02  # spacing 0.045; |sdf| is smooth except at the centre
    np.testing.assert_allclose(interpolate_grid(grid, w2g, world[5, 7, 9][None]), grid[5, 7, 9], atol=1e-6)
