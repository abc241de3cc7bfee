"""The grid ceiling against closed forms: a closed sphere is resolved by a 32^3 grid (IoU ≈ 1); a
plate 0.014 thick (gt-unit frame) that lies between grid nodes is lost by a 32^3 grid and resolved by a
128^3 one."""

from __future__ import annotations

import trimesh

from impax.evaluation.ceiling import grid_ceiling
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
