"""Inside/outside labels from depth images alone, against closed-form shapes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from impax.geometry.camera import dodecahedron_cameras
from impax.geometry.carve import carve_outside, depth_observations
from impax.geometry.render import render_depth


@pytest.fixture(scope="module")
def sphere_depth():
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.3)
    mesh.apply_translation((0.1, -0.05, 0.0))
    cams = dodecahedron_cameras()
    return mesh, cams, render_depth(mesh, cams, size=64)


def test_carving_labels_a_sphere(sphere_depth, rng):
    mesh, cams, depth = sphere_depth
    pts, inside = depth_observations(depth, cams, rng, n_uniform=6000, n_near=6000)
    gt = np.linalg.norm(pts - np.array([0.1, -0.05, 0.0]), axis=1) < 0.3
    uniform, near = slice(0, 6000), slice(6000, None)
    assert 0.02 < gt[uniform].mean() < 0.1                   # the box sees both classes (~4% inside)
    assert (inside[uniform] == gt[uniform]).mean() > 0.99
    assert (inside[near] == gt[near]).mean() > 0.95         # 0.02 off the surface, 64^2 pixels
    # near pairs: in front of the surface always outside
    assert not inside[6000::2].any()


def test_carve_outside_is_what_some_view_sees_through(sphere_depth):
    mesh, cams, depth = sphere_depth
    centre = np.array([[0.1, -0.05, 0.0]])
    far = np.array([[0.65, 0.65, 0.65]])
    assert not carve_outside(centre, depth, cams)[0]
    assert carve_outside(far, depth, cams)[0]
    # a point hidden from every view (inside a closed cavity) is inside by this rule: the visual hull
    hollow = trimesh.util.concatenate([trimesh.creation.icosphere(4, 0.35), trimesh.creation.icosphere(4, 0.2)])
    d = render_depth(hollow, cams, size=64)
    assert not carve_outside(np.zeros((1, 3)), d, cams)[0]


def test_bad_depth_shape_is_refused(sphere_depth):
    _, cams, depth = sphere_depth
    with pytest.raises(ValueError, match="depth must be"):
        carve_outside(np.zeros((1, 3)), depth[:5], cams)
