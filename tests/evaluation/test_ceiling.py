"""The grid ceiling against closed forms: a closed sphere is resolved by a 32^3 grid (IoU ≈ 1); a
plate 0.014 thick (gt-unit frame) that lies between grid nodes is lost by a 32^3 grid and resolved by a
128^3 one. The label ceiling: max-pooled voxels of a box score the box's volume over that of the
cells it touches."""

from __future__ import annotations

import trimesh

import numpy as np
import pytest

from impax.evaluation.ceiling import grid_ceiling, voxel_label_iou
from impax.evaluation.metrics import MetricsConfig

FAST = MetricsConfig(n_samples=20_000, iou_samples=20_000)


def test_a_closed_sphere_is_resolved():
    m = grid_ceiling(trimesh.creation.icosphere(subdivisions=4, radius=0.4), 32, FAST)
    assert m["iou"] > 0.97 and m["fscore"] > 99.0


def test_a_plate_thinner_than_a_cell_is_lost_and_a_finer_grid_resolves_it():
    # a 1 x 1 x 0.02 plate and a small cube above it, so the bounding-box centre (a grid node) is not
    # in the plate; the diagonal is ~1.45, so the plate is 0.014 thick in the gt-unit frame:
    # 0.44 of a 32^3 cell, 1.8 of a 128^3 cell
    plate = trimesh.creation.box(extents=(1.0, 1.0, 0.02))
    cube = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    cube.apply_translation([0.0, 0.0, 0.3371])
    mesh = trimesh.util.concatenate([plate, cube])
    assert grid_ceiling(mesh, 32, FAST)["iou"] < 0.7
    assert grid_ceiling(mesh, 128, FAST)["iou"] > 0.95


@pytest.mark.parametrize("extents", [(0.6, 0.79, 0.1), (0.7, 0.71, 0.01)])
def test_max_pooled_voxels_of_a_box_score_its_volume_over_the_cells_it_touches(extents):
    """A box centred at the origin with a unit diagonal is its own gt-unit frame; its 64^3 max-pooled
    voxels (every cell the box overlaps) cover the box grown to cell boundaries, so their IoU is
    vol(box) / vol(grown box) — 0.75 for a 0.1-thick box, 0.31 for a 0.01-thick plate."""
    e = np.asarray(extents) / np.linalg.norm(extents)
    box = trimesh.creation.box(extents=e)
    edges = np.arange(65) / 64 - 0.5
    overlap = [(edges[:-1] < h) & (edges[1:] > -h) for h in e / 2]  # cells each axis's extent touches
    voxels = overlap[0][:, None, None] & overlap[1][None, :, None] & overlap[2][None, None, :]
    grown = np.array([edges[1:][o].max() - edges[:-1][o].min() for o in overlap])
    expected = float(np.prod(e) / np.prod(grown))
    got = voxel_label_iou(box, voxels, MetricsConfig(iou_samples=200_000))
    assert got == pytest.approx(expected, abs=0.02)
    assert voxel_label_iou(box, np.zeros((64, 64, 64), bool), FAST) == 0.0
