"""Reconstruction metrics on shapes with known answers, cross-checked by brute force."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from impax.evaluation.metrics import (MetricsConfig, iou_uniform, iou_voxels, mesh_metrics, point_metrics)
from impax.evaluation.sampling import area_weighted_samples
from impax.geometry.inside import occupancy as inside_mesh

SMALL = MetricsConfig(n_samples=20_000, iou_samples=40_000, voxel_resolution=32)


def brute_force_metrics(pp, pn, gp, gn, tau):
    """Independent reference: full pairwise distance matrix in numpy, formulas written out again."""
    d = np.sqrt(((pp[:, None, :] - gp[None, :, :]) ** 2).sum(-1))
    i_pg, i_gp = d.argmin(1), d.argmin(0)
    d_pg, d_gp = d.min(1), d.min(0)
    prec = 100 * np.mean(d_pg <= tau)
    rec = 100 * np.mean(d_gp <= tau)
    return {
        "chamfer_l1": (d_pg.mean() + d_gp.mean()) / 2,
        "chamfer_l2": 1000 * ((d_pg ** 2).mean() + (d_gp ** 2).mean()),
        "chamfer_l2_occnet": ((d_pg ** 2).mean() + (d_gp ** 2).mean()) / 2,
        "normal_consistency": (np.abs((pn * gn[i_pg]).sum(1)).mean() + np.abs((gn * pn[i_gp]).sum(1)).mean()) / 2,
        "fscore": 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec),
    }


def _check_against_brute_force(a, b, tau, n=1500, seed=3):
    pa = area_weighted_samples(a, n, seed)
    pb = area_weighted_samples(b, n, seed + 1)
    ours = point_metrics(*pa, *pb, tau=tau)
    ref = brute_force_metrics(*pa, *pb, tau)
    for k, v in ref.items():
        assert ours[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    return ours


def test_identical_meshes_score_perfectly():
    m = trimesh.creation.icosphere(3, radius=0.4)
    out = mesh_metrics(m, m.copy(), SMALL)
    assert out["status"] == "ok" and out["message"] == ""
    assert out["chamfer_l1"] == 0 and out["chamfer_l2"] == 0
    assert out["fscore"] == 100 and out["fscore_bbox"] == 100
    assert out["normal_consistency"] == pytest.approx(1.0, abs=1e-12)
    assert out["iou"] == 1.0 and out["iou_voxels"] == 1.0
    _check_against_brute_force(m, m, 0.01)


@pytest.mark.parametrize("d", [0.05, 0.1])
def test_sphere_against_larger_sphere(d):
    a = trimesh.creation.icosphere(5, radius=1.0)
    b = trimesh.creation.icosphere(5, radius=1.0 + d)
    cfg = MetricsConfig(n_samples=40_000, compute_iou=False, compute_voxel_iou=False)
    out = mesh_metrics(a, b, cfg)
    # closed form: every point of one sphere is exactly d from the other one (sample spacing adds a little)
    assert out["chamfer_l1"] == pytest.approx(d, rel=0.03)
    assert out["chamfer_l2"] == pytest.approx(1000 * 2 * d * d, rel=0.06)
    assert out["normal_consistency"] > 0.99
    # independent distance to the exact sphere for the same samples
    pts, _ = area_weighted_samples(a, 5000, 0)
    assert np.mean(np.abs(np.linalg.norm(pts, axis=1) - (1 + d))) == pytest.approx(d, rel=0.01)
    lo = MetricsConfig(n_samples=40_000, tau=0.8 * d, compute_iou=False, compute_voxel_iou=False)
    hi = MetricsConfig(n_samples=40_000, tau=1.5 * d, compute_iou=False, compute_voxel_iou=False)
    assert mesh_metrics(a, b, lo)["fscore"] == 0.0
    assert mesh_metrics(a, b, hi)["fscore"] == 100.0
    _check_against_brute_force(a, b, d)


def test_sphere_volume_iou_closed_form():
    d = 0.1
    a = trimesh.creation.icosphere(5, radius=1.0)
    b = trimesh.creation.icosphere(5, radius=1.0 + d)
    # IoU of concentric balls = (r / R)^3; facets shrink both volumes by a tiny relative amount
    assert iou_uniform(a, b, n=100_000, seed=0) == pytest.approx(1 / (1 + d) ** 3, abs=0.01)


@pytest.mark.parametrize("s", [0.1, 0.3])
def test_cube_against_shifted_cube(s):
    a = trimesh.creation.box()  # unit cube centred at the origin
    b = trimesh.creation.box()
    b.apply_translation([s, 0, 0])
    out = mesh_metrics(a, b, MetricsConfig(n_samples=20_000, iou_samples=100_000, voxel_resolution=48))
    # closed form inside OccNet's box around the GT (x in [s - 0.55, s + 0.55]), which clips the
    # unshifted cube to x >= s - 0.55 when s > 0.05
    a_len = 0.5 - max(-0.5, s - 0.55)
    inter = 1.0 - s
    closed = inter / (a_len + 1.0 - inter)
    big = MetricsConfig(n_samples=1000, iou_samples=100_000, iou_padding=0.8, compute_voxel_iou=False)
    assert mesh_metrics(a, b, big)["iou"] == pytest.approx((1 - s) / (1 + s), abs=0.01)  # whole volumes
    assert out["iou"] == pytest.approx(closed, abs=0.01)
    assert out["iou_voxels"] == pytest.approx(closed, abs=0.03)
    ours = _check_against_brute_force(a, b, 0.01)
    assert 0 < ours["chamfer_l1"] < s
    # 4 of 6 faces overlap partly; normals of the matched faces agree
    assert out["normal_consistency"] > 0.6


def test_inside_mesh_against_closed_form():
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, (20000, 3))
    occ = inside_mesh(trimesh.creation.box(extents=(1.0, 0.6, 0.4)), p)
    ref = (np.abs(p[:, 0]) < 0.5) & (np.abs(p[:, 1]) < 0.3) & (np.abs(p[:, 2]) < 0.2)
    assert np.mean(occ == ref) > 0.999


def test_fscore_bbox_is_scale_free_but_fscore_is_not():
    a = trimesh.creation.icosphere(4, radius=0.5)
    b = trimesh.creation.icosphere(4, radius=0.503)
    cfg = MetricsConfig(n_samples=20_000, compute_iou=False, compute_voxel_iou=False)
    small = mesh_metrics(a, b, cfg)
    a10, b10 = a.copy(), b.copy()
    a10.apply_scale(10)
    b10.apply_scale(10)
    big = mesh_metrics(a10, b10, cfg)
    assert big["fscore_bbox"] == pytest.approx(small["fscore_bbox"], abs=1e-9)
    assert small["fscore"] > 90 and big["fscore"] < 10
    assert big["chamfer_l1"] == pytest.approx(10 * small["chamfer_l1"], rel=1e-6)


def test_area_weighting_is_uniform_and_deterministic():
    # a box with a 4x larger face area in x-normal faces; fraction of samples on them follows area
    m = trimesh.creation.box(extents=(1.0, 2.0, 2.0))
    p, n = area_weighted_samples(m, 40000, seed=5)
    p2, _ = area_weighted_samples(m, 40000, seed=5)
    np.testing.assert_array_equal(p, p2)
    on_x = np.abs(np.abs(p[:, 0]) - 0.5) < 1e-9
    assert on_x.mean() == pytest.approx(8 / 16, abs=0.01)  # areas: x faces 2*4=8, y/z faces 2*2*2=8
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-9)


def test_empty_prediction_has_defined_scores():
    gt = trimesh.creation.box()
    out = mesh_metrics(trimesh.Trimesh(), gt, SMALL)
    assert out["status"] == "empty-prediction" and "empty" in out["message"]
    assert out["fscore"] == 0 and out["iou"] == 0 and out["normal_consistency"] == 0
    assert out["chamfer_l1"] == pytest.approx(np.sqrt(3))
    assert all(np.isfinite(out[k]) for k in ("chamfer_l1", "chamfer_l2", "iou_voxels"))


def test_invalid_gt_and_mismatched_frames():
    out = mesh_metrics(trimesh.creation.box(), trimesh.Trimesh(), SMALL)
    assert out["status"] == "invalid-gt" and np.isnan(out["fscore"])
    pred = trimesh.creation.box()
    pred.apply_scale(100.0)
    out = mesh_metrics(pred, trimesh.creation.box(), SMALL)
    assert "mismatched" in out["message"] and out["status"] == "ok"
    assert np.isfinite(out["chamfer_l1"]) and out["fscore"] == 0


def test_voxel_iou_matches_brute_force_grid():
    a = trimesh.creation.icosphere(3, radius=0.45)
    b = trimesh.creation.box(extents=(0.7, 0.7, 0.7))
    res = 20
    val = iou_voxels(a, b, res=res, padding=0.1)
    # independent grid: cube side 1.1 * 0.7 centred at 0; cell centres; closed-form inside tests
    half = 0.55 * 0.7
    c = (np.arange(res) + 0.5) / res * 2 * half - half
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    ia = np.sqrt(x ** 2 + y ** 2 + z ** 2) < 0.45
    ib = (np.abs(x) < 0.35) & (np.abs(y) < 0.35) & (np.abs(z) < 0.35)
    ref = (ia & ib).sum() / (ia | ib).sum()
    assert val == pytest.approx(ref, abs=0.02)
